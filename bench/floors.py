"""Floors: what the machine can do at best for the same shapes and bytes, measured with numpy.

- GEMM floor: a float32 BLAS matmul (Cout x Cin) x (Cin x k), the same shape as the MAC stage.
- Memory floor: ``np.copyto`` over a buffer; a copy of B bytes moves 2B bytes (read + write).
"""

from __future__ import annotations

import numpy as np

from timing import time_side_by_side

__all__ = ["sgemm_call", "copy_call", "memory_bandwidth"]


def sgemm_call(cout: int, cin: int, k: int, seed: int = 0):
    """A zero-argument callable running ``np.matmul`` float32 (cout, cin) x (cin, k) into a preallocated out."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-127, 128, (cout, cin)).astype(np.float32)
    b = rng.integers(-127, 128, (cin, k)).astype(np.float32)
    out = np.empty((cout, k), np.float32)
    return lambda: np.matmul(a, b, out=out)


def copy_call(traffic_bytes: int):
    """A callable whose one call moves ``traffic_bytes`` through memory: copy of traffic_bytes/2 bytes."""
    n = max(1, traffic_bytes // 2)
    src = np.ones(n, np.uint8)
    dst = np.empty_like(src)
    return lambda: np.copyto(dst, src)


def memory_bandwidth(buffer_bytes: int, repeats: int) -> dict:
    """Sustained numpy copy bandwidth over a buffer far larger than the caches.

    Returns
    -------
    dict
        ``buffer_bytes``, ``gb_per_s_best`` and ``gb_per_s_median`` (10^9 bytes/s, read + write counted).
    """
    call = copy_call(2 * buffer_bytes)
    t = time_side_by_side({"copy": call}, repeats, min_repeat_s=0.0)["copy"]
    return {"buffer_bytes": buffer_bytes, "gb_per_s_best": 2 * buffer_bytes / t["min_s"] / 1e9,
            "gb_per_s_median": 2 * buffer_bytes / t["median_s"] / 1e9}
