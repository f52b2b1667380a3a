"""One 1x1 conv layer through the bit-accurate WCC datapath, plus the plain baselines (DESIGN.md section 2).

`simulate_layer` runs the stages in hardware order and records each one as a `Stage` (integers, declared
width, signedness, real scale, axis order); these become RTL test vectors (`wccsim.vectors`).
``real = (values - zero_point) * scale``; ``scale`` is None where it has no meaning (energy, bitmap) and
an array broadcasting against ``values`` where it varies (deferred Haar levels, per-channel weights).

=============  ==========  ======================================================================
stage          order       contents (width)
=============  ==========  ======================================================================
input_q        N,C,H,W     input quantized to act_bits, zero point included (act_bits)
haar_l<l>      N,C,4,h,w   forward Haar level l = 1..L: y1..y4 of each 2x2 block (haar.width_bits)
haar_coef      N,C,P       all coefficients in layout order (haar.width_bits)
energy         N,P         per-position energy across channels, deferred weighting applied (unsigned)
bitmap         N,P         1 = position kept (1 bit, unsigned)
kept           N,C,k       kept coefficient columns, ascending position (haar.width_bits)
coef_q         N,C,k       kept coefficients requantized to act_bits signed, orthonormal units
weight_q       Cout,Cin    weights, weight_bits signed symmetric
acc            N,Cout,k    MAC accumulators (mac.acc_bits)
zero_filled    N,Cout,P    accumulators scattered back to P positions, zeros elsewhere (mac.acc_bits)
inverse        N,Cout,H,W  inverse Haar, cropped (acc_bits + L per_level, acc_bits + 2L deferred)
bias_q         Cout        bias at scale s_coef * s_w (32)
pre_requant    N,Cout,H,W  inverse + bias (inverse width or 32, whichever is larger, + 1)
output_q       N,Cout,H,W  output requantized to act_bits (spec.requant.mode), zero point included
=============  ==========  ======================================================================

H, W are the (strided) spatial size, P = hp * wp padded positions, k kept positions.

Choices (documented here, tested in tests/test_layer.py):

* Input scale: calibrated on the whole input ``x`` (the tensor the previous layer wrote) with
  ``spec.quant`` (bits, sign, method); output scale: calibrated on ``ref_conv``'s output with the same
  method, sign chosen from the data (``AUTO``). WCC and baselines share both (same calibration, fair).
* Coefficient quantization: the scale is calibrated (same method, signed) on the real values of the
  kept coefficients; the integer coefficients are requantized with the gemmlowp fixed-point multiplier
  (always ``FIXED_POINT``; ``spec.requant.mode`` applies to the output stage), with the input pre-shifted
  into the int32 headroom (``in_bits = haar.width_bits``, see `requant_params`). With ``DEFERRED`` Haar
  the multiplier is per level and also divides by ``2^l``, so ``coef_q`` is in orthonormal units and
  rounding happens once.
* Bias: ``rint(b / (s_coef * s_w))`` saturated to int32, added after the inverse transform.
* Baselines (`simulate_plain`, one code path, the same MAC and requant code as WCC): no Haar; quantize
  the input at ``act_bits``, MAC, bias, requantize to the *same* output register as WCC
  (``spec.quant.act_bits``), so that schemes differ only in how the input is represented.
  ``int8``: 8-bit inputs and 8-bit weights. ``uniform_nbit``: ``n = max(2, floor(rate * act_bits + 1/2))``
  input bits (round half up, rate read exactly as its decimal), ``spec.quant.weight_bits`` weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from wccsim.calibrate import QuantParams, act_params, quantize, requant_params, weight_params
from wccsim.datapath import haar, topk
from wccsim.datapath.mac import mac_array
from wccsim.datapath.requant import INT32_MAX, INT32_MIN, requantize
from wccsim.errors import InputError
from wccsim.hw import ActSign, DatapathSpec, Metric, Normalize, RequantMode
from wccsim.metrics import error_stats
from wccsim.reference import ref_conv, ref_wcc

__all__ = ["Stage", "BaselineResult", "LayerResult", "simulate_layer", "simulate_plain", "uniform_bits"]

_WHERE = "layer"
_BIAS_BITS = 32


@dataclass(frozen=True)
class Stage:
    """One datapath stage: ``real = (values - zero_point) * scale``.

    Attributes
    ----------
    values : int64 ndarray
        Register contents, axes named by ``order``.
    width_bits : int
        Declared register width; every value fits it (two's complement when ``signed``).
    signed : bool
    scale : float, ndarray (broadcasting against values) or None
        Real units of one integer step; None where meaningless (energy, bitmap).
    order : str
        Comma-separated axis names, e.g. ``"N,C,P"``.
    zero_point : int
    """
    values: np.ndarray
    width_bits: int
    signed: bool
    scale: float | np.ndarray | None
    order: str
    zero_point: int = 0


@dataclass(frozen=True)
class BaselineResult:
    """A plain (no Haar) quantized layer: output, errors vs ``ref_conv`` (key ``'total'``), widths."""
    y: np.ndarray
    errors: dict
    act_bits: int
    weight_bits: int
    stages: dict
    counters: dict


@dataclass(frozen=True)
class LayerResult:
    """WCC layer result.

    Attributes
    ----------
    y : (N, Cout, Ho, Wo) float64
        Dequantized datapath output.
    stages : dict[str, Stage]
        Every stage in hardware order (module docstring).
    k, positions : int
        Kept and padded positions per image.
    selection : topk.Selection
        Datapath selection (bitmap, idx).
    counters : dict[str, int]
        haar_saturations, coef_saturations, acc_overflows, inverse_saturations, bias_saturations,
        output_saturations.
    errors : dict[str, ErrorStats]
        'compress' (ref_wcc vs ref_conv), 'quant' (datapath vs ref_wcc), 'total' (datapath vs ref_conv).
    topk_overlap_with_ref : float
        Fraction of the datapath's kept positions that the float reference keeps too.
    baselines : dict[str, BaselineResult]
        'int8' and 'uniform_nbit'.
    """
    y: np.ndarray
    stages: dict
    k: int
    positions: int
    selection: topk.Selection
    counters: dict
    errors: dict
    topk_overlap_with_ref: float
    baselines: dict


# ------------------------------------------------------------------------------------------- helpers

def _stage(values, width_bits: int, signed: bool, scale, order: str, zero_point: int = 0) -> Stage:
    """Stage with a uniform scale array stored as a plain float."""
    if scale is not None:
        a = np.asarray(scale, dtype=np.float64)
        scale = float(a.flat[0]) if a.size and (a == a.flat[0]).all() else a
    return Stage(values, int(width_bits), bool(signed), scale, order, int(zero_point))


def _check_bits(field: str, bits: int) -> int:
    if isinstance(bits, bool) or int(bits) != bits or not 2 <= bits <= 16:
        raise InputError(_WHERE, field, "an integer in 2..16", bits)
    return int(bits)


def _prepare(x, w, b, stride: int):
    """Validated float64 input subsampled by the stride, weights (Cout, Cin), bias or None, ref_conv."""
    y_ref = ref_conv(x, w, b, stride)  # validates shapes and stride
    x = np.asarray(x, dtype=np.float64)
    w2 = np.asarray(w, dtype=np.float64).reshape(y_ref.shape[1], x.shape[1])
    b = None if b is None else np.asarray(b, dtype=np.float64)
    return x, x[:, :, ::stride, ::stride], w2, b, y_ref


def _input_stage(x_full, xs, bits: int, spec: DatapathSpec) -> tuple[np.ndarray, QuantParams, Stage]:
    """Quantize the (strided) input; scale calibrated on the whole input. Returns q - zp, params, stage."""
    q = spec.quant
    qp = act_params(x_full, bits, q.act_sign, q.calib, q.percentile)
    xq = quantize(xs, qp)
    return xq - qp.zero_point, qp, _stage(xq, bits, qp.signed, qp.scale, "N,C,H,W", qp.zero_point)


def _output_params(y_ref: np.ndarray, bits: int, spec: DatapathSpec) -> QuantParams:
    q = spec.quant
    return act_params(y_ref, bits, ActSign.AUTO, q.calib, q.percentile)


def _weight_stage(w2: np.ndarray, bits: int, spec: DatapathSpec) -> tuple[np.ndarray, np.ndarray, Stage]:
    """Weights quantized symmetric; returns wq (Cout, Cin), scale shaped (Cout, 1), stage."""
    s = np.broadcast_to(np.asarray(weight_params(w2, bits, spec.quant.weight_granularity), np.float64),
                        (w2.shape[0],)).reshape(-1, 1)
    wq = quantize(w2, QuantParams(1.0, 0, bits, True), scale=s)
    return wq, s, _stage(wq, bits, True, s, "Cout,Cin")


def _bias_stage(b, s_acc: np.ndarray, cout: int) -> tuple[np.ndarray, int, Stage]:
    """Bias at the accumulator scale (s_acc (Cout, 1)), int32 saturating; zeros without bias."""
    if b is None:
        bq = np.zeros(cout, dtype=np.int64)
        sat = 0
    else:
        raw = np.rint(b / s_acc[:, 0])
        sat = int(np.count_nonzero((raw < INT32_MIN) | (raw > INT32_MAX)))
        bq = np.clip(raw, INT32_MIN, INT32_MAX).astype(np.int64)
    return bq, sat, _stage(bq, _BIAS_BITS, True, s_acc[:, 0], "Cout")


def _output_stages(acc_spatial: np.ndarray, acc_bits: int, bq: np.ndarray, act_scale: float, s_w: np.ndarray,
                   out_qp: QuantParams, mode: RequantMode) -> tuple[np.ndarray, int, dict]:
    """Bias add and output requant on (N, Cout, H, W) integers at scale ``act_scale * s_w`` (s_w (Cout, 1)).

    Returns the dequantized output, the output saturation count and the stages pre_requant, output_q.
    The two scales go to `requant_params` separately, so ``FLOAT32`` forms its multiplier exactly as
    onnxruntime's QLinearConv does. ``POW2`` realizes the output scale ``s_acc * 2^pow2_shift`` (per
    channel with per-channel weights), not the calibrated one; the output is dequantized with the scale the
    shifter realizes.
    """
    pre = acc_spatial + bq[None, :, None, None]
    s4 = act_scale * s_w[None, :, :, None]
    params = requant_params(act_scale, out_qp, weight_scale=s_w[None, :, :, None])
    q, sat = requantize(pre, params, mode)
    out_scale = s4 * np.exp2(params.pow2_shift) if mode is RequantMode.POW2 else out_qp.scale
    y = (q - out_qp.zero_point) * out_scale
    stages = {"pre_requant": _stage(pre, max(acc_bits, _BIAS_BITS) + 1, True, s4, "N,Cout,H,W"),
              "output_q": _stage(q, out_qp.bits, out_qp.signed, out_scale, "N,Cout,H,W", out_qp.zero_point)}
    return y, sat, stages


def uniform_bits(rate: float, act_bits: int) -> int:
    """Bits of the uniform baseline at the same effective rate: ``max(2, floor(rate * act_bits + 1/2))``.

    >>> uniform_bits(0.25, 8), uniform_bits(0.3125, 8), uniform_bits(0.1, 8), uniform_bits(1.0, 8)
    (2, 3, 2, 8)
    """
    topk.num_kept(rate, 1)  # validates the rate
    return max(2, math.floor(Fraction(repr(float(rate))) * int(act_bits) + Fraction(1, 2)))


# --------------------------------------------------------------------------------------- plain path

def _plain(x_full, xs, w2, b, y_ref, spec: DatapathSpec, act_bits: int, weight_bits: int,
           out_qp: QuantParams) -> BaselineResult:
    """No Haar: quantize input, MAC over pixels, bias, requantize (the same units WCC uses)."""
    n, cin, h, w = xs.shape
    x_int, in_qp, in_stage = _input_stage(x_full, xs, act_bits, spec)                      # 1. input
    wq, s_w, w_stage = _weight_stage(w2, weight_bits, spec)                                 # 2. weights
    acc, ovf = mac_array(wq, x_int.reshape(n, cin, h * w), spec.mac)                        # 3. MAC
    s_acc = in_qp.scale * s_w
    bq, bias_sat, b_stage = _bias_stage(b, s_acc, wq.shape[0])                              # 4. bias
    acc4 = acc.reshape(n, -1, h, w)
    y, out_sat, out_stages = _output_stages(acc4, spec.mac.acc_bits, bq, in_qp.scale, s_w,  # 5. requant
                                            out_qp, spec.requant.mode)
    stages = {"input_q": in_stage, "weight_q": w_stage,
              "acc": _stage(acc4, spec.mac.acc_bits, True, s_acc[None, :, :, None], "N,Cout,H,W"),
              "bias_q": b_stage, **out_stages}
    counters = {"acc_overflows": ovf, "bias_saturations": bias_sat, "output_saturations": out_sat}
    return BaselineResult(y, {"total": error_stats(y_ref, y)}, act_bits, weight_bits, stages, counters)


def simulate_plain(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec, act_bits: int,
                   stride: int = 1) -> BaselineResult:
    """Plain quantized 1x1 conv (no Haar) with ``act_bits`` input activations.

    Parameters
    ----------
    x : (N, Cin, H, W) float
    w : (Cout, Cin) or (Cout, Cin, 1, 1) float
    b : (Cout,) float or None
    spec : DatapathSpec
        Weights use ``spec.quant.weight_bits``; the output register ``spec.quant.act_bits``.
    act_bits : int
        Input activation bits, 2..16.
    stride : int

    Returns
    -------
    BaselineResult
        Output (N, Cout, Ho, Wo) float64, ``errors['total']`` vs ``ref_conv``, stages input_q, weight_q,
        acc (N,Cout,H,W), bias_q, pre_requant, output_q.
    """
    act_bits = _check_bits("act_bits", act_bits)
    x_full, xs, w2, b, y_ref = _prepare(x, w, b, stride)
    out_qp = _output_params(y_ref, spec.quant.act_bits, spec)
    return _plain(x_full, xs, w2, b, y_ref, spec, act_bits, spec.quant.weight_bits, out_qp)


# ----------------------------------------------------------------------------------------- WCC path

def _haar_stages(x_int, in_qp: QuantParams, spec: DatapathSpec):
    """Forward Haar; returns HaarForward, per-position scale (P,) and stages haar_l<l>, haar_coef."""
    hs = spec.haar
    in_bits = spec.quant.act_bits + (0 if in_qp.signed else 1)
    fwd = haar.forward_int(x_int, hs, in_bits)
    hp, wp = haar.pad_shape(x_int.shape[2], x_int.shape[3], hs.levels)
    deferred = hs.normalize is Normalize.DEFERRED
    lev = haar.position_levels(hp, wp, hs.levels)
    pos_scale = in_qp.scale / np.exp2(lev) if deferred else np.full(lev.shape, in_qp.scale)
    stages = {f"haar_l{i + 1}": _stage(band, hs.width_bits, True,
                                      in_qp.scale / 2.0 ** (i + 1) if deferred else in_qp.scale, "N,C,4,h,w")
              for i, band in enumerate(fwd.per_level)}
    stages["haar_coef"] = _stage(fwd.coef, hs.width_bits, True, pos_scale, "N,C,P")
    return fwd, pos_scale, (hp, wp), stages


def _select_stages(coef, hp: int, wp: int, rate: float, spec: DatapathSpec):
    """Energy and top-k; returns Selection and stages energy, bitmap."""
    levels, metric = spec.haar.levels, spec.topk.metric
    shift = topk.deferred_level_shift(hp, wp, levels, metric) if spec.haar.normalize is Normalize.DEFERRED else None
    e = topk.energy(coef, metric, shift)
    sel = topk.select(e, topk.num_kept(rate, hp * wp), spec.topk)
    return sel, {"energy": _stage(e, _energy_bits(coef.shape[1], spec, shift), False, None, "N,P"),
                 "bitmap": _stage(sel.bitmap.astype(np.int64), 1, False, None, "N,P")}


def _energy_bits(channels: int, spec: DatapathSpec, shift) -> int:
    """Unsigned width of the worst-case energy of ``channels`` coefficients of haar.width_bits."""
    peak = 1 << (spec.haar.width_bits - 1)
    metric = spec.topk.metric
    worst = channels * peak * peak if metric is Metric.L2 else channels * peak if metric is Metric.L1 else peak
    if shift is not None:
        worst <<= int(np.max(shift, initial=0))
    return worst.bit_length()


def _coef_stages(coef, sel, pos_scale, spec: DatapathSpec):
    """Gather kept columns and requantize them to act_bits signed (orthonormal units)."""
    q = spec.quant
    kept = np.take_along_axis(coef, sel.idx[:, None, :], axis=2)
    kept_scale = pos_scale[sel.idx][:, None, :]  # (N, 1, k) real units of each kept column
    cqp = act_params(kept * kept_scale, q.act_bits, ActSign.SIGNED, q.calib, q.percentile)
    params = requant_params(kept_scale, cqp, in_bits=min(spec.haar.width_bits, 32))
    cq, sat = requantize(kept, params, RequantMode.FIXED_POINT)
    return cq, cqp, sat, {"kept": _stage(kept, spec.haar.width_bits, True, kept_scale, "N,C,k"),
                          "coef_q": _stage(cq, q.act_bits, True, cqp.scale, "N,C,k")}


def _inverse_stages(acc, sel, h: int, w: int, positions: int, s_acc, spec: DatapathSpec):
    """Zero-fill by the bitmap and inverse Haar; returns (N, Cout, h, w) ints, width, saturations, stages."""
    n, cout, _ = acc.shape
    zf = np.zeros((n, cout, positions), dtype=np.int64)
    np.put_along_axis(zf, sel.idx[:, None, :], acc, axis=2)
    grow = 1 if spec.haar.normalize is Normalize.PER_LEVEL else 2
    width = spec.mac.acc_bits + grow * spec.haar.levels
    spatial, sat = haar.inverse_int(zf, h, w, spec.haar, width)
    s3, s4 = s_acc[None, :, :], s_acc[None, :, :, None]
    return spatial, width, sat, {"zero_filled": _stage(zf, spec.mac.acc_bits, True, s3, "N,Cout,P"),
                                 "inverse": _stage(spatial, width, True, s4, "N,Cout,H,W")}


def simulate_layer(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec, rate: float,
                   stride: int = 1) -> LayerResult:
    """Simulate one 1x1 conv layer through the bit-accurate WCC datapath, with references and baselines.

    Parameters
    ----------
    x : (N, Cin, H, W) float
        Input activations (real units).
    w : (Cout, Cin) or (Cout, Cin, 1, 1) float
    b : (Cout,) float or None
    spec : DatapathSpec
    rate : float in (0, 1]
        Kept fraction of the padded Haar positions, ``k = max(1, floor(rate * P))``.
    stride : int
        1x1 conv stride (the input is subsampled first).

    Returns
    -------
    LayerResult
    """
    x_full, xs, w2, b, y_ref = _prepare(x, w, b, stride)
    n, _, h, wd = xs.shape
    x_int, in_qp, in_stage = _input_stage(x_full, xs, spec.quant.act_bits, spec)            # 1. input
    fwd, pos_scale, (hp, wp), haar_st = _haar_stages(x_int, in_qp, spec)                    # 2. Haar
    sel, sel_st = _select_stages(fwd.coef, hp, wp, rate, spec)                              # 3. top-k
    cq, cqp, coef_sat, coef_st = _coef_stages(fwd.coef, sel, pos_scale, spec)               # 4. coef quant
    wq, s_w, w_stage = _weight_stage(w2, spec.quant.weight_bits, spec)                      # 5. MAC
    acc, ovf = mac_array(wq, cq, spec.mac)
    s_acc = cqp.scale * s_w
    spatial, inv_bits, inv_sat, inv_st = _inverse_stages(acc, sel, h, wd, hp * wp, s_acc, spec)  # 6-7.
    bq, bias_sat, b_stage = _bias_stage(b, s_acc, wq.shape[0])                              # 8. bias
    out_qp = _output_params(y_ref, spec.quant.act_bits, spec)
    y, out_sat, out_st = _output_stages(spatial, inv_bits, bq, cqp.scale, s_w, out_qp, spec.requant.mode)
    stages = {"input_q": in_stage, **haar_st, **sel_st, **coef_st, "weight_q": w_stage,
              "acc": _stage(acc, spec.mac.acc_bits, True, s_acc[None, :, :], "N,Cout,k"),
              **inv_st, "bias_q": b_stage, **out_st}
    counters = {"haar_saturations": fwd.saturations, "coef_saturations": coef_sat, "acc_overflows": ovf,
                "inverse_saturations": inv_sat, "bias_saturations": bias_sat, "output_saturations": out_sat}
    ref = ref_wcc(x_full, w2, b, rate, spec.haar.levels, spec.topk.metric, stride)          # references
    errors = {"compress": error_stats(y_ref, ref.y), "quant": error_stats(ref.y, y),
              "total": error_stats(y_ref, y)}
    baselines = _baselines(x_full, xs, w2, b, y_ref, spec, rate, out_qp)
    return LayerResult(y, stages, sel.k, hp * wp, sel, counters, errors,
                       topk.overlap(sel, ref.selection), baselines)


def _baselines(x_full, xs, w2, b, y_ref, spec: DatapathSpec, rate: float, out_qp: QuantParams) -> dict:
    """'int8' (8-bit inputs and weights) and 'uniform_nbit' (`uniform_bits` inputs) through `_plain`."""
    n_bits = uniform_bits(rate, spec.quant.act_bits)
    return {"int8": _plain(x_full, xs, w2, b, y_ref, spec, 8, 8, out_qp),
            "uniform_nbit": _plain(x_full, xs, w2, b, y_ref, spec, n_bits, spec.quant.weight_bits, out_qp)}

