"""Report figures (matplotlib, no pyplot state): each function takes result tables and returns a Figure.

Units: bytes for traffic (plotted in kB / MB), cycles, MACs, BOPs, dB; every axis names its unit. Colours
come from the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies); hardware
configs are told apart by marker, schemes by colour and line style, bit widths by colour.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["TRAFFIC_PARTS", "OKABE_ITO", "HW_MARKERS", "traffic_per_layer", "traffic_vs_rate", "sqnr_vs_bits",
           "bops_pareto", "cycles_per_layer", "roofline", "quality_vs_bops", "coef_designs", "png_bytes"]

# DRAM traffic components (column, legend label), stacked in this order.
TRAFFIC_PARTS = (("act_read_bytes", "activations"), ("weight_read_bytes", "weights"),
                 ("bitmap_bytes", "bitmap"), ("output_write_bytes", "outputs"))
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
_COLORS = {"activations": "#0072B2", "weights": "#E69F00", "bitmap": "#009E73", "outputs": "#CC79A7"}
_SCHEME_STYLE = {"wcc": ("#D55E00", "o"), "uniform_nbit": ("#0072B2", "s"), "int8": ("#000000", "*"),
                 "zvc": ("#009E73", "^")}
_BOUND_COLORS = {"compute": "#0072B2", "memory": "#D55E00"}
HW_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<")


def png_bytes(fig: Figure) -> bytes:
    """PNG of a figure (no software/date metadata, so equal figures give equal bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return buf.getvalue()


def _finish(fig: Figure, ax, title: str, xlabel: str | None = None, ylabel: str | None = None, *,
            grid: str = "both", which: str = "major", legend: str = "best", legend_size: int = 8) -> Figure:
    """Axis labels (with units), title, legend and grid of a single-axes report figure; returns the figure."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(loc=legend, fontsize=legend_size)
    ax.grid(axis=grid, alpha=0.3, which=which)
    return fig


def _stacked_barh(ax, y, parts: pd.DataFrame, height: float, scale: float, hatch=None, labels=True):
    left = np.zeros(len(parts))
    for col, label in TRAFFIC_PARTS:
        vals = parts[col].to_numpy(dtype=float) / scale
        ax.barh(y, vals, height, left=left, color=_COLORS[label], hatch=hatch, edgecolor="white",
                linewidth=0.3, label=label if labels else None)
        left += vals


def traffic_per_layer(wcc: pd.DataFrame, int8: pd.DataFrame, title: str) -> Figure:
    """Horizontal stacked bars per layer: WCC (solid) above int8 (hatched), DRAM kB."""
    n = len(wcc)
    fig = Figure(figsize=(9, 1.2 + 0.32 * n), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)
    _stacked_barh(ax, y - 0.2, wcc, 0.38, 1e3)
    _stacked_barh(ax, y + 0.2, int8, 0.38, 1e3, hatch="//", labels=False)
    ax.set_yticks(y, [f"{name}" for name in wcc.layer], fontsize=7)
    ax.invert_yaxis()
    return _finish(fig, ax, title,
                   "DRAM traffic per layer [kB]  (upper bar WCC, lower hatched bar int8)", grid="x",
                   legend="lower right")


def traffic_vs_rate(tot: pd.DataFrame, int8: pd.Series, title: str) -> Figure:
    """Network DRAM traffic (MB, stacked) for int8 and each WCC rate (rows of `tot`, one per rate)."""
    bars = pd.concat([int8.to_frame().T, tot], ignore_index=True)
    labels = ["int8"] + [f"WCC r={r:g}\n{b:g} bit/act" for r, b in zip(tot.cfg_rate, tot.eff_bits_per_act)]
    fig = Figure(figsize=(max(5.0, 1.2 * len(bars) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    bottom = np.zeros(len(bars))
    for col, label in TRAFFIC_PARTS:
        vals = bars[col].to_numpy(dtype=float) / 1e6
        ax.bar(np.arange(len(bars)), vals, 0.6, bottom=bottom, color=_COLORS[label], label=label)
        bottom += vals
    for x, v in enumerate(bottom):
        ax.annotate(f"{v:.2f}", (x, v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(np.arange(len(bars)), labels, fontsize=8)
    return _finish(fig, ax, title, None, "network DRAM traffic [MB]", grid="y")


def sqnr_vs_bits(tot: pd.DataFrame, title: str) -> Figure:
    """Network SQNR vs effective bits per activation: WCC vs uniform quantization, a line per configured
    act_bits (which is also the output register width of both), int8 as a star."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    lines = [(scheme, style, what, bits, g) for scheme, style, what in (("wcc", "o-", "WCC"), ("uniform_nbit", "s--",
                                                                                            "uniform"))
             for bits, g in tot[tot.scheme == scheme].groupby("cfg_act_bits")]
    for i, (scheme, style, what, bits, g) in enumerate(lines):
        g = g.drop_duplicates("eff_bits_per_act").sort_values("eff_bits_per_act")
        ax.plot(g.eff_bits_per_act, g.sqnr_total_db, style, color=OKABE_ITO[i % 7], label=f"{what}, act_bits={bits}")
    int8 = tot[tot.scheme == "int8"].drop_duplicates("sqnr_total_db")
    ax.plot(int8.eff_bits_per_act, int8.sqnr_total_db, "*", ms=12, color="#000000", label="int8")
    return _finish(fig, ax, title,
                   "effective bits per activation [bit] (rate x act_bits; bitmap excluded)",
                   "network SQNR vs float conv [dB]")


def bops_pareto(tot: pd.DataFrame, title: str) -> Figure:
    """Network BOPs (log) vs network SQNR for every setting and scheme (colour) and hardware config (marker);
    the Pareto front is drawn per hardware config."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    pts = tot.drop_duplicates(["hw", "scheme", "bops", "sqnr_total_db"])
    for h, (hw, per_hw) in enumerate(pts.groupby("hw", sort=True)):
        marker = HW_MARKERS[h % len(HW_MARKERS)]
        for scheme, g in per_hw.groupby("scheme", sort=True):
            ax.scatter(g.bops / 1e9, g.sqnr_total_db, c=_SCHEME_STYLE.get(scheme, ("#000000",))[0], marker=marker,
                       s=40, label=f"{scheme} on {hw}", zorder=3)
        front = pareto_front(per_hw.bops.to_numpy(float), per_hw.sqnr_total_db.to_numpy(float))
        f = per_hw.iloc[front].sort_values("bops")
        ax.step(f.bops / 1e9, f.sqnr_total_db, where="post", color="#000000", lw=1, alpha=0.6,
                ls=("-", "--", ":", "-.")[h % 4], label=f"Pareto front, {hw}")
    ax.set_xscale("log")
    return _finish(fig, ax, title,
                   "network BOPs [G bit-op]  (MACs x weight_bits x act_bits + Haar adds)", "network SQNR [dB]",
                   which="both")


def pareto_front(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Indices of points not dominated (lower-or-equal cost and higher-or-equal quality, one strictly)."""
    keep = []
    for i in range(len(cost)):
        no_worse = (cost <= cost[i]) & (quality >= quality[i])
        dominated = np.any(no_worse & ((cost < cost[i]) | (quality > quality[i])))
        if not dominated:
            keep.append(i)
    return np.asarray(keep, dtype=int)


def cycles_per_layer(wcc: pd.DataFrame, int8: pd.DataFrame, title: str) -> Figure:
    """Cycles per layer (log), WCC and int8 side by side, colored by compute/memory bound."""
    n = len(wcc)
    fig = Figure(figsize=(9, 1.2 + 0.32 * n), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)
    for dy, df, hatch in ((-0.2, wcc, None), (0.2, int8, "//")):
        colors = [_BOUND_COLORS.get(b, "gray") for b in df.bound]
        ax.barh(y + dy, df.cycles.to_numpy(float), 0.38, color=colors, hatch=hatch, edgecolor="white",
                linewidth=0.3)
    for bound, color in _BOUND_COLORS.items():
        ax.barh([0], [0], color=color, label=f"{bound}-bound")
    ax.set_xscale("log")
    ax.set_yticks(y, list(wcc.layer), fontsize=7)
    ax.invert_yaxis()
    return _finish(fig, ax, title,
                   "cycles per layer [cycle]  (upper bar WCC, lower hatched bar int8)", grid="x", which="both",
                   legend="lower right")


def roofline(wcc: pd.DataFrame, int8: pd.DataFrame, peak_macs: float | None, bw_bytes: float | None,
             title: str) -> Figure:
    """Roofline: attained MACs/cycle vs operational intensity (MACs per DRAM byte), one point per layer."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for df, scheme in ((int8, "int8"), (wcc, "wcc")):
        oi = df.macs / (df.dram_read_bytes + df.dram_write_bytes).clip(lower=1)
        perf = df.macs / df.cycles.clip(lower=1)
        color, marker = _SCHEME_STYLE[scheme]
        ax.scatter(oi, perf, c=color, marker=marker, s=30, alpha=0.8, label=f"{scheme} layers", zorder=3)
    if peak_macs and bw_bytes:
        lo = min(ax.get_xlim()[0], 0.5 * peak_macs / bw_bytes)
        hi = max(ax.get_xlim()[1], 4 * peak_macs / bw_bytes)
        xs = np.geomspace(max(lo, 1e-3), hi, 200)
        ax.plot(xs, np.minimum(peak_macs, bw_bytes * xs), color="black", lw=1.5,
                label=f"roof: {peak_macs:g} MAC/cycle, {bw_bytes:g} B/cycle DRAM")
    ax.set_xscale("log")
    ax.set_yscale("log")
    return _finish(fig, ax, title,
                   "operational intensity [MACs per DRAM byte]", "attained MACs per cycle [MAC/cycle]", which="both")


def quality_vs_bops(net: pd.DataFrame, metric: str, label: str, title: str) -> Figure:
    """Network output quality vs BOPs of the spliced 1x1 layers (the paper's Figure 4 on this network).

    `net`: rows of network.csv for one hw and one output. WCC: a line per (act_bits, weight_bits) through its
    rates (points labeled with the rate); uniform quantization: a line per configured (act_bits,
    weight_bits), points labeled with the bits it uses; int8 as a star; float (32 x 32 BOPs per MAC) as a
    dotted vertical line, plus its point when the metric is bounded (IoU, top-1 agreement).
    """
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    lines = [(scheme, style, what, a, w, g) for scheme, style, what in (("wcc", "o-", "WCC"), ("uniform_nbit", "s--",
                                                                                               "uniform"))
             for (a, w), g in net[net.scheme == scheme].groupby(["cfg_act_bits", "cfg_weight_bits"], sort=False)]
    for i, (scheme, style, what, a, w, g) in enumerate(lines):
        g = g.sort_values("bops")
        color = OKABE_ITO[i % 7]
        ax.plot(g.bops / 1e9, g[metric], style, color=color, label=f"{what}, act_bits={a}, weight_bits={w}")
        for x, y, r, n in zip(g.bops / 1e9, g[metric], g.cfg_rate, g.act_bits):
            ax.annotate(f"r={r:g}" if scheme == "wcc" else f"{n}b", (x, y), textcoords="offset points",
                        xytext=(4, 3), fontsize=6, color=color)
    int8 = net[net.scheme == "int8"]
    ax.plot(int8.bops / 1e9, int8[metric], "*", ms=13, color="#000000", label="int8", zorder=4)
    fp = net[net.scheme == "float"]
    if len(fp):
        ax.axvline(float(fp.bops.iloc[0]) / 1e9, color="gray", ls=":", label="float (32 x 32 bit per MAC)")
        if metric != "sqnr_db":
            ax.plot(fp.bops / 1e9, fp[metric], "D", ms=7, color="gray", zorder=4)
    ax.set_xscale("log")
    return _finish(fig, ax, title,
                   "BOPs of the spliced 1x1 layers [G bit-op]  (MACs x weight_bits x act_bits + Haar term)", label,
                   which="both", legend_size=7)


def coef_designs(wcc: pd.DataFrame, int8: pd.Series, metric: str, worst: str | None, label: str, title: str) -> Figure:
    """Coefficient designs x rates: three panels against the WCC rate, one line per design (``cfg_coef``,
    colour and marker): quality (`metric`; `worst` dashed when given), DRAM MB and energy uJ (``dram_bytes``,
    ``energy_total_pj`` of the summary); int8 as a black horizontal line in each (dashed: its worst image).

    `wcc`: summary rows of one hw and bit widths; `int8`: its int8 summary row.
    """
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = ((metric, label, 1.0), ("dram_bytes", "DRAM traffic [MB]", 1e6), ("energy_total_pj", "energy [uJ]", 1e6))
    for i, (design, g) in enumerate(wcc.groupby("cfg_coef", sort=True)):
        g = g.sort_values("cfg_rate")
        color, marker = OKABE_ITO[i % 7], HW_MARKERS[i % len(HW_MARKERS)]  # marker too: lines may coincide
        for ax, (col, _, scale) in zip(axes, panels):
            ax.plot(g.cfg_rate, g[col] / scale, marker + "-", color=color, label=design)
        if worst is not None:
            axes[0].plot(g.cfg_rate, g[worst], marker + "--", color=color, label=f"{design}, worst image")
    if worst is not None and pd.notna(int8.get(worst)):
        axes[0].axhline(float(int8[worst]), color="#000000", lw=1, ls="--", label="int8, worst image")
    for ax, (col, ylabel, scale) in zip(axes, panels):
        if col in int8.index and pd.notna(int8[col]):
            ax.axhline(float(int8[col]) / scale, color="#000000", lw=1, label="int8")
        _finish(fig, ax, ylabel if col != metric else label, "WCC rate (kept fraction of positions)", ylabel,
                legend_size=6)
    fig.suptitle(title, fontsize=10)
    return fig
