"""Report tables: load a run or sweep directory, network totals, and the best setting under an error budget."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from wccsim.errors import InputError
from wccsim.results import COLUMNS, CONFIG_KEYS, NETWORK_COLUMNS, totals

__all__ = ["Results", "load_results", "load_network", "summary_table", "focus_config", "hw_roofs"]


@dataclass(frozen=True)
class Results:
    """A results directory: per-layer rows, network totals, its metadata and what produced it."""
    path: Path
    kind: str            # "run" or "sweep"
    layers: pd.DataFrame
    totals: pd.DataFrame
    meta: dict


def load_results(directory) -> Results:
    """Read ``layers.csv`` plus ``run.json`` or ``sweep.json`` from a ``wccsim run`` / ``sweep`` directory."""
    path = Path(directory)
    if not path.is_dir():
        raise InputError(str(path), "", "a wccsim run or sweep directory", "no such directory")
    csv = path / "layers.csv"
    if not csv.is_file():
        raise InputError(str(path), "layers.csv", "a results table written by wccsim run or sweep", "missing")
    kind = "sweep" if (path / "sweep.json").is_file() else "run"
    meta_file = path / f"{kind}.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    df = pd.read_csv(csv, keep_default_na=False, na_values=["", "nan", "NaN"])
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing or df.empty:
        raise InputError(str(csv), "columns", "the columns of wccsim run output", f"missing {missing}"
                         if missing else "no rows")
    return Results(path, kind, df, totals(df), meta)


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
    """Totals with the SQNR drop vs int8 (same hw), savings vs int8, the budget flag and the best rows.

    ``best`` marks, per (hw, scheme), the setting with the lowest energy among those whose network SQNR is
    at most `max_sqnr_drop_db` below the int8 baseline (ties: less DRAM traffic, then higher SQNR).
    """
    t = tot.copy()
    int8 = t[t.scheme == "int8"].drop_duplicates("hw").set_index("hw")
    ref = t.hw.map(int8.sqnr_total_db)
    t["sqnr_drop_db"] = ref - t.sqnr_total_db
    for col, name in (("dram_read_bytes", "dram_saving_pct"), ("energy_pj", "energy_saving_pct"),
                      ("cycles", "cycle_saving_pct")):
        base = t.hw.map(int8[col]).astype(float)
        t[name] = 100.0 * (1.0 - t[col] / base)
    t["within_budget"] = t.sqnr_drop_db <= max_sqnr_drop_db + 1e-12
    t["best"] = False
    cands = t[t.within_budget & (t.scheme != "int8")]
    cands = cands.assign(_dram=cands.dram_read_bytes + cands.dram_write_bytes)
    cands = cands.sort_values(["energy_pj", "_dram", "sqnr_total_db"], ascending=[True, True, False],
                              kind="mergesort")
    t.loc[cands.groupby(["hw", "scheme"], sort=False).head(1).index, "best"] = True
    return t


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


def hw_roofs(meta: dict, hw_name: str) -> tuple[float, float] | None:
    """(peak MACs per cycle, DRAM bytes per cycle) of a hw spec recorded in run.json / sweep.json."""
    specs = [meta["hw"]] if isinstance(meta.get("hw"), dict) else [h.get("spec", {}) for h in meta.get("hw", [])]
    for spec in specs:
        if spec.get("name") == hw_name:
            try:
                return (float(spec["mac"]["rows"] * spec["mac"]["cols"]),
                        float(spec["dram"]["bandwidth_bytes_per_cycle"]))
            except (KeyError, TypeError):
                return None
    return None
