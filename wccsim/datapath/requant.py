"""Requantization unit: int32 accumulator -> ``out_bits`` integer, three hardware variants.

Integer primitives follow gemmlowp ``fixedpoint/fixedpoint.h`` (scalar reference semantics), vectorized
over int64 numpy arrays whose values are int32:

* ``saturating_rounding_doubling_high_mul(a, b)`` = the high 32 bits of ``2*a*b`` rounded to nearest,
  ties upward (toward +inf): ``trunc((a*b + nudge) / 2^31)`` with ``nudge = 2^30`` if ``a*b >= 0`` else
  ``1 - 2^30``; the only overflow, ``INT32_MIN * INT32_MIN``, saturates to ``INT32_MAX``
  (ARM ``SQRDMULH``).
* ``rounding_divide_by_pot(x, e)`` = ``x / 2^e`` rounded to nearest, ties away from zero
  (ARM ``SRSHL`` by ``-e`` plus a sign fixup), ``0 <= e <= 31``.

``FIXED_POINT`` runs as one fused numba pass (cached): `_fixed_point_fused` for per-tensor parameters,
`_fixed_point_rows` for parameter arrays that broadcast to the values (per channel, per column as the
per-Haar-level coefficient requant uses, per element), reading int32 or int64 values without an int64
copy; both equal the numpy stages bit for bit (tests/test_datapath_fast.py).

`RequantParams` is the record the unit holds (made offline in float by `wccsim.calibrate.requant_params`);
`requantize` applies it in one of three modes (`RequantMode`):

* ``FIXED_POINT`` (TFLite ``MultiplyByQuantizedMultiplier``): ``x`` saturated to int32, shifted left by
  ``left_shift`` (saturating), ``SRDHM(x, multiplier)``, ``rounding_divide_by_pot(., shift)``,
  ``+ zero_point``, clamp. A left pre-shift into the int32 headroom (as TFLite's ADD kernel does with
  its ``left_shift = 20``) keeps the double rounding of SRDHM + RDBPOT negligible for narrow inputs:
  the error is at most ``1/2 + 2^-(shift+1)`` output steps.
* ``FLOAT32`` (onnxruntime MLAS ``MlasRequantizeOutput``, used by its QLinearConv CPU kernel):
  ``float32(x) * float_scale`` in float32, round half to even, ``+ zero_point``, clamp (MLAS clamps
  before rounding; the bounds are integers, so the result is the same).
* ``POW2``: a pure shifter: ``(x + 2^(s-1)) >> s`` (round half up) with ``s = pow2_shift``
  (a left shift, saturating, when ``s < 0``), ``+ zero_point``, clamp.

Every mode takes a 32-bit input register (values beyond int32 saturate, counted) and clamps to the
full ``out_bits`` register range (signed: ``[-2^(b-1), 2^(b-1) - 1]``; unsigned ``[0, 2^b - 1]``), as
TFLite and onnxruntime do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from wccsim.hw import RequantMode

__all__ = [
    "INT32_MIN", "INT32_MAX", "RequantParams", "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot", "quantize_multiplier", "out_range", "requantize", "bias_requant_dequant",
]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
_LOW31 = (1 << 31) - 1


@dataclass(frozen=True)
class RequantParams:
    """One requantization stage (per tensor, or arrays broadcasting against the values).

    Attributes
    ----------
    multiplier : int or int64 ndarray
        Q31 mantissa in [2^30, 2^31) (0 for a zero scale) for ``FIXED_POINT``.
    left_shift : int or int64 ndarray
        Left shift (>= 0, saturating) before the multiply for ``FIXED_POINT``.
    shift : int or int64 ndarray
        Right shift (0..31) after the multiply for ``FIXED_POINT``.
    zero_point : int
        Added after scaling.
    real_scale : float or float64 ndarray
        The real multiplier all modes approximate (input scale / output scale).
    out_bits : int
        Output register width.
    signed : bool
        Output signedness.
    float_scale : float32 or float32 ndarray
        The float32 multiplier of ``FLOAT32`` mode, computed as onnxruntime does.
    pow2_shift : int or int64 ndarray
        Right shift of ``POW2`` mode (negative: left shift).

    Arrays broadcast against the value array as numpy does: pass shape (Cout, 1) for per-output-channel
    parameters on (N, Cout, K) data.
    """
    multiplier: int | np.ndarray
    left_shift: int | np.ndarray
    shift: int | np.ndarray
    zero_point: int
    real_scale: float | np.ndarray
    out_bits: int
    signed: bool
    float_scale: np.float32 | np.ndarray
    pow2_shift: int | np.ndarray


def _check_int32(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    if x.size and (x.min() < INT32_MIN or x.max() > INT32_MAX):
        raise ValueError(f"{name}: values must be int32, got range [{x.min()}, {x.max()}]")
    return x


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 values held in int64.

    Parameters
    ----------
    a, b : int64 ndarrays (broadcasting), values in int32 range.

    Returns
    -------
    int64 ndarray
        ``a * b / 2^31`` rounded to nearest, ties upward; ``INT32_MIN * INT32_MIN -> INT32_MAX``.

    Examples
    --------
    >>> saturating_rounding_doubling_high_mul(np.array([INT32_MIN, 3, -3]), np.array([INT32_MIN, 1 << 30, 1 << 30]))
    array([2147483647,          2,         -1])
    """
    a = _check_int32("srdhm a", a)
    b = _check_int32("srdhm b", b)
    ab = a * b  # |ab| <= 2^62: exact in int64
    v = ab + (1 << 30)
    v -= (ab >> 63) & _LOW31  # nudge 1 - 2^30 for negative products
    v += (v >> 63) & _LOW31  # bias negatives so that >> 31 truncates toward zero (C division)
    v >>= 31
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    if overflow.any():
        v = np.where(overflow, INT32_MAX, v)
    return v


def rounding_divide_by_pot(x: np.ndarray, exponent: int | np.ndarray) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2^exponent`` rounded to nearest, ties away from zero.

    Parameters
    ----------
    x : int64 ndarray, values in int32 range.
    exponent : int or int64 ndarray (broadcasting), in 0..31.

    Returns
    -------
    int64 ndarray

    Examples
    --------
    >>> rounding_divide_by_pot(np.array([5, -5, 6, -6, 7]), 1)
    array([ 3, -3,  3, -3,  4])
    """
    x = _check_int32("rounding_divide_by_pot x", x)
    e = np.asarray(exponent, dtype=np.int64)
    if e.size and (e.min() < 0 or e.max() > 31):
        raise ValueError(f"rounding_divide_by_pot: exponent must be in 0..31, got {exponent}")
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def quantize_multiplier(real: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TFLite ``QuantizeMultiplier``: ``real ~= multiplier * 2^-31 * 2^-shift`` (done offline, float64).

    Parameters
    ----------
    real : float or float64 ndarray, >= 0.

    Returns
    -------
    multiplier : int64 ndarray
        Q31 mantissa in [2^30, 2^31) (0 for ``real == 0`` or ``real < 2^-32``).
    shift : int64 ndarray
        Right shift (negative: left shift), at least -30.

    Examples
    --------
    >>> m, s = quantize_multiplier(0.75)
    >>> int(m), int(s)
    (1610612736, 0)
    """
    real = np.asarray(real, dtype=np.float64)
    if not np.all(np.isfinite(real)) or np.any(real < 0):
        raise ValueError(f"quantize_multiplier: real multiplier must be finite and >= 0, got {real}")
    q, exp = np.frexp(real)  # real = q * 2^exp, q in [0.5, 1)
    q_fixed = np.floor(q * float(1 << 31) + 0.5).astype(np.int64)  # std::round, q >= 0
    carry = q_fixed == (1 << 31)
    q_fixed = np.where(carry, q_fixed // 2, q_fixed)
    exp = exp.astype(np.int64) + carry
    underflow = exp < -31
    q_fixed = np.where(underflow, 0, q_fixed)
    exp = np.where(underflow, 0, exp)
    overflow = exp > 30
    q_fixed = np.where(overflow, INT32_MAX, q_fixed)
    exp = np.where(overflow, 30, exp)
    return q_fixed, -exp


def out_range(out_bits: int, signed: bool) -> tuple[int, int]:
    """Full register range ``(lo, hi)`` of an ``out_bits`` signed or unsigned integer."""
    if signed:
        return -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    return 0, (1 << out_bits) - 1


def _saturating_left_shift(x: np.ndarray, left: np.ndarray) -> tuple[np.ndarray, int]:
    shifted = x << left
    sat = (shifted < INT32_MIN) | (shifted > INT32_MAX)
    return np.clip(shifted, INT32_MIN, INT32_MAX), int(np.count_nonzero(sat))


def _fixed_point(x: np.ndarray, p: RequantParams) -> tuple[np.ndarray, int]:
    x, sat = _saturating_left_shift(x, np.asarray(p.left_shift, dtype=np.int64))
    y = saturating_rounding_doubling_high_mul(x, np.asarray(p.multiplier, dtype=np.int64))
    return rounding_divide_by_pot(y, p.shift), sat


def _float32(x: np.ndarray, p: RequantParams) -> tuple[np.ndarray, int]:
    f = x.astype(np.float32) * np.asarray(p.float_scale, dtype=np.float32)
    return np.rint(f).astype(np.int64), 0


def _pow2(x: np.ndarray, p: RequantParams) -> tuple[np.ndarray, int]:
    s = np.asarray(p.pow2_shift, dtype=np.int64)
    right = np.maximum(s, 0)
    half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
    down = (x + half) >> right
    up, sat = _saturating_left_shift(x, np.maximum(-s, 0))
    return np.where(s >= 0, down, up), sat


_MODES = {RequantMode.FIXED_POINT: _fixed_point, RequantMode.FLOAT32: _float32, RequantMode.POW2: _pow2}


def requantize(acc: np.ndarray, params: RequantParams, mode: RequantMode) -> tuple[np.ndarray, int]:
    """Requantize integer values to the ``params.out_bits`` register.

    Parameters
    ----------
    acc : integer ndarray (int32 or int64 typically)
        Values at the input scale (e.g. accumulator + bias), any shape.
    params : RequantParams
    mode : RequantMode

    Returns
    -------
    q : int64 ndarray, same shape as ``acc``
        Output integers including the zero point, within ``out_range(out_bits, signed)``.
    saturations : int
        Count of saturation events: input beyond int32, left-shift overflow, output clamps.
    """
    if mode is RequantMode.FIXED_POINT:
        fused = _requantize_fused(_int_values(acc), params)
        if fused is not None:
            return fused
    return _requantize_numpy(np.asarray(acc, dtype=np.int64), params, mode)


def _requantize_numpy(acc: np.ndarray, params: RequantParams, mode: RequantMode) -> tuple[np.ndarray, int]:
    """`requantize` in numpy stages: the reference, and the path for per-channel parameters."""
    if acc.size == 0 or (acc.min() >= INT32_MIN and acc.max() <= INT32_MAX):
        in_sat, x = 0, acc
    else:
        in_sat = int(np.count_nonzero((acc < INT32_MIN) | (acc > INT32_MAX)))
        x = np.clip(acc, INT32_MIN, INT32_MAX)
    y, shift_sat = _MODES[mode](x, params)
    y = y + int(params.zero_point)
    lo, hi = out_range(params.out_bits, params.signed)
    if y.size == 0 or (y.min() >= lo and y.max() <= hi):
        return y, in_sat + shift_sat
    out_sat = int(np.count_nonzero((y < lo) | (y > hi)))
    return np.clip(y, lo, hi), in_sat + shift_sat + out_sat


@numba.njit(cache=True, inline="always")
def _fixed_point_one(x, left, multiplier, shift, zero_point, lo, hi):
    """One value through ``FIXED_POINT`` (shifts in 0..31): the numpy stages' result and how many of them
    saturated (input beyond int32, left shift, output clamp). Branch-free (selects), so loops vectorize."""
    c = min(max(x, INT32_MIN), INT32_MAX)
    sat = np.int64(c != x)
    x = c << left  # |x| <= 2^31, left <= 31: exact in int64
    c = min(max(x, INT32_MIN), INT32_MAX)
    sat += c != x
    ab = c * multiplier  # |ab| <= 2^62
    v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    y = (v + ((v >> 63) & _LOW31)) >> 31  # truncating division by 2^31 (C semantics)
    y = INT32_MAX if (c == INT32_MIN) & (multiplier == INT32_MIN) else y
    mask = (np.int64(1) << shift) - 1
    y = (y >> shift) + ((y & mask) > (mask >> 1) + (y < 0)) + zero_point
    c = min(max(y, lo), hi)
    sat += c != y
    return c, sat


@numba.njit(cache=True, nogil=True)
def _fixed_point_fused(acc, left, multiplier, shift, zero_point, lo, hi, out):
    """``FIXED_POINT`` with per-tensor parameters in one pass over flat ``acc`` (any integer dtype) into
    int64 ``out``.

    Per element, the same steps and counts as the numpy stages: saturate to int32 (counted), saturating
    left shift by ``left`` (counted), SRDHM by ``multiplier`` (``INT32_MIN * INT32_MIN -> INT32_MAX``),
    RDBPOT by ``shift`` (0..31), ``+ zero_point``, clamp to ``[lo, hi]`` (counted). Returns the count.
    """
    sat = 0
    for i in range(acc.size):
        y, s = _fixed_point_one(np.int64(acc[i]), left, multiplier, shift, zero_point, lo, hi)
        sat += s
        out[i] = y
    return sat


@numba.njit(cache=True, nogil=True)
def _fixed_point_rows(acc, left, multiplier, shift, prow, zero_point, lo, hi, out):
    """`_fixed_point_fused` on the rows of 2-D ``acc`` (any integer dtype) into 2-D int64 ``out``, row ``r``
    with the parameters of row ``prow[r]`` of the 2-D int64 arrays ``left``, ``multiplier``, ``shift``:
    one column (the row's values share them) or one per column."""
    sat = 0
    per_column = left.shape[1] != 1
    for r in range(acc.shape[0]):
        p = prow[r]
        if per_column:
            for d in range(acc.shape[1]):
                y, s = _fixed_point_one(np.int64(acc[r, d]), left[p, d], multiplier[p, d], shift[p, d],
                                        zero_point, lo, hi)
                sat += s
                out[r, d] = y
        else:
            lf, m, sh = left[p, 0], multiplier[p, 0], shift[p, 0]
            for d in range(acc.shape[1]):
                y, s = _fixed_point_one(np.int64(acc[r, d]), lf, m, sh, zero_point, lo, hi)
                sat += s
                out[r, d] = y
    return sat


@numba.njit(cache=True, nogil=True)
def _requant_dequant_rows(acc, bias, left, multiplier, shift, zero_point, lo, hi, out_zero_point, scale, out):
    """Stage 8 in one pass over the rows of 2-D ``acc`` (any integer dtype, one row per output channel):
    ``acc + bias[r]`` in int64, `_fixed_point_one` with row ``r``'s parameters, and the dequantized output
    ``(q - out_zero_point) * scale[r]`` (float64, as numpy computes it) into ``out``; returns the
    saturations."""
    sat = 0
    for r in range(acc.shape[0]):
        b, lf, m, sh, sc = bias[r], left[r], multiplier[r], shift[r], scale[r]
        for d in range(acc.shape[1]):
            q, s = _fixed_point_one(np.int64(acc[r, d]) + b, lf, m, sh, zero_point, lo, hi)
            sat += s
            out[r, d] = np.float64(q - out_zero_point) * sc
    return sat


def _rows(v, rows: int, dtype) -> np.ndarray | None:
    """One value, a (rows,) vector or a (1, rows, 1, 1) per-channel array as a (rows,) array; None for
    anything else (per-position parameters)."""
    a = np.asarray(v, dtype=dtype)
    if a.size == 1:
        return np.full(rows, a.reshape(-1)[0], dtype)
    return np.ascontiguousarray(a.reshape(rows)) if a.shape in ((rows,), (1, rows, 1, 1)) else None


def bias_requant_dequant(acc: np.ndarray, bias: np.ndarray, params: RequantParams, out_zero_point: int, out_scale,
                         out: np.ndarray) -> int | None:
    """Bias, ``FIXED_POINT`` requantization and dequantization of (1, B, H, W) integers in one pass.

    The same integers and counts as ``requantize(acc + bias[None, :, None, None], params, FIXED_POINT)``
    followed by ``(q - out_zero_point) * out_scale``, without the intermediate arrays (for callers that
    record neither; `wccsim.simulate.layer.output_block`). ``bias`` (B,) int64; ``params`` per tensor or per
    channel (fields broadcasting to (1, B, 1, 1)), shifts 0..31, int32 multipliers; ``out_scale`` a float or
    per channel; ``out`` (1, B, H, W) float64 or float32 (each float64 value stored rounded to nearest, as
    ``astype`` does), C-contiguous. Returns the saturations, or None (nothing
    written) where these conditions do not hold.
    """
    rows = acc.shape[1] if acc.ndim == 4 and acc.shape[0] == 1 else 0
    if not rows or not out.flags.c_contiguous or out.shape != acc.shape or out.dtype not in (np.float64, np.float32):
        return None
    if not _kernel_params(params):
        return None
    fields = [_rows(v, rows, np.int64) for v in (bias, params.left_shift, params.multiplier, params.shift)]
    scale = _rows(out_scale, rows, np.float64)
    if scale is None or any(f is None for f in fields):
        return None
    lo, hi = out_range(params.out_bits, params.signed)
    acc2 = np.ascontiguousarray(acc).reshape(rows, -1)
    return int(_requant_dequant_rows(acc2, *fields, int(params.zero_point), lo, hi, int(out_zero_point), scale,
                                     out.reshape(rows, -1)))


def _uniform(v) -> int | None:
    """The one value of a scalar or constant integer array; None when the values differ."""
    a = np.asarray(v)
    if a.size == 0:
        return None
    first = a.reshape(-1)[0]
    return int(first) if a.size == 1 or bool(np.all(a == first)) else None


def _int_values(acc) -> np.ndarray:
    """``acc`` as is when its integers convert to int64 exactly (int8..int64, uint8..uint32), else int64."""
    acc = np.asarray(acc)
    if acc.dtype.kind == "i" or (acc.dtype.kind == "u" and acc.dtype.itemsize < 8):
        return acc
    return acc.astype(np.int64)


def _in(v, lo: int, hi: int) -> bool:
    a = np.asarray(v)
    return a.size > 0 and int(a.min()) >= lo and int(a.max()) <= hi


def _kernel_params(params: RequantParams) -> bool:
    """Whether the ``FIXED_POINT`` kernels (`_fixed_point_one`) take ``params``: shifts 0..31, int32
    multipliers (otherwise the numpy stages run, and raise where the parameters are invalid)."""
    return (_in(params.left_shift, 0, 31) and _in(params.shift, 0, 31)
            and _in(params.multiplier, INT32_MIN, INT32_MAX))


def _requantize_fused(acc: np.ndarray, params: RequantParams) -> tuple[np.ndarray, int] | None:
    """`requantize` FIXED_POINT through `_fixed_point_fused` (per-tensor parameters) or
    `_fixed_point_rows` (parameter arrays broadcasting to the values' shape: per channel, per column, per
    element), when the shifts are in 0..31 and the multipliers int32; None otherwise (the
    numpy stages then run, and raise where the parameters are invalid)."""
    fields = (params.left_shift, params.multiplier, params.shift)
    if acc.size == 0 or np.broadcast_shapes(acc.shape, *(np.shape(v) for v in fields)) != acc.shape:
        return None
    if not _kernel_params(params):
        return None
    lo, hi = out_range(params.out_bits, params.signed)
    zp = int(params.zero_point)
    left, mult, shift = (_uniform(v) for v in fields)
    if left is not None and mult is not None and shift is not None:
        flat = acc.reshape(-1)  # a view when contiguous
        out = np.empty(flat.shape, np.int64)
        sat = _fixed_point_fused(flat, left, mult, shift, zp, lo, hi, out)
        return out.reshape(acc.shape), sat
    # parameter arrays: their common shape, padded to acc's rank, as C-contiguous (rows, 1 or K) tables;
    # prow maps each row of acc (all axes but the last) to its parameter row
    shape = acc.shape if acc.ndim else (1,)
    pshape = np.broadcast_shapes(*(np.shape(v) for v in fields))
    pshape = (1,) * (len(shape) - len(pshape)) + pshape
    tables = [np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=np.int64), pshape)).reshape(-1, pshape[-1])
              for v in fields]
    prow = np.arange(tables[0].shape[0], dtype=np.int64).reshape(pshape[:-1])
    prow = np.ascontiguousarray(np.broadcast_to(prow, shape[:-1])).reshape(-1)
    acc2 = np.ascontiguousarray(acc).reshape(-1, shape[-1])
    out = np.empty(acc2.shape, np.int64)
    sat = _fixed_point_rows(acc2, *tables, prow, zp, lo, hi, out)
    return out.reshape(acc.shape), sat
