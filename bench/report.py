"""Target records and the printed table."""

from __future__ import annotations

__all__ = ["target", "status_of", "format_table", "format_profiles", "format_layers"]

PASS, FAIL, SKIP, MISSING, ERROR = "PASS", "FAIL", "SKIP", "MISSING", "ERROR"


def status_of(measured: float | None, limit: float, higher_is_better: bool = False) -> str:
    """PASS/FAIL of a measured figure against its limit (MISSING when nothing was measured)."""
    if measured is None:
        return MISSING
    ok = measured >= limit if higher_is_better else measured <= limit
    return PASS if ok else FAIL


def target(tid: str, name: str, measured: float | None, limit: float, unit: str, *,
           higher_is_better: bool = False, status: str | None = None, note: str = "",
           details: dict | None = None) -> dict:
    """One row of the results: ``status`` defaults to `status_of` (pass SKIP/MISSING explicitly)."""
    return {"id": tid, "name": name, "measured": measured, "limit": limit, "unit": unit,
            "limit_kind": ">=" if higher_is_better else "<=",
            "status": status or status_of(measured, limit, higher_is_better), "note": note,
            "details": details or {}}


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def format_table(rows: list[dict]) -> str:
    """Markdown table: id, target, measured, limit, status, note."""
    lines = ["| # | target | measured | limit | status | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['id']} | {r['name']} | {_fmt(r['measured'])} {r['unit'] if r['measured'] is not None else ''}"
                     f" | {r['limit_kind']} {_fmt(r['limit'])} {r['unit']} | {r['status']} | {r['note']} |")
    return "\n".join(lines)


def format_profiles(details: dict) -> str:
    """Lines "profile of <target> worst layer ...: part ms, ..." for every profiled miss in ``details``."""
    lines = []
    for key, rows in details.items():
        for r in rows if isinstance(rows, list) else []:
            prof = r.get("stage_profile_s") or r.get("profile_s") if isinstance(r, dict) else None
            if prof:
                total = sum(prof.values())
                parts = ", ".join(f"{k} {v * 1e3:.2f} ms ({100 * v / total:.0f}%)" for k, v in prof.items())
                lines.append(f"profile [{key}{' ' + r['unit'] if 'unit' in r else ''}] worst layer {r['layer']} "
                             f"rate {r['rate']}: {parts}")
    return "\n".join(lines)


def format_layers(rows: list[dict]) -> str:
    """Per-layer table of target 1: datapath and torch best times (ms) and their ratio, by layer and rate."""
    rows = [r for r in rows if "sim_s" in r]
    if not rows:
        return ""
    lines = ["| layer | N x Cin x H x W -> Cout | rate | datapath ms | torch float WCC ms | ratio |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        shape = "x".join(str(v) for v in r["shape"])
        lines.append(f"| {r['layer']} | {shape} -> {r['cout']} | {r['rate']} | {r['sim_s']['min_s'] * 1e3:.2f} | "
                     f"{r['torch_s']['min_s'] * 1e3:.2f} | {r['ratio_min']:.2f} |")
    return "\n".join(lines)
