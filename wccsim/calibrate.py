"""Post-training calibration (float, offline): clipping values, quantization parameters, requant records.

Quantizer (paper Eq. 2, [37]): with clipping value ``alpha`` and ``b`` bits,

* signed symmetric: ``scale = alpha / (2^(b-1) - 1)``, integer levels ``-(2^(b-1)-1) .. 2^(b-1)-1``
  (narrow range, zero point 0);
* unsigned: ``scale = alpha / (2^b - 1)``, levels ``0 .. 2^b - 1``, zero point 0.

``quantize`` rounds half to even (numpy ``rint``, like ONNX ``QuantizeLinear``) and clips to the levels.

Every clipping method reads one histogram per tensor, built in one streaming pass (`CalibSample`; memory
bounded, blocks and images combine; fed in order, the result does not depend on how the tensor is cut into
blocks, and another order changes only the float64 summation order).
Bins are logarithmic: 2^7 per octave of |x| (relative width 2^-7, 0.8 %), positive and negative values
apart, and each bin keeps its count, sum, sum of squares, minimum and maximum (float64). Methods
(`CalibMethod`): ``MAX`` = max |x| (max x for unsigned), exact; ``PERCENTILE`` = the given percentile of
|x| (of max(x, 0) for unsigned) with numpy's linear interpolation between order statistics, each order
statistic read from its bin by spacing the bin's values evenly between its minimum and maximum (exact at
a bin's first and last value and for bins of at most two values; otherwise within the bin's width);
``MSE`` = the candidate ``alpha = max * i / 128`` (i = 1..128) that minimizes the quantize-dequantize
squared error summed over the histogram (smallest minimizer). Per candidate step ``s`` a bin whose
minimum and maximum round to the same level ``k`` contributes its exact error
``sum (x - k s)^2`` (from its moments; bins entirely below ``s / 2`` or in the clipped top level through
prefix / suffix sums); a bin straddling a rounding boundary contributes ``count`` times the mean squared
error of values spread uniformly between its minimum and maximum (closed form). Tensors with few distinct
values (one value per bin) are therefore exact. The same method serves WCC and the baselines.
A zero clipping value (all-zero data) gives scale 1.0 (every value quantizes to 0 either way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from wccsim.datapath.requant import RequantParams, quantize_multiplier
from wccsim.hw import ActSign, CalibMethod, WeightGranularity

__all__ = ["QuantParams", "CalibSample", "clip_value", "act_params", "weight_params", "quantize", "levels", "requant_params"]

_MSE_GRID = 128
_COARSE = 8                   # the MSE search tries every 8th candidate first (`_best_candidate`)
_BPO = 128                    # histogram bins per octave of |x| (2^7: relative bin width 2^-7)
_EXP_LO, _EXP_HI = -64, 64    # frexp exponents with their own octave; |x| < 2^-65 shares the first bin,
_NBINS = (_EXP_HI - _EXP_LO + 1) * _BPO  # |x| >= 2^64 the last (extremes stay exact either way)


@dataclass(frozen=True)
class QuantParams:
    """Per-tensor quantization: real = (q - zero_point) * scale, q in `levels(bits, signed)`."""
    scale: float
    zero_point: int
    bits: int
    signed: bool


def levels(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range ``(qmin, qmax)`` of the quantizer: symmetric narrow range when signed (Eq. 2)."""
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be in 2..16, got {bits}")
    if signed:
        return -((1 << (bits - 1)) - 1), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


# float layouts: (dtype, unsigned view, exponent shift, exponent mask, bias to frexp's exponent, shift of
# the top 7 fraction bits)
_LAYOUTS = {np.dtype(np.float64): (np.uint64, 52, 0x7FF, 1022, 45),
            np.dtype(np.float32): (np.uint32, 23, 0xFF, 126, 16)}


_CNT, _S1, _S2, _LO, _HI = range(5)  # a bin's record: count, sum, sum of squares, minimum, maximum


@numba.njit(cache=True, inline="always")
def _bin(u, eshift, emask, ebias, mshift):
    """Bin of the value whose bits are ``u`` (frexp exponent and top 7 fraction bits; `_LAYOUTS`), -1 when
    it is not finite."""
    e = np.int64((u >> eshift) & emask)
    if e == emask:
        return -1
    e -= ebias
    if e < _EXP_LO:
        return 0
    if e > _EXP_HI:
        return _NBINS - 1
    return (e - _EXP_LO) * _BPO + np.int64((u >> mshift) & (_BPO - 1))


@numba.njit(cache=True, inline="always")
def _put(h, xv, b):
    """Add the non-zero value ``xv`` to bin ``b`` of the (2, _NBINS, 5) records ``h`` (row 0: x >= 0, row 1:
    x < 0, by |x|)."""
    v = abs(xv)
    r = h[1 if xv < 0.0 else 0, b]
    r[_CNT] += 1.0
    r[_S1] += v
    r[_S2] += v * v
    r[_LO] = min(r[_LO], v)  # min/max, not branches: sorted runs mispredict
    r[_HI] = max(r[_HI], v)


@numba.njit(cache=True, inline="always")
def _put_zeros(h, zeros):
    """Add ``zeros`` values 0.0 to the records ``h`` (they change no sum)."""
    if zeros:
        r = h[0, 0]
        r[_CNT] += zeros
        r[_LO] = min(r[_LO], 0.0)
        r[_HI] = max(r[_HI], 0.0)


@numba.njit(cache=True, nogil=True)
def _hist_add(x, bits, eshift, emask, ebias, mshift, h):
    """Add the flat block ``x`` (``bits``: the same memory as unsigned integers) to the (2, _NBINS, 5) bin
    records ``h`` (a record's five fields side by side: one or two cache lines per update, not five), in
    element order; returns the number of non-finite values (skipped). Zeros are counted in a register and
    added once at the end (they change no sum): ReLU outputs are half zeros, all in one bin, which made
    every second update wait on the last."""
    bad = 0
    zeros = 0
    for i in range(x.size):
        b = _bin(bits[i], eshift, emask, ebias, mshift)
        if b < 0:
            bad += 1
            continue
        xv = np.float64(x[i])
        if xv == 0.0:
            zeros += 1
            continue
        _put(h, xv, b)
    _put_zeros(h, zeros)
    return bad


@numba.njit(cache=True, nogil=True)
def _hist_add_columns(q, scale, group, h, eshift, emask, ebias, mshift):
    """Add ``float64(q[r, j]) * scale[j]`` of the 2-D integer ``q``, row by row, to the records ``h[group[j]]``
    ((G, 2, _NBINS, 5)): each group's values in the order of ``q[:, group == g]`` (C order), without making
    that array (``eshift``...: float64's `_LAYOUTS`). Returns the number of non-finite values (skipped)."""
    k = q.shape[1]
    buf = np.empty(k)
    bits = buf.view(np.uint64)
    zeros = np.zeros(h.shape[0], np.int64)
    bad = 0
    for r in range(q.shape[0]):
        for j in range(k):
            buf[j] = np.float64(q[r, j]) * scale[j]
        for j in range(k):
            b = _bin(bits[j], eshift, emask, ebias, mshift)
            if b < 0:
                bad += 1
            elif buf[j] == 0.0:
                zeros[group[j]] += 1
            else:
                _put(h[group[j]], buf[j], b)
    for g in range(h.shape[0]):
        _put_zeros(h[g], zeros[g])
    return bad


@numba.njit(cache=True, nogil=True)
def _compact(h, signed):
    """`CalibSample._bins` of the (2, _NBINS, 5) records ``h``: the non-empty bins ascending, as count
    (int64), sum, sum of squares, min, max (signed: both sides' records of a bin combined; unsigned: the
    negative values as one bin of zeros in front)."""
    neg = 0.0
    for b in range(h.shape[1]):
        neg += h[1, b, _CNT]
    lead = 1 if not signed and neg > 0 else 0
    k = lead
    for b in range(h.shape[1]):
        k += h[0, b, _CNT] > 0 or (signed and h[1, b, _CNT] > 0)
    cnt = np.zeros(k, np.int64)
    s1, s2, lo, hi = np.zeros(k), np.zeros(k), np.zeros(k), np.zeros(k)
    if lead:
        cnt[0] = np.int64(neg)
    j = lead
    for b in range(h.shape[1]):
        p, n = h[0, b], h[1, b]
        if signed and n[_CNT] > 0:
            cnt[j] = np.int64(p[_CNT] + n[_CNT])
            s1[j], s2[j] = p[_S1] + n[_S1], p[_S2] + n[_S2]
            lo[j], hi[j] = min(p[_LO], n[_LO]), max(p[_HI], n[_HI])
        elif p[_CNT] > 0:
            cnt[j] = np.int64(p[_CNT])
            s1[j], s2[j], lo[j], hi[j] = p[_S1], p[_S2], p[_LO], p[_HI]
        else:
            continue
        j += 1
    return cnt, s1, s2, lo, hi


@numba.njit(cache=True, nogil=True)
def _first_bin(v, s, qmax, target):
    """First index b of the ascending ``v`` with ``min(rint(v[b] / s), qmax) >= target`` (v.size if none)."""
    a, z = 0, v.size
    while a < z:
        mid = (a + z) // 2
        if min(np.rint(v[mid] / s), qmax) >= target:
            z = mid
        else:
            a = mid + 1
    return a


@numba.njit(cache=True, nogil=True)
def _best_candidate(cnt, mean, var, lo, hi, cum_n, cum_s1, cum_s2, amax, qmax, grid):
    """Index i (0-based) of the smallest squared quantize-dequantize error of the histogram over the
    candidates ``alpha = amax * (i + 1) / grid``, scale ``alpha / qmax`` (the smallest index among equal
    errors, as ``argmin``); bins ascending and disjoint; cum_* = prefix sums with a leading 0 (module
    docstring). Every term of a candidate's error is >= 0, so a candidate stops being summed once its partial
    error exceeds the best so far (it cannot be a minimum): the result is that of summing every candidate
    whole, in any order. Every 8th candidate goes first, so that the best so far is near the minimum before
    the others are tried and most of them stop early."""
    best, best_i = np.inf, grid - 1
    for first in (True, False):
        for i in range(grid - 1, -1, -1):
            if (i % _COARSE == _COARSE - 1) != first:
                continue
            sse = _candidate_sse(cnt, mean, var, lo, hi, cum_n, cum_s1, cum_s2, amax * (i + 1) / grid / qmax,
                                 qmax, best)
            if sse < best or (sse == best and i < best_i):
                best, best_i = sse, i
    return best_i


@numba.njit(cache=True, inline="always")
def _candidate_sse(cnt, mean, var, lo, hi, cum_n, cum_s1, cum_s2, s, qmax, bound):
    """The squared quantize-dequantize error of the histogram at scale ``s``, or a partial sum above
    ``bound`` once it exceeds it (`_best_candidate`)."""
    nb = cnt.size
    c = qmax * s
    j0 = _first_bin(hi, s, qmax, 1.0)         # bins before: every value rounds to 0
    j1 = max(_first_bin(lo, s, qmax, qmax), j0)  # bins from: every value clips to qmax * s
    n, t1, t2 = cum_n[nb] - cum_n[j1], cum_s1[nb] - cum_s1[j1], cum_s2[nb] - cum_s2[j1]
    sse = cum_s2[j0] + max(t2 - 2.0 * c * t1 + c * c * n, 0.0)
    for b in range(j0, j1):
        if sse > bound:
            break
        kl = min(np.rint(lo[b] / s), qmax)
        kh = min(np.rint(hi[b] / s), qmax)
        if kl == kh:
            d = mean[b] - kl * s
            sse += var[b] + cnt[b] * d * d
        else:                                  # uniform in [lo, hi]: G(u) = n/12 + f^3/3 per s^3
            ul, uh = lo[b] / s, hi[b] / s
            nl = min(np.floor(ul + 0.5), qmax)
            nh = min(np.floor(uh + 0.5), qmax)
            fl, fh = ul - nl, uh - nh
            sse += cnt[b] * s * s * max((nh - nl) / 12.0 + (fh ** 3 - fl ** 3) / 3.0, 0.0) / (uh - ul)
    return sse


def _moments(cnt, s1, s2, lo, hi) -> tuple:
    """What `_mse_clip` reads of the bins (`CalibSample._bins`): count, mean, the sum of squared deviations,
    min, max, and the prefix sums of count, sum and sum of squares with a leading 0."""
    n = cnt.astype(np.float64)
    one = lo == hi                                 # one distinct value: moments exact by construction
    mean = np.where(one, lo, s1 / n)
    var = np.where(one, 0.0, np.maximum(s2 - s1 * mean, 0.0))
    return (n, mean, var, lo, hi, *(np.concatenate(([0.0], np.cumsum(a))) for a in (n, s1, s2)))


def _mse_clip(moments: tuple, amax: float, qmax: int) -> float:
    """The MSE clipping value of a histogram (its `_moments`), on the grid ``amax * i / 128``."""
    return amax * (int(_best_candidate(*moments, float(amax), float(qmax), _MSE_GRID)) + 1) / _MSE_GRID


def _percentile(cnt, lo, hi, percentile: float) -> float:
    """numpy's linear-interpolation percentile of the histogram's values (module docstring)."""
    cum = np.cumsum(cnt)
    pos = (int(cum[-1]) - 1) * percentile / 100.0
    j = math.floor(pos)

    def order_stat(r: int) -> float:
        b = int(np.searchsorted(cum, r, side="right"))
        i, m = r - int(cum[b] - cnt[b]), int(cnt[b])
        return float(lo[b]) if m == 1 else float(lo[b] + (hi[b] - lo[b]) * i / (m - 1))

    v0, v1 = order_stat(j), order_stat(min(j + 1, int(cum[-1]) - 1))
    return v0 + (pos - j) * (v1 - v0)


def _empty_records(n: int) -> np.ndarray:
    """(n, 2, _NBINS, 5) empty bin records: counts and sums 0, minima +inf, maxima -inf."""
    h = np.empty((n, 2, _NBINS, 5))
    _clear(h.reshape(-1, 5))
    return h


@numba.njit(cache=True, nogil=True)
def _clear(records):
    """Empty every (5,) record of the 2-D ``records`` in one pass."""
    for i in range(records.shape[0]):
        r = records[i]
        r[_CNT], r[_S1], r[_S2], r[_LO], r[_HI] = 0.0, 0.0, 0.0, np.inf, -np.inf


def _refuse_non_finite(bad: int) -> None:
    """The error for ``bad`` NaN or infinite values a histogram kernel skipped (none: nothing)."""
    if bad:
        raise ValueError(f"CalibSample: expected finite values, found {bad} NaN or infinite")


class CalibSample:
    """The histogram of a tensor fed block by block, so a tensor (or a set of calibration images) never has
    to exist whole; every clipping method reads it (module docstring).
    `clip_value` and `act_params` are this on one block. Memory: 5 x 2 x 16512 float64 (1.3 MB).

    Parameters
    ----------
    method : CalibMethod
    """

    def __init__(self, method: CalibMethod, _records: np.ndarray | None = None):
        if not isinstance(method, CalibMethod):
            raise ValueError(f"clip_value: unknown method {method!r}")
        self.method = method
        if _records is None:
            _records = _empty_records(1)[0]
        self._h = _records  # (2, _NBINS, 5) bin records (`_hist_add`); counts exact in float64 below 2^53
        self._clips: dict = {}  # clip values and bins (`_cached`), until the next `add`

    @classmethod
    def group(cls, n: int, method: CalibMethod) -> list["CalibSample"]:
        """``n`` samples whose records are one array (for `add_columns`)."""
        records = _empty_records(n)
        return [cls(method, records[i]) for i in range(n)]

    @staticmethod
    def add_columns(samples: list["CalibSample"], q: np.ndarray, scale: np.ndarray, group: np.ndarray) -> None:
        """Add the real values ``q * scale`` of integer ``q`` (..., k) with real units ``scale`` (k,) per column
        to ``samples[group[j]]`` by column ``j``: the same as ``samples[i].add((q * scale)[..., group == i])`` for
        every i, in one pass and without those arrays. ``samples``: made by `group`."""
        base = samples[0]._h.base
        if base is None or base.shape[0] != len(samples) or any(s._h.base is not base for s in samples):
            raise ValueError("CalibSample.add_columns: samples made by CalibSample.group expected")
        q2 = np.ascontiguousarray(q).reshape(-1, q.shape[-1])
        scale, group = (np.ascontiguousarray(a, t).reshape(-1) for a, t in ((scale, np.float64), (group, np.int64)))
        if q2.dtype.kind not in "iu" or scale.size != q2.shape[1] or group.size != q2.shape[1]:
            raise ValueError(f"CalibSample.add_columns: integer values (..., k) with k scales and groups expected, "
                             f"found {q2.dtype} {np.shape(q)}, {scale.size} scales, {group.size} groups")
        if group.size and (group.min() < 0 or group.max() >= len(samples)):
            raise ValueError(f"CalibSample.add_columns: groups 0..{len(samples) - 1} expected")
        for s in samples:
            s._clips.clear()
        _refuse_non_finite(_hist_add_columns(q2, scale, group, base, *_LAYOUTS[np.dtype(np.float64)][1:]))

    def add(self, block: np.ndarray) -> "CalibSample":
        """Add the next block (any shape, any order; finite real values); returns self."""
        self._clips.clear()
        flat = np.ravel(block)
        if flat.dtype not in _LAYOUTS:
            flat = flat.astype(np.float64)
        view, *layout = _LAYOUTS[flat.dtype]
        _refuse_non_finite(_hist_add(flat, flat.view(view), *layout, self._h))
        return self

    @property
    def seen(self) -> int:
        """Number of values added."""
        return int(self._h[..., _CNT].sum())

    @property
    def lo(self) -> float:
        """Smallest value added (inf when empty)."""
        if self._h[1, :, _CNT].any():
            return -float(self._h[1, :, _HI].max())
        return float(self._h[0, :, _LO].min())

    def _bins(self, signed: bool):
        """Non-empty bins of |x| (signed) or max(x, 0) (unsigned), ascending: count, sum, sum of squares,
        min, max (1-D each)."""
        return _compact(self._h, signed)

    def clip(self, bits: int, signed: bool, percentile: float = 99.99) -> float:
        """Clipping value ``alpha`` (real units, >= 0); see `clip_value`. Computed once per (bits, signed,
        percentile) and sample contents: the schemes of a layer ask for the same clips (e.g. int8 and WCC
        for the 8-bit output)."""
        return self._cached(("clip", bits, bool(signed), percentile), self._clip, bits, bool(signed), percentile)

    def _cached(self, key: tuple, fn, *args):
        """``fn(*args)``, computed once per ``key`` until the next `add`."""
        if key not in self._clips:
            self._clips[key] = fn(*args)
        return self._clips[key]

    def _clip(self, bits: int, signed: bool, percentile: float) -> float:
        cnt, s1, s2, lo, hi = self._cached(("bins", signed), self._bins, signed)
        if cnt.size == 0:
            return 0.0
        amax = max(float(hi[-1]), 0.0)
        if self.method is CalibMethod.MAX or amax == 0.0:
            return amax
        if self.method is CalibMethod.PERCENTILE:
            if not 0 < percentile <= 100:
                raise ValueError(f"clip_value: percentile must be in (0, 100], got {percentile}")
            return _percentile(cnt, lo, hi, percentile)
        moments = self._cached(("moments", signed), _moments, cnt, s1, s2, lo, hi)
        return _mse_clip(moments, amax, levels(bits, signed)[1])

    def params(self, bits: int, sign: ActSign, percentile: float = 99.99) -> QuantParams:
        """Activation quantizer; see `act_params`."""
        signed = bool(self.seen and self.lo < 0) if sign is ActSign.AUTO else sign is ActSign.SIGNED
        return _params_from_clip(self.clip(bits, signed, percentile), bits, signed)


def clip_value(x: np.ndarray, method: CalibMethod, bits: int, signed: bool, percentile: float = 99.99) -> float:
    """Clipping value ``alpha`` (real units, >= 0) of a tensor.

    Parameters
    ----------
    x : float ndarray, any shape
    method : CalibMethod
    bits : int
        Quantizer width, 2..16.
    signed : bool
        Signed symmetric (clip |x|) or unsigned (clip x >= 0; negative values count as 0).
    percentile : float
        Used by ``PERCENTILE``, in (0, 100].

    Returns
    -------
    float
    """
    x = np.asarray(x)
    return CalibSample(method).add(x).clip(bits, signed, percentile)


def _params_from_clip(alpha: float, bits: int, signed: bool) -> QuantParams:
    qmax = levels(bits, signed)[1]
    scale = alpha / qmax if alpha > 0 else 1.0
    return QuantParams(scale=float(scale), zero_point=0, bits=bits, signed=signed)


def act_params(x: np.ndarray, bits: int, sign: ActSign, method: CalibMethod,
               percentile: float = 99.99) -> QuantParams:
    """Per-tensor activation quantization parameters.

    ``AUTO`` picks unsigned (zero point 0) when ``x.min() >= 0``, else signed symmetric; ``UNSIGNED``
    clips negative values to 0.
    """
    x = np.asarray(x)
    return CalibSample(method).add(x).params(bits, sign, percentile)


def weight_params(w: np.ndarray, bits: int, granularity: WeightGranularity) -> float | np.ndarray:
    """Symmetric max weight scale(s): ``max|w| / (2^(bits-1) - 1)``.

    Parameters
    ----------
    w : (Cout, Cin) float ndarray
    bits : int
    granularity : WeightGranularity

    Returns
    -------
    float (per tensor) or (Cout,) float64 ndarray (per output channel); zero rows get scale 1.0.
    """
    w = np.asarray(w, dtype=np.float64)
    qmax = levels(bits, True)[1]
    if granularity is WeightGranularity.PER_TENSOR:
        amax = float(np.abs(w).max(initial=0.0))
        return amax / qmax if amax > 0 else 1.0
    if granularity is WeightGranularity.PER_CHANNEL:
        amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1, initial=0.0)
        return np.where(amax > 0, amax / qmax, 1.0)
    raise ValueError(f"weight_params: unknown granularity {granularity!r}")


def quantize(x: np.ndarray, qp: QuantParams, scale: float | np.ndarray | None = None,
             dtype: type = np.int64) -> np.ndarray:
    """``clip(rint(x / scale) + zero_point, qmin, qmax)`` as int64 (round half to even), or as the integer
    ``dtype`` given (one that holds ``qmin..qmax``).

    ``scale`` overrides ``qp.scale`` (e.g. per-channel weight scales shaped to broadcast).
    """
    s = qp.scale if scale is None else scale
    qmin, qmax = levels(qp.bits, qp.signed)
    x = np.asarray(x)
    if np.ndim(s) == 0 and x.dtype in (np.float32, np.float64):  # per-tensor: one fused pass, bit-exact
        x = np.ascontiguousarray(x)                                # with the numpy formula below
        out = np.empty(x.shape, dtype=dtype)
        _quantize_fused(x.reshape(-1), float(s), float(qp.zero_point), float(qmin), float(qmax),
                        out.reshape(-1))
        return out
    q = np.rint(x.astype(np.float64) / s) + qp.zero_point
    return np.clip(q, qmin, qmax).astype(dtype)


@numba.njit(cache=True, nogil=True)
def _quantize_fused(x, scale, zero_point, qmin, qmax, out):
    """out[i] = clip(rint(float64(x[i]) / scale) + zero_point, qmin, qmax), as `quantize`'s numpy formula
    (``out``: any integer dtype holding qmin..qmax)."""
    for i in range(x.size):
        q = np.rint(np.float64(x[i]) / scale) + zero_point
        out[i] = np.int64(min(max(q, qmin), qmax))


def requant_params(in_scale: float | np.ndarray, out_qp: QuantParams,
                   weight_scale: float | np.ndarray = 1.0, in_bits: int = 32,
                   out_scale: float | np.ndarray | None = None) -> RequantParams:
    """Requantization record from real scales (offline, float).

    Parameters
    ----------
    in_scale : float or float64 ndarray
        Scale of the integer input (e.g. the activation scale of a MAC result; arrays broadcast).
    out_qp : QuantParams
        Output quantizer (scale, zero point, bits, signedness).
    weight_scale : float or float64 ndarray
        Multiplies ``in_scale`` (the weight scale of a MAC result).
    in_bits : int
        Signed width of the input values (2..32). Below 32 the fixed-point path pre-shifts the input
        left by ``p = 31 - in_bits`` (the int32 headroom; reduced so that the right shift stays <= 31)
        and shifts ``p`` more to the right, which makes the double rounding negligible.
    out_scale : float or float64 ndarray, optional
        Overrides ``out_qp.scale`` (one output scale per entry, e.g. per coefficient band).

    Returns
    -------
    RequantParams
        ``real_scale = in_scale * weight_scale / out_scale`` in float64; ``float_scale`` as
        onnxruntime's QLinearConv forms it, ``f32(f32(in_scale) * f32(weight_scale)) / f32(out_scale)``;
        fixed point: ``(multiplier, e) = quantize_multiplier(real)``, ``left_shift = max(p, -e)``,
        ``shift = max(0, e + p)``; ``pow2_shift = ceil(-log2(real))`` clipped to -31..62 (the
        multiplier is rounded *down* to a power of two, so the calibrated clipping range is kept:
        output steps are up to 2x coarser, never clipped earlier).
    """
    if not 2 <= in_bits <= 32:
        raise ValueError(f"requant_params: in_bits must be in 2..32, got {in_bits}")
    out_s = out_qp.scale if out_scale is None else np.asarray(out_scale, dtype=np.float64)
    real = np.asarray(in_scale, dtype=np.float64) * np.asarray(weight_scale, dtype=np.float64) / out_s
    if not np.all(np.isfinite(real)) or np.any(real <= 0):
        raise ValueError(f"requant_params: real scale must be finite and > 0, got {real}")
    f32 = (np.asarray(in_scale, dtype=np.float32) * np.asarray(weight_scale, dtype=np.float32)
           / np.asarray(out_s, dtype=np.float32)).astype(np.float32)
    multiplier, e = quantize_multiplier(real)
    pre = np.clip(31 - in_bits, 0, np.maximum(31 - e, 0))
    pow2 = np.clip(np.ceil(-np.log2(real)), -31, 62).astype(np.int64)
    return RequantParams(multiplier=multiplier, left_shift=np.maximum(pre, -e), shift=np.maximum(0, e + pre),
                         zero_point=int(out_qp.zero_point), real_scale=real, out_bits=out_qp.bits,
                         signed=out_qp.signed, float_scale=f32, pow2_shift=pow2)
