"""Requantization unit: int32 accumulator -> ``out_bits`` integer, three hardware variants.

Integer primitives follow gemmlowp ``fixedpoint/fixedpoint.h`` (scalar reference semantics), vectorized
over int64 numpy arrays whose values are int32:

* ``saturating_rounding_doubling_high_mul(a, b)`` = the high 32 bits of ``2*a*b`` rounded to nearest,
  ties upward (toward +inf): ``trunc((a*b + nudge) / 2^31)`` with ``nudge = 2^30`` if ``a*b >= 0`` else
  ``1 - 2^30``; the only overflow, ``INT32_MIN * INT32_MIN``, saturates to ``INT32_MAX``
  (ARM ``SQRDMULH``).
* ``rounding_divide_by_pot(x, e)`` = ``x / 2^e`` rounded to nearest, ties away from zero
  (ARM ``SRSHL`` by ``-e`` plus a sign fixup), ``0 <= e <= 31``.

``FIXED_POINT`` with per-tensor parameters runs as one fused numba pass (`_fixed_point_fused`, cached),
equal to the numpy stages bit for bit (tests/test_datapath_fast.py); per-channel parameters take the
numpy stages.

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
    "rounding_divide_by_pot", "quantize_multiplier", "out_range", "requantize",
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
    acc : int64 ndarray
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
    acc = np.asarray(acc, dtype=np.int64)
    if mode is RequantMode.FIXED_POINT:
        fused = _requantize_fused(acc, params)
        if fused is not None:
            return fused
    return _requantize_numpy(acc, params, mode)


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


@numba.njit(cache=True)
def _fixed_point_fused(acc, left, multiplier, shift, zero_point, lo, hi, out):
    """``FIXED_POINT`` with per-tensor parameters in one pass over flat int64 ``acc`` into ``out``.

    Per element, the same steps and counts as the numpy stages: saturate to int32 (counted), saturating
    left shift by ``left`` (counted), SRDHM by ``multiplier`` (``INT32_MIN * INT32_MIN -> INT32_MAX``),
    RDBPOT by ``shift`` (0..31), ``+ zero_point``, clamp to ``[lo, hi]`` (counted). Returns the count.
    """
    sat = 0
    mask = (np.int64(1) << shift) - 1
    for i in range(acc.size):
        x = acc[i]
        if x < INT32_MIN or x > INT32_MAX:
            sat += 1
            x = min(max(x, INT32_MIN), INT32_MAX)
        x = x << left
        if x < INT32_MIN or x > INT32_MAX:
            sat += 1
            x = min(max(x, INT32_MIN), INT32_MAX)
        if x == INT32_MIN and multiplier == INT32_MIN:
            y = np.int64(INT32_MAX)
        else:
            ab = x * multiplier
            v = ab + (1 << 30) if ab >= 0 else ab + 1 - (1 << 30)
            y = v >> 31 if v >= 0 else -((-v) >> 31)
        y = (y >> shift) + ((y & mask) > (mask >> 1) + (y < 0)) + zero_point
        if y < lo or y > hi:
            sat += 1
            y = min(max(y, lo), hi)
        out[i] = y
    return sat


def _uniform(v) -> int | None:
    """The one value of a scalar or constant integer array; None when the values differ."""
    a = np.asarray(v)
    if a.size == 0:
        return None
    first = a.reshape(-1)[0]
    return int(first) if a.size == 1 or bool(np.all(a == first)) else None


def _requantize_fused(acc: np.ndarray, params: RequantParams) -> tuple[np.ndarray, int] | None:
    """`requantize` FIXED_POINT through `_fixed_point_fused` when the parameters are per tensor (one value
    each, shifts in 0..31); None otherwise (per-channel parameters take the numpy stages)."""
    fields = (params.left_shift, params.multiplier, params.shift)
    left, mult, shift = (_uniform(v) for v in fields)
    if left is None or mult is None or shift is None or not (0 <= left <= 31 and 0 <= shift <= 31):
        return None
    if np.broadcast_shapes(acc.shape, *(np.shape(v) for v in fields)) != acc.shape:
        return None
    flat = np.ascontiguousarray(acc).reshape(-1)
    out = np.empty_like(flat)
    lo, hi = out_range(params.out_bits, params.signed)
    sat = _fixed_point_fused(flat, left, mult, shift, int(params.zero_point), lo, hi, out)
    return out.reshape(acc.shape), sat
