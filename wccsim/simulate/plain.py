"""The plain baselines (no Haar): quantize the input at its own bits, MAC, bias, requantize to the same
output register as WCC, so that schemes differ only in how the input is represented.

``int8``: 8-bit inputs and 8-bit weights. ``uniform_nbit``: `wccsim.rules.uniform_bits` input bits,
``spec.quant.weight_bits`` weights. One code path serves both, with the MAC and requant units WCC uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from wccsim.calibrate import CalibSample
from wccsim.datapath.mac import mac_array
from wccsim.hw import DatapathSpec
from wccsim.rules import check_bits
from wccsim.simulate.layer import RUN_BLOCK_ELEMS, Layer, output_block, output_stages, prepare
from wccsim.simulate.params import PlainParams, layer_samples, output_params, plain_params, quantize_input
from wccsim.simulate.record import Outcome, make_stage

__all__ = ["BaselineResult", "plain_image", "plain_result", "simulate_plain", "calibrate_plain", "run_plain"]


@dataclass(frozen=True)
class BaselineResult:
    """A plain (no Haar) quantized layer: output, errors vs ``ref_conv`` (key ``'total'``), widths.

    ``y`` (N, Cout, Ho, Wo) float64 and ``stages`` are None and {} when simulated with ``keep=False``.
    ``output_shape`` is the output's shape; ``input_nonzero_fraction`` the fraction of input activations
    quantized to a code other than the zero point (what ZVC stores).
    """
    y: np.ndarray | None
    errors: dict
    act_bits: int
    weight_bits: int
    stages: dict
    counters: dict
    output_shape: tuple
    input_nonzero_fraction: float


def plain_image(n: int, x_n: np.ndarray, blocks: list, p: PlainParams, spec: DatapathSpec, out: Outcome):
    """Image ``n``: quantize, MAC over pixels (all output channels in one product, as WCC's `coef_mac`:
    one matrix product instead of a matrix-vector product per thin block), then per channel block bias and
    requantize; yields (blk, dequantized output block)."""
    _, cin, h, w = x_n.shape
    xq, x_int = quantize_input(x_n, p.in_qp, out.pieces.keep)                               # 1. input
    out.counters["input_nonzeros"] += int(np.count_nonzero(x_int))
    out.pieces.add(n, "input_q", xq)
    del xq
    acc, ovf = mac_array(p.weight_q, x_int.reshape(1, cin, h * w), spec.mac)                 # 2. MAC
    out.counters.update(acc_overflows=ovf)
    acc = acc.reshape(1, -1, h, w)
    for blk in blocks:
        y, sat = output_block(acc[:, blk], blk, p.bias_q, p.out_qp.zero_point, p.out_requant,  # 3. bias,
                              p.out_scale, spec.requant.mode, n, out)                          #    requant
        out.counters.update(output_saturations=sat)
        out.pieces.add(n, "acc", acc[:, blk])
        yield blk, y
        del y  # free this block before the next is made


def plain_result(layer: Layer, p: PlainParams, spec: DatapathSpec, act_bits: int, weight_bits: int,
                 out: Outcome) -> BaselineResult:
    """BaselineResult of a finished `plain_image` loop."""
    stages = {}
    if out.pieces.keep:
        s_acc = p.in_qp.scale * p.weight_scale
        stages = {"input_q": make_stage(out.pieces.join("input_q"), p.in_qp.bits, p.in_qp.signed, p.in_qp.scale,
                                        "N,C,H,W", p.in_qp.zero_point),
                  "weight_q": make_stage(p.weight_q, weight_bits, True, p.weight_scale, "Cout,Cin"),
                  "acc": make_stage(out.pieces.join("acc"), spec.mac.acc_bits, True, s_acc[None, :, :, None],
                                    "N,Cout,H,W"),
                  **output_stages(out.pieces, spec.mac.acc_bits, p.bias_q, p.in_qp.scale, p.weight_scale,
                                  p.out_qp, p.out_scale)}
    counters = {"acc_overflows": out.counters["acc_overflows"], "bias_saturations": p.bias_saturations,
                "output_saturations": out.counters["output_saturations"]}
    if out.expect_q is not None:
        counters["framework_mismatches"] = out.counters["framework_mismatches"]
    return BaselineResult(out.y, out.stats(), act_bits, weight_bits, stages, counters, layer.output_shape,
                          out.counters["input_nonzeros"] / layer.xs.size)


def simulate_plain(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec, act_bits: int,
                   stride: int = 1, keep: bool = True) -> BaselineResult:
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
    keep : bool
        Keep the output and the stages (False: errors and counters only, bounded memory).

    Returns
    -------
    BaselineResult
        Output (N, Cout, Ho, Wo) float64, ``errors['total']`` vs ``ref_conv``, stages input_q, weight_q,
        acc (N,Cout,H,W), bias_q, pre_requant, output_q.
    """
    act_bits = check_bits(act_bits, "layer", "act_bits")
    layer = prepare(x, w, b, stride)
    return _compare(layer, _params([layer], spec, act_bits), spec, keep)


def calibrate_plain(xs: Sequence[np.ndarray], w: np.ndarray, b: np.ndarray | None, spec: DatapathSpec,
                    act_bits: int, stride: int = 1, samples: tuple[CalibSample, CalibSample] | None = None
                    ) -> PlainParams:
    """Calibrate the plain path offline on a calibration set, for `run_plain` (fixed scales).

    Parameters
    ----------
    xs : sequence of (N, Cin, H, W) float
        Calibration inputs (e.g. one per image; sizes may differ), calibrated as one sample.
    w, b, spec, act_bits, stride
        As in `simulate_plain` (weights at ``spec.quant.weight_bits``, output register
        ``spec.quant.act_bits``).
    samples : (input sample, output sample), optional
        As in `wccsim.simulate.calibrate_layer`.

    Returns
    -------
    PlainParams
    """
    act_bits = check_bits(act_bits, "layer", "act_bits")
    return _params([prepare(x, w, b, stride) for x in xs], spec, act_bits, samples)


def run_plain(x: np.ndarray, p: PlainParams, spec: DatapathSpec, stride: int = 1,
              keep: bool = True, y_dtype: type = np.float64) -> BaselineResult:
    """The plain path on ``x`` with fixed, offline parameters ``p`` (from `calibrate_plain` with the same
    ``spec``), as a chip runs it: integer stages only (no float reference, ``errors`` is empty); the output
    is always kept (as ``y_dtype``, see `wccsim.simulate.run_datapath`), the stages with ``keep``."""
    layer = prepare(x, p.weight_q, None, stride)
    out = Outcome(keep, layer.output_shape, keep_y=True, y_dtype=y_dtype)
    for n in range(layer.xs.shape[0]):
        for _ in plain_image(n, layer.codes_input(n), layer.blocks(RUN_BLOCK_ELEMS), p, spec, out):
            pass  # each block's output lands in out.y
    return plain_result(layer, p, spec, p.in_qp.bits, spec.quant.weight_bits, out)


def _params(layers: list[Layer], spec: DatapathSpec, act_bits: int,
            samples: tuple[CalibSample, CalibSample] | None = None) -> PlainParams:
    x_sample, y_sample = layer_samples(layers, spec) if samples is None else samples
    out_qp = output_params(layers, spec.quant.act_bits, spec, y_sample)
    return plain_params(layers, spec, act_bits, spec.quant.weight_bits, out_qp, x_sample)


def _compare(layer: Layer, p: PlainParams, spec: DatapathSpec, keep: bool) -> BaselineResult:
    """Every image of ``layer`` through the plain path with ``p``, compared with ``ref_conv`` block by block."""
    out = Outcome(keep, layer.output_shape)
    for n in range(layer.xs.shape[0]):
        x_n = layer.image(n)
        for blk, y in plain_image(n, x_n, layer.blocks(), p, spec, out):
            out.error("total", layer.ref_block(x_n, blk), y)
    return plain_result(layer, p, spec, p.in_qp.bits, spec.quant.weight_bits, out)
