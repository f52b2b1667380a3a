"""Network inputs for `wccsim network`: the trace-capture presets (`wccsim.capture.images`) applied per image.

Image loading (file or ``skimage:NAME``) and the PP-OCR preprocessing (rapidocr-onnxruntime 1.4.4: BGR,
``(v / 255 - 0.5) / 0.5``, detector sides multiples of 32 with the short side at 736 by default,
classifier 48 x 192 text line) live in `wccsim.capture.images`, shared with trace capture; this module
only picks the preset for a model and returns the picture the network sees, for the plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wccsim.capture.images import PRESETS, Preprocess, preprocess_images
from wccsim.errors import InputError

if TYPE_CHECKING:  # onnx is an optional extra, imported where a model is loaded
    import onnx

__all__ = ["AUTO", "resolve_preset", "network_input", "image_label"]

AUTO = "auto"


def resolve_preset(model: onnx.ModelProto, name: str) -> Preprocess:
    """The named preset, or for ``auto`` the PP-OCR one the model's first output implies: rank 2
    (class scores) -> ``ppocr_cls``, anything else (a dense map) -> ``ppocr_det``."""
    if name != AUTO:
        if name not in PRESETS:
            raise InputError("--preprocess", "", f"one of {[AUTO, *PRESETS]}", name)
        return PRESETS[name]
    out = model.graph.output[0].type.tensor_type
    rank = len(out.shape.dim) if out.HasField("shape") else None
    return PRESETS["ppocr_cls" if rank == 2 else "ppocr_det"]


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
