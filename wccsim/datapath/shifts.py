"""Integer rounding right shift and signed saturation, shared by the datapath units.

Both primitives work elementwise on int64 arrays and are exact (no float anywhere).

Rounding right shift by ``s >= 0`` bits, ``v / 2^s`` rounded to an integer:

- ``half_up``:   ``(v + 2^(s-1)) >> s``  (ties toward +inf; arithmetic shift, as in hardware)
- ``floor``:     ``v >> s``              (truncation toward -inf; free in hardware)
- ``half_even``: ``v >> s`` plus 1 when the dropped bits exceed half, or equal half and the kept
  value is odd (ties to even, unbiased)

``s = 0`` is the identity for every mode. The caller keeps ``v + 2^(s-1)`` inside int64.

Saturation clips to the signed range of ``width_bits``: ``[-2^(w-1), 2^(w-1) - 1]`` and returns how many
elements were clipped, so that overflow is counted, never hidden.

Examples
--------
>>> import numpy as np
>>> from wccsim.hw import Rounding
>>> v = np.array([-3, -2, -1, 1, 2, 3, 5], dtype=np.int64)
>>> round_shift(v, 1, Rounding.HALF_UP).tolist()
[-1, -1, 0, 1, 1, 2, 3]
>>> round_shift(v, 1, Rounding.FLOOR).tolist()
[-2, -1, -1, 0, 1, 1, 2]
>>> round_shift(v, 1, Rounding.HALF_EVEN).tolist()
[-2, -1, 0, 0, 1, 2, 2]
>>> saturate(np.array([-9, 0, 8], dtype=np.int64), 4)
(array([-8,  0,  7]), 2)
"""

from __future__ import annotations

import numpy as np

from wccsim.hw import Rounding

__all__ = ["round_shift", "saturate", "signed_range"]


def round_shift(v: np.ndarray, shift: int, rounding: Rounding) -> np.ndarray:
    """Right shift int64 values by ``shift`` bits with the given rounding.

    Parameters
    ----------
    v : np.ndarray
        Any shape, integer (converted to int64).
    shift : int
        Number of bits, >= 0.
    rounding : Rounding
        ``HALF_UP``, ``FLOOR`` or ``HALF_EVEN`` (see module docstring for the formulas).

    Returns
    -------
    np.ndarray
        Same shape, int64, ``round(v / 2^shift)`` under ``rounding``.
    """
    v = np.asarray(v, dtype=np.int64)
    if shift < 0:
        raise ValueError(f"round_shift: shift must be >= 0, got {shift}")
    if shift == 0:
        return v.copy()
    if rounding is Rounding.FLOOR:
        return v >> shift
    half = np.int64(1) << np.int64(shift - 1)
    if rounding is Rounding.HALF_UP:
        return (v + half) >> shift
    if rounding is Rounding.HALF_EVEN:
        q = v >> shift
        r = v - (q << shift)  # dropped bits, 0 <= r < 2^shift
        up = (r > half) | ((r == half) & ((q & 1) == 1))
        return q + up.astype(np.int64)
    raise ValueError(f"round_shift: unknown rounding {rounding!r}")


def signed_range(width_bits: int) -> tuple[int, int]:
    """Return ``(lo, hi) = (-2^(w-1), 2^(w-1) - 1)`` for a signed register of ``width_bits`` bits."""
    if not 1 <= width_bits <= 64:
        raise ValueError(f"signed_range: width_bits must be in 1..64, got {width_bits}")
    return -(1 << (width_bits - 1)), (1 << (width_bits - 1)) - 1


def saturate(v: np.ndarray, width_bits: int) -> tuple[np.ndarray, int]:
    """Clip int64 values to the signed range of ``width_bits`` and count the clipped elements.

    Parameters
    ----------
    v : np.ndarray
        Any shape, integer.
    width_bits : int
        Register width in bits, 1..64.

    Returns
    -------
    (np.ndarray, int)
        The clipped int64 array (same shape) and the number of elements that were outside the range.
    """
    v = np.asarray(v, dtype=np.int64)
    lo, hi = signed_range(width_bits)
    if v.size == 0 or (v.min() >= lo and v.max() <= hi):  # the common case: two reductions, no mask
        return v, 0
    over = (v < lo) | (v > hi)
    count = int(np.count_nonzero(over))
    if count == 0:
        return v, 0
    return np.clip(v, lo, hi), count
