"""Files of a `wccsim network` run: network.json, network_layers.csv and one PNG per image.

Pictures (matplotlib, Agg backend), float network | WCC network | uniform-quantized network side by side,
the drift vs float in the titles, per `wccsim.network.drift.OutputKind`:
- ``prob_map`` (e.g. the DB map): top row the map over the photo, bottom row the map binarized at the
  threshold (what DB's post-processing turns into boxes);
- ``seg_logits``: top row the arg-max class map coloured per class (`PALETTE`, colour-blind safe), bottom
  row the photo with the pixels whose class differs from float's marked;
- ``alpha``: top row the matte in grey (0 black, 1 white), bottom row the photo and |alpha - float alpha|;
- ``logits``: top row the output of image 1 as a heat map (rank > 2: mean over the leading axes down to
  the last two), bottom row the photo and |out - float out|;
- ``class``: the photo and the three probability vectors as grouped bars.
Every file is written atomically (`wccsim.atomic`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from wccsim.atomic import write_bytes, write_text
from wccsim.network.drift import KIND_METRICS, OutputKind, probabilities
from wccsim.network.hooks import Mode

__all__ = ["PALETTE", "figure_png", "write_network_outputs"]

_COLUMNS = ((Mode.FLOAT, "float"), (Mode.WCC, "WCC"), (Mode.UNIFORM, "uniform"))
# Okabe & Ito's colour-blind-safe palette (Color Universal Design, 2008); class c gets PALETTE[c % 8].
PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
_MARK = "#FF00FF"  # pixels whose class differs from float's (magenta: not in PALETTE, seen over any photo)


def _kind(summary: dict, name: str) -> OutputKind:
    return OutputKind(summary["model"]["kinds"][name])


def _titles(run, name: str, summary: dict) -> list[str]:
    """Panel titles: mode, bits and the drift numbers of the output's kind and its SQNR vs float."""
    metrics = KIND_METRICS[_kind(summary, name)]

    def drift(mode):
        d = run.drift[mode][name]
        return ", ".join([*(f"{k} {d[k]:.3g}" for k in metrics), f"SQNR {d['sqnr_db']:.1f} dB"])
    return ["float (onnxruntime)",
            f"WCC rate {summary['rate']:g}, {summary['act_bits']}-bit\n{drift(Mode.WCC)}",
            f"uniform {summary['uniform_bits']}-bit\n{drift(Mode.UNIFORM)}"]


def _maps(run, name: str) -> list[np.ndarray]:
    """The float, WCC and uniform outputs in float64."""
    return [np.asarray(run.reference[name], np.float64)] + \
        [np.asarray(run.outputs[m][name], np.float64) for m, _ in _COLUMNS[1:]]


def _grid(run, name: str, summary: dict, aspect: float):
    """A 2 x 3 figure of panels of height/width `aspect`, titled, axes off; returns (fig, axes)."""
    import matplotlib.figure

    fig = matplotlib.figure.Figure(figsize=(13, 1.2 + 2 * 3.8 * aspect), layout="constrained")
    axes = fig.subplots(2, 3, squeeze=False)
    for ax, title in zip(axes[0], _titles(run, name, summary)):
        ax.set_title(title, fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(f"{run.label}: {name}", fontsize=10)
    return fig, axes


def _map_figure(run, name: str, summary: dict):
    h, w = run.picture.shape[:2]
    fig, axes = _grid(run, name, summary, h / w)
    thr = summary["threshold"]
    for col, m in enumerate(_maps(run, name)):
        prob = m[0, 0]
        axes[0, col].imshow(run.picture)
        im = axes[0, col].imshow(prob, cmap="inferno", vmin=0.0, vmax=1.0, alpha=0.65)
        axes[1, col].imshow(run.picture)
        axes[1, col].imshow(np.ma.masked_where(prob <= thr, prob > thr), cmap="autumn", alpha=0.6,
                            vmin=0, vmax=1)
        axes[1, col].set_title(f"map > {thr:g}", fontsize=9)
    fig.colorbar(im, ax=axes[0, :], shrink=0.8, label="probability")
    return fig


def _seg_figure(run, name: str, summary: dict):
    from matplotlib.colors import ListedColormap, to_rgba
    from matplotlib.patches import Patch

    h, w = run.picture.shape[:2]
    fig, axes = _grid(run, name, summary, h / w)
    maps = _maps(run, name)
    classes = [np.argmax(m[0], axis=0) for m in maps]
    n = maps[0].shape[1]
    cmap = ListedColormap([PALETTE[c % len(PALETTE)] for c in range(n)])
    extent = (0, w, h, 0)  # the class map over the photo's pixels, whatever its own resolution
    for col, cls in enumerate(classes):
        axes[0, col].imshow(cls, cmap=cmap, vmin=-0.5, vmax=n - 0.5, interpolation="nearest", extent=extent)
        axes[1, col].imshow(run.picture)
        if col:
            diff = cls != classes[0]
            axes[1, col].imshow(np.where(diff[..., None], np.asarray(to_rgba(_MARK)), 0.0), extent=extent,
                                interpolation="nearest")
            axes[1, col].set_title(f"class != float: {diff.mean():.2%} of pixels", fontsize=9)
    axes[1, 0].set_title("network input", fontsize=9)
    present = np.unique(classes[0])
    fig.legend(handles=[Patch(color=PALETTE[c % len(PALETTE)], label=f"class {c}") for c in present[:16]],
               loc="outside right upper", fontsize=8, title="float arg-max")
    return fig


def _field_figure(run, name: str, summary: dict, plane, cmap: str, limits, label: str, aspect_auto: bool):
    """Top row: `plane(output)` (a 2-D array) in `cmap` within `limits` (or the float plane's range when
    None); bottom row: the photo, then |plane - float plane| of WCC and uniform on one scale."""
    planes = [plane(m) for m in _maps(run, name)]
    h, w = planes[0].shape if aspect_auto else run.picture.shape[:2]
    fig, axes = _grid(run, name, summary, min(max(h / w, 0.25), 1.5))
    lo, hi = limits or (float(planes[0].min()), float(planes[0].max()))
    aspect = "auto" if aspect_auto else None
    for col, p in enumerate(planes):
        im = axes[0, col].imshow(p, cmap=cmap, vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
    errs = [np.abs(p - planes[0]) for p in planes[1:]]
    top = max(float(e.max()) for e in errs) or 1.0
    axes[1, 0].imshow(run.picture)
    axes[1, 0].set_title("network input", fontsize=9)
    for col, e in enumerate(errs, start=1):
        em = axes[1, col].imshow(e, cmap="magma", vmin=0.0, vmax=top, aspect=aspect, interpolation="nearest")
        axes[1, col].set_title("|error| vs float", fontsize=9)
    fig.colorbar(im, ax=axes[0, :], shrink=0.8, label=label)
    fig.colorbar(em, ax=axes[1, :], shrink=0.8, label="|error|")
    return fig


def _alpha_figure(run, name: str, summary: dict):
    return _field_figure(run, name, summary, lambda m: m[0, 0], "gray", (0.0, 1.0), "alpha", False)


def _plane(m: np.ndarray) -> np.ndarray:
    """Image 1 of a batched output as a 2-D array: a vector as one row; rank > 2: mean over the leading axes."""
    a = m[0] if m.ndim > 1 else m
    a = a.reshape(1, -1) if a.ndim < 2 else a
    return a.reshape(-1, *a.shape[-2:]).mean(axis=0)


def _logits_figure(run, name: str, summary: dict):
    return _field_figure(run, name, summary, _plane, "viridis", None, "output value (image 1)", True)


def _class_figure(run, name: str, summary: dict):
    import matplotlib.figure

    fig = matplotlib.figure.Figure(figsize=(11, 3.6), layout="constrained")
    ax_img, ax_bar = fig.subplots(1, 2, width_ratios=[1.3, 1])
    ax_img.imshow(run.picture)
    ax_img.set_axis_off()
    ax_img.set_title(f"{run.label}: network input", fontsize=9)
    probs = [probabilities(m)[0] for m in _maps(run, name)]
    x = np.arange(probs[0].size)
    for i, ((_, label), p) in enumerate(zip(_COLUMNS, probs)):
        ax_bar.bar(x + (i - 1) * 0.27, p, width=0.27, label=label)
    ax_bar.set_xticks(x)
    ax_bar.set_xlabel("class")
    ax_bar.set_ylabel("probability (image 1 of the batch)")
    ax_bar.legend(fontsize=8)
    ax_bar.set_title("\n".join(t.replace("\n", ": ") for t in _titles(run, name, summary)[1:]), fontsize=8)
    return fig


_FIGURES = {OutputKind.PROB_MAP: _map_figure, OutputKind.SEG_LOGITS: _seg_figure, OutputKind.ALPHA: _alpha_figure,
            OutputKind.LOGITS: _logits_figure, OutputKind.CLASS: _class_figure}


def figure_png(run, name: str, summary: dict) -> bytes:
    """PNG bytes of the side-by-side picture of one measured graph output (its kind from ``summary``)."""
    fig = _FIGURES[_kind(summary, name)](run, name, summary)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def write_network_outputs(result, out_dir) -> list[Path]:
    """Write network.json, network_layers.csv and the PNGs into `out_dir`; returns the paths written."""
    out = Path(out_dir)
    written = [out / "network.json", out / "network_layers.csv"]
    write_text(written[0], json.dumps(result.summary, indent=2, allow_nan=False) + "\n")
    write_text(written[1], result.layers.to_csv(index=False))
    (name,) = result.summary["model"]["outputs"]  # the measured output (--output)
    for run in result.images:
        written.append(out / f"{run.label}.png")
        write_bytes(written[-1], figure_png(run, name, result.summary))
    return written
