"""Files of a `wccsim network` run: network.json, network_layers.csv and one PNG per (image, output).

Pictures (matplotlib, Agg backend), float network | WCC network | uniform-quantized network side by side:
- probability map (e.g. the DB map): top row the map over the photo, bottom row the map binarized at the
  threshold (what DB's post-processing turns into boxes), IoU and SQNR vs float in the titles;
- class scores: the photo and the three probability vectors as grouped bars.
Other outputs get numbers only. Every file is written atomically (`wccsim.atomic`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from wccsim.atomic import write_bytes, write_text
from wccsim.network.drift import OutputKind, output_kind, probabilities
from wccsim.network.hooks import Mode

__all__ = ["figure_png", "write_network_outputs"]

_COLUMNS = ((Mode.FLOAT, "float"), (Mode.WCC, "WCC"), (Mode.UNIFORM, "uniform"))


def _titles(run, name: str, summary: dict) -> list[str]:
    """Panel titles: mode, bits and the drift numbers vs float."""
    def drift(mode):
        d = run.drift[mode][name]
        parts = [f"IoU {d['iou']:.3f}" if "iou" in d else "",
                 f"top-1 {'=' if d.get('top1_agree', 0) == 1 else '!='}, KL {d['kl_nats']:.2g}"
                 if "kl_nats" in d else "",
                 f"SQNR {d['sqnr_db']:.1f} dB"]
        return ", ".join(p for p in parts if p)
    return ["float (onnxruntime)",
            f"WCC rate {summary['rate']:g}, {summary['act_bits']}-bit\n{drift(Mode.WCC)}",
            f"uniform {summary['uniform_bits']}-bit\n{drift(Mode.UNIFORM)}"]


def _map_figure(run, name: str, summary: dict):
    import matplotlib.figure

    maps = [run.reference[name]] + [run.outputs[m][name] for m, _ in _COLUMNS[1:]]
    h, w = run.picture.shape[:2]
    fig = matplotlib.figure.Figure(figsize=(13, 1.2 + 2 * 3.8 * h / w), layout="constrained")
    axes = fig.subplots(2, 3, squeeze=False)
    thr = summary["threshold"]
    for col, (title, m) in enumerate(zip(_titles(run, name, summary), maps)):
        prob = np.asarray(m, np.float64)[0, 0]
        axes[0, col].imshow(run.picture)
        im = axes[0, col].imshow(prob, cmap="inferno", vmin=0.0, vmax=1.0, alpha=0.65)
        axes[1, col].imshow(run.picture)
        axes[1, col].imshow(np.ma.masked_where(prob <= thr, prob > thr), cmap="autumn", alpha=0.6,
                            vmin=0, vmax=1)
        axes[0, col].set_title(title, fontsize=9)
        axes[1, col].set_title(f"map > {thr:g}", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.colorbar(im, ax=axes[0, :], shrink=0.8, label="probability")
    fig.suptitle(f"{run.label}: {name}", fontsize=10)
    return fig


def _class_figure(run, name: str, summary: dict):
    import matplotlib.figure

    fig = matplotlib.figure.Figure(figsize=(11, 3.6), layout="constrained")
    ax_img, ax_bar = fig.subplots(1, 2, width_ratios=[1.3, 1])
    ax_img.imshow(run.picture)
    ax_img.set_axis_off()
    ax_img.set_title(f"{run.label}: network input", fontsize=9)
    probs = [probabilities(run.reference[name])[0]] + \
        [probabilities(run.outputs[m][name])[0] for m, _ in _COLUMNS[1:]]
    x = np.arange(probs[0].size)
    for i, ((_, label), p) in enumerate(zip(_COLUMNS, probs)):
        ax_bar.bar(x + (i - 1) * 0.27, p, width=0.27, label=label)
    ax_bar.set_xticks(x)
    ax_bar.set_xlabel("class")
    ax_bar.set_ylabel("probability (image 1 of the batch)")
    ax_bar.legend(fontsize=8)
    ax_bar.set_title("\n".join(t.replace("\n", ": ") for t in _titles(run, name, summary)[1:]), fontsize=8)
    return fig


def figure_png(run, name: str, summary: dict) -> bytes | None:
    """PNG bytes of the side-by-side picture of one graph output, or None for an output kind without one."""
    kind = output_kind(run.reference[name])
    if kind is OutputKind.PROB_MAP:
        fig = _map_figure(run, name, summary)
    elif kind is OutputKind.CLASSES:
        fig = _class_figure(run, name, summary)
    else:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_network_outputs(result, out_dir) -> list[Path]:
    """Write network.json, network_layers.csv and the PNGs into `out_dir`; returns the paths written."""
    out = Path(out_dir)
    written = [out / "network.json", out / "network_layers.csv"]
    write_text(written[0], json.dumps(result.summary, indent=2, allow_nan=False) + "\n")
    write_text(written[1], result.layers.to_csv(index=False))
    outputs = result.summary["model"]["outputs"]
    for run in result.images:
        for name in outputs:
            png = figure_png(run, name, result.summary)
            if png is not None:
                path = out / (f"{run.label}.png" if len(outputs) == 1 else f"{run.label}_{_safe(name)}.png")
                write_bytes(path, png)
                written.append(path)
    return written
