"""Error statistics of a tested tensor against a reference (DESIGN.md section 3).

``err = test - ref``, in float64:

- ``mse = mean(err^2)``
- ``sqnr_db = 10 log10(sum ref^2 / sum err^2)``; ``+inf`` when ``err`` is exactly 0 everywhere,
  ``-inf`` when ``ref`` is exactly 0 and ``err`` is not
- ``max_abs = max |err|``

>>> s = error_stats([1.0, -1.0], [1.0, -0.9])
>>> round(s.sqnr_db, 6), round(s.max_abs, 6)
(23.0103, 0.1)
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from wccsim.errors import InputError

__all__ = ["ErrorStats", "error_stats"]


@dataclass(frozen=True)
class ErrorStats:
    """MSE (squared units of the data), SQNR in dB, max absolute error (units of the data)."""
    mse: float
    sqnr_db: float
    max_abs: float


def error_stats(ref: np.ndarray, test: np.ndarray) -> ErrorStats:
    """Compare ``test`` to ``ref`` (same shape, any real dtype, non-empty, finite); see module docstring."""
    ref = np.asarray(ref, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if ref.shape != test.shape or ref.size == 0:
        raise InputError("metrics", "test", f"a non-empty array of shape {ref.shape}", test.shape)
    if not (np.isfinite(ref).all() and np.isfinite(test).all()):
        raise InputError("metrics", "ref/test", "finite values", "NaN or Inf")
    err = test - ref
    err_energy = float(np.sum(err * err))
    ref_energy = float(np.sum(ref * ref))
    if err_energy == 0.0:
        sqnr = math.inf
    elif ref_energy == 0.0:
        sqnr = -math.inf
    else:
        sqnr = 10.0 * (math.log10(ref_energy) - math.log10(err_energy))
    return ErrorStats(err_energy / err.size, sqnr, float(np.max(np.abs(err))))
