"""Cost-model totals of the spliced 1x1 layers of a network run, per scheme, against int8.

Only the spliced 1x1 layers are costed (the layers the simulation quantizes; every other layer runs in
float in onnxruntime and is left out, for every scheme alike). Each layer is costed alone
(`wccsim.cost.layer_cost`, default ``io``: its input as a producer outside writes it), summed over the
layers of one image, then averaged over the evaluation images; `wccsim.results.savings` (with the
producers' input writes, as ``wccsim run``) gives the savings against int8 on the same hardware.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pandas as pd

from wccsim.cost import SUMMED, layer_cost
from wccsim.options import configure_datapath
from wccsim.rules import uniform_bits
from wccsim.shape import LayerShape

__all__ = ["COST_SCHEMES", "scheme_cost", "spliced_totals"]

# The costed schemes of a network run, with the `wccsim.network.hooks.Mode` value that computes each.
COST_SCHEMES = {"wcc": "wcc", "uniform_nbit": "uniform", "int8": "int8"}


def scheme_cost(hw, opts, scheme: str):
    """(cost(shape) -> LayerCost, the row's rate, act_bits, weight_bits, eff_bits_per_act) of a scheme:
    ``wcc`` (rate * act_bits stored bits per activation) and ``uniform_nbit`` (`wccsim.rules.uniform_bits`)
    on `hw` at the options' widths, ``int8`` on `hw` configured 8/8."""
    r, a, w = opts.rate, opts.act_bits, opts.weight_bits
    if scheme == "int8":
        hw8 = configure_datapath(hw, dataclasses.replace(opts, act_bits=8, weight_bits=8))
        return (lambda s: layer_cost(s, hw8, "int8", 1.0, 8, 8)), 1.0, 8, 8, 8.0
    cost = (lambda s: layer_cost(s, hw, scheme, r, a, w))
    if scheme == "wcc":
        return cost, r, a, w, r * a
    n = uniform_bits(r, a)
    return cost, 1.0, n, w, float(n)


def spliced_totals(hw, opts, shapes_per_image: Sequence[Sequence[LayerShape]]) -> pd.DataFrame:
    """One row per `COST_SCHEMES` scheme: hw, scheme, cfg_rate, rate, act_bits, weight_bits,
    eff_bits_per_act, layers and every `wccsim.cost.SUMMED` total, each the mean over the images of the
    sum over that image's spliced layers (units of the cost columns: bytes, cycles, pJ, bit-ops)."""
    rows = []
    for scheme in COST_SCHEMES:
        cost, rate, a, w, eff = scheme_cost(hw, opts, scheme)
        costs = [[cost(s) for s in shapes] for shapes in shapes_per_image]  # once per layer, not per column
        sums = [[sum(getattr(c, col) for c in image) for col in SUMMED] for image in costs]
        rows.append({"hw": hw.name, "scheme": scheme, "cfg_rate": opts.rate, "rate": rate, "act_bits": a,
                     "weight_bits": w, "eff_bits_per_act": float(eff),
                     "layers": len(shapes_per_image[0]) if shapes_per_image else 0,
                     **dict(zip(SUMMED, np.mean(sums, axis=0).tolist()))})
    return pd.DataFrame(rows)
