"""Images in, network input tensors out: loading and the PP-OCR preprocessing of rapidocr-onnxruntime 1.4.4.

Followed from the installed package (``rapidocr_onnxruntime/config.yaml``, ``ch_ppocr_det/utils.py``
``DetPreProcess``, ``ch_ppocr_cls/text_cls.py`` ``resize_norm_img``): BGR channel order (rapidocr converts
loaded RGB images to BGR), ``(img / 255 - 0.5) / 0.5`` per channel (its config sets mean = std = 0.5,
not the ImageNet values), NCHW float32.

- detector: resized so the shorter side is 736 (``limit_type: min``), then each side rounded to a
  multiple of 32 (cv2 bilinear); ``side`` instead scales the longer side to ``side`` (small test runs).
- classifier: resized to height 48 keeping the aspect ratio (width at most 192), zero-padded to 48 x 192.
"""

from __future__ import annotations

import enum
import math
from pathlib import Path

import numpy as np

from wccsim.errors import InputError

__all__ = ["Preprocess", "load_image", "image_label", "ppocr_det_input", "ppocr_cls_input", "prepare"]

_DET_MIN_SIDE = 736      # rapidocr config.yaml Det.limit_side_len (limit_type: min)
_CLS_SHAPE = (3, 48, 192)  # rapidocr config.yaml Cls.cls_image_shape


class Preprocess(enum.Enum):
    """Which network input preparation to apply; AUTO picks from the model's first output rank."""
    AUTO = "auto"
    PPOCR_DET = "ppocr-det"
    PPOCR_CLS = "ppocr-cls"


def load_image(spec: str) -> np.ndarray:
    """Load ``skimage:NAME`` (a `skimage.data` picture) or an image file as RGB uint8 (H, W, 3)."""
    if spec.startswith("skimage:"):
        import skimage.data

        name = spec.split(":", 1)[1]
        fn = getattr(skimage.data, name, None)
        if not callable(fn) or name.startswith("_"):
            raise InputError("--image", spec, "skimage:NAME with NAME a skimage.data image (e.g. astronaut)")
        try:
            img = np.asarray(fn())
        except Exception as e:  # e.g. an image skimage would have to download
            raise InputError("--image", spec, "an image shipped with scikit-image", type(e).__name__) from e
    else:
        path = Path(spec)
        if not path.is_file():
            raise InputError("--image", spec, "an existing image file or skimage:NAME", "no such file")
        import cv2

        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError("--image", spec, "an image file OpenCV can read", "unreadable")
        img = bgr[:, :, ::-1]
    return _to_rgb_uint8(img, spec)


def _to_rgb_uint8(img: np.ndarray, spec: str) -> np.ndarray:
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise InputError("--image", spec, "a grey, RGB or RGBA picture", f"array of shape {img.shape}")
    img = img[:, :, :3]
    if img.dtype != np.uint8:
        img = np.clip(np.asarray(img, np.float64) * (255.0 if img.max() <= 1.0 else 1.0), 0, 255)
        img = np.round(img).astype(np.uint8)
    return np.ascontiguousarray(img)


def image_label(spec: str) -> str:
    """Short file-name-safe label for an image spec: ``skimage:astronaut`` -> ``astronaut``."""
    stem = spec.split(":", 1)[1] if spec.startswith("skimage:") else Path(spec).stem
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem) or "image"


def _normalize_bgr(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> BGR (img/255 - 0.5)/0.5 as (3, H, W) float32."""
    bgr = rgb[:, :, ::-1].astype(np.float32)
    return ((bgr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).astype(np.float32)


def ppocr_det_input(rgb: np.ndarray, side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PP-OCR detector input.

    Parameters
    ----------
    rgb : uint8 (H, W, 3)
    side : int, optional
        Scale the longer side to `side` pixels (before rounding to a multiple of 32); default: the
        rapidocr rule (shorter side up to 736).

    Returns
    -------
    x : float32 (1, 3, H', W'), H' and W' multiples of 32
    resized : uint8 (H', W', 3) RGB picture the network sees (for plots)
    """
    import cv2

    h, w = rgb.shape[:2]
    if side is None:
        ratio = _DET_MIN_SIDE / min(h, w) if min(h, w) < _DET_MIN_SIDE else 1.0
    else:
        ratio = side / max(h, w)
    rh = max(32, int(round(int(h * ratio) / 32) * 32))
    rw = max(32, int(round(int(w * ratio) / 32) * 32))
    resized = cv2.resize(rgb, (rw, rh))
    return _normalize_bgr(resized)[None], resized


def ppocr_cls_input(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PP-OCR text-orientation classifier input: float32 (1, 3, 48, 192) and the RGB picture it holds."""
    import cv2

    _, ch, cw = _CLS_SHAPE
    h, w = rgb.shape[:2]
    rw = min(cw, int(math.ceil(ch * w / float(h))))
    resized = cv2.resize(rgb, (rw, ch))
    x = np.zeros((1,) + _CLS_SHAPE, np.float32)
    x[0, :, :, :rw] = _normalize_bgr(resized)
    shown = np.zeros((ch, cw, 3), np.uint8)
    shown[:, :rw] = resized
    return x, shown


def prepare(rgb: np.ndarray, kind: Preprocess, side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch to the chosen preprocessing (AUTO must be resolved by the caller)."""
    if kind is Preprocess.PPOCR_CLS:
        return ppocr_cls_input(rgb)
    if kind is Preprocess.PPOCR_DET:
        return ppocr_det_input(rgb, side)
    raise ValueError(f"unresolved preprocessing {kind}")
