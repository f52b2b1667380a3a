"""Report tables: load a run or sweep directory, network totals, and the best setting under an error budget."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from wccsim.errors import InputError
from wccsim.reporting.inputs import NUMBER, TEXT, check_equal, check_grid, grid_values, read_json, read_table
from wccsim.results import COLUMNS, CONFIG_KEYS, NETWORK_COLUMNS, savings, totals

__all__ = ["Results", "LAYER_KINDS", "load_results", "load_network", "summary_table", "headline", "focus_config",
           "hw_spec", "hw_roofs", "spills"]

# What each layers.csv column holds: the label columns are text, every other column of COLUMNS a number.
LAYER_KINDS = {c: TEXT if c in ("hw", "cfg_coef", "layer", "scheme", "bound", "tiling") else NUMBER for c in COLUMNS}


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


def load_network(directory) -> pd.DataFrame | None:
    """``network.csv`` of a sweep with network-level points (`wccsim.results.NETWORK_COLUMNS`), or None
    when the directory has none."""
    csv = Path(directory) / "network.csv"
    if not csv.is_file():
        return None
    df = pd.read_csv(csv, keep_default_na=False, na_values=["", "nan", "NaN"])
    missing = [c for c in NETWORK_COLUMNS if c not in df.columns]
    if missing or df.empty:
        raise InputError(str(csv), "columns", "the columns of wccsim sweep's network.csv",
                         f"missing {missing}" if missing else "no rows")
    return df


def summary_table(tot: pd.DataFrame, max_sqnr_drop_db: float) -> pd.DataFrame:
    """Totals with the savings vs int8 (`wccsim.results.savings`), the budget flag and the best rows.

    ``best`` marks, per (hw, scheme), the setting with the lowest energy among those that save energy
    against int8 (``energy_saving_pct > 0``) and whose network SQNR is at most `max_sqnr_drop_db` below
    int8's (ties: less DRAM traffic, then higher SQNR). A setting that saves nothing is never best.
    """
    t = savings(tot)
    t["within_budget"] = t.sqnr_drop_db <= max_sqnr_drop_db + 1e-12
    t["best"] = False
    cands = t[t.within_budget & (t.scheme != "int8") & (t.energy_saving_pct > 0)]
    cands = cands.sort_values(["energy_total_pj", "dram_bytes", "sqnr_total_db"], ascending=[True, True, False],
                              kind="mergesort")
    t.loc[cands.groupby(["hw", "scheme"], sort=False).head(1).index, "best"] = True
    return t


def headline(summary: pd.DataFrame, max_sqnr_drop_db: float) -> list[str]:
    """One sentence per (hw, scheme other than int8): its cheapest setting within the budget with what it
    saves, or that none exists and the closest one (smallest SQNR drop among those saving energy) with
    its shortfall."""
    lines = []
    for (hw, scheme), g in summary[summary.scheme != "int8"].groupby(["hw", "scheme"], sort=False):
        best = g[g.best]
        if len(best):
            r = best.iloc[0]
            lines.append(f"{hw}, {scheme}: {_setting(r)} is the cheapest within budget: saves "
                         f"{_pct(r.dram_saving_pct)} DRAM, {_pct(r.energy_saving_pct)} energy, "
                         f"{_pct(r.cycle_saving_pct)} cycles vs int8, SQNR {r.sqnr_drop_db:.2f} dB below int8.")
            continue
        saving = g[g.energy_saving_pct > 0]
        if saving.empty:
            lines.append(f"{hw}, {scheme}: no setting saves energy against int8.")
            continue
        r = saving.sort_values(["sqnr_drop_db", "energy_total_pj"], kind="mergesort").iloc[0]
        lines.append(f"{hw}, {scheme}: no setting within the budget; the closest, {_setting(r)}, is "
                     f"{r.sqnr_drop_db:.2f} dB below int8 ({r.sqnr_drop_db - max_sqnr_drop_db:.2f} dB over the "
                     f"{max_sqnr_drop_db:g} dB budget) and saves {_pct(r.dram_saving_pct)} DRAM, "
                     f"{_pct(r.energy_saving_pct)} energy.")
    return lines


def _setting(r) -> str:
    rate = f"rate {r.rate:g}, " if r.scheme == "wcc" else ""
    return f"{rate}{int(r.act_bits)}-bit activations, {int(r.weight_bits)}-bit weights"


def _pct(v: float) -> str:
    return f"{v:.1f}%"


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
    """Per hardware config, how many WCC layers of the focus setting (rate, act_bits, weight_bits) have a top-k
    selection that does not fit on chip and spill to DRAM (``topk_spill``), and the table of those layers."""
    df = res.layers
    keys = ["cfg_rate", "cfg_act_bits", "cfg_weight_bits"]
    wcc = df[(df.scheme == "wcc") & (df[keys] == pd.Series({k: focus[k] for k in keys})).all(axis=1)]
    lines = []
    for hw, g in wcc.groupby("hw", sort=True):
        mode = hw_spec(res.meta, hw).get("topk", {}).get("mode", "?")
        moved = (g.topk_spill_write_bytes + g.topk_spill_read_bytes).sum() / 1e6
        lines.append(f"{hw} ({mode} top-k): {int(g.topk_spill.sum())} of {len(g)} WCC layers spill at rate "
                     f"{focus['cfg_rate']:g}, {focus['cfg_act_bits']}-bit ({moved:.2f} MB written and read back).")
    rows = wcc[wcc.topk_spill == 1]
    table = pd.DataFrame({"hw": rows.hw, "layer": rows.layer, "selector holds kB": (rows.topk_buffer_bytes / 1e3).round(1),
                          "spill written kB": (rows.topk_spill_write_bytes / 1e3).round(1),
                          "spill read kB": (rows.topk_spill_read_bytes / 1e3).round(1)})
    return " ".join(lines), table
