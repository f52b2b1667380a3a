"""The check every captured layer passes, shared by the ONNX and PyTorch capture paths."""

from __future__ import annotations

from typing import Callable

import numpy as np

from wccsim.trace import LayerData

__all__ = ["WEIGHT_CHECK_REL_L2", "checked_layer"]

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
