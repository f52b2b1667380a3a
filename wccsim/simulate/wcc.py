"""One 1x1 conv layer through the bit-accurate WCC datapath, beside its float references and baselines.

`calibrate_layer` makes, offline and in float, the small frozen record the integer datapath needs
(`LayerParams`); `run_datapath` runs only the integer stages with it (`wccsim.datapath.chain`) and records
each one as a `Stage` (integers, declared width, signedness, real scale, axis order); these become RTL
test vectors (`wccsim.vectors`). `simulate_layer` = `calibrate_layer` + `run_datapath` on the same tensor
(stages 1-4a shared, not run twice) + float references, errors and baselines.
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
coef_q         N,C,k       kept coefficients requantized per band, orthonormal units (max(coef bits, ll_bits))
weight_q       Cout,Cin    weights, weight_bits signed symmetric
acc            N,Cout,k    MAC accumulators, column j at its band's scale (mac.acc_bits)
zero_filled    N,Cout,P    accumulators after the band rescale (stage 5b; none with one coefficient
                           scale) at the reference scale, scattered back to P positions (mac.acc_bits)
inverse        N,Cout,H,W  inverse Haar, cropped (acc_bits + L per_level, acc_bits + 2L deferred)
bias_q         Cout        bias at scale s_ref * s_w (32)
pre_requant    N,Cout,H,W  inverse + bias (inverse width or 32, whichever is larger, + 1)
output_q       N,Cout,H,W  output requantized to act_bits (spec.requant.mode), zero point included
=============  ==========  ======================================================================

H, W are the (strided) spatial size, P = hp * wp padded positions, k kept positions. Calibration choices:
`wccsim.simulate.params`. Fixed scales: `run_datapath` applies a `LayerParams` to any input of the layer
(as a chip does); only the integers, the top-k selection and the counters follow that input.

Working set (issue #6): the layer runs image by image (top-k is per image) and, after the MAC, channel
block by channel block, references and baselines included, so no stage of the whole output tensor need
exist at once. ``keep=False`` (`wccsim run`, sweeps) keeps no stage and no output: errors and counters are
accumulated block by block. ``keep=True`` joins the blocks into the stages above and the outputs. Both
run the same code in the same block order, so their numbers are identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from wccsim.calibrate import CalibSample, QuantParams
from wccsim.datapath import chain, topk
from wccsim.datapath.chain import Front
from wccsim.errors import InputError
from wccsim.hw import DatapathSpec
from wccsim.reference import wcc_dropped
from wccsim.rules import Selection, band_groups, band_levels, padded_shape, uniform_bits
from wccsim.simulate.layer import RUN_BLOCK_ELEMS, Layer, output_block, output_stages, prepare
from wccsim.simulate.params import (
    FixedScales, LayerParams, PlainParams, coef_params, fixed_weights, input_int_bits, input_params, input_sample,
    layer_samples, level_scales, output_params, output_requant, output_scale, plain_params, position_scales,
    quantize_bias, quantize_input, quantize_weights,
)
from wccsim.simulate.plain import plain_image, plain_result
from wccsim.simulate.record import Outcome, make_stage

__all__ = ["DatapathResult", "LayerResult", "calibrate_layer", "run_datapath", "calibrate_and_run",
           "simulate_layer"]

_WHERE = "layer"


@dataclass(frozen=True)
class DatapathResult:
    """Integer WCC datapath result (`run_datapath`).

    Attributes
    ----------
    y : (N, Cout, Ho, Wo) float64 or None
        Dequantized datapath output (None from ``simulate_layer(..., keep=False)``).
    stages : dict[str, Stage]
        Every stage in hardware order (module docstring); empty unless kept.
    k, positions : int
        Kept and padded positions per image.
    selection : Selection
        Datapath selection (bitmap, idx).
    counters : dict[str, int]
        haar_saturations, coef_saturations, acc_overflows, inverse_saturations, bias_saturations (offline,
        from `LayerParams`), output_saturations.
    output_shape : tuple
        (N, Cout, Ho, Wo).
    """
    y: np.ndarray | None
    stages: dict
    k: int
    positions: int
    selection: Selection
    counters: dict
    output_shape: tuple


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


# ------------------------------------------------------------------------------- stages 1-4a

@dataclass(frozen=True)
class _Image:
    """Stages 1-4a of one image: the chain's `Front`, the real units (1, 1, k) of its kept columns and, when
    stages are kept, the input codes (1, C, H, W) int64."""
    front: Front
    kept_scale: np.ndarray
    input_q: np.ndarray | None


def _images(layer: Layer, in_qp: QuantParams, spec: DatapathSpec, rate: float, keep: bool) -> list[_Image]:
    """Stages 1 (quantize) and 2-4a (`chain.front`) of every image."""
    out = []
    in_bits = input_int_bits(in_qp)
    scales = level_scales(in_qp.scale, spec.haar)[band_levels(spec.haar.levels) - 1]     # per band
    for n in range(layer.xs.shape[0]):
        xq, x_int = quantize_input(layer.codes_input(n), in_qp, keep)                        # 1. input
        f = chain.front(x_int, in_bits, spec, rate, keep)                                    # 2-4a.
        out.append(_Image(f, scales[f.kept_band], xq if keep else None))
    return out


def _front_stages(images: list[_Image], in_qp: QuantParams, spec: DatapathSpec) -> dict:
    """Stages input_q, haar_l<l>, haar_coef, energy, bitmap, kept of the images."""
    hs = spec.haar
    fronts = [im.front for im in images]
    hp, wp = padded_shape(*fronts[0].shape, hs.levels)
    level = level_scales(in_qp.scale, hs)
    shift = chain.energy_shift(hp, wp, spec)
    stages = {"input_q": make_stage(np.concatenate([im.input_q for im in images]), in_qp.bits, in_qp.signed,
                                    in_qp.scale, "N,C,H,W", in_qp.zero_point)}
    stages.update({f"haar_l{i}": make_stage(np.concatenate([f.fwd.per_level[i - 1] for f in fronts]), hs.width_bits,
                                            True, level[i - 1], "N,C,4,h,w") for i in range(1, hs.levels + 1)})
    stages["haar_coef"] = make_stage(np.concatenate([f.fwd.coef for f in fronts]), hs.width_bits, True,
                                     position_scales(in_qp.scale, spec, hp, wp), "N,C,P")
    stages["energy"] = make_stage(np.concatenate([f.energy for f in fronts]),
                                  chain.energy_bits(fronts[0].kept.shape[1], spec, shift), False, None, "N,P")
    stages["bitmap"] = make_stage(np.concatenate([f.sel.bitmap for f in fronts]).astype(np.int64), 1, False, None,
                                  "N,P")
    stages["kept"] = make_stage(np.concatenate([f.kept for f in fronts]), hs.width_bits, True,
                                np.concatenate([im.kept_scale for im in images]), "N,C,k")
    return stages


# ------------------------------------------------------------------------------- calibration

def _calibrate(layers: Sequence[Layer], spec: DatapathSpec, rate: float, keep: bool, x_sample: CalibSample,
               fixed: FixedScales | None = None, y_sample: CalibSample | None = None
               ) -> tuple[LayerParams, list[_Image]]:
    """`calibrate_layer` on prepared layers (one, or one per calibration input, same weights; ``x_sample``:
    their `input_sample`, ``y_sample``: their `output_sample` if already computed); also returns the
    images' stages 1-4a it had to compute. With ``fixed``, the deployed model's input, weight and output
    quantizers replace their calibration."""
    q = spec.quant
    in_qp = input_params(x_sample, q.act_bits, spec) if fixed is None else fixed.input_qp
    images = [im for layer in layers for im in _images(layer, in_qp, spec, rate, keep)]
    groups = band_groups(spec.haar.levels, spec.coef.granularity)
    col_groups = [groups[im.front.kept_band[0, 0]] for im in images]
    samples = CalibSample.group(int(groups.max()) + 1, q.calib)
    for g, im in zip(col_groups, images):                                   # real units, by scale group
        CalibSample.add_columns(samples, im.front.kept, im.kept_scale, g)
    coef_scale, ref, coef = coef_params(samples, in_qp.scale, spec)
    w2 = layers[0].w2
    wq, s_w = quantize_weights(w2, q.weight_bits, spec) if fixed is None else fixed_weights(w2, fixed)
    bq, bias_sat = quantize_bias(layers[0].b, ref * s_w, wq.shape[0])
    out_qp = output_params(layers, q.act_bits, spec, y_sample) if fixed is None else fixed.output_qp
    params = LayerParams(in_qp, wq, s_w, coef_scale, ref, coef, bq, bias_sat, out_qp, output_requant(ref, s_w, out_qp))
    return params, images


def calibrate_layer(x: np.ndarray | Sequence[np.ndarray], w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec,
                    rate: float, stride: int = 1, samples: tuple[CalibSample, CalibSample] | None = None
                    ) -> LayerParams:
    """Calibrate one 1x1 conv layer offline (float) for `run_datapath`.

    The coefficient scale is calibrated on the real values of the coefficients the datapath keeps, so
    this runs stages 1-4a (quantize, Haar, top-k, gather) on ``x``; the output scale on ``ref_conv``'s
    output (float64). Choices: `wccsim.simulate.params`.

    Parameters
    ----------
    x : (N, Cin, H, W) float, or a sequence of them
        Calibration input (real units); a sequence is a calibration set (e.g. one tensor per image, sizes
        may differ), calibrated as one sample: the scales its concatenation along N would give.
    w : (Cout, Cin) or (Cout, Cin, 1, 1) float
    b : (Cout,) float or None
    spec : DatapathSpec
    rate : float in (0, 1]
        Kept fraction of the padded Haar positions.
    stride : int
        1x1 conv stride.
    samples : (input sample, output sample), optional
        `wccsim.simulate.params.layer_samples` of these inputs with this ``spec``'s calibration method,
        when other schemes calibrated on the same inputs already computed them (the same result).

    Returns
    -------
    LayerParams
    """
    xs = [x] if isinstance(x, np.ndarray) else list(x)
    if not xs:
        raise InputError(_WHERE, "x", "at least one calibration input", "none")
    layers = [prepare(xi, w, b, stride) for xi in xs]
    x_sample, y_sample = layer_samples(layers, spec) if samples is None else samples
    return _calibrate(layers, spec, rate, False, x_sample, y_sample=y_sample)[0]


# ------------------------------------------------------------------------------- stages 4b-8

def _wcc_image(n: int, im: _Image, blocks: list, p: LayerParams, spec: DatapathSpec, out: Outcome):
    """Stages 4b-8 of image ``n`` with the offline record ``p``: coefficient requant and MAC for the image,
    then per channel block zero-fill, inverse Haar, bias + requant; yields (blk, dequantized output block)."""
    f = im.front
    c = chain.coef_mac(f, p.coef, p.weight_q, spec)                                          # 4b-5b.
    out.counters.update(haar_saturations=f.haar_saturations, coef_saturations=c.coef_saturations,
                        acc_overflows=c.acc_overflows)
    out.pieces.add(n, "coef_q", c.coef_q)
    out.pieces.add(n, "acc", c.acc)
    out.pieces.add(n, "band", f.kept_band)
    acc = c.rescaled
    out_scale = output_scale(p.coef_ref_scale, p.weight_scale, p.output_qp, p.output_requant, spec.requant.mode)
    for blk in blocks:
        spatial, inv_sat = chain.inverse(acc[:, blk], f, spec)                              # 6-7.
        y, out_sat = output_block(spatial, blk, p.bias_q, p.output_qp.zero_point, p.output_requant,  # 8.
                                  out_scale, spec.requant.mode, n, out)
        out.counters.update(inverse_saturations=inv_sat, output_saturations=out_sat)
        if out.pieces.keep:
            zf = np.zeros(acc[:, blk].shape[:2] + (f.positions,), dtype=np.int64)
            np.put_along_axis(zf, f.sel.idx[:, None, :], acc[:, blk], axis=2)
            out.pieces.add(n, "zero_filled", zf)
            out.pieces.add(n, "inverse", spatial)
        yield blk, y
        del spatial, y  # free this block before the next is made


def _wcc_result(cls, images: list[_Image], p: LayerParams, spec: DatapathSpec, out: Outcome, layer: Layer,
                **extra):
    """`DatapathResult` (or `LayerResult` with ``extra``) of a finished `_wcc_image` loop."""
    q = spec.quant
    stages = {}
    if out.pieces.keep:
        s_acc = p.coef_ref_scale * p.weight_scale
        width = chain.inverse_width(spec)
        out_scale = output_scale(p.coef_ref_scale, p.weight_scale, p.output_qp, p.output_requant, spec.requant.mode)
        col_scale = (p.coef_scale[out.pieces.join("band")] if np.ptp(p.coef_scale) > 0       # (N, 1, k)
                     else np.float64(p.coef_ref_scale))                                      # one scale
        stages = {**_front_stages(images, p.input_qp, spec),
                  "coef_q": make_stage(out.pieces.join("coef_q"), max(spec.coef_bits, spec.coef_ll_bits), True,
                                       col_scale, "N,C,k"),
                  "weight_q": make_stage(p.weight_q, q.weight_bits, True, p.weight_scale, "Cout,Cin"),
                  "acc": make_stage(out.pieces.join("acc"), spec.mac.acc_bits, True, col_scale * p.weight_scale[None, :, :],
                                    "N,Cout,k"),
                  "zero_filled": make_stage(out.pieces.join("zero_filled"), spec.mac.acc_bits, True,
                                            s_acc[None, :, :], "N,Cout,P"),
                  "inverse": make_stage(out.pieces.join("inverse"), width, True, s_acc[None, :, :, None],
                                        "N,Cout,H,W"),
                  **output_stages(out.pieces, width, p.bias_q, p.coef_ref_scale, p.weight_scale, p.output_qp,
                                  out_scale)}
    sel = _selection([im.front.sel for im in images])
    counters = {name: int(out.counters[name]) for name in
                ("haar_saturations", "coef_saturations", "acc_overflows", "inverse_saturations")}
    counters.update(bias_saturations=p.bias_saturations, output_saturations=int(out.counters["output_saturations"]))
    return cls(out.y, stages, sel.k, images[0].front.positions, sel, counters, layer.output_shape, **extra)


def _selection(images: list[Selection]) -> Selection:
    """The images' selections as one batch."""
    return Selection(np.concatenate([s.bitmap for s in images]), np.concatenate([s.idx for s in images]),
                     images[0].k)


def _check_params(params: LayerParams, spec: DatapathSpec, cin: int) -> None:
    """``params`` must be made for ``spec`` (act_bits, haar.levels) and this layer's Cin."""
    if params.weight_q.shape[1] != cin:
        raise InputError(_WHERE, "x", f"a non-empty (N, {params.weight_q.shape[1]}, H, W) array", cin)
    made_for = (params.input_qp.bits, params.coef.requant.out_bits, np.shape(params.coef.requant.multiplier),
                params.coef.rescale is None)
    want = (spec.quant.act_bits, spec.coef_bits, (3 * spec.haar.levels + 1,),
            len(set(band_groups(spec.haar.levels, spec.coef.granularity).tolist())) == 1)
    if made_for != want:
        raise InputError(_WHERE, "params", "calibrated for this spec (act_bits, coef bits, haar.levels, "
                         "coef.granularity)", made_for)


def run_datapath(x: np.ndarray, params: LayerParams, spec: DatapathSpec, rate: float,
                 stride: int = 1, keep: bool = True, y_dtype: type = np.float64) -> DatapathResult:
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
        Kept fraction of the padded Haar positions, ``k = kept_positions(rate, P)`` (`wccsim.rules`).
    stride : int
        1x1 conv stride (the input is subsampled first).
    keep : bool
        Record the stages (False: output, selection and counters only).
    y_dtype : float64 or float32
        The output's dtype (float32: each dequantized float64 value rounded to nearest, as ``astype``).

    Returns
    -------
    DatapathResult
    """
    x = np.asarray(x)
    if x.ndim != 4 or 0 in x.shape:
        raise InputError(_WHERE, "x", f"a non-empty (N, {params.weight_q.shape[1]}, H, W) array", x.shape)
    _check_params(params, spec, x.shape[1])
    layer = prepare(x, params.weight_q, None, stride)
    return _run(layer, params, _images(layer, params.input_qp, spec, rate, keep), spec, keep, y_dtype)


def calibrate_and_run(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec, rate: float,
                      stride: int = 1, keep: bool = True) -> tuple[LayerParams, DatapathResult]:
    """`calibrate_layer` then `run_datapath` on the same ``x``, with stages 1-4a run once (calibration
    needs them): the output `simulate_layer` gives, without its references and baselines.

    Parameters and ``keep`` as in `simulate_layer`.

    Returns
    -------
    (LayerParams, DatapathResult)
    """
    layer = prepare(x, w, b, stride)
    params, images = _calibrate([layer], spec, rate, keep, input_sample([layer], spec))
    return params, _run(layer, params, images, spec, keep)


def _run(layer: Layer, params: LayerParams, images: list[_Image], spec: DatapathSpec, keep: bool,
         y_dtype: type = np.float64) -> DatapathResult:
    """Stages 4b-8 of every image from its stages 1-4a; the output is always kept (as ``y_dtype``)."""
    out = Outcome(keep, layer.output_shape, keep_y=True, y_dtype=y_dtype)
    for n, im in enumerate(images):
        for _ in _wcc_image(n, im, layer.blocks(RUN_BLOCK_ELEMS), params, spec, out):
            pass  # each block's output lands in out.y
    return _wcc_result(DatapathResult, images, params, spec, out, layer)


# ------------------------------------------------------------------------------- with references

def _compare_image(n: int, layer: Layer, im: _Image, rate: float, params: LayerParams,
                   plains: dict[str, PlainParams], spec: DatapathSpec, wcc: Outcome, bases: dict) -> Selection:
    """Image ``n``, channel block by channel block: ``ref_conv``, ``ref_wcc``, the datapath (4b-8) and the
    baselines, compared as they go; returns the float reference's selection (one function per image, so
    that its arrays are freed before the next image)."""
    x_n = layer.image(n)
    dropped, ref_sel = wcc_dropped(x_n, rate, spec.haar.levels, spec.topk.metric)[:2]
    dropped = dropped.reshape(x_n.shape[1], -1)
    blocks = layer.blocks()
    schemes = [_wcc_image(n, im, blocks, params, spec, wcc)] + \
        [plain_image(n, x_n, blocks, p, spec, bases[name]) for name, p in plains.items()]
    for (blk, y), *base_blocks in zip(*schemes):
        y_ref = layer.ref_block(x_n, blk)
        y_rw = y_ref - np.matmul(layer.w2[blk], dropped).reshape(y_ref.shape)
        wcc.error("compress", y_ref, y_rw)
        wcc.error("quant", y_rw, y)
        wcc.error("total", y_ref, y)
        for name, (_, y_b) in zip(plains, base_blocks):
            bases[name].error("total", y_ref, y_b)
        del y_ref, y_rw, y, base_blocks, y_b  # free this block before the next is made
    return ref_sel


def simulate_layer(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec, rate: float,
                   stride: int = 1, keep: bool = True, fixed: FixedScales | None = None,
                   framework_q: np.ndarray | None = None) -> LayerResult:
    """Simulate one 1x1 conv layer through the bit-accurate WCC datapath, with references and baselines.

    ``calibrate_layer`` on ``x`` then ``run_datapath`` on ``x``, except that stages 1-4a run once:
    calibration needs them (the coefficient scale) and hands them to stages 4b-8. Then image by image and
    channel block by channel block: ``ref_conv``, ``ref_wcc`` (`wccsim.reference.wcc_dropped`), the
    datapath and the baselines 'int8' and 'uniform_nbit' (`wccsim.rules.uniform_bits` inputs), compared
    as they go.

    Parameters
    ----------
    x : (N, Cin, H, W) float
        Input activations (real units).
    w : (Cout, Cin) or (Cout, Cin, 1, 1) float
    b : (Cout,) float or None
    spec : DatapathSpec
    rate : float in (0, 1]
        Kept fraction of the padded Haar positions, ``k = kept_positions(rate, P)`` (`wccsim.rules`).
    stride : int
        1x1 conv stride (the input is subsampled first).
    keep : bool
        Keep outputs and stages (False: errors, counters and selection only, bounded memory).
    fixed : FixedScales, optional
        A deployed model's own quantizers (``act_bits`` and ``weight_bits`` 8): WCC's input, weight and
        output quantizers and the whole int8 baseline (its integer bias included) use them instead of
        calibration; coefficient scales and uniform_nbit stay calibrated.
    framework_q : (N, Cout, Ho, Wo) integer ndarray, optional
        The framework's output integers: the int8 baseline counts ``framework_mismatches``, its output
        integers that differ from them.

    Returns
    -------
    LayerResult
    """
    layer = prepare(x, w, b, stride)
    x_sample = input_sample([layer], spec)                              # one input histogram, every scheme
    params, images = _calibrate([layer], spec, rate, keep, x_sample, fixed)                # calibration, 1-4a
    q = spec.quant
    bits = {"int8": (8, 8), "uniform_nbit": (uniform_bits(rate, q.act_bits), q.weight_bits)}
    plains = {name: plain_params([layer], spec, a, wb, params.output_qp, x_sample,
                                 fixed if name == "int8" else None) for name, (a, wb) in bits.items()}
    wcc = Outcome(keep, layer.output_shape)
    bases = {name: Outcome(keep, layer.output_shape, expect_q=framework_q if name == "int8" else None)
             for name in bits}
    refs = [_compare_image(n, layer, im, rate, params, plains, spec, wcc, bases) for n, im in enumerate(images)]
    baselines = {name: plain_result(layer, plains[name], spec, *bits[name], bases[name]) for name in bits}
    overlap = topk.overlap(_selection([im.front.sel for im in images]), _selection(refs))
    return _wcc_result(LayerResult, images, params, spec, wcc, layer, errors=wcc.stats(),
                       topk_overlap_with_ref=overlap, baselines=baselines)
