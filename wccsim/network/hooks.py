"""Per-layer computations of the spliced network: float reference, WCC datapath, int8 and uniform n-bit.

A hook is ``hook(x, w, b, stride) -> y`` with x float32 (N, Cin, H, W), w (Cout, Cin), b (Cout,) or None,
y float32 (N, Cout, ceil(H/stride), ceil(W/stride)) (see `wccsim.network.splice.Hook`). The quantized
modes are `LayerMode`s: calibrated once per layer on a calibration set, then run with the fixed
parameters (`wccsim.network.calibration`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from wccsim.capture.onnx_graph import PointwiseConv
from wccsim.reference import ref_conv
from wccsim.simulate import calibrate_layer, calibrate_plain, run_datapath, run_plain
from wccsim.simulate.layer import prepare
from wccsim.simulate.params import layer_samples

__all__ = ["Mode", "QUANT_MODES", "float_hook", "LayerMode", "shared_samples", "wcc_mode", "plain_mode", "layer_modes"]


class Mode(enum.Enum):
    """How the spliced 1x1 layers are computed in one network run."""
    FLOAT = "float"       # wccsim.reference.ref_conv (float64)
    WCC = "wcc"           # bit-accurate WCC datapath at the rate
    UNIFORM = "uniform"   # plain uniform quantization at uniform_bits(rate, act_bits) (paper's Figure 1 baseline)
    INT8 = "int8"         # plain 8-bit activations and weights, the deployment WCC is judged against


QUANT_MODES = (Mode.WCC, Mode.UNIFORM, Mode.INT8)


def float_hook(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int) -> np.ndarray:
    """Float64 1x1 convolution (`wccsim.reference.ref_conv`), returned as float32."""
    return np.asarray(ref_conv(x, w, b, stride=stride), np.float32)


@dataclass(frozen=True)
class LayerMode:
    """A quantized mode of a spliced layer: ``calibrate(xs, conv, shared) -> params`` on the calibration
    set (the layer's float inputs, one (N, Cin, H, W) array per image; ``shared``: a dict the modes of
    one layer share, see `shared_samples`) and ``run(x, params, conv) -> y`` (float32, the spliced network's
    activations: each dequantized float64 value rounded to nearest) on any input with those fixed
    parameters."""
    calibrate: Callable[[list, PointwiseConv, dict], Any]
    run: Callable[[np.ndarray, Any, PointwiseConv], np.ndarray]


def shared_samples(shared: dict, xs: list, conv: PointwiseConv, spec) -> tuple:
    """`wccsim.simulate.params.layer_samples` of the layer on its calibration inputs for `spec`'s
    calibration method, computed once per layer and method in ``shared`` (the samples read the method
    only, not the bit widths: the modes' input and output histograms and float reference are the same).
    ``shared["outputs"]``, when the caller put it there: the layer's float64 reference output on the set,
    `wccsim.simulate.params.output_blocks` of each input in order (computed already)."""
    key = spec.quant.calib
    if key not in shared:
        layers = [prepare(x, conv.w, conv.b, conv.stride) for x in xs]
        shared[key] = layer_samples(layers, spec, shared.get("outputs"))
    return shared[key]


def wcc_mode(spec, rate: float) -> LayerMode:
    """The bit-accurate WCC datapath at `rate`: `calibrate_layer` on the set, `run_datapath` per input."""
    return LayerMode(lambda xs, c, sh: calibrate_layer(xs, c.w, c.b, spec, rate, c.stride,
                                                       shared_samples(sh, xs, c, spec)),
                     lambda x, p, c: run_datapath(x, p, spec, rate, c.stride, keep=False,
                                                         y_dtype=np.float32).y)


def plain_mode(spec, act_bits: int) -> LayerMode:
    """The plain path (quantize, MAC, requantize) at `act_bits` inputs: `calibrate_plain`, `run_plain`."""
    return LayerMode(lambda xs, c, sh: calibrate_plain(xs, c.w, c.b, spec, act_bits, c.stride,
                                                       shared_samples(sh, xs, c, spec)),
                     lambda x, p, c: run_plain(x, p, spec, c.stride, keep=False, y_dtype=np.float32).y)


def layer_modes(spec, spec8, rate: float, uniform_bits: int) -> dict[Mode, LayerMode]:
    """The quantized modes of one `wccsim network` run: WCC at `rate` and uniform `uniform_bits`-bit on
    `spec`, int8 on `spec8` (the same hardware configured 8/8)."""
    return {Mode.WCC: wcc_mode(spec, rate), Mode.UNIFORM: plain_mode(spec, uniform_bits),
            Mode.INT8: plain_mode(spec8, 8)}
