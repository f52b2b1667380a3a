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

__all__ = ["ErrorStats", "ErrorSum", "error_stats"]


@dataclass(frozen=True)
class ErrorStats:
    """MSE (squared units of the data), SQNR in dB, max absolute error (units of the data)."""
    mse: float
    sqnr_db: float
    max_abs: float


def error_stats(ref: np.ndarray, test: np.ndarray) -> ErrorStats:
    """Compare ``test`` to ``ref`` (same shape, any real dtype, non-empty, finite); see module docstring."""
    return ErrorSum().add(ref, test).stats()


class ErrorSum:
    """`error_stats` accumulated over blocks of a tensor (image by image, channel block by channel block),
    so that no whole-tensor error array is held. Sums are float64 per block, then added in block order:
    the result equals `error_stats` of the whole tensor up to that summation order (~1e-15 relative)."""

    def __init__(self) -> None:
        self.err_energy = 0.0
        self.ref_energy = 0.0
        self.max_abs = 0.0
        self.count = 0

    def add(self, ref: np.ndarray, test: np.ndarray) -> "ErrorSum":
        """Add one block (same shape, non-empty, finite); returns self."""
        ref = np.asarray(ref, dtype=np.float64)
        test = np.asarray(test, dtype=np.float64)
        if ref.shape != test.shape or ref.size == 0:
            raise InputError("metrics", "test", f"a non-empty array of shape {ref.shape}", test.shape)
        if not (np.isfinite(ref).all() and np.isfinite(test).all()):
            raise InputError("metrics", "ref/test", "finite values", "NaN or Inf")
        err = test - ref
        self.max_abs = max(self.max_abs, float(np.max(np.abs(err))))
        self.err_energy += float(np.sum(np.square(err, out=err)))  # numpy's pairwise sum: no BLAS threads
        self.ref_energy += float(np.sum(ref * ref))
        self.count += err.size
        return self

    def stats(self) -> ErrorStats:
        """MSE, SQNR (dB) and max |err| of everything added."""
        if self.count == 0:
            raise InputError("metrics", "test", "at least one non-empty block", "nothing")
        if self.err_energy == 0.0:
            sqnr = math.inf
        elif self.ref_energy == 0.0:
            sqnr = -math.inf
        else:
            sqnr = 10.0 * (math.log10(self.ref_energy) - math.log10(self.err_energy))
        return ErrorStats(self.err_energy / self.count, sqnr, self.max_abs)
