"""The datapath's hardware units chained on one image, on integers, with parameters fixed offline.

WCC (DESIGN.md section 2): `front` runs stages 2-4a (forward Haar, top-k energy and selection, gather of
the kept columns) on the quantized input; `coef_mac` stages 4b-5b (per-band coefficient requantization,
MAC array, band rescale to one accumulator scale when the coefficient scales differ by band); `inverse` stages 6-7 (zero-fill fused into the inverse Haar) for a block of output channels;
`bias_requant` stage 8 (bias add, output requantization). The plain baseline chains `mac_array` and
`bias_requant` on the input columns. Nothing here quantizes floats, calibrates or measures errors: that is
`wccsim.simulate`'s, which also records the stages.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from wccsim.datapath import haar, topk
from wccsim.datapath.mac import mac_array
from wccsim.datapath.requant import RequantParams, requantize
from wccsim.datapath.rescale import RescaleParams, rescale
from wccsim.hw import CoefScale, DatapathSpec, Metric, Normalize, RequantMode
from wccsim.rules import Selection, kept_positions, padded_shape, position_bands

__all__ = ["Front", "CoefRecord", "CoefOut", "COEF_REQUANT_MODE", "front", "coef_mac", "inverse", "bias_requant",
           "int_dtype", "inverse_width", "energy_shift", "energy_bits", "at_bands", "channels"]

COEF_REQUANT_MODE = {CoefScale.FLOAT: RequantMode.FLOAT32, CoefScale.FIXED_POINT: RequantMode.FIXED_POINT,
                     CoefScale.POW2: RequantMode.POW2}
"""Requant arithmetic of the coefficient quantizer (stage 4b) per ``coef.scale``."""


@dataclass(frozen=True)
class Front:
    """Stages 2-4a of one image.

    Attributes
    ----------
    sel : Selection
        Bitmap (1, P), idx (1, k).
    kept : (1, C, k) integer
        Kept columns, narrowest signed dtype holding haar.width_bits.
    kept_band : (1, 1, k) int64
        Band (`wccsim.rules.position_bands`, 0 = LL_L) of each kept column; LL_L columns come first.
    shape : (h, w)
        Unpadded spatial size of the image.
    positions : int
        P, padded positions.
    haar_saturations : int
        Values the forward Haar unit clipped.
    fwd : haar.HaarForward or None
        Coefficients (1, C, P) at haar.width_bits and per-level bands (``keep`` only).
    energy : (1, P) int64 or None
        Per-position energy, deferred weighting applied (``keep`` only).
    """
    sel: Selection
    kept: np.ndarray
    kept_band: np.ndarray
    shape: tuple
    positions: int
    haar_saturations: int
    fwd: haar.HaarForward | None
    energy: np.ndarray | None


def front(x_int: np.ndarray, in_bits: int, spec: DatapathSpec, rate: float, keep: bool = False) -> Front:
    """Stages 2-4a on one image: Haar, energy, top-k (``k = kept_positions(rate, P)``), gather.

    Parameters
    ----------
    x_int : (1, C, H, W) integer
        Quantized input, zero point subtracted, each value fitting ``in_bits`` signed.
    in_bits : int
    spec : DatapathSpec
    rate : float in (0, 1]
    keep : bool
        Also return the Haar unit's output and the energies (to record them); else they are dropped here.
    """
    hs = spec.haar
    fwd = haar.forward_int(x_int, hs, in_bits)                                              # 2. Haar
    hp, wp = padded_shape(x_int.shape[2], x_int.shape[3], hs.levels)
    e = topk.energy(fwd.coef, spec.topk.metric, energy_shift(hp, wp, spec))                # 3. top-k
    sel = topk.select(e, kept_positions(rate, hp * wp), spec.topk)
    kept = topk.gather(fwd.coef, sel.idx, int_dtype(hs.width_bits))                         # 4a. gather
    band = position_bands(hp, wp, hs.levels)[sel.idx][:, None, :]
    return Front(sel, kept, band, tuple(x_int.shape[2:]), hp * wp, fwd.saturations, fwd if keep else None,
                 e if keep else None)


@dataclass(frozen=True)
class CoefRecord:
    """Offline integer parameters of the coefficient quantizer, one entry per band b = 0..3L.

    Attributes
    ----------
    requant : RequantParams
        Fields shaped (3L + 1,), ``out_bits = coef_bits``: entry b maps a kept coefficient of band b
        (haar.width_bits, its level's units) to its group's scale (stage 4b, `COEF_REQUANT_MODE`); band 0
        (LL_L) is requantized into ``coef_ll_bits``.
    rescale : RescaleParams or None
        Fields (3L + 1,): entry b maps band-b accumulators to the reference scale (stage 5b); None when
        one scale serves every band (``per_tensor``: no rescale unit).
    """
    requant: RequantParams
    rescale: RescaleParams | None


@dataclass(frozen=True)
class CoefOut:
    """Stages 4b-5b of one image: ``coef_q`` (1, C, k), its saturations, the MAC accumulators (1, Cout, k)
    at mac.acc_bits, the rescaled ones (the same array without a rescale unit) and the overflows of the
    accumulator and the rescale unit together."""
    coef_q: np.ndarray
    coef_saturations: int
    acc: np.ndarray
    rescaled: np.ndarray
    acc_overflows: int


def coef_mac(f: Front, coef: CoefRecord, weight_q: np.ndarray, spec: DatapathSpec) -> CoefOut:
    """Stages 4b-5b: requantize the kept columns with their band's record (LL_L into ``coef_ll_bits``,
    the others into ``coef_bits``), the MAC array, then (``coef.rescale``) the band rescale unit."""
    mode = COEF_REQUANT_MODE[spec.coef.scale]
    rp = at_bands(coef.requant, f.kept_band)
    n_ll = int(np.count_nonzero(f.kept_band == 0))                 # LL_L columns lead (layout order)
    if spec.coef_ll_bits == spec.coef_bits or n_ll == 0:
        cq, coef_sat = requantize(f.kept, rp, mode)
    else:
        ll, det = slice(None, n_ll), slice(n_ll, None)
        cq_ll, sat_ll = requantize(f.kept[..., ll], replace(_pick(rp, (..., ll)), out_bits=spec.coef_ll_bits), mode)
        cq_det, sat_det = requantize(f.kept[..., det], _pick(rp, (..., det)), mode)
        cq, coef_sat = np.concatenate([cq_ll, cq_det], axis=-1), sat_ll + sat_det
    acc, ovf = mac_array(weight_q, cq, spec.mac)
    if coef.rescale is None:
        return CoefOut(cq, coef_sat, acc, acc, ovf)
    scaled, sat = rescale(acc, _pick(coef.rescale, f.kept_band), spec.coef.scale, spec.mac.acc_bits)
    return CoefOut(cq, coef_sat, acc, scaled, ovf + sat)


def inverse(acc_block: np.ndarray, f: Front, spec: DatapathSpec) -> tuple[np.ndarray, int]:
    """Stages 6-7 for a block of output channels: zero-fill and inverse Haar of (1, B, k) accumulators.
    Returns (1, B, h, w) int64 at `inverse_width` and the inverse unit's saturations."""
    return haar.inverse_kept(acc_block, f.sel.idx, *f.shape, spec.haar, inverse_width(spec))


def bias_requant(acc: np.ndarray, bias_q: np.ndarray, rp: RequantParams, mode: RequantMode,
                 in_place: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Stage 8: ``pre = acc + bias`` (bias (B,) int32 values, broadcast over (1, B, H, W)), then the output
    requantization. ``in_place`` adds into ``acc`` (only for int64 ``acc``, so the sum cannot wrap).
    Returns (pre-requant integers, output codes, output saturations)."""
    bias = bias_q[None, :, None, None]
    pre = np.add(acc, bias, out=acc) if in_place else acc + bias
    q, sat = requantize(pre, rp, mode)
    return pre, q, sat


def int_dtype(bits: int):
    """Narrowest numpy signed integer dtype holding a ``bits``-bit signed register."""
    return next(t for t in (np.int8, np.int16, np.int32, np.int64) if np.iinfo(t).bits >= bits)


def inverse_width(spec: DatapathSpec) -> int:
    """Register width of the inverse Haar unit: acc_bits + L (per_level) or + 2L (deferred)."""
    return spec.mac.acc_bits + (1 if spec.haar.normalize is Normalize.PER_LEVEL else 2) * spec.haar.levels


def energy_shift(hp: int, wp: int, spec: DatapathSpec) -> np.ndarray | None:
    """Per-position energy weighting of deferred coefficients (`topk.deferred_level_shift`), else None."""
    if spec.haar.normalize is Normalize.DEFERRED:
        return topk.deferred_level_shift(hp, wp, spec.haar.levels, spec.topk.metric)
    return None


def energy_bits(channels: int, spec: DatapathSpec, shift: np.ndarray | None) -> int:
    """Unsigned width of the worst-case energy of ``channels`` coefficients of haar.width_bits."""
    peak = 1 << (spec.haar.width_bits - 1)
    metric = spec.topk.metric
    worst = channels * peak * peak if metric is Metric.L2 else channels * peak if metric is Metric.L1 else peak
    if shift is not None:
        worst <<= int(np.max(shift, initial=0))
    return worst.bit_length()


def at_bands(rp: RequantParams, band: np.ndarray) -> RequantParams:
    """The per-band record ``rp`` (fields shaped (3L + 1,)) picked at each ``band`` (any shape)."""
    return _pick(rp, band)


def channels(rp: RequantParams, blk: slice) -> RequantParams:
    """The output record (fields (1, Cout, 1, 1)) for output channels ``blk``."""
    return _pick(rp, (slice(None), blk))


def _pick(rp, index):
    """``rp`` (a `RequantParams` or `RescaleParams`) with every array field indexed by ``index``."""
    if isinstance(rp, RescaleParams):
        return RescaleParams(*(getattr(rp, f)[index] for f in ("multiplier", "shift", "float_scale", "real_scale")))
    return replace(rp, multiplier=rp.multiplier[index], left_shift=rp.left_shift[index], shift=rp.shift[index],
                   real_scale=rp.real_scale[index], float_scale=rp.float_scale[index],
                   pow2_shift=rp.pow2_shift[index])
