"""Network inputs for `wccsim network`: the trace-capture presets (`wccsim.capture.images`) applied per image.

Image loading (file or ``skimage:NAME``) and the PP-OCR preprocessing (rapidocr-onnxruntime 1.4.4: BGR,
``(v / 255 - 0.5) / 0.5``, detector sides multiples of 32 with the short side at 736 by default,
classifier 48 x 192 text line) live in `wccsim.capture.images`, shared with trace capture; this module
only picks the preset for a model, applies the ``--mean`` / ``--std`` / ``--channel-order`` overrides and
returns the picture the network sees, for the plots.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from wccsim.capture.images import PRESETS, Preprocess, preprocess_images
from wccsim.errors import InputError

if TYPE_CHECKING:  # onnx is an optional extra, imported where a model is loaded
    import onnx

__all__ = ["AUTO", "CHANNEL_ORDERS", "resolve_preset", "override_preset", "normalization", "network_input",
           "image_label"]

AUTO = "auto"
CHANNEL_ORDERS = ("rgb", "bgr")


def resolve_preset(model: onnx.ModelProto, name: str, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, channel_order: str | None = None) -> Preprocess:
    """The named preset, or for ``auto`` the PP-OCR one the model's first output implies (rank 2, class
    scores -> ``ppocr_cls``, anything else, a dense map -> ``ppocr_det``), with `override_preset` applied."""
    if name == AUTO:
        out = model.graph.output[0].type.tensor_type
        rank = len(out.shape.dim) if out.HasField("shape") else None
        name = "ppocr_cls" if rank == 2 else "ppocr_det"
    if name not in PRESETS:
        raise InputError("--preprocess", "", f"one of {[AUTO, *PRESETS]}", name)
    return override_preset(PRESETS[name], mean, std, channel_order)


def override_preset(preset: Preprocess, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    channel_order: str | None = None) -> Preprocess:
    """`preset` with its mean, std (per colour R, G, B, on ``v / 255``) and channel order replaced where given.

    The values are per colour whatever the channel order (``--mean 0.485,0.456,0.406 --channel-order bgr``
    subtracts 0.485 from the red channel, which the model gets as channel 2); a preset's own values keep
    their colour when only the order changes. std must be positive, every value finite.
    """
    if channel_order is not None and channel_order not in CHANNEL_ORDERS:
        raise InputError("--channel-order", "", f"one of {list(CHANNEL_ORDERS)}", channel_order)
    norm = normalization(preset)
    bgr = preset.bgr if channel_order is None else channel_order == "bgr"
    mean_rgb = norm["mean_rgb"] if mean is None else _colours("--mean", mean, positive=False)
    std_rgb = norm["std_rgb"] if std is None else _colours("--std", std, positive=True)
    order = slice(None, None, -1 if bgr else 1)
    return dataclasses.replace(preset, bgr=bgr, mean=tuple(mean_rgb[order]), std=tuple(std_rgb[order]))


def normalization(preset: Preprocess) -> dict:
    """The preset's channel order and its mean and std per colour (R, G, B), for network.json."""
    order = slice(None, None, -1 if preset.bgr else 1)
    return {"channel_order": "bgr" if preset.bgr else "rgb", "mean_rgb": list(preset.mean)[order],
            "std_rgb": list(preset.std)[order]}


def _colours(flag: str, values: Sequence[float], positive: bool) -> list[float]:
    """Three finite floats (positive ones for a std), else an `InputError` naming the flag."""
    want = f"three {'positive ' if positive else ''}numbers R,G,B"
    try:
        vals = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InputError(flag, "", want, values) from None
    if len(vals) != 3 or not all(math.isfinite(v) and (v > 0 or not positive) for v in vals):
        raise InputError(flag, "", want, ",".join(f"{v:g}" for v in vals))
    return vals


def network_input(rgb: np.ndarray, preset: Preprocess,
                  size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess one RGB uint8 image (H, W, 3).

    Returns
    -------
    x : float32 (1, 3, H', W')
        The network input.
    picture : uint8 (H', W', 3)
        RGB picture of what the network sees (normalization undone; padding black), for overlays.
    """
    x = preprocess_images([rgb], preset, size)
    v = x[0].transpose(1, 2, 0) * np.asarray(preset.std) + np.asarray(preset.mean)
    if preset.bgr:
        v = v[:, :, ::-1]
    return x, np.clip(np.round(v * 255.0), 0, 255).astype(np.uint8)


def image_label(spec: str) -> str:
    """Short file-name-safe label for an image spec: ``skimage:astronaut`` -> ``astronaut``."""
    stem = spec.split(":", 1)[1] if spec.startswith("skimage:") else Path(spec).stem
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem) or "image"
