"""The result tables wccsim writes and reads, defined once: columns of ``layers.csv``, ``totals.csv`` and
``network.csv``, their row order, and how totals are summed.

The producers (`wccsim.runner`, `wccsim.sweeper`, `wccsim.network`) and the reader (`wccsim.reporting`)
share this schema; the cost columns come from the fields of `wccsim.cost.LayerCost` (`COST_COLUMNS`), so
a new cost term reaches rows, totals and the README's column check by adding one field there.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from wccsim.cost import COST_COLUMNS, SUMMED
from wccsim.errors import InputError

__all__ = ["SCHEMES", "COUNTERS", "CONFIG_KEYS", "COLUMNS", "TOTAL_COLUMNS", "NETWORK_SCHEMES", "NETWORK_METRICS",
           "NETWORK_COLUMNS", "HIGHER_IS_BETTER", "RELATIVE_METRICS", "SAVINGS", "coef_design", "hw_coef_design",
           "network_aggregate", "quality_metric", "rows_to_frame", "totals", "savings", "saving_phrase"]

SCHEMES = ("wcc", "int8", "uniform_nbit", "zvc")
# Datapath saturation / overflow counters (events per layer), reported per row and summed in totals.
COUNTERS = ("acc_overflows", "haar_saturations", "coef_saturations", "inverse_saturations",
            "bias_saturations", "output_saturations")
# cfg_coef: the coefficient quantizer design the configuration runs (`coef_design`, ``wccsim sweep --coef``).
CONFIG_KEYS = ("hw", "cfg_coef", "cfg_rate", "cfg_act_bits", "cfg_weight_bits")
_ERRORS = ("mse_compress", "mse_quant", "mse_total", "sqnr_compress_db", "sqnr_quant_db", "sqnr_total_db",
           "max_abs_err", "ref_power", "out_elems")
# layers.csv, in order (units in the README). cfg_* identify the requested configuration; rate, act_bits,
# weight_bits are what the row's scheme actually uses (int8: 1.0, 8, 8).
COLUMNS = (
    "hw", "layer_index", "layer", "scheme", "cfg_coef", "cfg_rate", "cfg_act_bits", "cfg_weight_bits",
    "cin", "cout", "h", "w", "stride", "rate", "k", "positions", "act_bits", "weight_bits", "eff_bits_per_act",
    *COST_COLUMNS, *_ERRORS, *COUNTERS, "framework_mismatches",
)
TOTAL_COLUMNS = (
    *CONFIG_KEYS, "scheme", "rate", "act_bits", "weight_bits", "layers", "eff_bits_per_act", *SUMMED,
    "memory_bound_layers", "mse_total", "sqnr_total_db", "max_abs_err", *COUNTERS,
)

# network.csv: one row per (config, scheme, graph output); float and int8 are one point per hw. Each metric
# column is the mean over the evaluation images (`network_aggregate`), ``<metric>_worst`` the worst image;
# ``empty_images`` counts the images whose float output is empty (left out of `RELATIVE_METRICS`),
# ``calib_images`` the calibration images, ``calibration`` "disjoint" or "on_eval" (optimistic).
NETWORK_SCHEMES = ("float", "int8", "wcc", "uniform_nbit")
# Every output's error metrics, then those of the output kinds (`wccsim.network.drift.KIND_METRICS`).
NETWORK_METRICS = ("mse", "sqnr_db", "max_abs", "rel_l2", "iou", "argmax_agree", "miou", "mae", "sad",
                   "top1_agree", "kl_nats")
# The metrics where a larger value means closer to the float network (the others are errors).
HIGHER_IS_BETTER = frozenset({"sqnr_db", "iou", "argmax_agree", "miou", "top1_agree"})
# Metrics measured against what the float output holds (its positive pixels, its energy): on an empty
# reference output (`wccsim.network.drift.empty_output`) they weigh a few stray pixels against nothing (IoU
# 1.0 or 0.0, SQNR down to -80 dB), so such an image is left out of their means and worsts. The absolute
# errors (mse, max_abs, mae, sad) keep it.
RELATIVE_METRICS = frozenset({"iou", "sqnr_db", "rel_l2"})
NETWORK_COLUMNS = (
    "hw", "cfg_coef", "cfg_rate", "cfg_act_bits", "cfg_weight_bits", "scheme", "rate", "act_bits", "weight_bits",
    "eff_bits_per_act", "output", "kind", "images", "layers", "macs", "bops", "bops_hw", *NETWORK_METRICS,
    *(f"{m}_worst" for m in NETWORK_METRICS), "empty_images", "calib_images", "calibration",
)

# Each saving and the network total it compares against int8 on the same hardware (`savings`).
SAVINGS = {"dram_saving_pct": "dram_bytes", "energy_saving_pct": "energy_total_pj", "cycle_saving_pct": "cycles",
           "bops_saving_pct": "bops"}


def coef_design(granularity: str, scale: str) -> str:
    """The ``cfg_coef`` label of a coefficient quantizer design: ``granularity:scale`` (YAML values)."""
    return f"{granularity}:{scale}"


def hw_coef_design(hw) -> str:
    """The ``cfg_coef`` label of the design a `wccsim.hw.HwSpec` runs."""
    return coef_design(hw.datapath.coef.granularity.value, hw.datapath.coef.scale.value)


_QUALITY = {
    "prob_map": ("iou", "IoU of the binarized map vs float"),
    "seg_logits": ("miou", "mIoU of the arg-max map vs float"),
    "alpha": ("mae", "MAE of the alpha matte vs float"),
    "logits": ("sqnr_db", "output SQNR vs float [dB]"),
    "class": ("top1_agree", "top-1 agreement with float"),
    "classes": ("top1_agree", "top-1 agreement with float"),  # the class kind's name in older sweeps
    "other": ("sqnr_db", "output SQNR vs float [dB]"),        # the logits kind's name in older sweeps
}


def quality_metric(kind: str) -> tuple[str, str]:
    """(network.csv column, axis label) of the main output-quality measure of an output kind
    (`wccsim.network.drift.OutputKind` values, or their names in older sweeps); an unknown kind is an
    `InputError`."""
    if kind not in _QUALITY:
        raise InputError("network.csv", "kind", f"one of {list(_QUALITY)[:5]}", kind)
    return _QUALITY[kind]


def network_aggregate(per_image: Sequence[Mapping[str, float]], empty: Sequence[bool]) -> dict:
    """Mean and worst over the evaluation images of each metric the images have.

    Parameters
    ----------
    per_image : one mapping metric -> value per image (`wccsim.network.drift.output_drift`)
    empty : per image, whether its float output is empty (`wccsim.network.drift.empty_output`)

    Returns
    -------
    dict
        ``<metric>``: mean of the finite values, ``<metric>_worst``: their min (`HIGHER_IS_BETTER`) or max,
        both over the non-empty images only for `RELATIVE_METRICS` (nan when no value is left);
        ``empty_images``: the number of empty images.
    """
    out = {}
    for m in dict.fromkeys(k for d in per_image for k in d):
        vals = [float(d[m]) for d, e in zip(per_image, empty)
                if m in d and math.isfinite(d[m]) and not (e and m in RELATIVE_METRICS)]
        out[m] = sum(vals) / len(vals) if vals else math.nan
        out[f"{m}_worst"] = (min(vals) if m in HIGHER_IS_BETTER else max(vals)) if vals else math.nan
    out["empty_images"] = int(sum(bool(e) for e in empty))
    return out


def rows_to_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """Rows -> DataFrame with `COLUMNS` in order, sorted deterministically (config, trace order, scheme)."""
    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    df["framework_mismatches"] = df["framework_mismatches"].astype("Int64")  # integers, empty where none
    if df.empty:
        return df
    order = {s: i for i, s in enumerate(SCHEMES)}
    df["_scheme_order"] = df["scheme"].map(order)
    df = df.sort_values([*CONFIG_KEYS, "layer_index", "_scheme_order"], kind="mergesort")
    return df.drop(columns="_scheme_order").reset_index(drop=True)


def totals(df: pd.DataFrame) -> pd.DataFrame:
    """Network totals per (config, scheme): summed counts, element-weighted errors, network SQNR.

    Network SQNR (dB) = 10 log10(sum_l ref_power_l * out_elems_l / sum_l mse_total_l * out_elems_l);
    ``eff_bits_per_act`` is weighted by each layer's input elements (cin * h * w).
    """
    out = []
    for key, g in df.groupby([*CONFIG_KEYS, "scheme"], sort=False):
        out.append(_total_row(dict(zip([*CONFIG_KEYS, "scheme"], key)), g))
    return pd.DataFrame(out, columns=list(TOTAL_COLUMNS))


def _total_row(key: dict, g: pd.DataFrame) -> dict:
    first = g.iloc[0]
    row = dict(key, rate=float(first.rate), act_bits=int(first.act_bits), weight_bits=int(first.weight_bits),
               layers=len(g))
    in_elems = (g["cin"] * g["h"] * g["w"]).astype(float)
    row["eff_bits_per_act"] = float((g["eff_bits_per_act"] * in_elems).sum() / in_elems.sum())
    for col in (*SUMMED, *COUNTERS):  # numpy on the column: pandas' Series.sum arithmetic, without its ~0.1 ms
        row[col] = np.nansum(g[col].to_numpy()).item()
    row["memory_bound_layers"] = int((g["bound"] == "memory").sum())
    elems = g["out_elems"].astype(float)
    err = float((g["mse_total"] * elems).sum())
    sig = float((g["ref_power"].fillna(0.0) * elems).sum())
    row["mse_total"] = err / float(elems.sum())
    row["sqnr_total_db"] = 10.0 * math.log10(sig / err) if err > 0 else math.inf
    row["max_abs_err"] = float(g["max_abs_err"].max())
    return row


def savings(tot: pd.DataFrame, inputs: bool = True) -> pd.DataFrame:
    """Totals plus the compared totals, ``sqnr_drop_db`` (when the totals have a SQNR) and every `SAVINGS` column.

    ``dram_bytes`` = DRAM reads + writes of the layers and, with ``inputs`` (a trace run, whose producers lie
    outside the trace), the traffic their producers move for the layers' inputs (``input_dram_bytes``: the
    write of each input in its stored form, plus a top-k spill the producer runs); ``energy_total_pj`` the
    same for energy (``energy_pj`` + ``input_energy_pj``). Without ``inputs`` (a workload, whose producers
    are its own layers and already booked) they are the layers' own. A saving is ``100 * (1 - scheme /
    int8)`` of the named total against the int8 row of the same hardware (int8 is the same 8-bit network
    in every configuration of a sweep); positive = the scheme moves, spends or takes less. ``sqnr_drop_db``
    = int8's network SQNR minus the row's. Every command and the report use this one definition.
    """
    t = tot.copy()
    t["dram_bytes"] = t.dram_read_bytes + t.dram_write_bytes + (t.input_dram_bytes if inputs else 0)
    t["energy_total_pj"] = t.energy_pj + (t.input_energy_pj if inputs else 0.0)
    int8 = t[t.scheme == "int8"].drop_duplicates("hw").set_index("hw")
    missing = sorted(set(t.hw) - set(int8.index))
    if missing:
        raise ValueError(f"savings: no int8 row for hw {missing}")
    if "sqnr_total_db" in t:                                  # cost-only totals have no quality
        t["sqnr_drop_db"] = t.hw.map(int8.sqnr_total_db) - t.sqnr_total_db
    for name, col in SAVINGS.items():
        t[name] = 100.0 * (1.0 - t[col].astype(float) / t.hw.map(int8[col]).astype(float))
    return t


def saving_phrase(pct: float) -> str:
    """How every command and the report word a saving (% vs int8): 'saves 19.7%' or 'costs 3.4% more'."""
    return f"saves {pct:.1f}%" if pct >= 0 else f"costs {-pct:.1f}% more"
