"""Offline (float) parameters of a simulated layer: quantizers, quantized weights and bias, requant records.

Choices (tested in tests/test_layer.py):

* Input scale: calibrated on the whole input ``x`` (the tensor the previous layer wrote), or on all the
  inputs of a calibration set as one sample (fixed scales, `wccsim.network.calibration`), with
  ``spec.quant`` (bits, sign, method); output scale: calibrated on ``ref_conv``'s output with the same
  method, sign chosen from the data (``AUTO``). WCC and baselines share both (same calibration, fair).
* Coefficient quantization (`coef_params`, called by `wccsim.simulate.wcc`): one scale per group of bands
  (``coef.granularity``, `wccsim.rules.band_groups`), each calibrated (same method, signed, ``coef_ll_bits``
  for the LL_L group, else ``coef_bits``) on the real values of the kept coefficients of its bands; a group
  the calibration never kept, or kept only zeros, takes the reference scale below (1.0 when all do).
  The integer coefficients are requantized per band with ``coef.scale``'s arithmetic
  (`chain.COEF_REQUANT_MODE`; ``fixed_point`` = gemmlowp with the input pre-shifted into the int32
  headroom, ``in_bits = haar.width_bits``); ``spec.requant.mode`` applies to the output stage. With
  ``DEFERRED`` Haar the multiplier also divides by ``2^l``, so ``coef_q`` is in orthonormal units and
  rounding happens once. ``pow2`` realizes ``level scale * 2^pow2_shift`` (at least the calibrated scale).
  Reference scale ``s_ref`` = the largest realized band scale; with more than one group the band rescale
  (stage 5b, `wccsim.datapath.rescale`) maps band b's accumulators by ``s_b / s_ref <= 1``.
* Bias: ``rint(b / (s_ref * s_w))`` saturated to int32, added after the inverse transform.
* Baselines (`PlainParams`): no Haar; the input quantized at their own bits, the same output register.
* A deployed model's own scales (`FixedScales`, from a QDQ trace, ``wccsim run --scales trace``) replace
  the input, weight and output calibration: input and output quantizers are `DeployedQuant` (zero point
  of the tensor's type, codes saturating to the full register range as ONNX ``QuantizeLinear`` does),
  weights ``rint(w / w_scale)`` (exact: the trace's ``w`` is the dequantized integers), and the int8
  baseline adds the framework's own int32 bias (``x_scale * w_scale``). Coefficient scales stay calibrated;
  WCC's bias is ``b`` at its own accumulator scale. The input enters the MAC as ``q - zero_point``
  (``act_bits + 1`` signed bits with a zero point or unsigned codes), so the accumulator holds
  ``sum_c W[o, c] (x[c] - zero_point)`` exactly, as onnxruntime's QLinearConv computes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from wccsim.calibrate import CalibSample, QuantParams, levels, quantize, requant_params, weight_params
from wccsim.datapath.chain import CoefRecord, int_dtype
from wccsim.datapath.requant import INT32_MAX, INT32_MIN, RequantParams, out_range
from wccsim.datapath.rescale import rescale_params
from wccsim.errors import InputError
from wccsim.hw import ActSign, CoefGranularity, CoefScale, DatapathSpec, Normalize, RequantMode
from wccsim.rules import band_groups, band_levels, position_levels
from wccsim.simulate.layer import Layer
from wccsim.trace import Qdq

__all__ = ["LayerParams", "PlainParams", "DeployedQuant", "FixedScales", "fixed_scales", "input_sample",
           "input_params", "input_int_bits", "quantize_input", "output_sample", "layer_samples", "output_params",
           "quantize_weights", "fixed_weights", "quantize_bias", "output_requant", "output_scale", "level_scales",
           "position_scales", "group_bits", "coef_params", "plain_params"]


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
    coef_scale : (3L + 1,) float64
        Real units of one ``coef_q`` step per band (orthonormal units; as realized by ``coef.scale``).
    coef_ref_scale : float
        ``s_ref``, the largest band scale: the accumulators' coefficient scale after stage 5b.
    coef : CoefRecord
        Integer records of stages 4b and 5b, per band.
    bias_q : (Cout,) int64
        Bias at scale ``coef_ref_scale * weight_scale``, saturated to int32.
    bias_saturations : int
        Bias values clipped to int32 by that rounding.
    output_qp : QuantParams
        Output quantizer (``act_bits``, sign from the data), calibrated on ``ref_conv``'s output.
    output_requant : RequantParams
        Output record, fields (1, Cout, 1, 1) against (N, Cout, H, W) integers at
        ``coef_ref_scale * weight_scale``.
    """
    input_qp: QuantParams
    weight_q: np.ndarray
    weight_scale: np.ndarray
    coef_scale: np.ndarray
    coef_ref_scale: float
    coef: CoefRecord
    bias_q: np.ndarray
    bias_saturations: int
    output_qp: QuantParams
    output_requant: RequantParams


@dataclass(frozen=True)
class PlainParams:
    """Offline record of a plain (no Haar) layer: input quantizer, weights, bias, output requant."""
    in_qp: QuantParams
    weight_q: np.ndarray
    weight_scale: np.ndarray
    bias_q: np.ndarray
    bias_saturations: int
    out_qp: QuantParams
    out_requant: RequantParams
    out_scale: float | np.ndarray


@dataclass(frozen=True)
class DeployedQuant(QuantParams):
    """A deployed model's quantizer (ONNX ``QuantizeLinear``): ``clip(rint(x / scale) + zero_point)`` to the
    full ``bits`` register range of its signedness (not the calibrated quantizer's narrow symmetric range)."""


@dataclass(frozen=True)
class FixedScales:
    """A deployed model's own quantizers of one layer, used instead of calibration (module docstring).

    Attributes
    ----------
    input_qp, output_qp : DeployedQuant
        8-bit quantizers of the layer's input and output (scale, zero point, signedness of the type).
    weight_scale : (Cout, 1) float64
        Weight scale per output channel (the framework's float32 values).
    bias_q : (Cout,) int64 or None
        The framework's integer bias at ``input scale * weight_scale`` (None: no bias).
    """
    input_qp: DeployedQuant
    weight_scale: np.ndarray
    bias_q: np.ndarray | None
    output_qp: DeployedQuant


def _deployed(scale: np.ndarray, zero_point: np.ndarray) -> DeployedQuant:
    return DeployedQuant(float(scale), int(zero_point), 8 * zero_point.dtype.itemsize, zero_point.dtype.kind == "i")


def fixed_scales(qdq: Qdq, where: str) -> FixedScales:
    """`FixedScales` of a trace layer's `wccsim.trace.Qdq`; weights must be symmetric (zero points 0),
    else `InputError` naming ``where`` (the layer)."""
    if np.any(qdq.w_zero_point != 0):
        raise InputError(where, "w_zero_point", "0 (symmetric weights)", qdq.w_zero_point.ravel()[:4].tolist())
    return FixedScales(_deployed(qdq.x_scale, qdq.x_zero_point), qdq.w_scale.astype(np.float64).reshape(-1, 1),
                       None if qdq.bq is None else qdq.bq.astype(np.int64), _deployed(qdq.y_scale, qdq.y_zero_point))


def input_int_bits(qp: QuantParams) -> int:
    """Signed width of ``codes - zero_point`` (what the MAC and the Haar unit read): ``bits`` for signed
    codes without zero point, ``bits + 1`` otherwise."""
    return qp.bits + (0 if qp.signed and qp.zero_point == 0 else 1)


def input_sample(layers: Sequence[Layer], spec: DatapathSpec) -> CalibSample:
    """Histogram of the whole input (the tensor the previous layer wrote) of one `Layer`, or of every input
    of a calibration set (one `Layer` per image or batch) as one sample; read by every scheme's input
    quantizer (`input_params`)."""
    sample = CalibSample(spec.quant.calib)
    for layer in layers:
        sample.add(layer.x)
    return sample


def input_params(sample: CalibSample, bits: int, spec: DatapathSpec) -> QuantParams:
    """Input quantizer at ``bits`` calibrated on `input_sample`."""
    q = spec.quant
    return sample.params(bits, q.act_sign, q.percentile)


def quantize_input(x_n: np.ndarray, qp: QuantParams, codes: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """Quantize one (strided) image; returns the codes (zero point included, int64; None without ``codes``)
    and codes - zero point in the narrowest integer dtype holding them (`input_int_bits`; int8 for signed
    8-bit without zero point: cheap for the MAC). A `DeployedQuant` saturates to the full register range."""
    if not codes and not isinstance(qp, DeployedQuant) and not qp.zero_point:  # one pass, no int64 codes
        return None, quantize(x_n, qp, dtype=int_dtype(input_int_bits(qp)))
    if isinstance(qp, DeployedQuant):
        xq = np.clip(np.rint(np.asarray(x_n, np.float64) / qp.scale) + qp.zero_point,
                     *out_range(qp.bits, qp.signed)).astype(np.int64)
    else:
        xq = quantize(x_n, qp)
    x_int = xq - qp.zero_point if qp.zero_point else xq
    return xq, x_int.astype(int_dtype(input_int_bits(qp)))


def output_blocks(layer: Layer) -> Iterator[np.ndarray]:
    """``ref_conv``'s output of the layer, image by image, channel block by channel block: (1, B, H, W)
    float64 arrays, in the order `output_sample` reads them."""
    for n in range(layer.xs.shape[0]):
        x_n = layer.image(n)
        for blk in layer.blocks():
            yield layer.ref_block(x_n, blk)


def output_sample(layers: Sequence[Layer], spec: DatapathSpec,
                  outputs: Iterable[np.ndarray] | None = None) -> CalibSample:
    """Histogram of ``ref_conv``'s output of the layer's input (one `Layer`) or of every input of a
    calibration set (one `Layer` each), computed image by image, block by block (`CalibSample` keeps what
    the method reads); read by every scheme's output quantizer (`output_params`). ``outputs``: those blocks
    computed already (`output_blocks` of each layer, in order; e.g. in one thread per image)."""
    sample = CalibSample(spec.quant.calib)
    for y in (y for layer in layers for y in output_blocks(layer)) if outputs is None else outputs:
        sample.add(y)
    return sample


def layer_samples(layers: Sequence[Layer], spec: DatapathSpec,
                  outputs: Iterable[np.ndarray] | None = None) -> tuple[CalibSample, CalibSample]:
    """(`input_sample`, `output_sample`) of ``layers`` (``outputs`` as in `output_sample`): what every
    scheme's input and output quantizers read, computed once where several schemes are calibrated on the
    same inputs."""
    return input_sample(layers, spec), output_sample(layers, spec, outputs)


def output_params(layers: Sequence[Layer], bits: int, spec: DatapathSpec,
                  sample: CalibSample | None = None) -> QuantParams:
    """Output quantizer at ``bits`` calibrated on `output_sample` of ``layers`` (``sample``: that sample,
    when the caller already has it)."""
    sample = output_sample(layers, spec) if sample is None else sample
    return sample.params(bits, ActSign.AUTO, spec.quant.percentile)


def quantize_weights(w2: np.ndarray, bits: int, spec: DatapathSpec) -> tuple[np.ndarray, np.ndarray]:
    """Weights quantized symmetric; returns wq (Cout, Cin) int64 and the scale shaped (Cout, 1)."""
    s = np.broadcast_to(np.asarray(weight_params(w2, bits, spec.quant.weight_granularity), np.float64),
                        (w2.shape[0],)).reshape(-1, 1)
    return quantize(w2, QuantParams(1.0, 0, bits, True), scale=s), s


def fixed_weights(w2: np.ndarray, fixed: FixedScales) -> tuple[np.ndarray, np.ndarray]:
    """Weights at the deployed model's scales: ``rint(w / w_scale)`` (Cout, Cin) int64, which must be 8-bit
    signed codes (`InputError` otherwise), and the scale (Cout, 1)."""
    wq = np.rint(w2 / fixed.weight_scale)
    lo, hi = out_range(8, True)
    if wq.min() < lo or wq.max() > hi:
        raise InputError("trace", "w / w_scale", f"integers in [{lo}, {hi}]", f"[{wq.min():g}, {wq.max():g}]")
    return wq.astype(np.int64), fixed.weight_scale


def quantize_bias(b, s_acc: np.ndarray, cout: int) -> tuple[np.ndarray, int]:
    """Bias at the accumulator scale (s_acc (Cout, 1)), int32 saturating, and its saturation count;
    zeros without bias."""
    if b is None:
        return np.zeros(cout, dtype=np.int64), 0
    raw = np.rint(b / s_acc[:, 0])
    sat = int(np.count_nonzero((raw < INT32_MIN) | (raw > INT32_MAX)))
    return np.clip(raw, INT32_MIN, INT32_MAX).astype(np.int64), sat


def output_requant(act_scale: float, s_w: np.ndarray, out_qp: QuantParams) -> RequantParams:
    """Output record for (N, Cout, H, W) integers at scale ``act_scale * s_w`` (s_w (Cout, 1)); fields
    shaped (1, Cout, 1, 1). The two scales go to `requant_params` separately, so ``FLOAT32`` forms its
    multiplier exactly as onnxruntime's QLinearConv does."""
    return requant_params(act_scale, out_qp, weight_scale=s_w[None, :, :, None])


def output_scale(act_scale: float, s_w: np.ndarray, out_qp: QuantParams, rp: RequantParams, mode: RequantMode):
    """Real units of one output step: the calibrated scale, or with ``POW2`` the one the shifter realizes,
    ``act_scale * s_w * 2^pow2_shift`` (per channel with per-channel weights), shaped (1, Cout, 1, 1)."""
    if mode is RequantMode.POW2:
        return act_scale * s_w[None, :, :, None] * np.exp2(rp.pow2_shift)
    return out_qp.scale


def level_scales(in_scale: float, hs) -> np.ndarray:
    """(L,) float64 real units of the level-l coefficients (entry l-1): ``in_scale / 2^l`` when deferred."""
    if hs.normalize is Normalize.DEFERRED:
        return in_scale / np.exp2(np.arange(1, hs.levels + 1))
    return np.full(hs.levels, in_scale)


def group_bits(spec: DatapathSpec) -> np.ndarray:
    """(G,) int64 coefficient width of each scale group: ``coef_ll_bits`` for group 0 (LL_L, alone unless
    ``per_tensor``), ``coef_bits`` for the others."""
    n = int(band_groups(spec.haar.levels, spec.coef.granularity).max()) + 1
    bits = np.full(n, spec.coef_bits, dtype=np.int64)
    bits[0] = spec.coef_ll_bits if spec.coef.granularity is not CoefGranularity.PER_TENSOR else spec.coef_bits
    return bits


def coef_params(samples: list[CalibSample], in_scale: float, spec: DatapathSpec) -> tuple[np.ndarray, float,
                                                                                           CoefRecord]:
    """Band scales, reference scale and integer records of the coefficient quantizer (module docstring).

    Parameters
    ----------
    samples : list of CalibSample
        One per scale group (`wccsim.rules.band_groups`), fed the real values of its kept coefficients.
    in_scale : float
        Input quantizer scale (real units of one input step).
    spec : DatapathSpec

    Returns
    -------
    (coef_scale (3L + 1,) float64, coef_ref_scale float, CoefRecord)
    """
    hs, cs = spec.haar, spec.coef
    bits = group_bits(spec)
    alpha = np.array([s.clip(int(b), True, spec.quant.percentile) for s, b in zip(samples, bits)])
    qmax = np.array([levels(int(b), True)[1] for b in bits], dtype=np.float64)
    scale = alpha / qmax
    fill = float(scale[alpha > 0].max()) if np.any(alpha > 0) else 1.0
    group_scale = np.where(alpha > 0, scale, fill)[band_groups(hs.levels, cs.granularity)]          # (B,)
    lvl = level_scales(in_scale, hs)[band_levels(hs.levels) - 1]
    rp = requant_params(lvl, QuantParams(1.0, 0, spec.coef_bits, True), in_bits=min(hs.width_bits, 32),
                        out_scale=group_scale)
    band_scale = lvl * np.exp2(rp.pow2_shift) if cs.scale is CoefScale.POW2 else group_scale
    ref = float(band_scale.max())
    single = cs.granularity is CoefGranularity.PER_TENSOR
    return band_scale, ref, CoefRecord(rp, None if single else rescale_params(band_scale / ref, cs.scale))


def position_scales(in_scale: float, spec: DatapathSpec, hp: int, wp: int) -> np.ndarray:
    """(P,) float64 real units of each Haar position (layout order)."""
    return level_scales(in_scale, spec.haar)[position_levels(hp, wp, spec.haar.levels) - 1]


def plain_params(layers: Sequence[Layer], spec: DatapathSpec, act_bits: int, weight_bits: int,
                 out_qp: QuantParams, x_sample: CalibSample, fixed: FixedScales | None = None) -> PlainParams:
    """Offline record of the plain path at ``act_bits`` inputs and ``weight_bits`` weights, calibrated on
    ``x_sample`` (`input_sample` of ``layers``: one `Layer`, or one per image of a calibration set; same
    weights); with ``fixed`` (8/8 bits) the deployed model's input quantizer, weights and integer bias
    (``out_qp`` its output's)."""
    layer = layers[0]
    if fixed is None:
        in_qp = input_params(x_sample, act_bits, spec)
        wq, s_w = quantize_weights(layer.w2, weight_bits, spec)
        bq, bias_sat = quantize_bias(layer.b, in_qp.scale * s_w, wq.shape[0])
    else:
        in_qp, (wq, s_w) = fixed.input_qp, fixed_weights(layer.w2, fixed)
        bq, bias_sat = (np.zeros(wq.shape[0], np.int64) if fixed.bias_q is None else fixed.bias_q), 0
    rp = output_requant(in_qp.scale, s_w, out_qp)
    return PlainParams(in_qp, wq, s_w, bq, bias_sat, out_qp, rp,
                       output_scale(in_qp.scale, s_w, out_qp, rp, spec.requant.mode))
