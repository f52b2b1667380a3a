"""``wccsim report``: one self-contained HTML page (plus PNGs and a CSV summary) from a run or sweep directory.

Figures: DRAM traffic per layer and vs rate (stacked activations / weights / bitmap / outputs) beside int8;
SQNR vs effective bits per activation (WCC vs uniform quantization, the paper's Figure 1 on this network);
BOPs vs SQNR with the Pareto front; cycles per layer by bound and a roofline; tables with the best setting
under an SQNR budget relative to int8. A sweep with network-level points (``network.csv``) adds output
quality vs BOPs for WCC and uniform quantization (the paper's Figure 4 on this network) with its table.
Pictures and ``network.json`` that ``wccsim network`` left in the directory are included.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from wccsim import __version__
from wccsim.atomic import write_bytes, write_text
from wccsim.errors import InputError
from wccsim.reporting.html import FigureBlock, render_html
from wccsim.reporting.plots import (
    bops_pareto, cycles_per_layer, png_bytes, quality_vs_bops, roofline, sqnr_vs_bits, traffic_per_layer,
    traffic_vs_rate,
)
from wccsim.reporting.inputs import read_json
from wccsim.reporting.tables import (
    Results, focus_config, headline, hw_roofs, load_network, load_results, spills, summary_table,
)
from wccsim.results import quality_metric

__all__ = ["FIGURES", "NETWORK_FIGURE", "report", "build_figures", "network_quality", "network_items",
           "display_table", "network_table"]

FIGURES = ("traffic_layers", "traffic_rate", "sqnr_bits", "bops_pareto", "cycles_layers", "roofline")
NETWORK_FIGURE = "network_quality"  # only when the directory has network.csv
_SUMMARY_COLS = ("hw", "scheme", "cfg_rate", "cfg_act_bits", "cfg_weight_bits", "rate", "act_bits", "weight_bits",
                 "eff_bits_per_act", "bops",
                 "dram_read_bytes", "dram_write_bytes", "dram_bytes", "cycles", "energy_pj", "energy_total_pj",
                 "sqnr_total_db",
                 "sqnr_drop_db", "dram_saving_pct", "energy_saving_pct", "cycle_saving_pct", "bops_saving_pct",
                 "within_budget", "best")


def report(directory, out=None, *, max_sqnr_drop_db: float = 1.0) -> Path:
    """Write ``out`` (default ``DIR/report.html``), ``<stem>_<figure>.png`` and ``<stem>_summary.csv``.

    Parameters
    ----------
    directory : a ``wccsim run`` or ``wccsim sweep`` output directory
    out : path of the HTML file
    max_sqnr_drop_db : float >= 0
        Error budget: a setting qualifies when its network SQNR is at most this many dB below int8's.

    Returns
    -------
    Path of the HTML file.
    """
    if not isinstance(max_sqnr_drop_db, (int, float)) or not math.isfinite(max_sqnr_drop_db) \
            or max_sqnr_drop_db < 0:
        raise InputError("options", "max_sqnr_drop_db", "a finite number >= 0 (dB)", max_sqnr_drop_db)
    res = load_results(directory)                                            # 1. tables from disk
    out = Path(out) if out is not None else res.path / "report.html"
    summary = summary_table(res.totals, max_sqnr_drop_db)                   # 2. budget + best settings
    focus = focus_config(summary)
    figures = build_figures(res, summary, focus)                            # 3. figures
    quality = network_quality(load_network(res.path), focus["hw"])           # 4. network-level points
    extras = network_items(res.path, out)                                   # 5. wccsim network outputs
    page = _page(res, summary, focus, figures, quality, extras, max_sqnr_drop_db)  # 6. HTML
    if quality:
        figures = [*figures, quality[0]]
    for block in figures:                                                    # 7. files, HTML last
        write_bytes(out.with_name(f"{out.stem}_{block.fig_id}.png"), block.png)
    write_text(out.with_name(f"{out.stem}_summary.csv"), summary[list(_SUMMARY_COLS)].to_csv(index=False))
    write_text(out, page)
    return out


def build_figures(res: Results, summary: pd.DataFrame, focus: dict) -> list[FigureBlock]:
    """The report's figures, in `FIGURES` order, for the focus configuration (per-layer views)."""
    df, tot = res.layers, res.totals
    sel = (df[list(focus)] == pd.Series(focus)).all(axis=1)
    wcc, int8 = df[sel & (df.scheme == "wcc")], df[sel & (df.scheme == "int8")]
    cfg = f"{focus['hw']}, rate {focus['cfg_rate']:g}, {focus['cfg_act_bits']}-bit act, " \
          f"{focus['cfg_weight_bits']}-bit weights"
    same = (tot.hw == focus["hw"]) & (tot.cfg_act_bits == focus["cfg_act_bits"]) \
        & (tot.cfg_weight_bits == focus["cfg_weight_bits"])
    rates = tot[same & (tot.scheme == "wcc")].sort_values("cfg_rate", ascending=False)
    int8_tot = tot[same & (tot.scheme == "int8")].iloc[0]
    peak, bw = hw_roofs(res.meta, focus["hw"]) or (None, None)
    figs = [
        ("DRAM traffic per layer", f"WCC ({cfg}) vs int8, stacked by tensor; bitmap = WCC metadata. The bars are "
         "each layer's own reads and writes; what its producer moves to write its input (and a top-k spill) is "
         "not in them but is in the summary's DRAM (layers.csv input_dram_bytes).",
         traffic_per_layer(wcc, int8, f"DRAM traffic per layer: {cfg}")),
        ("Network DRAM traffic vs rate", "Sum over the simulated layers, stacked by tensor; int8 at the left.",
         traffic_vs_rate(rates, int8_tot, f"DRAM traffic vs rate ({focus['hw']})")),
        ("SQNR vs bits per activation", "Network SQNR of the integer datapath against the float conv, "
         "WCC at each (rate, act_bits) vs uniform quantization at the same bit rate (paper, Figure 1).",
         sqnr_vs_bits(tot[tot.hw == focus["hw"]], f"SQNR vs effective bits ({focus['hw']})")),
        ("BOPs vs SQNR", "Every setting and scheme of every hw; line = Pareto front (fewer BOPs, higher SQNR).",
         bops_pareto(tot, "BOPs vs SQNR")),
        ("Cycles per layer", f"{cfg}: WCC vs int8, colored by the bound the cost model reports.",
         cycles_per_layer(wcc, int8, f"Cycles per layer: {cfg}")),
        ("Roofline", f"{cfg}: each layer's attained MACs/cycle vs MACs per DRAM byte under the hw roofs.",
         roofline(wcc, int8, peak, bw, f"Roofline: {cfg}")),
    ]
    return [FigureBlock(fid, title, caption, png_bytes(fig))
            for fid, (title, caption, fig) in zip(FIGURES, figs, strict=True)]


def network_quality(net: pd.DataFrame | None, hw: str) -> tuple[FigureBlock, pd.DataFrame, str] | None:
    """The Figure 4 analogue for `hw` (its first graph output) and the table of every network row, or None
    without network.csv. Returns (figure, display table, caption text)."""
    if net is None:
        return None
    main = net.output.iloc[0]
    rows = net[(net.output == main) & (net.hw == (hw if (net.hw == hw).any() else net.hw.iloc[0]))]
    metric, label = quality_metric(rows.kind.iloc[0])
    title = f"Output quality vs BOPs: {main} ({rows.hw.iloc[0]}, {int(rows.images.iloc[0])} image(s))"
    fig = FigureBlock(NETWORK_FIGURE, "Output quality vs BOPs (whole network)",
                      f"{label} of the network output '{main}' against the float network, vs the BOPs of the "
                      f"{int(rows.layers.iloc[0])} spliced 1x1 layers (other layers run in float and are not "
                      "counted). WCC at each rate vs uniform quantization at the same bits per activation "
                      "(paper, Figure 4).", png_bytes(quality_vs_bops(rows, metric, label, title)))
    text = (f"Network-level points of the sweep (network.csv): each row is the whole network run on every image "
            f"with its 1x1 layers on the datapath; metrics are means over the images, against the float network "
            f"(onnxruntime). Quality measure in the figure: {metric}.")
    return fig, network_table(net), text


def network_table(net: pd.DataFrame) -> pd.DataFrame:
    """network.csv rows in reading units (GBOPs; metrics a kind of output does not have are left out). The
    configured rate and act_bits (the output register) beside the widths the scheme really uses."""
    cols = {"hw": net.hw, "output": net.output, "scheme": net.scheme, "cfg rate": net.cfg_rate,
            "cfg act_bits": net.cfg_act_bits, "act_bits": net.act_bits, "weight_bits": net.weight_bits,
            "bits/act": net.eff_bits_per_act.round(3),
            "GBOPs": (net.bops / 1e9).round(4), "SQNR dB": net.sqnr_db.round(2), "MSE": net.mse}
    for col, name in (("iou", "IoU"), ("top1_agree", "top-1 agree"), ("kl_nats", "KL nats")):
        if net[col].notna().any():
            cols[name] = net[col].round(4)
    return pd.DataFrame(cols)


def network_items(directory: Path, out: Path) -> list:
    """What ``wccsim network`` wrote into the results directory, if anything: a summary table of
    ``network.json`` (mean output drift per scheme), the file itself (collapsed) and its PNG pictures."""
    items = []
    net = directory / "network.json"
    if net.is_file():
        doc = read_json(net)
        settings = {k: v for k, v in doc.items()
                    if isinstance(v, (str, int, float)) and k != "reproduction_max_err"}
        items.append(("text", "wccsim network: " + ", ".join(f"{k} {v}" for k, v in settings.items())))
        drift = _drift_table(doc.get("mean"))
        if drift is not None:
            items.append((drift, None, "network-drift"))
        items.append(("json", doc, "network.json"))
    ours = f"{out.stem}_" if out.parent.resolve() == directory.resolve() else None
    for png in sorted(directory.glob("*.png")):
        if ours and png.name.startswith(ours):
            continue
        items.append(FigureBlock(f"network-{png.stem}", png.stem, f"{png.name} (from wccsim network)",
                                 png.read_bytes()))
    return items


def _drift_table(mean) -> pd.DataFrame | None:
    """{scheme: {output: {metric: value}}} -> one row per (scheme, output); None if not that shape."""
    try:
        rows = [{"scheme": scheme, "output": output, **metrics}
                for scheme, outputs in mean.items() for output, metrics in outputs.items()]
    except AttributeError:
        return None
    return pd.DataFrame(rows) if rows else None


def display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary rows in reading units (settings a scheme really uses; GBOPs, MB, Mcycles, uJ, dB, %)."""
    s = summary
    return pd.DataFrame({
        "hw": s.hw, "scheme": s.scheme, "rate": s.rate, "act_bits": s.act_bits, "weight_bits": s.weight_bits,
        "bits/act": s.eff_bits_per_act.round(3), "GBOPs": (s.bops / 1e9).round(4),
        "DRAM MB": (s.dram_bytes / 1e6).round(4),
        "Mcycles": (s.cycles / 1e6).round(4), "energy uJ": (s.energy_total_pj / 1e6).round(3),
        "SQNR dB": s.sqnr_total_db.round(2), "drop dB": s.sqnr_drop_db.round(2),
        "DRAM saved %": s.dram_saving_pct.round(1), "energy saved %": s.energy_saving_pct.round(1),
        "cycles saved %": s.cycle_saving_pct.round(1), "BOPs saved %": s.bops_saving_pct.round(1),
    })


def _page(res: Results, summary, focus, figures, quality, extras, budget: float) -> str:
    trace = res.meta.get("trace", {})
    meta_lines = [
        f"wccsim {__version__}; results directory {res.path.name} ({res.kind}); trace {trace.get('file')} "
        f"(network {trace.get('network')}, sha256 {str(trace.get('sha256'))[:16]}...)",
        f"{res.layers.layer.nunique()} layers; hardware: {', '.join(sorted(res.layers.hw.unique()))}; "
        f"error budget: layer-aggregate SQNR (the simulated 1x1 layers' output errors summed, not the whole "
        f"network's output) at most {budget:g} dB below int8. Savings are 100 x (1 - scheme / int8) of the "
        f"network totals on the same hardware. DRAM and energy are the simulated 1x1 layers' reads and writes "
        f"plus what their producers (outside the trace) move to write each layer's input in its stored form, "
        f"top-k spills included (wccsim.results.savings); cycles are the layers' own.",
    ]
    spill_text, spill_rows = spills(res, focus)
    spill_text += (" An exact (or threshold) joint top-k holds every position's coefficients and energy before "
                   "it can emit; what does not fit the SRAM is written to DRAM and read back, and the summary's "
                   "DRAM and energy include it. A tiled selector needs one tile (docs/cost.md).")
    unique = summary.drop_duplicates(["hw", "scheme", "rate", "act_bits", "weight_bits"])
    unique = unique.sort_values(["hw", "scheme", "eff_bits_per_act", "rate"], ascending=[True, True, False, False],
                                kind="mergesort")
    best = unique[unique.best | (unique.scheme == "int8")]
    note = ("Best = lowest energy among the settings within the budget that save energy against int8, per hw "
            "and scheme (int8 is the reference). " + " ".join(headline(summary, budget)))
    sections = [
        ("Summary: best setting under the error budget",
         [("text", note), (display_table(best), best.best.map({True: "best", False: ""}), "summary-best")]),
        ("Top-k selections that spill to DRAM",
         [("text", spill_text), *([(spill_rows, None, "topk-spills")] if len(spill_rows) else [])]),
        *[(b.title, [b]) for b in figures],
        *([("Output quality vs BOPs (whole network, the paper's Figure 4)",
            [quality[0], ("text", quality[2]), (quality[1], None, "network-quality")])] if quality else []),
        ("All settings (network totals)",
         [(display_table(unique), unique.best.map({True: "best", False: ""}), "summary-all")]),
    ]
    if extras:
        sections.append(("Network-level results (wccsim network: whole network on images, output drift)", extras))
    return render_html(f"WCC hardware report: {trace.get('network') or res.path.name}", meta_lines, sections)

