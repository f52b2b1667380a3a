"""Post-training calibration (float, offline): clipping values, quantization parameters, requant records.

Quantizer (paper Eq. 2, [37]): with clipping value ``alpha`` and ``b`` bits,

* signed symmetric: ``scale = alpha / (2^(b-1) - 1)``, integer levels ``-(2^(b-1)-1) .. 2^(b-1)-1``
  (narrow range, zero point 0);
* unsigned: ``scale = alpha / (2^b - 1)``, levels ``0 .. 2^b - 1``, zero point 0.

``quantize`` rounds half to even (numpy ``rint``, like ONNX ``QuantizeLinear``) and clips to the levels.
Clipping methods (`CalibMethod`): ``MAX`` = max |x| (max x for unsigned); ``PERCENTILE`` = the given
percentile of |x| (of x for unsigned); ``MSE`` = the candidate ``alpha = max * i / 128`` (i = 1..128)
that minimizes the mean squared quantize-dequantize error (ACIQ-style search; evaluated on all
elements, or a fixed stride subsample of at most 2^17 elements, in float32; the smallest minimizer wins, so the
result is deterministic). The same method serves WCC and the baselines.
A zero clipping value (all-zero data) gives scale 1.0 (every value quantizes to 0 either way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from wccsim.datapath.requant import RequantParams, quantize_multiplier
from wccsim.hw import ActSign, CalibMethod, WeightGranularity

__all__ = ["QuantParams", "CalibSample", "clip_value", "act_params", "weight_params", "quantize", "levels", "requant_params"]

_MSE_GRID = 128
_MSE_MAX_SAMPLES = 1 << 17


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


def _mse_clip(a: np.ndarray, amax: float, bits: int, signed: bool) -> float:
    """``a``: the sampled magnitudes (signed) or values (unsigned, already >= 0 clipped)."""
    a = a.astype(np.float32)
    qmax = levels(bits, signed)[1]
    best, best_err = amax, np.inf
    for i in range(1, _MSE_GRID + 1):
        alpha = amax * i / _MSE_GRID
        scale = np.float32(alpha / qmax)
        deq = np.minimum(np.rint(a / scale), np.float32(qmax)) * scale
        deq -= a
        err = float(np.dot(deq, deq))
        if err < best_err:
            best, best_err = alpha, err
    return best


class CalibSample:
    """What a clipping method reads of a tensor fed block by block in flat (C) order, so a tensor never
    has to exist whole: its extremes (``MAX``); its extremes and every ``ceil(size / 2^17)``-th value
    (``MSE``); all of it (``PERCENTILE``). `clip_value` and `act_params` are this on one block.

    Parameters
    ----------
    size : int
        Elements of the whole tensor (fixes the MSE sample stride).
    method : CalibMethod
    """

    def __init__(self, size: int, method: CalibMethod):
        if not isinstance(method, CalibMethod):
            raise ValueError(f"clip_value: unknown method {method!r}")
        self.method = method
        self.stride = -(-int(size) // _MSE_MAX_SAMPLES) if method is CalibMethod.MSE else 1
        self.lo, self.hi, self.seen = np.inf, -np.inf, 0
        self.parts: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> "CalibSample":
        """Add the next block (any shape, read in C order); returns self."""
        flat = np.asarray(block).ravel()
        if flat.size:
            self.lo, self.hi = min(self.lo, float(flat.min())), max(self.hi, float(flat.max()))  # exact
            if self.method is not CalibMethod.MAX:
                self.parts.append(np.array(flat[(-self.seen) % self.stride::self.stride], dtype=np.float64))
        self.seen += flat.size
        return self

    def clip(self, bits: int, signed: bool, percentile: float = 99.99) -> float:
        """Clipping value ``alpha`` (real units, >= 0); see `clip_value`."""
        if self.seen == 0:
            return 0.0
        amax = max(-self.lo, self.hi, 0.0) if signed else max(self.hi, 0.0)
        if self.method is CalibMethod.MAX or amax == 0.0:
            return amax
        a = np.concatenate(self.parts)
        a = np.abs(a) if signed else np.maximum(a, 0.0)
        if self.method is CalibMethod.PERCENTILE:
            if not 0 < percentile <= 100:
                raise ValueError(f"clip_value: percentile must be in (0, 100], got {percentile}")
            return float(np.percentile(a, percentile))
        return _mse_clip(a, amax, bits, signed)

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
    return CalibSample(x.size, method).add(x).clip(bits, signed, percentile)


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
    return CalibSample(x.size, method).add(x).params(bits, sign, percentile)


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


def quantize(x: np.ndarray, qp: QuantParams, scale: float | np.ndarray | None = None) -> np.ndarray:
    """``clip(rint(x / scale) + zero_point, qmin, qmax)`` as int64 (round half to even).

    ``scale`` overrides ``qp.scale`` (e.g. per-channel weight scales shaped to broadcast).
    """
    s = qp.scale if scale is None else scale
    qmin, qmax = levels(qp.bits, qp.signed)
    x = np.asarray(x)
    if np.ndim(s) == 0 and x.dtype in (np.float32, np.float64):  # per-tensor: one fused pass, bit-exact
        x = np.ascontiguousarray(x)                                # with the numpy formula below
        out = np.empty(x.shape, dtype=np.int64)
        _quantize_fused(x.reshape(-1), float(s), float(qp.zero_point), float(qmin), float(qmax),
                        out.reshape(-1))
        return out
    q = np.rint(x.astype(np.float64) / s) + qp.zero_point
    return np.clip(q, qmin, qmax).astype(np.int64)


@numba.njit(cache=True)
def _quantize_fused(x, scale, zero_point, qmin, qmax, out):
    """out[i] = clip(rint(float64(x[i]) / scale) + zero_point, qmin, qmax), as `quantize`'s numpy formula."""
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
