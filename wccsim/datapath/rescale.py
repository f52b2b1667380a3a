"""Band rescale unit (stage 5b): MAC accumulators of each Haar band brought to one reference scale.

With per-level or per-band coefficient scales (`CoefGranularity`), column j of the MAC result holds
``sum_ci W[co, ci] q[ci, j]`` at scale ``s(b_j) * s_w[co]``: the band scale ``s(b)`` depends on the
column's band only, so it factors out of the dot product and one multiplier per column brings every
column to ``s_ref * s_w[co]`` (``s_ref = max_b s(b)``, so the ratio ``r_b = s(b) / s_ref`` is <= 1 and
no value grows) before zero-fill and the inverse Haar. Arithmetic per `CoefScale`, on an accumulator
of at most 32 bits (``mac.acc_bits <= 32``, checked by `wccsim.hw`):

* ``FIXED_POINT``: ``(x * m + 2^(s-1)) >> s`` with an unsigned ``RESCALE_MULT_BITS``-bit multiplier
  ``m`` in ``[2^15, 2^16)`` (``r = 1``: ``m = 2^15, s = 15``, exact); round half up (toward +inf);
  the 48-bit product fits int64. ``|r - m 2^-s| <= 2^-16 r``.
* ``POW2``: ``m = 1``: ``(x + 2^(s-1)) >> s`` (``s = 0`` passes ``x``); exact when the band scales are
  powers of two apart, as ``pow2`` coefficient scales are.
* ``FLOAT``: ``rint(float32(x) * float32(r))`` (round half to even, as a float32 multiplier; exact in
  ``x`` only up to ``|x| <= 2^24``).

The result saturates to the ``acc_bits`` register (counted); with ``r <= 1`` only ``FLOAT`` can reach it
(``float32(2^31 - 1) = 2^31``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from wccsim.datapath.shifts import saturate, signed_range
from wccsim.hw import CoefScale

__all__ = ["RESCALE_MULT_BITS", "RescaleParams", "rescale_params", "rescale"]

RESCALE_MULT_BITS = 16


@dataclass(frozen=True)
class RescaleParams:
    """Rescale record, fields shaped alike (one entry per band, or broadcasting against the values).

    Attributes
    ----------
    multiplier : int64 ndarray
        ``FIXED_POINT``: in ``[2^15, 2^16)``; ``POW2``: 1.
    shift : int64 ndarray
        Right shift, >= 0.
    float_scale : float32 ndarray
        ``FLOAT`` multiplier, ``float32(r)``.
    real_scale : float64 ndarray
        ``r``, in (0, 1].
    """
    multiplier: np.ndarray
    shift: np.ndarray
    float_scale: np.ndarray
    real_scale: np.ndarray


def rescale_params(real: np.ndarray, mode: CoefScale) -> RescaleParams:
    """The record of ratios ``real`` (float64, each in (0, 1]) for ``mode`` (offline, float64).

    ``POW2`` needs every ratio to be a power of two (the band scales a ``pow2`` quantizer realizes)."""
    real = np.asarray(real, dtype=np.float64)
    if np.any(~np.isfinite(real)) or np.any(real <= 0) or np.any(real > 1):
        raise ValueError(f"rescale_params: ratios must be in (0, 1], got {real}")
    e = np.floor(np.log2(real)).astype(np.int64)                     # real in [2^e, 2^(e+1))
    if mode is CoefScale.POW2:
        if np.any(np.exp2(e) != real):
            raise ValueError(f"rescale_params: pow2 ratios must be powers of two, got {real}")
        return RescaleParams(np.ones_like(e), -e, real.astype(np.float32), real)
    top = RESCALE_MULT_BITS - 1
    m = np.rint(real * np.exp2(top - e)).astype(np.int64)            # in [2^15, 2^16]
    carry = m == 1 << RESCALE_MULT_BITS
    m, e = np.where(carry, m >> 1, m), np.where(carry, e + 1, e)
    return RescaleParams(m, top - e, real.astype(np.float32), real)


def rescale(acc: np.ndarray, p: RescaleParams, mode: CoefScale, acc_bits: int) -> tuple[np.ndarray, int]:
    """Rescale accumulators (module docstring) and saturate to ``acc_bits`` (<= 32).

    Parameters
    ----------
    acc : integer ndarray, values within ``acc_bits`` signed
    p : RescaleParams
        Fields broadcasting against ``acc`` (e.g. (1, 1, k) per column).
    mode : CoefScale
    acc_bits : int

    Returns
    -------
    (int64 ndarray like ``acc``, saturation count)
    """
    if acc_bits > 32:
        raise ValueError(f"rescale: acc_bits must be at most 32, got {acc_bits}")
    if mode in (CoefScale.FIXED_POINT, CoefScale.POW2):
        fused = _rescale_columns(acc, p, acc_bits)
        if fused is not None:
            return fused
    x = np.asarray(acc, dtype=np.int64)
    if mode is CoefScale.FLOAT:
        y = np.rint(x.astype(np.float32) * p.float_scale).astype(np.int64)
    elif mode in (CoefScale.FIXED_POINT, CoefScale.POW2):
        s = np.asarray(p.shift, dtype=np.int64)
        half = np.where(s > 0, np.int64(1) << np.maximum(s - 1, 0), 0)
        y = (x * p.multiplier + half) >> s
    else:
        raise ValueError(f"rescale: unknown mode {mode!r}")
    return saturate(y, acc_bits)


def _columns(v, shape: tuple) -> np.ndarray | None:
    """A field of one value or one per last-axis column (every other axis 1) as a (shape[-1],) int64
    array; None for anything else."""
    a = np.asarray(v)
    if a.size == 1:
        return np.full(shape[-1], a.reshape(-1)[0], np.int64)
    if a.ndim <= len(shape) and a.shape[-1:] == shape[-1:] and a.size == shape[-1]:
        return np.ascontiguousarray(a.reshape(-1), dtype=np.int64)
    return None


def _rescale_columns(acc: np.ndarray, p: RescaleParams, acc_bits: int) -> tuple[np.ndarray, int] | None:
    """``FIXED_POINT`` / ``POW2`` in one pass (`_fixed_columns`) when the record has one entry per
    last-axis column (or one for all) and ``acc`` holds integers; None otherwise (the numpy stages run)."""
    acc = np.asarray(acc)
    if acc.ndim == 0 or acc.size == 0 or not (acc.dtype.kind == "i" or (acc.dtype.kind == "u" and
                                                                        acc.dtype.itemsize <= 4)):
        return None
    m, s = _columns(p.multiplier, acc.shape), _columns(p.shift, acc.shape)
    if m is None or s is None:
        return None
    half = np.where(s > 0, np.int64(1) << np.maximum(s - 1, 0), 0)
    lo, hi = signed_range(acc_bits)
    x = np.ascontiguousarray(acc).reshape(-1, acc.shape[-1])
    out = np.empty(x.shape, np.int64)
    sat = _fixed_columns(x, m, half, s, lo, hi, out)
    return out.reshape(acc.shape), int(sat)


@numba.njit(cache=True, nogil=True)
def _fixed_columns(x, multiplier, half, shift, lo, hi, out):
    """``out[r, j] = clip((x[r, j] * multiplier[j] + half[j]) >> shift[j], lo, hi)`` in int64 (the numpy
    stages of `rescale` and `saturate`, per element); returns the number clipped."""
    sat = 0
    for r in range(x.shape[0]):
        for j in range(x.shape[1]):
            y = (np.int64(x[r, j]) * multiplier[j] + half[j]) >> shift[j]
            c = min(max(y, lo), hi)
            sat += c != y
            out[r, j] = c
    return sat
