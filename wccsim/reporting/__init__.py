"""``wccsim report``: one self-contained HTML page (plus PNGs and a CSV summary) from a run or sweep directory.

Figures: DRAM traffic per layer and vs rate (stacked activations / weights / bitmap / outputs) beside int8;
SQNR vs effective bits per activation (WCC vs uniform quantization, the paper's Figure 1 on this network);
BOPs vs SQNR with the Pareto front; cycles per layer by bound and a roofline; coefficient designs x rates
(quality, DRAM, energy); tables with the best setting under a quality budget relative to int8, judged on
the whole-network output (mean and worst evaluation image) where the sweep has network rows and on the
layer aggregate otherwise (`wccsim.reporting.tables`). A sweep with network-level points (``network.csv``)
adds output quality vs BOPs for WCC and uniform quantization (the paper's Figure 4 on this network).
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
    bops_pareto, coef_designs, cycles_per_layer, png_bytes, quality_vs_bops, roofline, sqnr_vs_bits,
    traffic_per_layer, traffic_vs_rate,
)
from wccsim.reporting.inputs import read_json
from wccsim.reporting.tables import (
    DEFAULT_SCORE_DROP, Results, coef_headline, focus_config, headline, hw_roofs, load_network, load_results,
    main_output, spills, summary_table, worse_side,
)
from wccsim.results import NETWORK_METRICS, quality_metric

__all__ = ["FIGURES", "NETWORK_FIGURE", "report", "build_figures", "network_quality", "network_items",
           "display_table", "network_table", "coef_table", "budget_notes"]

FIGURES = ("traffic_layers", "traffic_rate", "sqnr_bits", "bops_pareto", "cycles_layers", "roofline", "coef_designs")
NETWORK_FIGURE = "network_quality"  # only when the directory has network.csv
_SUMMARY_COLS = ("hw", "scheme", "cfg_coef", "cfg_rate", "cfg_act_bits", "cfg_weight_bits", "rate", "act_bits",
                 "weight_bits",
                 "eff_bits_per_act", "bops",
                 "dram_read_bytes", "dram_write_bytes", "dram_bytes", "cycles", "energy_pj", "energy_total_pj",
                 "sqnr_total_db",
                 "sqnr_drop_db", "dram_saving_pct", "energy_saving_pct", "cycle_saving_pct", "bops_saving_pct",
                 "quality_basis", "shortfall", "within_budget", "best")
_NET_SUMMARY_COLS = ("net_metric", "net_mean", "net_worst", "net_drop", "net_drop_worst", "net_budget")


def report(directory, out=None, *, max_sqnr_drop_db: float = 1.0, max_score_drop: float = DEFAULT_SCORE_DROP) -> Path:
    """Write ``out`` (default ``DIR/report.html``), ``<stem>_<figure>.png`` and ``<stem>_summary.csv``.

    Parameters
    ----------
    directory : a ``wccsim run`` or ``wccsim sweep`` output directory
    out : path of the HTML file
    max_sqnr_drop_db : float >= 0
        Quality budget in dB: a setting qualifies when its SQNR (the network output's, mean and worst image,
        where the sweep has network rows of an SQNR-measured output; else the layer aggregate's) is at most
        this many dB below int8's.
    max_score_drop : float >= 0
        Quality budget on a network output measured by an agreement score in [0, 1] (IoU, top-1 agreement):
        at most this far below int8's, mean and worst image.

    Returns
    -------
    Path of the HTML file.
    """
    for name, value, unit in (("max_sqnr_drop_db", max_sqnr_drop_db, "dB"), ("max_score_drop", max_score_drop, "")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputError("options", name, f"a finite number >= 0 {unit}".strip(), value)
    res = load_results(directory)                                            # 1. tables from disk
    net = load_network(res)
    out = Path(out) if out is not None else res.path / "report.html"
    summary = summary_table(res.totals, max_sqnr_drop_db, net, max_score_drop)  # 2. budget + best settings
    focus = focus_config(summary)
    figures = build_figures(res, summary, focus)                            # 3. figures
    quality = network_quality(net, focus)                                   # 4. network-level points
    extras = network_items(res.path, out)                                   # 5. wccsim network outputs
    page = _page(res, summary, focus, figures, quality, extras, max_sqnr_drop_db, net)  # 6. HTML
    if quality:
        figures = [*figures, quality[0]]
    for block in figures:                                                    # 7. files, HTML last
        write_bytes(out.with_name(f"{out.stem}_{block.fig_id}.png"), block.png)
    cols = [*_SUMMARY_COLS, *(_NET_SUMMARY_COLS if net is not None else ())]
    write_text(out.with_name(f"{out.stem}_summary.csv"), summary[cols].to_csv(index=False))
    write_text(out, page)
    return out


def build_figures(res: Results, summary: pd.DataFrame, focus: dict) -> list[FigureBlock]:
    """The report's figures, in `FIGURES` order, for the focus configuration (per-layer views)."""
    df, tot = res.layers, res.totals
    sel = (df[list(focus)] == pd.Series(focus)).all(axis=1)
    wcc, int8 = df[sel & (df.scheme == "wcc")], df[sel & (df.scheme == "int8")]
    cfg = f"{focus['hw']}, coef {focus['cfg_coef']}, rate {focus['cfg_rate']:g}, {focus['cfg_act_bits']}-bit act, " \
          f"{focus['cfg_weight_bits']}-bit weights"
    same = (tot.hw == focus["hw"]) & (tot.cfg_coef == focus["cfg_coef"]) \
        & (tot.cfg_act_bits == focus["cfg_act_bits"]) & (tot.cfg_weight_bits == focus["cfg_weight_bits"])
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
         sqnr_vs_bits(tot[(tot.hw == focus["hw"]) & (tot.cfg_coef == focus["cfg_coef"])],
                      f"SQNR vs effective bits ({focus['hw']}, coef {focus['cfg_coef']})")),
        ("BOPs vs SQNR", "Every setting and scheme of every hw; line = Pareto front (fewer BOPs, higher SQNR).",
         bops_pareto(tot, "BOPs vs SQNR")),
        ("Cycles per layer", f"{cfg}: WCC vs int8, colored by the bound the cost model reports.",
         cycles_per_layer(wcc, int8, f"Cycles per layer: {cfg}")),
        ("Roofline", f"{cfg}: each layer's attained MACs/cycle vs MACs per DRAM byte under the hw roofs.",
         roofline(wcc, int8, peak, bw, f"Roofline: {cfg}")),
        _coef_figure(summary, focus),
    ]
    return [FigureBlock(fid, title, caption, png_bytes(fig))
            for fid, (title, caption, fig) in zip(FIGURES, figs, strict=True)]


def _coef_figure(summary: pd.DataFrame, focus: dict) -> tuple[str, str, object]:
    """(title, caption, figure) of coefficient designs x rates at the focus's hw and bit widths."""
    same = (summary.hw == focus["hw"]) & (summary.cfg_act_bits == focus["cfg_act_bits"]) \
        & (summary.cfg_weight_bits == focus["cfg_weight_bits"])
    wcc, int8 = summary[same & (summary.scheme == "wcc")], summary[same & (summary.scheme == "int8")].iloc[0]
    network = (wcc.quality_basis == "network").all()
    metric, label = ("net_mean", f"network output {wcc.net_metric.iloc[0]}") if network \
        else ("sqnr_total_db", "layer-aggregate SQNR [dB]")
    cfg = f"{focus['hw']}, {focus['cfg_act_bits']}-bit act, {focus['cfg_weight_bits']}-bit weights"
    quality = f"{label} (mean over the evaluation images, solid; worst image, dashed)" if network else label
    return ("Coefficient designs x rates",
            f"{cfg}: WCC with each coefficient quantizer design (cfg_coef: granularity:scale) at each rate: "
            f"{quality}, DRAM bytes and energy (with the producers' share, as in the summary); int8 as a black line.",
            coef_designs(wcc, int8, metric, "net_worst" if network else None, label,
                         f"Coefficient designs x rates ({cfg})"))


def network_quality(net: pd.DataFrame | None, focus: dict) -> tuple[FigureBlock, pd.DataFrame, str] | None:
    """The Figure 4 analogue for the focus's hw and coefficient design (the main graph output) and the
    table of every network row, or None without network.csv. Returns (figure, display table, caption text)."""
    if net is None:
        return None
    main = main_output(net)
    rows = net[(net.output == main) & (net.hw == focus["hw"]) & (net.cfg_coef == focus["cfg_coef"])]
    metric, label = quality_metric(rows.kind.iloc[0])
    title = f"Output quality vs BOPs: {main} ({rows.hw.iloc[0]}, coef {focus['cfg_coef']}, " \
            f"{int(rows.images.iloc[0])} image(s))"
    fig = FigureBlock(NETWORK_FIGURE, "Output quality vs BOPs (whole network)",
                      f"{label} of the network output '{main}' against the float network, vs the BOPs of the "
                      f"{int(rows.layers.iloc[0])} spliced 1x1 layers (other layers run in float and are not "
                      "counted). WCC at each rate vs uniform quantization at the same bits per activation "
                      "(paper, Figure 4).", png_bytes(quality_vs_bops(rows, metric, label, title)))
    text = (f"Network-level points of the sweep (network.csv): each row is the whole network run on every "
            f"evaluation image with its 1x1 layers on the datapath; metrics are means over the images (worst: the "
            f"worst single image, where network.csv has it), against the float network (onnxruntime). Quality "
            f"measure in the figure: {metric} (mean).")
    return fig, network_table(net), text


def network_table(net: pd.DataFrame) -> pd.DataFrame:
    """network.csv rows in reading units (GBOPs; metrics a kind of output does not have are left out). The
    configured rate and act_bits (the output register) beside the widths the scheme really uses."""
    cols = {"hw": net.hw, "coef": net.cfg_coef, "output": net.output, "scheme": net.scheme, "cfg rate": net.cfg_rate,
            "cfg act_bits": net.cfg_act_bits, "act_bits": net.act_bits, "weight_bits": net.weight_bits,
            "bits/act": net.eff_bits_per_act.round(3),
            "GBOPs": (net.bops / 1e9).round(4), "SQNR dB": net.sqnr_db.round(2), "MSE": net.mse}
    for col, name in (("iou", "IoU"), ("top1_agree", "top-1 agree"), ("kl_nats", "KL nats")):
        if net[col].notna().any():
            cols[name] = net[col].round(4)
    for col in NETWORK_METRICS:  # worst image, where network.csv has it
        if f"{col}_worst" in net.columns and net[f"{col}_worst"].notna().any() and col in ("sqnr_db", "iou",
                                                                                          "top1_agree"):
            cols[f"{col} worst"] = net[f"{col}_worst"].round(4)
    for col in ("images", "empty_images", "calib_images", "calibration"):
        if col in net.columns:
            cols[col.replace("_", " ")] = net[col]
    return pd.DataFrame(cols)


def coef_table(summary: pd.DataFrame) -> pd.DataFrame:
    """WCC per hw x coefficient design x (act_bits, weight_bits) x rate in reading units: quality on its basis
    (network mean and worst, or layer SQNR), DRAM MB, energy uJ, savings vs int8, within budget."""
    s = summary[summary.scheme == "wcc"].sort_values(["hw", "cfg_coef", "cfg_act_bits", "cfg_weight_bits", "cfg_rate"],
                                                     ascending=[True, True, False, False, False], kind="mergesort")
    cols = {"hw": s.hw, "coef": s.cfg_coef, "act_bits": s.act_bits, "weight_bits": s.weight_bits, "rate": s.rate,
            "judged on": s.quality_basis}
    if "net_mean" in s.columns:
        cols.update({"net metric": s.net_metric, "net mean": s.net_mean.round(4), "net worst": s.net_worst.round(4),
                     "net drop": s.net_drop.round(4), "net drop worst": s.net_drop_worst.round(4)})
    cols.update({"layer SQNR dB": s.sqnr_total_db.round(2), "DRAM MB": (s.dram_bytes / 1e6).round(4),
                 "energy uJ": (s.energy_total_pj / 1e6).round(3), "DRAM saved %": s.dram_saving_pct.round(1),
                 "energy saved %": s.energy_saving_pct.round(1), "within budget": s.within_budget})
    return pd.DataFrame(cols)


def budget_notes(summary: pd.DataFrame, net: pd.DataFrame | None, budget_db: float) -> str:
    """What the budget is judged on, in words: the network output (which, which measure, mean and worst,
    the calibration set, images left out) where network rows exist, the layer aggregate otherwise."""
    layer = (f"the layer aggregate (the simulated 1x1 layers' output errors summed, not the whole network's "
             f"output): SQNR at most {budget_db:g} dB below int8")
    if net is None:
        return f"Quality budget judged on {layer}."
    on_net = summary[summary.quality_basis == "network"]
    r = on_net.iloc[0]
    unit = " dB" if r.net_metric.endswith("_db") else ""
    main = net[net.output == main_output(net)]
    parts = [f"Quality budget judged on the whole-network output '{main_output(net)}' for "
             f"{', '.join(sorted(on_net.scheme.unique()))}: its {r.net_metric} at most {r.net_budget:g}{unit} "
             f"{worse_side(r.net_metric)} "
             f"int8's, on the mean over the {int(main.images.max())} evaluation image(s) and on the worst image "
             f"(against int8's worst); on {layer} for the schemes without network points "
             f"({', '.join(sorted(summary[summary.quality_basis == 'layer'].scheme.unique())) or 'none'})."]
    if on_net.net_worst.isna().all():
        parts.append("This network.csv predates the worst-image columns: worst-image figures are absent and the "
                     "budget is judged on the mean alone.")
    if "calibration" in net.columns and (net.calibration == "on_eval").any():
        parts.append("The network figures are optimistic: the scales were calibrated on the evaluation images "
                     "themselves (calibration on_eval).")
    elif "calibration" not in net.columns:
        parts.append("This network.csv does not say which images calibrated the scales (older sweep): the network "
                     "figures may have been calibrated on the evaluation images and be optimistic.")
    if "empty_images" in net.columns and main.empty_images.max() > 0:
        parts.append(f"{int(main.empty_images.max())} evaluation image(s) have an empty float output and are left "
                     f"out of the IoU, SQNR and relative-error means and worsts, which have no meaning on an empty map "
                     f"(their absolute errors still count; counted in network.csv's empty_images).")
    return " ".join(parts)


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
        "hw": s.hw, "scheme": s.scheme, "coef": s.cfg_coef.where(s.scheme == "wcc", ""), "rate": s.rate,
        "act_bits": s.act_bits, "weight_bits": s.weight_bits,
        "bits/act": s.eff_bits_per_act.round(3), "GBOPs": (s.bops / 1e9).round(4),
        "DRAM MB": (s.dram_bytes / 1e6).round(4),
        "Mcycles": (s.cycles / 1e6).round(4), "energy uJ": (s.energy_total_pj / 1e6).round(3),
        "SQNR dB": s.sqnr_total_db.round(2), "drop dB": s.sqnr_drop_db.round(2),
        "DRAM saved %": s.dram_saving_pct.round(1), "energy saved %": s.energy_saving_pct.round(1),
        "cycles saved %": s.cycle_saving_pct.round(1), "BOPs saved %": s.bops_saving_pct.round(1),
    })


def _page(res: Results, summary, focus, figures, quality, extras, budget: float, net) -> str:
    trace = res.meta.get("trace", {})
    meta_lines = [
        f"wccsim {__version__}; results directory {res.path.name} ({res.kind}); trace {trace.get('file')} "
        f"(network {trace.get('network')}, sha256 {str(trace.get('sha256'))[:16]}...)",
        f"{res.layers.layer.nunique()} layers; hardware: {', '.join(sorted(res.layers.hw.unique()))}; "
        f"coefficient designs: {', '.join(sorted(res.layers.cfg_coef.unique()))}. "
        f"{budget_notes(summary, net, budget)} Savings are 100 x (1 - scheme / int8) of the "
        f"network totals on the same hardware. DRAM and energy are the simulated 1x1 layers' reads and writes "
        f"plus what their producers (outside the trace) move to write each layer's input in its stored form, "
        f"top-k spills included (wccsim.results.savings); cycles are the layers' own.",
    ]
    spill_text, spill_rows = spills(res, focus)
    spill_text += (" An exact (or threshold) joint top-k holds every position's coefficients and energy before "
                   "it can emit; what does not fit the SRAM is written to DRAM and read back, and the summary's "
                   "DRAM and energy include it. A tiled selector needs one tile (docs/cost.md).")
    design = summary.cfg_coef.where(summary.scheme == "wcc", "")  # only WCC runs the coefficient quantizer
    unique = summary[~summary.assign(_design=design).duplicated(["hw", "scheme", "_design", "rate", "act_bits",
                                                                  "weight_bits"])]
    unique = unique.sort_values(["hw", "scheme", "eff_bits_per_act", "rate"], ascending=[True, True, False, False],
                                kind="mergesort")
    best = unique[unique.best | (unique.scheme == "int8")]
    note = ("Best = lowest energy among the settings within the budget that save energy against int8, per hw "
            "and scheme (int8 is the reference). " + " ".join(headline(summary, budget)))
    coef_note = ("Cheapest WCC setting within the budget per hw and coefficient design: "
                 + " ".join(coef_headline(summary, budget)))
    coef_fig = next(b for b in figures if b.fig_id == "coef_designs")
    sections = [
        ("Summary: best setting under the quality budget",
         [("text", note), (display_table(best), best.best.map({True: "best", False: ""}), "summary-best")]),
        ("Top-k selections that spill to DRAM",
         [("text", spill_text), *([(spill_rows, None, "topk-spills")] if len(spill_rows) else [])]),
        *[(b.title, [b]) for b in figures if b is not coef_fig],
        (coef_fig.title, [("text", coef_note), coef_fig, (coef_table(summary), None, "coef-designs")]),
        *([("Output quality vs BOPs (whole network, the paper's Figure 4)",
            [quality[0], ("text", quality[2]), (quality[1], None, "network-quality")])] if quality else []),
        ("All settings (network totals)",
         [(display_table(unique), unique.best.map({True: "best", False: ""}), "summary-all")]),
    ]
    if extras:
        sections.append(("Network-level results (wccsim network: whole network on images, output drift)", extras))
    return render_html(f"WCC hardware report: {trace.get('network') or res.path.name}", meta_lines, sections)

