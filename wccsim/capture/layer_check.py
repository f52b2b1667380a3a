"""What the ONNX, PyTorch and TorchScript capture paths share: the check every captured layer passes, and
the writing of a capture to a trace file."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from typing import Callable

import numpy as np

from wccsim.errors import InputError
from wccsim.trace import LayerData, LayerInfo, write_trace

__all__ = ["WEIGHT_CHECK_REL_L2", "checked_layer", "write_captured"]

WEIGHT_CHECK_REL_L2 = 1e-5  # float32 framework conv vs the same conv re-run on the extracted weights


def checked_layer(name: str, node: str, w: np.ndarray, b: np.ndarray | None, stride: int, x: np.ndarray,
                  y: np.ndarray, conv: Callable, store_dtype: str) -> LayerData:
    """Build a captured layer after proving its weights are the ones the framework used.

    ``conv(w, b, stride, x)`` re-runs the lone 1x1 conv in the framework; its output must match the
    in-graph output ``y`` to `WEIGHT_CHECK_REL_L2` relative L2, else RuntimeError (a capture bug, not bad
    input). With ``store_dtype == "float16"`` the input is rounded to float16 first and ``y`` recomputed
    by ``conv`` on the rounded input, so the stored pair stays consistent.
    """
    err = np.linalg.norm(conv(w, b, stride, x) - y) / max(np.linalg.norm(y), 1e-30)
    if err > WEIGHT_CHECK_REL_L2:
        raise RuntimeError(f"{node}: the lone conv on the extracted weights differs from the framework's "
                           f"output ({err:.2e} relative L2 > {WEIGHT_CHECK_REL_L2:g})")
    if store_dtype == "float16":
        x = x.astype(np.float16).astype(np.float32)
        y = conv(w, b, stride, x)
    return LayerData(name, x, w, b, y, stride)


def write_captured(out: str | os.PathLike, meta: dict, layers: list[LayerData], batch: np.ndarray,
                   input_meta: dict | None, *, store_dtype: str, compress: bool, store_y: bool,
                   keep: list[str] | None = None) -> list[LayerInfo]:
    """Write a capture to `out` atomically: ``meta["input"]`` is `input_meta` plus the batch's (H, W) in
    pixels; without `store_y` the ``y`` members are dropped and ``meta["y_source"]`` is null.

    `keep` (globs on layer names) stores only the layers matching one of them (to fit a file budget); the
    others are listed in ``meta["skipped"]`` as not stored. A glob matching no layer is an InputError.
    """
    for glob in keep or ():
        if not any(fnmatch.fnmatchcase(ld.name, glob) for ld in layers):
            raise InputError(str(out), "--layers", f"a glob matching one of the {len(layers)} captured layers",
                             repr(glob))
    if keep:
        meta["skipped"] = meta["skipped"] + [{"node": ld.name, "reason": "1x1 not stored (--layers)"}
                                             for ld in layers if not _kept(ld.name, keep)]
        layers = [ld for ld in layers if _kept(ld.name, keep)]
    meta["input"] = dict(input_meta or {}, size_hw_px=list(np.shape(batch)[2:]))
    if not store_y:
        layers = [dataclasses.replace(ld, y=None) for ld in layers]
        meta["y_source"] = None
    return write_trace(out, meta, layers, store_dtype=store_dtype, compress=compress)


def _kept(name: str, globs: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in globs)
