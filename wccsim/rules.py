"""Rules every side of wccsim must agree on, written once.

The integer datapath, the float64 reference and the cost model all call these; none restates them
(DESIGN.md section 7). Each rule is a pure function of plain numbers:

- how a rate is read (`rate_fraction`) and how many positions it keeps (`kept_positions`);
- the zero padding of a map before the Haar transform (`padded_shape`);
- the coefficient layout, which fixes position indices, the bitmap's bit order and the tie order of
  every selector (`band_shapes`, `position_levels`, `position_bands`; ties go to the lower position);
- which bands share a coefficient scale (`band_levels`, `band_groups`);
- the uniform n-bit baseline's width (`uniform_bits`);
- how a GEMM maps onto the MAC array per dataflow (`ARRAY_MAPPING`), for cycles and SRAM reads alike;
- the widths the simulator accepts (`check_bits`).

It imports nothing of wccsim but the spec enums and the error type.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from wccsim.errors import InputError
from wccsim.hw import CoefGranularity, Dataflow

__all__ = ["rate_fraction", "check_rate", "kept_positions", "padded_shape", "band_shapes", "position_levels",
           "position_bands", "band_levels", "band_groups", "level_sum", "uniform_bits", "check_bits", "Selection", "ArrayMapping", "ARRAY_MAPPING"]

_WHERE = "rules"
MIN_BITS, MAX_BITS = 2, 16


def rate_fraction(rate, where: str = "options", field: str = "rate") -> Fraction:
    """The fraction a rate means: the simplest fraction that rounds to the same float.

    A user who writes ``1/3`` gets the float 0.3333333333333333 (however many digits are printed), and
    ``0.29`` the float 0.28999999999999998; both mean the simplest fraction whose nearest float is
    theirs: 1/3 and 29/100. A decimal of up to 7 places is read as itself.

    Raises `InputError` (naming ``where`` and ``field``) unless ``rate`` is a real number in (0, 1].

    >>> rate_fraction(1 / 3), rate_fraction(0.29), rate_fraction(0.125), rate_fraction(1)
    (Fraction(1, 3), Fraction(29, 100), Fraction(1, 8), Fraction(1, 1))
    """
    check_rate(rate, where, field)
    return _float_fraction(float(rate))


@functools.lru_cache(maxsize=256)
def _float_fraction(x: float) -> Fraction:
    """Simplest fraction strictly inside the rounding interval of the float ``x`` > 0."""
    lo = (Fraction(math.nextafter(x, 0.0)) + Fraction(x)) / 2
    hi = (Fraction(math.nextafter(x, math.inf)) + Fraction(x)) / 2
    return _simplest_between(lo, hi)


def _simplest_between(lo: Fraction, hi: Fraction) -> Fraction:
    """The fraction with the smallest denominator in the open interval (lo, hi), 0 <= lo < hi.

    Stern-Brocot descent: an integer inside wins; otherwise x = n + 1/y with n = floor(lo), and the
    simplest x has the simplest y in (1 / (hi - n), 1 / (lo - n)).
    """
    n = math.floor(lo)
    if n + 1 < hi:
        return Fraction(n + 1)
    if lo == n:                                   # y in (1 / (hi - n), infinity): the next integer
        return n + Fraction(1, math.floor(1 / (hi - n)) + 1)
    return n + 1 / _simplest_between(1 / (hi - n), 1 / (lo - n))


def check_rate(rate, where: str = "options", field: str = "rate") -> None:
    """A rate is a real number in (0, 1]; anything else is an `InputError` naming ``where``/``field``."""
    ok = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, (bool, np.bool_))
    if not ok or not math.isfinite(float(rate)) or not 0.0 < float(rate) <= 1.0:
        raise InputError(where, field, "a number in (0, 1]", rate)


def kept_positions(rate, positions: int) -> int:
    """Positions a selector keeps: ``k = max(1, floor(rate * P))``, exact, with ``rate`` read by `rate_fraction`.

    >>> kept_positions(1 / 3, 192), kept_positions(1 / 3, 960), kept_positions(0.29, 100), kept_positions(0.001, 10)
    (64, 320, 29, 1)
    """
    if isinstance(positions, bool) or int(positions) != positions or positions < 1:
        raise InputError(_WHERE, "positions", "a positive integer", positions)
    return max(1, math.floor(rate_fraction(rate, _WHERE) * int(positions)))


def padded_shape(h: int, w: int, levels: int) -> tuple[int, int]:
    """Map size ``(hp, wp)`` after zero padding: ``h`` and ``w`` rounded up to a multiple of ``2^levels``.

    >>> padded_shape(5, 8, 3)
    (8, 8)
    """
    _check_levels(levels)
    for name, v in (("h", h), ("w", w)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise InputError(_WHERE, name, "a positive integer", v)
    m = 1 << levels
    return -(-int(h) // m) * m, -(-int(w) // m) * m


def band_shapes(hp: int, wp: int, levels: int) -> list[tuple[int, int, int]]:
    """The coefficient layout: bands in position order as ``(level, band, size)``.

    ``[LL_L, y2_L, y3_L, y4_L, y2_{L-1}, ..., y2_1, y3_1, y4_1]``, each band in raster order; band 0 is
    LL_L, 1..3 the details y2..y4 (DESIGN.md section 2). Position p of the layout is bit p of the bitmap.

    >>> band_shapes(4, 4, 1)
    [(1, 0, 4), (1, 1, 4), (1, 2, 4), (1, 3, 4)]
    """
    _check_levels(levels)
    m = 1 << levels
    if int(hp) != hp or int(wp) != wp or hp < m or wp < m or hp % m or wp % m:
        raise InputError(_WHERE, "padded size", f"positive multiples of {m}", (hp, wp))
    bands = [(levels, 0, (hp >> levels) * (wp >> levels))]
    for lev in range(levels, 0, -1):
        bands += [(lev, b, (hp >> lev) * (wp >> lev)) for b in (1, 2, 3)]
    return bands


def position_levels(hp: int, wp: int, levels: int) -> np.ndarray:
    """(P,) int64 Haar level of each layout position: LL_L -> ``levels``, details of level l -> l."""
    return np.concatenate([np.full(size, lev, dtype=np.int64) for lev, _, size in band_shapes(hp, wp, levels)])


def position_bands(hp: int, wp: int, levels: int) -> np.ndarray:
    """(P,) int64 band of each layout position: 0 = LL_L, ``1 + 3 (L - l) + t`` = detail t (0 LH = y2,
    1 HL = y3, 2 HH = y4) of level l; bands are numbered in layout order."""
    return np.concatenate([np.full(size, i, dtype=np.int64) for i, (_, _, size) in
                           enumerate(band_shapes(hp, wp, levels))])


def band_levels(levels: int) -> np.ndarray:
    """(3L + 1,) int64 Haar level of each band (`position_bands` numbering)."""
    _check_levels(levels)
    return np.array([levels] + [lev for lev in range(levels, 0, -1) for _ in range(3)], dtype=np.int64)


def band_groups(levels: int, granularity: CoefGranularity) -> np.ndarray:
    """(3L + 1,) int64 coefficient-scale group of each band: all 0 (``PER_TENSOR``); 0 = LL_L and
    ``1 + L - l`` = the details of level l (``PER_LEVEL``); the band itself (``PER_BAND``). Group 0 holds
    LL_L in every granularity.

    >>> band_groups(2, CoefGranularity.PER_LEVEL).tolist()
    [0, 1, 1, 1, 2, 2, 2]
    """
    bands = np.arange(3 * levels + 1, dtype=np.int64)
    if granularity is CoefGranularity.PER_TENSOR:
        return np.zeros_like(bands)
    if granularity is CoefGranularity.PER_LEVEL:
        return np.where(bands == 0, 0, 1 + levels - band_levels(levels))
    if granularity is CoefGranularity.PER_BAND:
        return bands
    raise ValueError(f"band_groups: unknown granularity {granularity!r}")


def level_sum(levels: int) -> Fraction:
    """Coefficients per padded pixel over all levels, ``sum_{l<L} 4^-l`` (21/16 for 3 levels)."""
    return sum((Fraction(1, 4 ** lev) for lev in range(levels)), Fraction(0))


def uniform_bits(rate, act_bits: int) -> int:
    """Bits of the uniform baseline at WCC's stored bit rate: ``max(2, floor(rate * act_bits + 1/2))``.

    >>> uniform_bits(0.25, 8), uniform_bits(0.3125, 8), uniform_bits(0.1, 8), uniform_bits(1.0, 8)
    (2, 3, 2, 8)
    """
    return max(MIN_BITS, math.floor(rate_fraction(rate) * check_bits(act_bits, "options", "act_bits")
                                    + Fraction(1, 2)))


def check_bits(bits, where: str, field: str) -> int:
    """A width is an integer in 2..16 (the quantizers' range); returns it as int."""
    ok = isinstance(bits, (int, np.integer)) and not isinstance(bits, (bool, np.bool_))
    if not ok or not MIN_BITS <= bits <= MAX_BITS:
        raise InputError(where, field, f"an integer in {MIN_BITS}..{MAX_BITS}", bits)
    return int(bits)


def _check_levels(levels: int) -> None:
    if isinstance(levels, bool) or int(levels) != levels or not 1 <= levels <= 16:
        raise InputError(_WHERE, "levels", "an integer in 1..16", levels)


@dataclass(frozen=True)
class Selection:
    """Kept positions of a batch, as every selector (integer or float) reports them.

    Attributes
    ----------
    bitmap : (N, P) bool
        True where the position is kept; exactly ``k`` per row.
    idx : (N, k) int64
        Kept positions, ascending per row (the column order the MAC array reads).
    k : int
    """
    bitmap: np.ndarray
    idx: np.ndarray
    k: int


@dataclass(frozen=True)
class ArrayMapping:
    """Where a GEMM ``(m x k) @ (k x n)`` sits on a rows x cols MAC array (SCALE-Sim's mapping).

    ``rows``, ``cols``, ``streamed`` name the GEMM dimension ('m', 'k' or 'n') held on the rows, held
    on the columns and streamed through; ``preload`` says whether the stationary operand is loaded
    (R cycles per fold) before streaming. An operand is read once per fold of each array dimension it
    does not span; partial sums leave the array once per fold of ``k`` when ``k`` is on the array.
    """
    rows: str
    cols: str
    streamed: str
    preload: bool

    def folds(self, dims: dict, array_rows: int, array_cols: int) -> tuple[int, int]:
        """(row folds, column folds) of a GEMM with sizes ``dims`` = {'m': m, 'k': k, 'n': n}."""
        return -(-dims[self.rows] // array_rows), -(-dims[self.cols] // array_cols)


ARRAY_MAPPING = {
    Dataflow.WEIGHT_STATIONARY: ArrayMapping(rows="k", cols="n", streamed="m", preload=True),
    Dataflow.OUTPUT_STATIONARY: ArrayMapping(rows="m", cols="n", streamed="k", preload=False),
    Dataflow.INPUT_STATIONARY: ArrayMapping(rows="k", cols="m", streamed="n", preload=True),
}
