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

import numba
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
    so that no whole-tensor error array is held. One pass per block (`_block_sums`): float64 sums over runs
    of `_RUN` elements, added in order; the result equals a whole-tensor float64 sum up to that order
    (~1e-13 relative for 10^7 elements)."""

    def __init__(self) -> None:
        self.err_energy = 0.0
        self.ref_energy = 0.0
        self.max_abs = 0.0
        self.count = 0

    def add(self, ref: np.ndarray, test: np.ndarray) -> "ErrorSum":
        """Add one block (same shape, non-empty, finite; float32 and float64 read as they are, other real
        dtypes as float64); returns self."""
        ref, test = _flat_float(ref), _flat_float(test)
        if np.shape(ref) != np.shape(test) or ref.size == 0:
            raise InputError("metrics", "test", f"a non-empty array of shape {np.shape(ref)}", np.shape(test))
        err_energy, ref_energy, max_abs = _block_sums(ref.reshape(-1), test.reshape(-1))
        if not (math.isfinite(err_energy) and math.isfinite(ref_energy)) and not (
                np.isfinite(ref).all() and np.isfinite(test).all()):  # else finite values whose squares overflow
            raise InputError("metrics", "ref/test", "finite values", "NaN or Inf")
        self.max_abs = max(self.max_abs, max_abs)
        self.err_energy += err_energy
        self.ref_energy += ref_energy
        self.count += ref.size
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


_RUN = 4096  # elements per partial sum of `_block_sums`


def _flat_float(a) -> np.ndarray:
    """``a`` as a C-contiguous float32 or float64 array (float32 kept: the kernel widens each element)."""
    a = np.asarray(a)
    return np.ascontiguousarray(a if a.dtype in (np.float32, np.float64) else a.astype(np.float64))


@numba.njit(cache=True, nogil=True)
def _block_sums(ref, test):
    """(sum (test - ref)^2, sum ref^2, max |test - ref|) in float64, in one pass over flat arrays; each sum
    over runs of `_RUN` elements, then over the runs. A NaN or infinity makes a sum non-finite."""
    err_energy, ref_energy, max_abs = 0.0, 0.0, 0.0
    n = ref.size
    for start in range(0, n, _RUN):
        run_err, run_ref = 0.0, 0.0
        for i in range(start, min(n, start + _RUN)):
            r = np.float64(ref[i])
            d = np.float64(test[i]) - r
            run_err += d * d
            run_ref += r * r
            max_abs = max(max_abs, abs(d))
        err_energy += run_err
        ref_energy += run_ref
    return err_energy, ref_energy, max_abs
