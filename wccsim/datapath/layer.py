"""One 1x1 conv layer through the bit-accurate WCC datapath, plus the plain baselines (DESIGN.md section 2).

`calibrate_layer` makes, offline and in float, the small frozen record the integer datapath needs
(`LayerParams`: quantizers, quantized weights and bias, requant records); `run_datapath` runs only the
integer stages with it and records each one as a `Stage` (integers, declared width, signedness, real scale,
axis order); these become RTL test vectors (`wccsim.vectors`). `simulate_layer` = `calibrate_layer` +
`run_datapath` on the same tensor (stages 1-4a shared, not run twice) + float references, errors, baselines.
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
  rounding happens once. The multipliers are stored per Haar level (`LayerParams.coef_requant`) and
  picked per kept column.
* Bias: ``rint(b / (s_coef * s_w))`` saturated to int32, added after the inverse transform.
* Fixed scales: `run_datapath` applies a `LayerParams` to any input of the layer (as a chip does); only
  the integers, the top-k selection and the counters follow that input.
* Baselines (`simulate_plain`, one code path, the same MAC and requant code as WCC): no Haar; quantize
  the input at ``act_bits``, MAC, bias, requantize to the *same* output register as WCC
  (``spec.quant.act_bits``), so that schemes differ only in how the input is represented.
  ``int8``: 8-bit inputs and 8-bit weights. ``uniform_nbit``: ``n = max(2, floor(rate * act_bits + 1/2))``
  input bits (round half up, rate read exactly as its decimal), ``spec.quant.weight_bits`` weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from wccsim.calibrate import QuantParams, act_params, quantize, requant_params, weight_params
from wccsim.datapath import haar, topk
from wccsim.datapath.mac import mac_array
from wccsim.datapath.requant import INT32_MAX, INT32_MIN, RequantParams, requantize
from wccsim.errors import InputError
from wccsim.hw import ActSign, DatapathSpec, Metric, Normalize, RequantMode
from wccsim.metrics import error_stats
from wccsim.reference import ref_conv, ref_wcc

__all__ = ["Stage", "BaselineResult", "LayerParams", "DatapathResult", "LayerResult", "calibrate_layer",
           "run_datapath", "simulate_layer", "simulate_plain", "uniform_bits"]

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


def _input_params(x_full, bits: int, spec: DatapathSpec) -> QuantParams:
    """Input quantizer calibrated on the whole input (the tensor the previous layer wrote)."""
    q = spec.quant
    return act_params(x_full, bits, q.act_sign, q.calib, q.percentile)


def _input_stage(xs, qp: QuantParams) -> tuple[np.ndarray, Stage]:
    """Quantize the (strided) input; returns q - zp and the stage."""
    xq = quantize(xs, qp)
    return xq - qp.zero_point, _stage(xq, qp.bits, qp.signed, qp.scale, "N,C,H,W", qp.zero_point)


def _output_params(y_ref: np.ndarray, bits: int, spec: DatapathSpec) -> QuantParams:
    q = spec.quant
    return act_params(y_ref, bits, ActSign.AUTO, q.calib, q.percentile)


def _quantize_weights(w2: np.ndarray, bits: int, spec: DatapathSpec) -> tuple[np.ndarray, np.ndarray]:
    """Weights quantized symmetric; returns wq (Cout, Cin) int64 and the scale shaped (Cout, 1)."""
    s = np.broadcast_to(np.asarray(weight_params(w2, bits, spec.quant.weight_granularity), np.float64),
                        (w2.shape[0],)).reshape(-1, 1)
    return quantize(w2, QuantParams(1.0, 0, bits, True), scale=s), s


def _quantize_bias(b, s_acc: np.ndarray, cout: int) -> tuple[np.ndarray, int]:
    """Bias at the accumulator scale (s_acc (Cout, 1)), int32 saturating, and its saturation count;
    zeros without bias."""
    if b is None:
        return np.zeros(cout, dtype=np.int64), 0
    raw = np.rint(b / s_acc[:, 0])
    sat = int(np.count_nonzero((raw < INT32_MIN) | (raw > INT32_MAX)))
    return np.clip(raw, INT32_MIN, INT32_MAX).astype(np.int64), sat


def _output_requant(act_scale: float, s_w: np.ndarray, out_qp: QuantParams) -> RequantParams:
    """Output requant record for (N, Cout, H, W) integers at scale ``act_scale * s_w`` (s_w (Cout, 1)).

    The two scales go to `requant_params` separately, so ``FLOAT32`` forms its multiplier exactly as
    onnxruntime's QLinearConv does.
    """
    return requant_params(act_scale, out_qp, weight_scale=s_w[None, :, :, None])


def _output_stages(acc_spatial: np.ndarray, acc_bits: int, bq: np.ndarray, act_scale: float, s_w: np.ndarray,
                   out_qp: QuantParams, params: RequantParams, mode: RequantMode) -> tuple[np.ndarray, int, dict]:
    """Bias add and output requant (``params``, from `_output_requant`) on (N, Cout, H, W) integers.

    Returns the dequantized output, the output saturation count and the stages bias_q, pre_requant,
    output_q. ``POW2`` realizes the output scale ``s_acc * 2^pow2_shift`` (per channel with per-channel
    weights), not the calibrated one; the output is dequantized with the scale the shifter realizes.
    """
    pre = acc_spatial + bq[None, :, None, None]
    s4 = act_scale * s_w[None, :, :, None]
    q, sat = requantize(pre, params, mode)
    out_scale = s4 * np.exp2(params.pow2_shift) if mode is RequantMode.POW2 else out_qp.scale
    y = (q - out_qp.zero_point) * out_scale
    stages = {"bias_q": _stage(bq, _BIAS_BITS, True, act_scale * s_w[:, 0], "Cout"),
              "pre_requant": _stage(pre, max(acc_bits, _BIAS_BITS) + 1, True, s4, "N,Cout,H,W"),
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
    in_qp = _input_params(x_full, act_bits, spec)                                           # 1. input
    x_int, in_stage = _input_stage(xs, in_qp)
    wq, s_w = _quantize_weights(w2, weight_bits, spec)                                      # 2. weights
    acc, ovf = mac_array(wq, x_int.reshape(n, cin, h * w), spec.mac)                        # 3. MAC
    bq, bias_sat = _quantize_bias(b, in_qp.scale * s_w, wq.shape[0])                        # 4. bias
    acc4 = acc.reshape(n, -1, h, w)
    y, out_sat, out_stages = _output_stages(acc4, spec.mac.acc_bits, bq, in_qp.scale, s_w,  # 5. requant
                                            out_qp, _output_requant(in_qp.scale, s_w, out_qp), spec.requant.mode)
    stages = {"input_q": in_stage, "weight_q": _stage(wq, weight_bits, True, s_w, "Cout,Cin"),
              "acc": _stage(acc4, spec.mac.acc_bits, True, in_qp.scale * s_w[None, :, :, None], "N,Cout,H,W"),
              **out_stages}
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


# ------------------------------------------------------------------------------- WCC: stages 1-4a

@dataclass(frozen=True)
class _Front:
    """Stages 1 to 4a of one tensor (quantize, Haar, top-k, gather), shared by calibration and datapath.

    ``kept`` (N, C, k) int64 kept columns; ``kept_level`` (N, 1, k) int64 their Haar level (1..L);
    ``kept_scale`` (N, 1, k) float64 their real units; ``shape`` (h, w) strided spatial size.
    """
    sel: topk.Selection
    kept: np.ndarray
    kept_level: np.ndarray
    kept_scale: np.ndarray
    positions: int
    shape: tuple
    haar_saturations: int
    stages: dict


def _level_scales(in_scale: float, hs) -> np.ndarray:
    """(L,) float64 real units of the level-l coefficients (entry l-1): ``in_scale / 2^l`` when deferred."""
    if hs.normalize is Normalize.DEFERRED:
        return in_scale / np.exp2(np.arange(1, hs.levels + 1))
    return np.full(hs.levels, in_scale)


def _haar_stages(x_int, in_qp: QuantParams, spec: DatapathSpec):
    """Forward Haar; returns HaarForward, per-position level and scale (P,) and stages haar_l<l>, haar_coef."""
    hs = spec.haar
    in_bits = spec.quant.act_bits + (0 if in_qp.signed else 1)
    fwd = haar.forward_int(x_int, hs, in_bits)
    hp, wp = haar.pad_shape(x_int.shape[2], x_int.shape[3], hs.levels)
    deferred = hs.normalize is Normalize.DEFERRED
    lev = haar.position_levels(hp, wp, hs.levels)
    pos_scale = _level_scales(in_qp.scale, hs)[lev - 1]
    stages = {f"haar_l{i + 1}": _stage(band, hs.width_bits, True,
                                      in_qp.scale / 2.0 ** (i + 1) if deferred else in_qp.scale, "N,C,4,h,w")
              for i, band in enumerate(fwd.per_level)}
    stages["haar_coef"] = _stage(fwd.coef, hs.width_bits, True, pos_scale, "N,C,P")
    return fwd, lev, pos_scale, (hp, wp), stages


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


def _front(xs, in_qp: QuantParams, spec: DatapathSpec, rate: float) -> _Front:
    """Stages 1-4a on the strided input ``xs`` (N, C, H, W) float: quantize, Haar, top-k, gather."""
    x_int, in_stage = _input_stage(xs, in_qp)                                               # 1. input
    fwd, lev, pos_scale, (hp, wp), haar_st = _haar_stages(x_int, in_qp, spec)               # 2. Haar
    sel, sel_st = _select_stages(fwd.coef, hp, wp, rate, spec)                              # 3. top-k
    kept = np.take_along_axis(fwd.coef, sel.idx[:, None, :], axis=2)                        # 4a. gather
    kept_scale = pos_scale[sel.idx][:, None, :]
    stages = {"input_q": in_stage, **haar_st, **sel_st,
              "kept": _stage(kept, spec.haar.width_bits, True, kept_scale, "N,C,k")}
    return _Front(sel, kept, lev[sel.idx][:, None, :], kept_scale, hp * wp, xs.shape[2:], fwd.saturations, stages)


# ------------------------------------------------------------------------------ WCC: calibration

@dataclass(frozen=True)
class LayerParams:
    """Offline record of one layer: everything the integer datapath needs, made in float by `calibrate_layer`.

    Attributes
    ----------
    input_qp : QuantParams
        Input quantizer (``act_bits``, ``spec.quant`` sign and method), calibrated on the whole input.
    weight_q : (Cout, Cin) int64
        Weights, ``weight_bits`` signed symmetric.
    weight_scale : (Cout, 1) float64
        Real units of one weight step (all rows equal per tensor).
    coef_qp : QuantParams
        Coefficient quantizer (``act_bits`` signed, orthonormal units), calibrated on the kept coefficients.
    coef_requant : RequantParams
        ``FIXED_POINT`` record per Haar level, fields shaped (L,): entry ``l-1`` maps level-l coefficients
        (``haar.width_bits``) to ``coef_qp``.
    bias_q : (Cout,) int64
        Bias at scale ``coef_qp.scale * weight_scale``, saturated to int32.
    bias_saturations : int
        Bias values clipped to int32 by that rounding.
    output_qp : QuantParams
        Output quantizer (``act_bits``, sign from the data), calibrated on ``ref_conv``'s output.
    output_requant : RequantParams
        Output record, fields broadcasting against (N, Cout, H, W) integers at ``coef_qp.scale * weight_scale``.
    """
    input_qp: QuantParams
    weight_q: np.ndarray
    weight_scale: np.ndarray
    coef_qp: QuantParams
    coef_requant: RequantParams
    bias_q: np.ndarray
    bias_saturations: int
    output_qp: QuantParams
    output_requant: RequantParams


def _calibrate(x_full, xs, w2, b, y_ref, spec: DatapathSpec, rate: float) -> tuple[LayerParams, _Front]:
    """`calibrate_layer` on prepared arrays; also returns the stages 1-4a of ``xs`` it had to compute."""
    q = spec.quant
    in_qp = _input_params(x_full, q.act_bits, spec)
    front = _front(xs, in_qp, spec, rate)
    cqp = act_params(front.kept * front.kept_scale, q.act_bits, ActSign.SIGNED, q.calib, q.percentile)
    coef_requant = requant_params(_level_scales(in_qp.scale, spec.haar), cqp, in_bits=min(spec.haar.width_bits, 32))
    wq, s_w = _quantize_weights(w2, q.weight_bits, spec)
    bq, bias_sat = _quantize_bias(b, cqp.scale * s_w, wq.shape[0])
    out_qp = _output_params(y_ref, q.act_bits, spec)
    params = LayerParams(in_qp, wq, s_w, cqp, coef_requant, bq, bias_sat, out_qp,
                         _output_requant(cqp.scale, s_w, out_qp))
    return params, front


def calibrate_layer(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec, rate: float,
                    stride: int = 1) -> LayerParams:
    """Calibrate one 1x1 conv layer offline (float) for `run_datapath`.

    The coefficient scale is calibrated on the real values of the coefficients the datapath keeps, so
    this runs stages 1-4a (quantize, Haar, top-k, gather) on ``x``; the output scale on ``ref_conv``'s
    output (float64). Module docstring: the calibration choices.

    Parameters
    ----------
    x : (N, Cin, H, W) float
        Calibration input (real units).
    w : (Cout, Cin) or (Cout, Cin, 1, 1) float
    b : (Cout,) float or None
    spec : DatapathSpec
    rate : float in (0, 1]
        Kept fraction of the padded Haar positions.
    stride : int
        1x1 conv stride.

    Returns
    -------
    LayerParams
    """
    x_full, xs, w2, b, y_ref = _prepare(x, w, b, stride)
    return _calibrate(x_full, xs, w2, b, y_ref, spec, rate)[0]


# ------------------------------------------------------------------------------- WCC: stages 4b-8

@dataclass(frozen=True)
class DatapathResult:
    """Integer WCC datapath result (`run_datapath`).

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
        haar_saturations, coef_saturations, acc_overflows, inverse_saturations, bias_saturations (offline,
        from `LayerParams`), output_saturations.
    """
    y: np.ndarray
    stages: dict
    k: int
    positions: int
    selection: topk.Selection
    counters: dict


@dataclass(frozen=True)
class LayerResult(DatapathResult):
    """WCC layer result: `DatapathResult` plus the comparisons with the float references and baselines.

    Attributes
    ----------
    errors : dict[str, ErrorStats]
        'compress' (ref_wcc vs ref_conv), 'quant' (datapath vs ref_wcc), 'total' (datapath vs ref_conv).
    topk_overlap_with_ref : float
        Fraction of the datapath's kept positions that the float reference keeps too.
    baselines : dict[str, BaselineResult]
        'int8' and 'uniform_nbit'.
    """
    errors: dict
    topk_overlap_with_ref: float
    baselines: dict


def _at_levels(rp: RequantParams, level: np.ndarray) -> RequantParams:
    """The per-level record ``rp`` (fields shaped (L,)) picked at each ``level`` (1..L, any shape)."""
    i = level - 1
    return replace(rp, multiplier=rp.multiplier[i], left_shift=rp.left_shift[i], shift=rp.shift[i],
                               real_scale=rp.real_scale[i], float_scale=rp.float_scale[i],
                               pow2_shift=rp.pow2_shift[i])


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


def _back(front: _Front, p: LayerParams, spec: DatapathSpec) -> DatapathResult:
    """Stages 4b-8 with the offline record ``p``: coef requant, MAC, zero-fill, inverse Haar, bias+requant."""
    q = spec.quant
    cq, coef_sat = requantize(front.kept, _at_levels(p.coef_requant, front.kept_level),            # 4b.
                              RequantMode.FIXED_POINT)
    acc, ovf = mac_array(p.weight_q, cq, spec.mac)                                                # 5. MAC
    s_acc = p.coef_qp.scale * p.weight_scale
    spatial, inv_bits, inv_sat, inv_st = _inverse_stages(acc, front.sel, *front.shape, front.positions,
                                                         s_acc, spec)                             # 6-7.
    y, out_sat, out_st = _output_stages(spatial, inv_bits, p.bias_q, p.coef_qp.scale, p.weight_scale,  # 8.
                                        p.output_qp, p.output_requant, spec.requant.mode)
    stages = {**front.stages, "coef_q": _stage(cq, q.act_bits, True, p.coef_qp.scale, "N,C,k"),
              "weight_q": _stage(p.weight_q, q.weight_bits, True, p.weight_scale, "Cout,Cin"),
              "acc": _stage(acc, spec.mac.acc_bits, True, s_acc[None, :, :], "N,Cout,k"), **inv_st, **out_st}
    counters = {"haar_saturations": front.haar_saturations, "coef_saturations": coef_sat, "acc_overflows": ovf,
                "inverse_saturations": inv_sat, "bias_saturations": p.bias_saturations,
                "output_saturations": out_sat}
    return DatapathResult(y, stages, front.sel.k, front.positions, front.sel, counters)


def _check_params(x, params: LayerParams, spec: DatapathSpec, stride: int) -> np.ndarray:
    """Validate ``x`` and ``stride`` against ``params`` and ``params`` against ``spec``; returns strided x."""
    x = np.asarray(x, dtype=np.float64)
    cin = params.weight_q.shape[1]
    if x.ndim != 4 or 0 in x.shape or x.shape[1] != cin:
        raise InputError(_WHERE, "x", f"a non-empty (N, {cin}, H, W) array", x.shape)
    if isinstance(stride, bool) or int(stride) != stride or stride < 1:
        raise InputError(_WHERE, "stride", "a positive integer", stride)
    made_for = (params.input_qp.bits, params.coef_qp.bits, np.shape(params.coef_requant.multiplier))
    if made_for != (spec.quant.act_bits,) * 2 + ((spec.haar.levels,),):
        raise InputError(_WHERE, "params", "calibrated for this spec (act_bits, haar.levels)", made_for)
    return x[:, :, ::stride, ::stride]


def run_datapath(x: np.ndarray, params: LayerParams, spec: DatapathSpec, rate: float,
                 stride: int = 1) -> DatapathResult:
    """Run the integer WCC datapath (stages 1-8) on ``x`` with fixed, offline parameters.

    Only integer stages run (quantize, Haar, top-k, gather + coefficient requant, MAC, zero-fill,
    inverse Haar, bias + requant): no calibration, float reference or baseline. ``params`` may come from
    another tensor of the same layer (fixed scales, as a chip has them).

    Parameters
    ----------
    x : (N, Cin, H, W) float
        Input activations (real units).
    params : LayerParams
        From `calibrate_layer` with the same ``spec``.
    spec : DatapathSpec
    rate : float in (0, 1]
        Kept fraction of the padded Haar positions, ``k = max(1, floor(rate * P))``.
    stride : int
        1x1 conv stride (the input is subsampled first).

    Returns
    -------
    DatapathResult
    """
    xs = _check_params(x, params, spec, stride)
    return _back(_front(xs, params.input_qp, spec, rate), params, spec)


def simulate_layer(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec, rate: float,
                   stride: int = 1) -> LayerResult:
    """Simulate one 1x1 conv layer through the bit-accurate WCC datapath, with references and baselines.

    ``calibrate_layer`` on ``x`` then ``run_datapath`` on ``x``, except that stages 1-4a run once:
    calibration needs them (the coefficient scale) and hands them to stages 4b-8.

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
    params, front = _calibrate(x_full, xs, w2, b, y_ref, spec, rate)                        # calibration, 1-4a
    dp = _back(front, params, spec)                                                         # 4b-8
    ref = ref_wcc(x_full, w2, b, rate, spec.haar.levels, spec.topk.metric, stride)          # references
    errors = {"compress": error_stats(y_ref, ref.y), "quant": error_stats(ref.y, dp.y),
              "total": error_stats(y_ref, dp.y)}
    baselines = _baselines(x_full, xs, w2, b, y_ref, spec, rate, params.output_qp)
    return LayerResult(dp.y, dp.stages, dp.k, dp.positions, dp.selection, dp.counters, errors,
                       topk.overlap(dp.selection, ref.selection), baselines)


def _baselines(x_full, xs, w2, b, y_ref, spec: DatapathSpec, rate: float, out_qp: QuantParams) -> dict:
    """'int8' (8-bit inputs and weights) and 'uniform_nbit' (`uniform_bits` inputs) through `_plain`."""
    n_bits = uniform_bits(rate, spec.quant.act_bits)
    return {"int8": _plain(x_full, xs, w2, b, y_ref, spec, 8, 8, out_qp),
            "uniform_nbit": _plain(x_full, xs, w2, b, y_ref, spec, n_bits, spec.quant.weight_bits, out_qp)}

