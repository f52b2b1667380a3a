"""Per-layer compute hooks for the spliced network: float reference, WCC datapath, uniform n-bit baseline.

A hook is ``hook(x, w, b, stride) -> y`` with x float32 (N, Cin, H, W), w (Cout, Cin), b (Cout,) or None,
y float32 (N, Cout, ceil(H/stride), ceil(W/stride)) (see `wccsim.network.splice.Hook`).
"""

from __future__ import annotations

import enum

import numpy as np

from wccsim.network.splice import Hook
from wccsim.reference import ref_conv
from wccsim.simulate import calibrate_and_run, simulate_plain

__all__ = ["Mode", "float_hook", "wcc_hook", "uniform_hook", "make_hooks"]


class Mode(enum.Enum):
    """How the spliced 1x1 layers are computed in one network run."""
    FLOAT = "float"       # wccsim.reference.ref_conv (float64)
    WCC = "wcc"           # bit-accurate WCC datapath at the rate
    UNIFORM = "uniform"   # plain uniform quantization at rate * act_bits bits (paper's Figure 1 baseline)


def float_hook(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int) -> np.ndarray:
    """Float64 1x1 convolution (`wccsim.reference.ref_conv`), returned as float32."""
    return np.asarray(ref_conv(x, w, b, stride=stride), np.float32)


def wcc_hook(spec, rate: float) -> Hook:
    """Hook running the bit-accurate WCC datapath at `rate`: `calibrate_and_run` on the layer's input (the
    output `simulate_layer` gives, without its references, baselines and stages)."""
    def hook(x, w, b, stride):
        return np.asarray(calibrate_and_run(x, w, b, spec, rate, stride=stride, keep=False)[1].y, np.float32)
    return hook


def uniform_hook(spec, act_bits: int) -> Hook:
    """Hook running `wccsim.simulate.simulate_plain` (quantize, MAC, requantize) at `act_bits`."""
    def hook(x, w, b, stride):
        return np.asarray(simulate_plain(x, w, b, spec, act_bits, stride=stride).y, np.float32)
    return hook


def make_hooks(spec, rate: float, uniform_bits: int) -> dict[Mode, Hook]:
    """The three hooks of one `wccsim network` run, keyed by `Mode`."""
    return {Mode.FLOAT: float_hook, Mode.WCC: wcc_hook(spec, rate), Mode.UNIFORM: uniform_hook(spec, uniform_bits)}
