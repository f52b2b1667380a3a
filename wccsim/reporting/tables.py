"""Report tables: load a run or sweep directory, network totals, and the best setting under a quality budget.

The budget is judged on the whole-network output where the sweep has network rows (``network.csv``: the
main output's quality measure, `wccsim.results.quality_metric`, on the mean over the evaluation images and
on the worst image, each against int8's on the same hardware and design), on the layer aggregate (summed
per-layer errors, ``sqnr_total_db``) otherwise; ``quality_basis`` says which, per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from wccsim.errors import InputError
from wccsim.reporting.inputs import (
    HW_KEYS, NUMBER, TEXT, check_equal, check_grid, grid_values, read_json, read_table,
)
from wccsim.results import (
    COLUMNS, CONFIG_KEYS, HIGHER_IS_BETTER, NETWORK_COLUMNS, NETWORK_METRICS, NETWORK_SCHEMES, quality_metric,
    saving_phrase, savings, totals,
)

__all__ = ["Results", "LAYER_KINDS", "NETWORK_OPTIONAL", "CALIBRATIONS", "DEFAULT_SCORE_DROP", "load_results",
           "load_network", "main_output", "network_quality_table", "summary_table", "headline", "coef_headline",
           "focus_config", "hw_spec", "hw_roofs", "spills", "worse_side"]

# What each layers.csv column holds: the label columns are text, every other column of COLUMNS a number.
LAYER_KINDS = {c: TEXT if c in ("hw", "cfg_coef", "layer", "scheme", "bound", "tiling") else NUMBER for c in COLUMNS}
# network.csv columns newer than the first network sweeps (worst image, images left out, calibration set): read
# and checked where present; a file without them is still read, and the page says what it lacks.
NETWORK_OPTIONAL = (*(f"{m}_worst" for m in NETWORK_METRICS), "empty_images", "calib_images", "calibration")
_NETWORK_TEXT = ("hw", "cfg_coef", "scheme", "output", "kind", "calibration")
_NETWORK_INTS = ("cfg_act_bits", "cfg_weight_bits", "act_bits", "weight_bits", "images", "layers", "empty_images",
                 "calib_images")
CALIBRATIONS = ("disjoint", "on_eval")  # calibration images apart from the evaluation images, or the same ones
DEFAULT_SCORE_DROP = 0.02  # budget on agreement scores in [0, 1] (IoU, top-1 agreement) below int8's
_REFERENCES = ("float", "int8")  # network points once per (hw, design), at rate 1.0, 8-bit


@dataclass(frozen=True)
class Results:
    """A results directory: per-layer rows, network totals, its metadata and what produced it."""
    path: Path
    kind: str            # "run" or "sweep"
    layers: pd.DataFrame
    totals: pd.DataFrame
    meta: dict


def load_results(directory) -> Results:
    """Read a ``wccsim run`` / ``sweep`` directory, checked: ``run.json`` or ``sweep.json``, ``layers.csv``
    (`LAYER_KINDS`) and ``totals.csv``. layers.csv must hold exactly the rows the JSON records (hw x
    configuration x layers x schemes) and totals.csv the totals of those rows; anything else is a one-line
    `InputError` naming the file (under `directory` as given) and the field."""
    path = Path(directory)
    if not path.is_dir():
        raise InputError(str(path), "", "a wccsim run or sweep directory", "no such directory")
    metas = [name for name in ("run.json", "sweep.json") if (path / name).is_file()]
    absent = [name for name in ("layers.csv", "totals.csv") if not (path / name).is_file()]
    if len(metas) > 1 or absent or not metas:
        raise InputError(str(path), "", "a wccsim run or sweep directory (layers.csv, totals.csv and run.json or "
                         "sweep.json)", "both run.json and sweep.json" if len(metas) > 1 else
                         "no " + ", ".join(absent + ([] if metas else ["run.json or sweep.json"])))
    meta_path = path / metas[0]
    kind = meta_path.stem
    meta = read_json(meta_path)
    grid = grid_values(meta, meta_path, kind)
    df = read_table(path / "layers.csv", LAYER_KINDS)
    check_grid(df, path / "layers.csv", grid, meta_path)
    tot = totals(df)
    found = read_table(path / "totals.csv", {c: NUMBER if pd.api.types.is_numeric_dtype(tot[c]) else TEXT
                                             for c in tot.columns})
    check_equal(found, tot, [*CONFIG_KEYS, "scheme"], path / "totals.csv", "the totals of layers.csv")
    return Results(path, kind, df, tot, meta)


def load_network(res: Results) -> pd.DataFrame | None:
    """``network.csv`` of a sweep with network-level points, checked, or None when the directory has none.

    Refused with a one-line `InputError` naming the file and field: what `read_table` refuses (cut short,
    missing `wccsim.results.NETWORK_COLUMNS`, a cell of the wrong type; `NETWORK_OPTIONAL` columns may be
    absent), a count that is not an integer, an unknown scheme or calibration, and rows that do not match
    the grid of sweep.json: one row per (hw, design) x rate x act_bits x weight_bits x (wcc, uniform_nbit)
    x output, and one float and one int8 row per (hw, design) x output.
    """
    path = res.path / "network.csv"
    if not path.is_file():
        return None
    kind = {c: TEXT if c in _NETWORK_TEXT else NUMBER for c in (*NETWORK_COLUMNS, *NETWORK_OPTIONAL)}
    df = read_table(path, {c: k for c, k in kind.items() if c not in NETWORK_OPTIONAL},
                    {c: kind[c] for c in NETWORK_OPTIONAL})
    for col in (c for c in _NETWORK_INTS if c in df.columns):
        bad = df[col].isna() | (df[col] != df[col].round())
        if bad.any():
            raise InputError(str(path), f"line {int(bad.to_numpy().argmax()) + 2}: {col}", "an integer",
                             repr(df[col][bad].iloc[0]))
    for col, allowed in (("scheme", NETWORK_SCHEMES), ("calibration", CALIBRATIONS)):
        bad = ~df[col].isin(allowed) if col in df.columns else pd.Series(False, index=df.index)
        if bad.any():
            raise InputError(str(path), f"line {int(bad.to_numpy().argmax()) + 2}: {col}", f"one of {list(allowed)}",
                             repr(df[col][bad].iloc[0]))
    meta_path = res.path / f"{res.kind}.json"
    grid = grid_values(res.meta, meta_path, res.kind)
    outputs = ("(the outputs in network.csv)", list(dict.fromkeys(df.output)))
    points = df[~df.scheme.isin(_REFERENCES)]
    check_grid(points, path, {HW_KEYS: grid[HW_KEYS], **{c: grid[c] for c in CONFIG_KEYS if c in grid},
                              "scheme": ("(network schemes)", [s for s in NETWORK_SCHEMES if s not in _REFERENCES]),
                              "output": outputs}, meta_path)
    check_grid(df[df.scheme.isin(_REFERENCES)], path,
               {HW_KEYS: grid[HW_KEYS], "scheme": ("(network references)", list(_REFERENCES)), "output": outputs},
               meta_path)
    return df


def main_output(net: pd.DataFrame) -> str:
    """The graph output the report judges and plots: the first in network.csv (the model's first output)."""
    return str(net.output.iloc[0])


def network_quality_table(net: pd.DataFrame, max_sqnr_drop_db: float, max_score_drop: float) -> pd.DataFrame:
    """Quality of the main output per (`CONFIG_KEYS`, scheme) of network.csv's wcc and uniform_nbit rows and
    of its int8 row (one per (hw, cfg_coef), at rate 1.0, 8, 8; it is the reference of every configuration).

    Columns: ``net_metric`` (`quality_metric` of the output kind), ``net_mean`` / ``net_worst`` (mean over the
    evaluation images / worst image; NaN when network.csv predates ``<metric>_worst``), ``net_drop`` /
    ``net_drop_worst`` (int8's value minus the row's, sign turned for error metrics: positive = worse than
    int8; the worst image against int8's worst image), ``net_budget`` (`max_sqnr_drop_db` for a dB measure,
    `max_score_drop` for a score) and ``net_shortfall`` = the larger drop minus the budget (<= 0: within).
    """
    rows = net[net.output == main_output(net)]
    metric = quality_metric(rows.kind.iloc[0])[0]
    worst = rows[f"{metric}_worst"] if f"{metric}_worst" in rows.columns else pd.Series(float("nan"), rows.index)
    q = rows[[*CONFIG_KEYS, "scheme"]].assign(net_metric=metric, net_mean=rows[metric].astype(float),
                                              net_worst=worst.astype(float))
    q = q[q.scheme != "float"]
    int8 = q[q.scheme == "int8"].set_index(list(HW_KEYS))
    key = pd.MultiIndex.from_frame(q[list(HW_KEYS)])
    sign = 1.0 if metric in HIGHER_IS_BETTER else -1.0
    q["net_drop"] = sign * (int8.net_mean.reindex(key).to_numpy() - q.net_mean)
    q["net_drop_worst"] = sign * (int8.net_worst.reindex(key).to_numpy() - q.net_worst)
    q["net_budget"] = max_sqnr_drop_db if metric.endswith("_db") else max_score_drop
    judged = q.net_drop if q.net_worst.isna().all() else q[["net_drop", "net_drop_worst"]].max(axis=1, skipna=False)
    q["net_shortfall"] = judged - q.net_budget
    return q.reset_index(drop=True)


def summary_table(tot: pd.DataFrame, max_sqnr_drop_db: float, net: pd.DataFrame | None = None,
                  max_score_drop: float = DEFAULT_SCORE_DROP) -> pd.DataFrame:
    """Totals with the savings vs int8 (`wccsim.results.savings`), the quality judged, the budget flag and
    the best rows.

    Quality: a row with a network point (`network_quality_table` of `net`: wcc, uniform_nbit and int8 of a
    sweep with network.csv) is judged on the network output, mean and worst image (``quality_basis``
    "network", ``shortfall`` = ``net_shortfall``); any other on the layer aggregate ("layer", ``shortfall``
    = ``sqnr_drop_db - max_sqnr_drop_db``, in dB). ``within_budget``: ``shortfall <= 0``. ``best`` marks,
    per (hw, scheme), the setting with the lowest energy among those within budget that save energy
    against int8 (``energy_saving_pct > 0``; ties: less DRAM traffic, then higher layer SQNR). A setting
    that saves nothing is never best.
    """
    t = savings(tot)
    t["quality_basis"], t["shortfall"] = "layer", t.sqnr_drop_db - max_sqnr_drop_db
    if net is not None:
        q = network_quality_table(net, max_sqnr_drop_db, max_score_drop)
        keyed = pd.concat([t[t.scheme != "int8"].reset_index().merge(q, on=[*CONFIG_KEYS, "scheme"]),
                           t[t.scheme == "int8"].reset_index().merge(q[q.scheme == "int8"].drop(
                               columns=[c for c in CONFIG_KEYS if c not in HW_KEYS]), on=[*HW_KEYS, "scheme"])])
        keyed = keyed.set_index("index")
        for col in (c for c in q.columns if c.startswith("net_")):
            t[col] = keyed[col]
        has = t.index.isin(keyed.index)
        t.loc[has, "quality_basis"] = "network"
        t.loc[has, "shortfall"] = t.net_shortfall[has]
    t["within_budget"] = t.shortfall <= 1e-12
    t["best"] = False
    cands = t[t.within_budget & (t.scheme != "int8") & (t.energy_saving_pct > 0)]
    cands = cands.sort_values(["energy_total_pj", "dram_bytes", "sqnr_total_db"], ascending=[True, True, False],
                              kind="mergesort")
    t.loc[cands.groupby(["hw", "scheme"], sort=False).head(1).index, "best"] = True
    return t


def headline(summary: pd.DataFrame, max_sqnr_drop_db: float, by: tuple[str, ...] = ("hw", "scheme")) -> list[str]:
    """One sentence per group `by` (default (hw, scheme); int8 left out): its cheapest setting within the
    budget (the ``best`` row; with other `by`, the cheapest within budget saving energy) with what it saves
    and its quality, or that none exists and the closest one (smallest ``shortfall`` among those saving
    energy) with its quality and shortfall. Each sentence says what the quality was judged on."""
    lines = []
    for key, g in summary[summary.scheme != "int8"].groupby(list(by), sort=False):
        name = ", ".join(map(str, key if isinstance(key, tuple) else (key,)))
        saving = g[g.energy_saving_pct > 0].sort_values(["energy_total_pj", "dram_bytes", "sqnr_total_db"],
                                                        ascending=[True, True, False], kind="mergesort")
        best = g[g.best] if tuple(by) == ("hw", "scheme") else saving[saving.within_budget].head(1)
        if len(best):
            r = best.iloc[0]
            lines.append(f"{name}: {_setting(r)} is the cheapest within budget: {_saves(r, cycles=True)} vs int8; "
                         f"{_quality(r, max_sqnr_drop_db)}.")
            continue
        if saving.empty:
            lines.append(f"{name}: no setting saves energy against int8.")
            continue
        r = saving.sort_values(["shortfall", "energy_total_pj"], kind="mergesort").iloc[0]
        lines.append(f"{name}: no setting within the budget; the closest, {_setting(r)}, "
                     f"{_quality(r, max_sqnr_drop_db, over=True)}; it {_saves(r)} vs int8.")
    return lines


def coef_headline(summary: pd.DataFrame, max_sqnr_drop_db: float) -> list[str]:
    """`headline` for WCC per (hw, coefficient design)."""
    return headline(summary[summary.scheme.isin(["wcc"])], max_sqnr_drop_db, by=("hw", "cfg_coef"))


def _quality(r, max_sqnr_drop_db: float, over: bool = False) -> str:
    """The row's quality against int8 on its basis; with `over`, the shortfall against the budget."""
    if r.quality_basis == "network":
        fmt = ".2f" if r.net_metric.endswith("_db") else ".3f"
        unit = " dB" if r.net_metric.endswith("_db") else ""
        side = worse_side(r.net_metric)
        worst = "" if pd.isna(r.net_worst) else \
            f", worst image {r.net_worst:{fmt}}{unit} ({r.net_drop_worst:{fmt}}{unit} {side} int8's worst)"
        text = (f"network output {r.net_metric} {r.net_mean:{fmt}}{unit} mean ({r.net_drop:{fmt}}{unit} {side} "
                f"int8){worst}")
        return text + (f": {r.shortfall:{fmt}}{unit} over the {r.net_budget:g}{unit} budget" if over else "")
    text = f"layer-aggregate SQNR {r.sqnr_drop_db:.2f} dB below int8"
    return text + (f" ({r.shortfall:.2f} dB over the {max_sqnr_drop_db:g} dB budget)" if over else "")


def worse_side(metric: str) -> str:
    """How a quality drop reads for `metric`: 'below' int8 for a score (`HIGHER_IS_BETTER`), 'above' for an
    error (MAE, SAD, KL, MSE)."""
    return "below" if metric in HIGHER_IS_BETTER else "above"


def _setting(r) -> str:
    rate = f"rate {r.rate:g}, coef {r.cfg_coef}, " if r.scheme == "wcc" else ""
    return f"{rate}{int(r.act_bits)}-bit activations, {int(r.weight_bits)}-bit weights"


def _saves(r, cycles: bool = False) -> str:
    """'saves 24.0% DRAM, costs 3.1% more energy' from a summary row's savings (% vs int8)."""
    items = [("DRAM", r.dram_saving_pct), ("energy", r.energy_saving_pct)] + ([("cycles", r.cycle_saving_pct)]
                                                                               if cycles else [])
    return ", ".join(f"{saving_phrase(v)} {what}" for what, v in items)


def focus_config(summary: pd.DataFrame) -> dict:
    """The configuration the per-layer figures show, for the first hw: its best WCC setting within the
    budget; else the highest-SQNR WCC setting with rate <= 0.5 (at least 2x compression); else the
    highest-SQNR WCC setting. A run directory has a single configuration."""
    wcc = summary[(summary.scheme == "wcc") & (summary.hw == summary.hw.iloc[0])]
    best = wcc[wcc.best]
    if best.empty:
        half = wcc[wcc.cfg_rate <= 0.5]
        best = (half if len(half) else wcc).sort_values("sqnr_total_db", ascending=False, kind="mergesort")
    row = best.iloc[0]
    return {k: row[k] for k in CONFIG_KEYS}


def hw_spec(meta: dict, hw_name: str) -> dict:
    """The spec of hardware `hw_name` as run.json / sweep.json record it ({} when absent)."""
    specs = [meta["hw"]] if isinstance(meta.get("hw"), dict) else [h.get("spec", {}) for h in meta.get("hw", [])]
    return next((spec for spec in specs if isinstance(spec, dict) and spec.get("name") == hw_name), {})


def hw_roofs(meta: dict, hw_name: str) -> tuple[float, float] | None:
    """(peak MACs per cycle, DRAM bytes per cycle) of a hw spec recorded in run.json / sweep.json."""
    spec = hw_spec(meta, hw_name)
    try:
        return float(spec["mac"]["rows"] * spec["mac"]["cols"]), float(spec["dram"]["bandwidth_bytes_per_cycle"])
    except (KeyError, TypeError):
        return None


def spills(res: Results, focus: dict) -> tuple[str, pd.DataFrame]:
    """Per hardware config, how many WCC layers of the focus setting (coefficient design, rate, act_bits,
    weight_bits) have a top-k selection that does not fit on chip and spill to DRAM (``topk_spill``), and the
    table of those layers."""
    df = res.layers
    keys = [k for k in CONFIG_KEYS if k != "hw"]
    wcc = df[(df.scheme == "wcc") & (df[keys] == pd.Series({k: focus[k] for k in keys})).all(axis=1)]
    lines = []
    for hw, g in wcc.groupby("hw", sort=True):
        mode = hw_spec(res.meta, hw).get("topk", {}).get("mode", "?")
        moved = (g.topk_spill_write_bytes + g.topk_spill_read_bytes).sum() / 1e6
        lines.append(f"{hw} ({mode} top-k): {int(g.topk_spill.sum())} of {len(g)} WCC layers spill at rate "
                     f"{focus['cfg_rate']:g}, {focus['cfg_act_bits']}-bit, coef {focus['cfg_coef']} ({moved:.2f} MB written and read back).")
    rows = wcc[wcc.topk_spill == 1]
    table = pd.DataFrame({"hw": rows.hw, "layer": rows.layer, "selector holds kB": (rows.topk_buffer_bytes / 1e3).round(1),
                          "spill written kB": (rows.topk_spill_write_bytes / 1e3).round(1),
                          "spill read kB": (rows.topk_spill_read_bytes / 1e3).round(1)})
    return " ".join(lines), table
