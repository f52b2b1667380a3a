"""Bit operations (BOPs): the paper's count, and a hardware-realistic count.

Paper rule (``paper_bops``), inferred (the paper's code has no BOPs counter) and checked against its
tables (tests/test_cost_bops.py, docs/validation.md, docs/cost.md):

- every convolution with kernel > 1 (including depthwise) is a quantized conv: ``w_bits * a_bits * MACs``;
- every 1x1 convolution is a WCC layer: ``w_bits * a_bits * rate * MACs`` plus the Haar term
  ``w_bits * a_bits * (1 + 1/4 + ... + 1/4^(levels-1)) * (Cin + Cout) * H_pad * W_pad`` with H, W padded up
  to a multiple of 2^levels (forward transform of the input, inverse of the output, one w_bits x a_bits
  operation per coefficient of every level); no term for gathering / scattering the kept coefficients.
  On the geometry of the model the paper names (VainF's MobileNetV2, ``*_vainf.csv`` workloads) this gives
  the Cityscapes FP32, 8/8, 8/6, 8/4 rows at -0.83 / -0.81 / -0.82 / -0.76 % and the three WCC rows
  within their truncation;
- quantization-only rows (no WCC) count every conv at ``w_bits * a_bits * MACs``; FP32 rows at 32 x 32;
- layers the transform keeps in full precision (first conv, classifier's last 1x1; ``keep_fp``) are left
  out (``FpLayers.EXCLUDE``, DeepLabV3+ tables) or counted at 32 x 32 (``FpLayers.FP32``, Monodepth2);
- the paper prints figures in units of 1e9 truncated, not rounded (``truncate_billions``).

Hardware-realistic rule (``hw_bops``): the MACs the array really executes (k = max(1, floor(rate * P))
kept columns of the padded map for WCC) at ``w_bits * a_bits`` each, plus every Haar add/sub at its real
width (2 adds per element per level in the butterfly, forward on the input at act_bits + growth bits,
inverse on the accumulators at acc_bits), plus the top-k energy metric (l2: a width^2 square per
coefficient), full-precision layers at 32 x 32.
"""

from __future__ import annotations

import math

from wccsim.cost.workload import FpLayers
from wccsim.rules import level_sum
from wccsim.shape import LayerShape

__all__ = ["paper_bops", "paper_fp32_bops", "hw_bops",
           "truncate_billions"]


def paper_bops(shape: LayerShape, wcc: bool, rate: float, act_bits: int, weight_bits: int,
               fp_layers: FpLayers = FpLayers.EXCLUDE, levels: int = 3) -> float:
    """BOPs of one layer as the paper counts them (rule in the module docstring).

    Parameters
    ----------
    shape : LayerShape
    wcc : bool
        True for a WCC network (1x1 layers compressed at `rate`), False for a quantization-only one.
    rate : float
        Fraction of wavelet positions kept, in (0, 1]; ignored when `wcc` is False.
    act_bits, weight_bits : int
    fp_layers : FpLayers
        How layers with ``keep_fp`` are counted.
    levels : int

    Returns
    -------
    float
        Bit operations (not truncated).
    """
    if shape.keep_fp:
        return 0.0 if fp_layers is FpLayers.EXCLUDE else 32.0 * 32.0 * shape.macs
    wa = weight_bits * act_bits
    if not (wcc and shape.is_pointwise):
        return float(wa * shape.macs)
    hp, wp = shape.wcc_grid(levels)
    return wa * rate * shape.macs + wa * float(level_sum(levels)) * (shape.cin + shape.cout) * hp * wp


def paper_fp32_bops(shape: LayerShape, fp_layers: FpLayers = FpLayers.EXCLUDE) -> float:
    """BOPs of the FP32 row: 32 x 32 x MACs (full-precision layers per `fp_layers`)."""
    if shape.keep_fp and fp_layers is FpLayers.EXCLUDE:
        return 0.0
    return 1024.0 * shape.macs


def _haar_add_bops(channels: int, hp: int, wp: int, levels: int, first_bits: int, growth: int) -> int:
    """Bit-widths summed over every butterfly add: per level 2 adds per element (rows then columns)."""
    total, n, bits = 0, channels * hp * wp, first_bits
    for _ in range(levels):
        total += n * bits + n * (bits + 1)
        n //= 4
        bits += growth
    return total


def hw_bops(shape: LayerShape, wcc: bool, rate: float, act_bits: int, weight_bits: int, levels: int = 3,
            haar_growth_bits: int = 1, acc_bits: int = 32, metric_square: bool = True) -> float:
    """Hardware-realistic BOPs of one layer (rule in the module docstring).

    `haar_growth_bits` is the coefficient width growth per level (1 for ``per_level`` normalization,
    2 for ``deferred``). Full-precision (``keep_fp``) layers count 32 x 32 x MACs.
    """
    if shape.keep_fp:
        return 1024.0 * shape.macs
    wa = weight_bits * act_bits
    if not (wcc and shape.is_pointwise):
        return float(wa * shape.macs)
    hp, wp = shape.wcc_grid(levels)
    k = shape.wcc_kept(rate, levels)
    mac = wa * shape.cin * shape.cout * k
    fwd = _haar_add_bops(shape.cin, hp, wp, levels, act_bits, haar_growth_bits)
    inv = _haar_add_bops(shape.cout, hp, wp, levels, acc_bits, 0)
    coef_bits = act_bits + levels * haar_growth_bits
    metric = shape.cin * hp * wp * (coef_bits ** 2 if metric_square else coef_bits)
    return float(mac + fwd + inv + metric)


def truncate_billions(bops: float, decimals: int = 0) -> float:
    """Express in units of 1e9 and truncate to `decimals` places (the paper's figures are truncated)."""
    scale = 10 ** decimals
    return math.floor(bops / 1e9 * scale + 1e-9) / scale
