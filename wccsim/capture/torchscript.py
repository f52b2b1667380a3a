"""Capture a v1 trace from a TorchScript file (``torch.jit.save``), the way many packages ship models.

A loaded TorchScript module runs its own graph, so Python forward hooks on its submodules never fire.
Steps (`capture_torchscript`):

1. Load the file with ``torch.jit.load`` (CPU) and run it on the batch: the reference outputs.
2. Export it to ONNX at the batch's shape (``torch.onnx.export(..., dynamo=False)``, the TorchScript
   exporter; in eval mode it folds each BatchNorm into the conv before it, as a deployed model does).
3. Check the export: onnxruntime's outputs reproduce TorchScript's, each to `EXPORT_CHECK_REL_L2` relative
   L2 (else RuntimeError: the trace would describe another network).
4. Capture the exported graph with `wccsim.capture.onnx.capture_onnx` (its per-layer weight check
   included). ``meta.source`` names the TorchScript file and its sha256.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from wccsim.capture.images import image_batch
from wccsim.capture.layer_check import write_captured
from wccsim.capture.onnx import capture_onnx, run_onnx, sha256_file
from wccsim.errors import InputError
from wccsim.trace import LayerInfo

__all__ = ["EXPORT_CHECK_REL_L2", "load_torchscript", "capture_torchscript", "capture_torchscript_trace"]

EXPORT_CHECK_REL_L2 = 1e-4  # float32 TorchScript vs onnxruntime on the exported graph (measured ~1e-6)


def load_torchscript(path: str | Path):
    """The TorchScript module in `path`, on the CPU, in eval mode; InputError (one line) if unreadable."""
    import torch

    if not Path(path).is_file():
        raise InputError(str(path), "", "a TorchScript file (torch.jit.save)", "no such file")
    try:
        with warnings.catch_warnings():  # torch >= 2.14 deprecates TorchScript, the format these files are in
            warnings.filterwarnings("ignore", message="`torch.jit.load` is deprecated")
            return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:  # not a TorchScript archive, or saved by an incompatible torch
        raise InputError(str(path), "", "a TorchScript file (torch.jit.save)",
                         f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None


def capture_torchscript(path: str | Path, batch: np.ndarray, *,
                        store_dtype: str = "float32") -> tuple[dict, list]:
    """Steps 1-4 above on a preprocessed float32 batch (N, C, H, W); returns (meta without layers, layers)."""
    import torch

    module = load_torchscript(path)
    x = torch.from_numpy(np.ascontiguousarray(batch, np.float32))
    with torch.no_grad():
        expected = [t.numpy() for t in _tensors(module(x))]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / (Path(path).stem + ".onnx")
        with warnings.catch_warnings():  # the exporter notes it cannot read a ScriptMethod's signature
            warnings.filterwarnings("ignore", message="no signature found", category=UserWarning)
            torch.onnx.export(module, (x,), str(onnx_path), dynamo=False, input_names=["input"])
        _check_export(path, expected, run_onnx(onnx_path, batch))
        meta, layers = capture_onnx(onnx_path, batch, store_dtype=store_dtype)
    meta["source"] = dict(meta["source"], tool=f"torch {torch.__version__} (torch.onnx.export, dynamo=False) + "
                          + meta["source"]["tool"], model_file=Path(path).name, sha256=sha256_file(path))
    return meta, layers


def capture_torchscript_trace(path: str | Path, images: list[str], out: str | Path, *,
                              preset: str = "imagenet", size: tuple[int, int] | None = None,
                              store_dtype: str = "float32", compress: bool = False,
                              store_y: bool = True, keep: list[str] | None = None) -> list[LayerInfo]:
    """Load and preprocess `images` with `preset`, capture (`capture_torchscript`), write `out` atomically
    (`keep`: as in `wccsim.capture.onnx.capture_onnx_trace`)."""
    batch, input_meta = image_batch(str(path), images, preset, size)
    meta, layers = capture_torchscript(path, batch, store_dtype=store_dtype)
    return write_captured(out, meta, layers, batch, input_meta, store_dtype=store_dtype, compress=compress,
                          store_y=store_y, keep=keep)


def _tensors(out) -> list:
    """The output tensors of a module call in the order the ONNX exporter flattens them."""
    if isinstance(out, dict):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return [out]


def _check_export(path, expected: list[np.ndarray], got: list[np.ndarray]) -> None:
    if len(expected) != len(got):
        raise RuntimeError(f"{path}: the ONNX export has {len(got)} outputs, TorchScript {len(expected)}")
    for i, (e, g) in enumerate(zip(expected, got)):
        err = np.linalg.norm(np.asarray(g, np.float64) - e) / max(np.linalg.norm(np.asarray(e, np.float64)), 1e-30)
        if e.shape != g.shape or err > EXPORT_CHECK_REL_L2:
            raise RuntimeError(f"{path}: output {i} of the ONNX export differs from TorchScript's "
                               f"(shapes {g.shape} vs {e.shape}, {err:.2e} relative L2 > {EXPORT_CHECK_REL_L2:g})")
