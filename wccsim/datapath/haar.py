"""Shift-add multilevel 2D Haar unit (forward and inverse), bit-accurate.

The float64 transform it is checked against is `wccsim.reference.haar_forward` (written apart).

Hardware model (DESIGN.md section 2, steps 2 and 7)
---------------------------------------------------
The map is zero padded to ``(hp, wp)``, multiples of ``2^levels``. Each level works on the current low
band; for every 2x2 block ``[a b; c d]`` the forward butterflies are (Eq. 3 of the paper without 1/2)::

    y1 = a+b+c+d    y2 = a-b+c-d    y3 = a+b-c-d    y4 = a-b-c+d

and the inverse butterflies (the same Hadamard matrix, it is symmetric) are::

    a = y1+y2+y3+y4    b = y1-y2+y3-y4    c = y1+y2-y3-y4    d = y1-y2-y3+y4

Normalization (`HaarSpec.normalize`):

- ``PER_LEVEL``: every output is shifted right by 1 with `HaarSpec.rounding` after each level, so all
  coefficients are (rounded) orthonormal values and the width grows 1 bit per level.
- ``DEFERRED``: no shift in the forward transform (exact, +2 bits per level). A level-l coefficient
  (l = 1 finest) is then ``2^l`` times its orthonormal value; `position_levels` gives ``l`` per position.
  The inverse takes orthonormal-unit integers, sums exactly, shifts the detail bands of level l left by
  ``L - l`` to the low band's units, and does one rounding shift right by ``L`` at the end.

Each level's outputs are saturated to the signed range of ``width_bits`` (the register width) and every
clipped value is counted. The butterfly adders themselves carry 2 guard bits, so only the register
(after that level's normalization) clips.

Coefficients come out in the layout of `wccsim.rules.band_shapes` (which fixes position indices, tie
order and bitmap bit order): ``[LL_L, y2_L, y3_L, y4_L, ..., y2_1, y3_1, y4_1]``, each band in raster
order, ``P = hp * wp`` positions.

Round-trip guarantees (tested in ``tests/test_haar.py``)
-------------------------------------------------------
- ``DEFERRED``: `inverse_deferred_exact` of the `forward_int` coefficients reproduces ``x`` exactly,
  for any ``H, W`` (odd sizes are padded, then cropped).
- ``PER_LEVEL``: `inverse_int` of the `forward_int` coefficients differs from ``x`` by at most
  `per_level_roundtrip_bound` ``(levels)`` = 1 for one level and 2 for more, any rounding mode (no
  saturation). Derivation: every rounding shift is off by at most 1/2. Let ``E_l`` be the max error of
  the reconstructed low band of level ``l`` against the forward's integer low band (``E_L = 0``: LL_L is
  passed through). Inverting level ``l`` sees the forward rounding errors of that level's 4 outputs
  (butterfly gain 4 x 1/2 x 1/2 = 1), the propagated ``E_l`` (gain 1/2 since only y1 carries it) and its
  own rounding (1/2): ``E_{l-1} <= 3/2 + E_l / 2``; the errors are integers, so
  ``E_{l-1} <= floor(3/2 + E_l / 2)``, which gives 1, 2, 2, 2, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numba
import numpy as np

from wccsim.datapath.shifts import signed_range
from wccsim.errors import InputError
from wccsim.hw import HaarSpec, Normalize, Rounding
from wccsim.rules import band_shapes, padded_shape, position_levels

__all__ = [
    "HaarForward", "pack_layout", "unpack_layout",
    "forward_int", "inverse_int", "inverse_kept", "inverse_deferred_exact", "per_level_roundtrip_bound",
]

_WHERE = "haar"
_MAX_WIDTH_BITS = 60  # int64 holds a width_bits register plus the butterfly's 2 guard bits and shifts


@dataclass(frozen=True)
class HaarForward:
    """Output of the forward Haar unit.

    Attributes
    ----------
    coef : np.ndarray
        (N, C, P) int64 coefficients in layout order (see module docstring).
    width_bits : int
        Declared register width the coefficients were saturated to (`HaarSpec.width_bits`).
    saturations : int
        Number of values clipped to ``width_bits`` over all levels.
    shape : tuple
        ``(hp, wp, levels)``.
    lows : np.ndarray
        (N, C, Q) int64: the low bands y1 of levels 1..L-1 in raster order, finest first
        (``Q = P/4 + P/16 + ...``; empty for one level). Computed on first access: `forward_int` does not
        write them (they are only needed for the per-level view, e.g. RTL vectors); it keeps a copy of its
        input and the kernel's arguments, and reruns the forward unit here (deterministic, so the bands are
        exactly those of the call).
    per_level : tuple of np.ndarray
        Entry ``l-1`` is (N, C, 4, hp >> l, wp >> l) int64: y1..y4 of level ``l`` as the unit produces
        them (after that level's normalization and saturation). Built from ``coef`` and ``lows`` on first
        access.
    """
    coef: np.ndarray
    width_bits: int
    saturations: int
    shape: tuple = field(repr=False, compare=False)
    _rerun: tuple = field(repr=False, compare=False)  # (x copy, scalar kernel arguments) for `lows`

    @cached_property
    def lows(self) -> np.ndarray:
        x, args = self._rerun
        hp, wp, levels = self.shape
        n, c = self.coef.shape[:2]
        lows = np.empty((n, c, _lows_size(hp, wp, levels)), dtype=np.int64)
        _forward_kernel(x, np.empty_like(self.coef), lows, True, *args)
        return lows

    @cached_property
    def per_level(self) -> tuple:
        hp, wp, levels = self.shape
        n, c = self.coef.shape[:2]
        bands, off = [], 0
        for lev in range(1, levels + 1):
            hl, wl = hp >> lev, wp >> lev
            size = hl * wl
            y = np.empty((n, c, 4, hl, wl), dtype=np.int64)
            low = self.coef[:, :, :size] if lev == levels else self.lows[:, :, off: off + size]
            y[:, :, 0] = low.reshape(n, c, hl, wl)
            y[:, :, 1:] = self.coef[:, :, size: 4 * size].reshape(n, c, 3, hl, wl)
            bands.append(y)
            off += size
        return tuple(bands)


def pack_layout(per_level: tuple | list) -> np.ndarray:
    """Flatten per-level band arrays into the layout order.

    Parameters
    ----------
    per_level : sequence of np.ndarray
        Entry ``l-1`` is (N, C, 4, hp >> l, wp >> l), as in `HaarForward.per_level`.

    Returns
    -------
    np.ndarray
        (N, C, P), same dtype.
    """
    levels = len(per_level)
    n, c = per_level[0].shape[:2]
    top = per_level[levels - 1]
    parts = [top[:, :, 0].reshape(n, c, -1)]
    for lev in range(levels, 0, -1):
        parts.append(per_level[lev - 1][:, :, 1:].reshape(n, c, -1))
    return np.concatenate(parts, axis=2)


def unpack_layout(coef: np.ndarray, hp: int, wp: int, levels: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Split layout-order coefficients into the LL_L band and the detail bands of each level.

    Parameters
    ----------
    coef : np.ndarray
        (N, C, P) in layout order, ``P = hp * wp``.

    Returns
    -------
    (np.ndarray, list of np.ndarray)
        LL_L as (N, C, hp >> L, wp >> L) and a list whose entry ``l-1`` is the (N, C, 3, hp >> l, wp >> l)
        detail bands y2..y4 of level ``l``. Views where possible, same dtype.
    """
    band_shapes(hp, wp, levels)  # validates the padded size
    if coef.ndim != 3 or coef.shape[2] != hp * wp:
        raise InputError(_WHERE, "coef", f"shape (N, C, {hp * wp})", coef.shape)
    n, c = coef.shape[:2]
    hl, wl = hp >> levels, wp >> levels
    low = coef[:, :, : hl * wl].reshape(n, c, hl, wl)
    details: list = [None] * levels
    off = hl * wl
    for lev in range(levels, 0, -1):
        hl, wl = hp >> lev, wp >> lev
        details[lev - 1] = coef[:, :, off: off + 3 * hl * wl].reshape(n, c, 3, hl, wl)
        off += 3 * hl * wl
    return low, details


def forward_int(x: np.ndarray, spec: HaarSpec, in_bits: int) -> HaarForward:
    """Forward shift-add Haar unit on integer activations.

    Parameters
    ----------
    x : np.ndarray
        (N, C, H, W) integer activations, zero point already subtracted, each fitting ``in_bits`` signed.
    spec : HaarSpec
        ``levels``, ``normalize``, ``rounding`` and ``width_bits`` are used.
    in_bits : int
        Signed width of ``x``, 2..60 (it may exceed ``width_bits``: level 1 then saturates).

    Returns
    -------
    HaarForward
        Coefficients (N, C, hp * wp) int64 in layout order; per_level bands; saturation count. With
        ``PER_LEVEL`` the values are rounded orthonormal coefficients; with ``DEFERRED`` a level-l value
        is ``2^l`` times orthonormal.
    """
    _check_spec(spec)
    x = _check_int_input(x, in_bits)
    n, c, h, w = x.shape
    levels = spec.levels
    hp, wp = padded_shape(h, w, levels)
    coef = np.empty((n, c, hp * wp), dtype=np.int64)
    lo, hi = signed_range(spec.width_bits)
    per_level = spec.normalize is Normalize.PER_LEVEL
    args = (levels, hp, wp, *(_half_args(spec.rounding) if per_level else (None, None)), lo, hi)
    x = np.array(x, order="C", copy=True)  # kept for `HaarForward.lows` (the caller may change its x)
    sat = _forward_kernel(x, coef, _NO_LOWS, False, *args)
    return HaarForward(coef, spec.width_bits, int(sat), (hp, wp, levels), (x, args))


def _lows_size(hp: int, wp: int, levels: int) -> int:
    """``Q``: positions of the low bands of levels 1..L-1 (`HaarForward.lows`)."""
    return sum((hp >> lev) * (wp >> lev) for lev in range(1, levels))


_NO_LOWS = np.empty((0, 0, 0), dtype=np.int64)  # `_forward_kernel` with keep=False never reads it


def inverse_int(coef: np.ndarray, h: int, w: int, spec: HaarSpec, width_bits: int) -> tuple[np.ndarray, int]:
    """Inverse shift-add Haar unit on orthonormal-unit integer coefficients.

    Parameters
    ----------
    coef : np.ndarray
        (N, C, P) integer, layout order, orthonormal units (for both normalizations), ``P = hp * wp``
        with ``(hp, wp) = padded_shape(h, w, spec.levels)``.
    h, w : int
        Unpadded output size (the padding is cropped).
    spec : HaarSpec
        ``levels``, ``normalize`` and ``rounding`` are used.
    width_bits : int
        Signed register width: the input coefficients (as loaded) and each level's outputs saturate here.

    Returns
    -------
    (np.ndarray, int)
        (N, C, h, w) int64 spatial values and the number of saturated values (inputs and all levels,
        padding included).

    Notes
    -----
    ``PER_LEVEL``: each level's butterfly outputs are shifted right by 1 with ``spec.rounding``.
    ``DEFERRED``: level-l detail bands are shifted left by ``L - l`` before that level's exact sums (the
    low band is ``2^(L-l)`` times orthonormal there), and the result is shifted right by ``L`` once, with
    ``spec.rounding``. The registers then need about ``L`` more bits than with ``PER_LEVEL``.
    """
    _check_spec(spec)
    _check_width(width_bits)
    hp, wp = padded_shape(h, w, spec.levels)
    coef = np.asarray(coef)
    if coef.ndim != 3 or coef.shape[2] != hp * wp:
        raise InputError(_WHERE, "coef", f"shape (N, C, {hp * wp})", coef.shape)
    if not np.issubdtype(coef.dtype, np.integer):
        coef = coef.astype(np.int64)
    coef = np.ascontiguousarray(coef)
    out = np.empty(coef.shape[:2] + (h, w), dtype=np.int64)
    sat = _inverse_dense_kernel(coef, out, *_inverse_args(h, w, spec, width_bits))
    return out, int(sat)


def inverse_kept(acc: np.ndarray, idx: np.ndarray, h: int, w: int, spec: HaarSpec,
                 width_bits: int) -> tuple[np.ndarray, int]:
    """Inverse shift-add Haar unit fed directly with the kept columns (zero-fill fused in).

    Equals `inverse_int` of the zero-filled coefficients ``zf`` (``zf[n, c, idx[n, j]] = acc[n, c, j]``,
    every other position 0), bit for bit, saturation count included, without building ``zf``.

    Parameters
    ----------
    acc : np.ndarray
        (N, C, k) integer (int32 or int64): the kept columns, layout order, orthonormal units.
    idx : np.ndarray
        (N, k) integer (int64): strictly ascending positions in ``[0, P)``, ``P = hp * wp`` with
        ``(hp, wp) = padded_shape(h, w, spec.levels)``.
    h, w : int
        Unpadded output size (the padding is cropped).
    spec : HaarSpec
        ``levels``, ``normalize`` and ``rounding`` are used.
    width_bits : int
        Signed register width: the loaded coefficients and each level's outputs saturate here.

    Returns
    -------
    (np.ndarray, int)
        (N, C, h, w) int64 spatial values and the number of saturated values, as `inverse_int`.
    """
    _check_spec(spec)
    _check_width(width_bits)
    hp, wp = padded_shape(h, w, spec.levels)
    acc, idx = np.asarray(acc), np.asarray(idx)
    if acc.ndim != 3 or not np.issubdtype(acc.dtype, np.integer):
        raise InputError(_WHERE, "acc", "an (N, C, k) integer array", f"{acc.dtype} {acc.shape}")
    if idx.shape != (acc.shape[0], acc.shape[2]) or not np.issubdtype(idx.dtype, np.integer):
        raise InputError(_WHERE, "idx", f"an (N, k) = {(acc.shape[0], acc.shape[2])} integer array",
                         f"{idx.dtype} {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= hp * wp or np.any(idx[:, 1:] <= idx[:, :-1])):
        raise InputError(_WHERE, "idx", f"strictly ascending positions in [0, {hp * wp})", "other values")
    out = np.empty(acc.shape[:2] + (h, w), dtype=np.int64)
    sat = _inverse_kept_kernel(np.ascontiguousarray(acc), np.ascontiguousarray(idx, dtype=np.int64), out,
                               *_inverse_args(h, w, spec, width_bits))
    return out, int(sat)


def inverse_deferred_exact(coef: np.ndarray, h: int, w: int, levels: int) -> np.ndarray:
    """Exact inverse of the ``DEFERRED`` forward transform, on its unnormalized coefficients.

    A level-l coefficient of the deferred forward is ``2^l`` times orthonormal. Shifting it left by
    ``L - l`` puts every position in units of ``2^L`` times orthonormal; the deferred inverse datapath
    (exact sums, details aligned to the low band) then yields ``4^L x``, which one exact shift right
    by ``2L`` turns back into ``x``. No saturation (int64 throughout).

    Parameters
    ----------
    coef : np.ndarray
        (N, C, P) int64 from `forward_int` with ``DEFERRED`` normalization and no saturation.
    h, w : int
        Unpadded output size.
    levels : int
        Number of levels ``L``.

    Returns
    -------
    np.ndarray
        (N, C, h, w) int64.

    Raises
    ------
    ValueError
        If the result is not a multiple of ``4^L`` (the input was not a deferred forward output).
    """
    hp, wp = padded_shape(h, w, levels)
    coef = np.asarray(coef, dtype=np.int64)
    common = coef << (levels - position_levels(hp, wp, levels))
    low, details = unpack_layout(common, hp, wp, levels)
    for lev in range(levels, 0, -1):
        low = _inverse_butterfly(low, details[lev - 1] << np.int64(levels - lev))
    if np.any(low & ((1 << (2 * levels)) - 1)):
        raise ValueError("inverse_deferred_exact: coefficients are not a deferred forward output")
    return (low >> (2 * levels))[:, :, :h, :w]


def per_level_roundtrip_bound(levels: int) -> int:
    """Max abs error of `inverse_int` after `forward_int`, ``PER_LEVEL``, any rounding, no saturation.

    ``E_L = 0``, ``E_{l-1} = floor(3/2 + E_l / 2)`` (see module docstring): 1 for one level, else 2.

    >>> [per_level_roundtrip_bound(n) for n in (1, 2, 3, 4)]
    [1, 2, 2, 2]
    """
    _check_levels(levels)
    err2 = 0  # twice the bound, kept integral
    for _ in range(levels):
        err2 = 2 * ((3 + err2 // 2) // 2)  # floor(3/2 + E/2) with E = err2 / 2
    return err2 // 2


def _round_params(shift: int, rounding: Rounding) -> tuple[int, int, int]:
    """``(shift, bias, odd)`` with ``round_shift(v, shift, rounding) == (v + bias + ((v >> shift) & odd)) >> shift``.

    ``half_up`` adds half; ``half_even`` adds half - 1 plus the kept value's low bit (so a tie rounds up
    only from an odd value); ``floor`` and ``shift == 0`` add nothing. Branch-free, so the kernels' inner
    loops vectorize whatever the mode.
    """
    if shift == 0 or rounding is Rounding.FLOOR:
        return shift, 0, 0
    half = 1 << (shift - 1)
    if rounding is Rounding.HALF_UP:
        return shift, half, 0
    if rounding is Rounding.HALF_EVEN:
        return shift, half - 1, 1
    raise InputError(_WHERE, "rounding", "a Rounding member", rounding)


def _half_args(rounding: Rounding) -> tuple:
    """``(rnd, odd)`` of `_half` for a rounding shift right by 1: the bias (`_round_params`) and 1 for
    ``half_even`` (else None). With shift 1, ``half_even``'s bias is 0, so the kernels may add the bias to
    the butterflies' common term before the odd term is taken."""
    _, bias, odd = _round_params(1, rounding)
    return bias, (odd or None)


def _inverse_args(h: int, w: int, spec: HaarSpec, width_bits: int) -> tuple:
    """Scalar arguments of `_inverse_plane` after ``src, out`` and the scratch buffers."""
    hp, wp = padded_shape(h, w, spec.levels)
    lo, hi = signed_range(width_bits)
    if spec.normalize is Normalize.DEFERRED:
        return (spec.levels, hp, wp, h, w, None, None, _round_params(spec.levels, spec.rounding), lo, hi)
    return (spec.levels, hp, wp, h, w, *_half_args(spec.rounding), None, lo, hi)


# Row modes, compile-time constants at each call site so LLVM drops the unused work: _FAST does not clip
# but tracks whether a value (loaded or produced) leaves the register's range (2 ops a value instead of
# 4), and the caller then redoes the row with _EXACT, which clips and counts. Rows never read what they
# write, so a redo recomputes the same sums.
_FAST, _EXACT = 1, 2


@numba.njit(cache=True, inline="always")
def _half(v, rnd, odd):
    """PER_LEVEL's rounding shift right by 1 of a butterfly sum whose common term already carries the bias
    ``rnd`` (see `_half_args`); ``rnd`` None: DEFERRED, no shift."""
    if rnd is None:
        return v
    if odd is None:
        return v >> 1
    return (v + ((v >> 1) & 1)) >> 1


@numba.njit(cache=True, inline="always")
def _clip4(y1, y2, y3, y4, lo, hi):
    """Clip four values to ``[lo, hi]``: the clipped values and how many were clipped."""
    c1, c2, c3, c4 = min(max(y1, lo), hi), min(max(y2, lo), hi), min(max(y3, lo), hi), min(max(y4, lo), hi)
    return c1, c2, c3, c4, np.int64(c1 != y1) + np.int64(c2 != y2) + np.int64(c3 != y3) + np.int64(c4 != y4)


@numba.njit(cache=True, inline="always")
def _fwd_row(a, oa, b, ob, ylow, ol, coef, o2, o3, o4, w, rnd, odd, lo, hi, mode):
    """One block row of one forward level in row mode ``mode``: rows ``a[oa:]``, ``b[ob:]`` (2w values
    each) -> y1 at ``ylow[ol:]``, y2..y4 at ``coef[o2:]``, ``coef[o3:]``, ``coef[o4:]`` (w values each).
    Returns the clips (_EXACT) or 1 if the row must be redone (_FAST)."""
    sat, mn, mx = np.int64(0), np.int64(0), np.int64(0)
    for j in range(w):
        p, q = np.int64(a[oa + 2 * j]), np.int64(a[oa + 2 * j + 1])
        r, t = np.int64(b[ob + 2 * j]), np.int64(b[ob + 2 * j + 1])
        if rnd is not None:
            p += rnd  # the rounding bias, common to the four sums
        s_top, d_top, s_bot, d_bot = p + q, p - q, r + t, r - t
        y1, y2 = _half(s_top + s_bot, rnd, odd), _half(d_top + d_bot, rnd, odd)
        y3, y4 = _half(s_top - s_bot, rnd, odd), _half(d_top - d_bot, rnd, odd)
        if mode == _EXACT:
            y1, y2, y3, y4, k = _clip4(y1, y2, y3, y4, lo, hi)
            sat += k
        elif mode == _FAST:
            mn = min(mn, min(min(y1, y2), min(y3, y4)))
            mx = max(mx, max(max(y1, y2), max(y3, y4)))
        ylow[ol + j] = y1
        coef[o2 + j] = y2
        coef[o3 + j] = y3
        coef[o4 + j] = y4
    if mode == _FAST:
        return np.int64(mn < lo or mx > hi)
    return sat


@numba.njit(cache=True, inline="always")
def _fwd_row_sat(a, oa, b, ob, ylow, ol, coef, o2, o3, o4, w, rnd, odd, lo, hi):
    """`_fwd_row` with exact clips: _FAST, redone _EXACT if a value left the range."""
    if _fwd_row(a, oa, b, ob, ylow, ol, coef, o2, o3, o4, w, rnd, odd, lo, hi, _FAST):
        return _fwd_row(a, oa, b, ob, ylow, ol, coef, o2, o3, o4, w, rnd, odd, lo, hi, _EXACT)
    return np.int64(0)


@numba.njit(cache=True, inline="always")
def _load_row(xp, r, h, w, buf):
    """Row ``r`` of the (h, w) plane into ``buf[:w]`` as int64, zeros below the map (the padding);
    ``buf[w:]`` stays zero."""
    if r < h:
        for j in range(w):
            buf[j] = xp[r, j]
    else:
        for j in range(w):
            buf[j] = 0


@numba.njit(cache=True, nogil=True)
def _fwd_level1(xp, h, w, r0, r1, ta, cp, hl, wl, rnd, odd, lo, hi):
    """Forward level 1 of one plane: xp (h, w) (rows loaded into r0, r1 with the padding) -> y1 into ta,
    y2..y4 into cp. Returns the clips. (Each level is its own function: inlined into the plane loop,
    the rows run slower.)"""
    size = hl * wl
    sat = np.int64(0)
    for i in range(hl):
        _load_row(xp, 2 * i, h, w, r0)
        _load_row(xp, 2 * i + 1, h, w, r1)
        o = i * wl
        sat += _fwd_row_sat(r0, 0, r1, 0, ta, o, cp, size + o, 2 * size + o, 3 * size + o, wl, rnd, odd, lo, hi)
    return sat


@numba.njit(cache=True, nogil=True)
def _fwd_level(cur, nxt, cp, hl, wl, rnd, odd, lo, hi):
    """Forward level >= 2 of one plane: low band cur (2hl, 2wl) -> y1 into nxt, y2..y4 into cp. Returns
    the clips."""
    size = hl * wl
    sat = np.int64(0)
    for i in range(hl):
        o = i * wl
        sat += _fwd_row_sat(cur, 4 * o, cur, 4 * o + 2 * wl, nxt, o, cp, size + o, 2 * size + o, 3 * size + o,
                            wl, rnd, odd, lo, hi)
    return sat


@numba.njit(cache=True, nogil=True)
def _forward_kernel(x, coef, lows, keep, levels, hp, wp, rnd, odd, lo, hi):
    """All levels of the forward unit, one (n, c) plane at a time, padding implicit. x (N, C, H, W) any
    integer dtype; writes coef (N, C, P) in layout order and, if ``keep``, lows (N, C, Q) (low bands of
    levels 1..L-1, finest first); returns the number of clipped values. ``rnd, odd``: `_half`. Each level
    reads its low band from one (P/4,) scratch and writes the next into the other (separate buffers keep
    the row loop vectorized)."""
    n_, c_, h, w = x.shape
    r0, r1 = np.zeros(wp, np.int64), np.zeros(wp, np.int64)
    ta, tb = np.empty(hp * wp // 4, np.int64), np.empty(hp * wp // 4, np.int64)
    sat = np.int64(0)
    for n in range(n_):
        for c in range(c_):
            cp, xp = coef[n, c], x[n, c]
            hl, wl = hp >> 1, wp >> 1
            size = hl * wl
            sat += _fwd_level1(xp, h, w, r0, r1, ta, cp, hl, wl, rnd, odd, lo, hi)
            cur, nxt = ta, tb
            off = 0  # where the next low band goes in lp
            for lev in range(1, levels + 1):
                if lev > 1:
                    hl, wl = hp >> lev, wp >> lev
                    size = hl * wl
                    sat += _fwd_level(cur, nxt, cp, hl, wl, rnd, odd, lo, hi)
                    cur, nxt = nxt, cur
                if lev < levels:
                    if keep:
                        lp = lows[n, c]
                        for p in range(size):
                            lp[off + p] = cur[p]
                    off += size
                else:
                    for p in range(size):
                        cp[p] = cur[p]
    return sat


@numba.njit(cache=True, inline="always")
def _inv_row(low, ol, src, o2, o3, o4, ds, d0, od0, d1, od1, w, lo, hi, rnd, odd, fin, mode):
    """One block row of one inverse level in row mode ``mode`` (_FAST or _EXACT): y1 at ``low[ol:]`` (a
    register value), y2..y4 loaded from ``src[o2:]``, ``src[o3:]``, ``src[o4:]`` (input register, then
    << ``ds`` if DEFERRED) -> rows ``d0[od0:]``, ``d1[od1:]`` (2w values each) after `_half` (``rnd,
    odd``), the output register and, unless ``fin`` is None, the final rounding shift ``fin = (fs, fbias,
    fodd)``. Returns the clips, inputs and outputs (_EXACT), or 1 if the row must be redone (_FAST)."""
    sat, mn, mx = np.int64(0), np.int64(0), np.int64(0)
    for j in range(w):
        y1 = low[ol + j]
        y2, y3, y4 = np.int64(src[o2 + j]), np.int64(src[o3 + j]), np.int64(src[o4 + j])
        if mode == _EXACT:
            y2, y3, y4, _, k = _clip4(y2, y3, y4, y1, lo, hi)  # y1 is a register value: never clipped
            sat += k
        else:
            mn = min(mn, min(y2, min(y3, y4)))
            mx = max(mx, max(y2, max(y3, y4)))
        if rnd is None:
            y2, y3, y4 = y2 << ds, y3 << ds, y4 << ds
        else:
            y1 += rnd  # the rounding bias, common to the four sums
        p, q, r, t = y1 + y3, y2 + y4, y1 - y3, y2 - y4
        a, b = _half(p + q, rnd, odd), _half(p - q, rnd, odd)
        c, d = _half(r + t, rnd, odd), _half(r - t, rnd, odd)
        if mode == _EXACT:
            a, b, c, d, k = _clip4(a, b, c, d, lo, hi)
            sat += k
        else:
            mn = min(mn, min(min(a, b), min(c, d)))
            mx = max(mx, max(max(a, b), max(c, d)))
        if fin is not None:
            fs, fbias, fodd = fin
            a = (a + fbias + ((a >> fs) & fodd)) >> fs
            b = (b + fbias + ((b >> fs) & fodd)) >> fs
            c = (c + fbias + ((c >> fs) & fodd)) >> fs
            d = (d + fbias + ((d >> fs) & fodd)) >> fs
        d0[od0 + 2 * j] = a
        d0[od0 + 2 * j + 1] = b
        d1[od1 + 2 * j] = c
        d1[od1 + 2 * j + 1] = d
    if mode == _FAST:
        return np.int64(mn < lo or mx > hi)
    return sat


@numba.njit(cache=True, inline="always")
def _inv_row_sat(low, ol, src, o2, o3, o4, ds, d0, od0, d1, od1, w, lo, hi, rnd, odd, fin):
    """`_inv_row` with exact clips: _FAST, redone _EXACT if a value left the range."""
    if _inv_row(low, ol, src, o2, o3, o4, ds, d0, od0, d1, od1, w, lo, hi, rnd, odd, fin, _FAST):
        return _inv_row(low, ol, src, o2, o3, o4, ds, d0, od0, d1, od1, w, lo, hi, rnd, odd, fin, _EXACT)
    return np.int64(0)


@numba.njit(cache=True, nogil=True)
def _inverse_plane(src, outp, bufa, bufb, rb0, rb1, levels, hp, wp, h, w, rnd, odd, fin, lo, hi):
    """The whole inverse unit on one plane: src (P,) layout-order coefficients (any integer dtype,
    saturated to ``[lo, hi]`` as loaded) -> outp (h, w) int64, cropped. ``rnd, odd``: PER_LEVEL's
    `_half` (None: DEFERRED); ``fin``: DEFERRED's final rounding shift (`_inv_row`). bufa, bufb: (P/4,)
    int64 scratch for the low bands; rb0, rb1: (wp,) int64 row scratch, which every level's butterflies
    write (then copied into the next low band or the cropped output): rows written straight into the
    bands or outp do not vectorize. Returns the number of clipped values."""
    sat = np.int64(0)
    hl, wl = hp >> levels, wp >> levels
    for p in range(hl * wl):  # LL_L into the low-band register
        v = np.int64(src[p])
        cl = min(max(v, lo), hi)
        sat += np.int64(cl != v)
        bufa[p] = cl
    cur, nxt = bufa, bufb
    for lev in range(levels, 1, -1):
        hl, wl = hp >> lev, wp >> lev
        size = hl * wl
        for i in range(hl):
            o = i * wl
            sat += _inv_row_sat(cur, o, src, size + o, 2 * size + o, 3 * size + o, levels - lev,
                                rb0, 0, rb1, 0, wl, lo, hi, rnd, odd, None)
            for j in range(2 * wl):
                nxt[4 * o + j] = rb0[j]
                nxt[4 * o + 2 * wl + j] = rb1[j]
        cur, nxt = nxt, cur
    hl, wl = hp >> 1, wp >> 1
    size = hl * wl
    for i in range(hl):  # level 1 into the output rows
        o = i * wl
        sat += _inv_row_sat(cur, o, src, size + o, 2 * size + o, 3 * size + o, levels - 1,
                            rb0, 0, rb1, 0, wl, lo, hi, rnd, odd, fin)
        for r, buf in ((2 * i, rb0), (2 * i + 1, rb1)):
            if r < h:
                for j in range(w):
                    outp[r, j] = buf[j]
    return sat


@numba.njit(cache=True, nogil=True)
def _inverse_dense_kernel(coef, out, levels, hp, wp, h, w, rnd, odd, fin, lo, hi):
    """`_inverse_plane` over every plane of coef (N, C, P) -> out (N, C, h, w); returns the clips."""
    n_, c_, p_ = coef.shape
    bufa, bufb = np.empty(p_ // 4, np.int64), np.empty(p_ // 4, np.int64)
    rb0, rb1 = np.empty(wp, np.int64), np.empty(wp, np.int64)
    sat = np.int64(0)
    for n in range(n_):
        for c in range(c_):
            sat += _inverse_plane(coef[n, c], out[n, c], bufa, bufb, rb0, rb1, levels, hp, wp, h, w,
                                  rnd, odd, fin, lo, hi)
    return sat


@numba.njit(cache=True, nogil=True)
def _inverse_kept_kernel(acc, idx, out, levels, hp, wp, h, w, rnd, odd, fin, lo, hi):
    """Zero-fill of the kept columns acc (N, C, k) at positions idx (N, k) into one (P,) plane scratch,
    then `_inverse_plane`; out (N, C, h, w). Only the kept positions are ever nonzero, so the scratch
    is cleared by resetting those after each n. Returns the clips."""
    n_, c_, k_ = acc.shape
    p_ = hp * wp
    plane = np.zeros(p_, np.int64)
    bufa, bufb = np.empty(p_ // 4, np.int64), np.empty(p_ // 4, np.int64)
    rb0, rb1 = np.empty(wp, np.int64), np.empty(wp, np.int64)
    sat = np.int64(0)
    for n in range(n_):
        for c in range(c_):
            for j in range(k_):
                plane[idx[n, j]] = acc[n, c, j]
            sat += _inverse_plane(plane, out[n, c], bufa, bufb, rb0, rb1, levels, hp, wp, h, w,
                                  rnd, odd, fin, lo, hi)
        for j in range(k_):
            plane[idx[n, j]] = 0
    return sat


def _inverse_butterfly(low: np.ndarray, det: np.ndarray) -> np.ndarray:
    """LL (N, C, h, w) and details (N, C, 3, h, w) -> (N, C, 2h, 2w) block values a, b, c, d, unnormalized."""
    y2, y3, y4 = det[:, :, 0], det[:, :, 1], det[:, :, 2]
    p, q, r, s = low + y3, y2 + y4, low - y3, y2 - y4
    n, c, h, w = low.shape
    out = np.empty((n, c, 2 * h, 2 * w), dtype=np.result_type(low, det))
    out[:, :, 0::2, 0::2] = p + q
    out[:, :, 0::2, 1::2] = p - q
    out[:, :, 1::2, 0::2] = r + s
    out[:, :, 1::2, 1::2] = r - s
    return out


def _check_levels(levels: int) -> None:
    if int(levels) != levels or not 1 <= levels <= 16:
        raise InputError(_WHERE, "levels", "an integer in 1..16", levels)


def _check_width(width_bits: int) -> None:
    if int(width_bits) != width_bits or not 2 <= width_bits <= _MAX_WIDTH_BITS:
        raise InputError(_WHERE, "width_bits", f"an integer in 2..{_MAX_WIDTH_BITS}", width_bits)


def _check_spec(spec: HaarSpec) -> None:
    _check_levels(spec.levels)
    _check_width(spec.width_bits)
    if not isinstance(spec.normalize, Normalize):
        raise InputError(_WHERE, "normalize", "a Normalize member", spec.normalize)


def _check_nchw(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or 0 in x.shape:
        raise InputError(_WHERE, "x", "a non-empty (N, C, H, W) array", x.shape)
    return x


def _check_int_input(x: np.ndarray, in_bits: int) -> np.ndarray:
    """Validate integer (N, C, H, W) input fitting ``in_bits`` signed; return it (any integer dtype)."""
    x = _check_nchw(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise InputError(_WHERE, "x", "an integer array", x.dtype)
    if int(in_bits) != in_bits or not 2 <= in_bits <= _MAX_WIDTH_BITS:
        raise InputError(_WHERE, "in_bits", f"an integer in 2..{_MAX_WIDTH_BITS}", in_bits)
    lo, hi = signed_range(in_bits)
    info = np.iinfo(x.dtype)
    if lo <= info.min and info.max <= hi:  # every value of the dtype fits (e.g. int8, in_bits 8): no pass
        return x
    xmin, xmax = int(x.min()), int(x.max())  # no int64 copy: the kernel widens as it loads
    if xmin < lo or xmax > hi:
        raise InputError(_WHERE, "x", f"values in [{lo}, {hi}] ({in_bits}-bit signed)", f"[{xmin}, {xmax}]")
    return x
