"""Joint top-k selector with bitmap (DESIGN.md section 2, step 3).

One energy per spatial position, computed across channels on the Haar unit's integer output, picks the
same ``k`` positions for every channel; ``k`` is the caller's (`wccsim.rules.kept_positions`). The output is a P-bit bitmap (bit p = position p of the Haar
layout) and the kept indices in ascending position order, i.e. the column order of the C x k matrix
that the MAC array reads.

Modes (`TopkSpec.mode`); every mode keeps exactly ``k`` positions:

- ``EXACT``: the ``k`` largest energies; ties go to the lower position index (deterministic).
- ``TILED``: streaming. Positions are cut into tiles of ``T = tile_positions`` consecutive layout
  positions (the last tile may be shorter). Tile ``i`` of ``T_i`` positions keeps a quota
  ``q_i = floor(k * T_i / P)``; the ``r = k - sum q_i`` remaining slots (``r`` < number of tiles) go one
  each to the tiles with the largest fractional part ``(k * T_i) mod P``, ties to the lower tile index
  (largest-remainder rule). The quotas depend only on ``(k, P, T)``, so hardware computes them once per
  layer; within a tile the ``q_i`` largest energies are kept, ties to the lower position.
- ``THRESHOLD``: two passes over the energies. Pass 1 builds a histogram with power-of-two bins,
  ``bin(e) = bit_length(e)`` (bin 0 holds e = 0, bin b holds ``2^(b-1) <= e < 2^b``), and finds the
  boundary bin ``B``: fewer than ``k`` energies lie in bins above ``B``, at least ``k`` in bins >= ``B``.
  Pass 2 streams the positions in order, keeps every position whose bin is above ``B`` and the first
  ``k - count(bins > B)`` positions (in position order) whose bin equals ``B``.

Energies are non-negative; `select` accepts int64 (hardware) or float64 (the float reference) energies.
"""

from __future__ import annotations


import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from wccsim.errors import InputError
from wccsim.hw import Metric, TopkMode, TopkSpec
from wccsim.rules import Selection, position_levels

__all__ = [
    "energy", "deferred_level_shift", "select", "gather", "tile_quotas", "overlap",
]

_WHERE = "topk"
_INT64_MAX = (1 << 63) - 1


def energy(coef: np.ndarray, metric: Metric, level_shift: np.ndarray | None = None) -> np.ndarray:
    """Per-position energy across channels, on integer coefficients.

    Parameters
    ----------
    coef : np.ndarray
        (N, C, P) integer coefficients; int64 and int32 are read in place, other integer dtypes are
        converted to int64 first.
    metric : Metric
        ``L2``: sum of squares; ``L1``: sum of absolute values; ``LINF``: max absolute value.
    level_shift : np.ndarray, optional
        (P,) int64 left shift applied to each position's energy (see `deferred_level_shift`).

    Returns
    -------
    np.ndarray
        (N, P) int64.

    Raises
    ------
    InputError
        If the worst case of the inputs' magnitude could overflow int64.
    """
    coef = np.asarray(coef)
    if coef.ndim != 3 or coef.dtype.kind not in "iu":
        raise InputError(_WHERE, "coef", "an (N, C, P) integer array", f"{coef.dtype} {coef.shape}")
    if coef.dtype not in _KERNEL_DTYPES:
        coef = coef.astype(np.int64, order="C")
    elif not coef.flags.c_contiguous:
        coef = np.ascontiguousarray(coef)
    if level_shift is None:
        shift, shifts = 0, _NO_SHIFT
    else:
        if np.shape(level_shift) != coef.shape[2:] or np.min(level_shift) < 0:
            raise InputError(_WHERE, "level_shift", f"({coef.shape[2]},) non-negative shifts", np.shape(level_shift))
        shift = int(np.max(level_shift, initial=0))
        # Shifts of 64 or more only pass the range check when every coefficient is 0 (then any shift
        # gives 0); clamping them keeps the kernel's shifts defined.
        shifts = np.minimum(np.asarray(level_shift, dtype=np.int64), 63)
    # Enum members compare by identity; a dict lookup would hash them in Python (slow per call).
    code = 0 if metric is Metric.L2 else 1 if metric is Metric.L1 else 2 if metric is Metric.LINF else None
    if code is None:
        raise InputError(_WHERE, "metric", "a Metric member", metric)
    n, c, p = coef.shape
    out = np.empty((n, p), dtype=np.int64)
    lo, hi = _energy_kernel(coef, code, shifts, level_shift is not None, out)
    # The kernel wraps silently on overflow; the exact worst case from its min/max decides, as before.
    _check_energy_range(max(-lo, hi), c, code, shift)
    return out


def deferred_level_shift(hp: int, wp: int, levels: int, metric: Metric) -> np.ndarray:
    """Energy weights for ``DEFERRED`` Haar coefficients, as left shifts per position.

    A level-l deferred coefficient is ``2^l`` times orthonormal; multiplying every energy by the same
    ``4^L`` (``L2``) or ``2^L`` (``L1``, ``LINF``) keeps the orthonormal order, so a level-l position's
    energy is shifted left by ``2 (L - l)`` (``L2``) or ``L - l`` (``L1``, ``LINF``).

    Returns
    -------
    np.ndarray
        (hp * wp,) int64.

    >>> deferred_level_shift(4, 4, 2, Metric.L2).tolist()[:5]
    [0, 0, 0, 0, 2]
    """
    per_bit = 2 if metric is Metric.L2 else 1
    return per_bit * (levels - position_levels(hp, wp, levels))


def select(energy: np.ndarray, k: int, spec: TopkSpec) -> Selection:
    """Keep exactly ``k`` positions per row by ``spec.mode`` (see module docstring).

    Parameters
    ----------
    energy : np.ndarray
        (N, P) non-negative, int64 or float64.
    k : int
        1..P.
    spec : TopkSpec
        ``mode`` and, for ``TILED``, ``tile_positions``.

    Returns
    -------
    Selection
    """
    e = np.asarray(energy)
    if e.dtype.kind in "ub":  # negating unsigned values would wrap
        e = e.astype(np.int64)
    if e.ndim != 2 or e.shape[1] < 1:
        raise InputError(_WHERE, "energy", "an (N, P) array", e.shape)
    n, p = e.shape
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= p:
        raise InputError(_WHERE, "k", f"an integer in 1..{p}", k)
    k = int(k)
    if spec.mode is TopkMode.EXACT:
        bitmap, idx = _select_exact(e, k)
        return Selection(bitmap, idx, k)
    if e.size and not np.all(e >= 0):
        raise InputError(_WHERE, "energy", "non-negative values", "negative or NaN")
    if spec.mode is TopkMode.TILED:
        bitmap = _bitmap_tiled(e, k, spec.tile_positions)
    elif spec.mode is TopkMode.THRESHOLD:
        bitmap = _bitmap_threshold(e, k)
    else:
        raise InputError(_WHERE, "mode", "a TopkMode member", spec.mode)
    idx = np.nonzero(bitmap)[1].reshape(n, k).astype(np.int64)
    return Selection(bitmap, idx, k)


def tile_quotas(k: int, positions: int, tile_positions: int) -> np.ndarray:
    """Per-tile quotas of the ``TILED`` mode (largest-remainder rule); they sum to ``k``.

    Returns
    -------
    np.ndarray
        (ceil(P / T),) int64.

    >>> tile_quotas(5, 10, 4).tolist()
    [2, 2, 1]
    """
    if isinstance(tile_positions, bool) or int(tile_positions) != tile_positions or tile_positions < 1:
        raise InputError(_WHERE, "tile_positions", "a positive integer", tile_positions)
    ntiles = -(-positions // tile_positions)
    sizes = np.full(ntiles, tile_positions, dtype=np.int64)
    sizes[-1] = positions - tile_positions * (ntiles - 1)
    quota, frac = np.divmod(k * sizes, positions)
    rest = k - int(quota.sum())
    order = np.argsort(-frac, kind="stable")
    quota[order[:rest]] += 1
    return quota


def gather(coef: np.ndarray, idx: np.ndarray, dtype=None) -> np.ndarray:
    """The selector's gather: kept columns ``coef[n, :, idx[n]]``, ascending position.

    Parameters
    ----------
    coef : (N, C, P) integer ndarray
    idx : (N, k) int64
        Kept positions (`Selection.idx`), each in [0, P).
    dtype : numpy integer dtype, optional
        Output dtype (default ``coef``'s); the caller guarantees the values fit it.

    Returns
    -------
    (N, C, k) ndarray
        Equal to ``np.take_along_axis(coef, idx[:, None, :], axis=2)``.
    """
    coef, idx = np.asarray(coef), np.asarray(idx, dtype=np.int64)
    if coef.ndim != 3 or idx.ndim != 2 or idx.shape[0] != coef.shape[0]:
        raise InputError(_WHERE, "gather", "coef (N, C, P) and idx (N, k)", f"{coef.shape} and {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= coef.shape[2]):
        raise InputError(_WHERE, "idx", f"positions in [0, {coef.shape[2]})", f"[{idx.min()}, {idx.max()}]")
    out = np.empty(coef.shape[:2] + idx.shape[1:], dtype=coef.dtype if dtype is None else dtype)
    _gather_kernel(coef, idx, out)
    return out


@numba.njit(cache=True, nogil=True)
def _gather_kernel(coef, idx, out):
    """out[n, c, j] = coef[n, c, idx[n, j]] (values cast to out's dtype)."""
    for n in range(coef.shape[0]):
        pos = idx[n]
        for c in range(coef.shape[1]):
            row, dst = coef[n, c], out[n, c]
            for j in range(pos.shape[0]):
                dst[j] = row[pos[j]]


def overlap(a: Selection, b: Selection) -> float:
    """Fraction of ``a``'s kept positions that ``b`` keeps too, over the whole batch (1.0 = same set).

    Both selections must have the same bitmap shape and the same ``k``.
    """
    if a.bitmap.shape != b.bitmap.shape or a.k != b.k:
        raise InputError(_WHERE, "overlap", "selections of equal shape and k",
                         f"{a.bitmap.shape}/{a.k} vs {b.bitmap.shape}/{b.k}")
    return float(np.count_nonzero(a.bitmap & b.bitmap)) / float(np.count_nonzero(a.bitmap))


def _select_exact(e: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, P) -> bitmap (N, P) bool and idx (N, k) int64: the k largest per row, ties to the lower position.

    O(P) per row, the same set as a stable descending sort: every energy above the k-th largest value
    ``v``, then the first ``k - #(e > v)`` positions (lowest indices) whose energy equals ``v``.
    `_exact_kernel` finds ``v`` by radix selection, then writes the bitmap and compacts it into idx. Float energies
    are selected on their IEEE bit patterns, which order non-negative doubles as the values do
    (``+ 0.0`` turns -0.0 into +0.0, equal to it as a value).
    """
    if e.dtype.kind == "f":
        if e.size and not np.all(e >= 0):
            raise InputError(_WHERE, "energy", "non-negative values", "negative or NaN")
        keys = np.add(e, 0.0, dtype=np.float64).view(np.int64)
    elif e.dtype.kind == "i":
        keys = e if e.dtype == _INT64 and e.flags.c_contiguous else np.ascontiguousarray(e, dtype=np.int64)
    else:
        raise InputError(_WHERE, "energy", "an integer or float array", e.dtype)
    n, p = keys.shape
    bitmap = np.empty((n, p), dtype=bool)
    idx = np.empty((n, k), dtype=np.int64)
    if not _exact_kernel(keys, k, bitmap, idx):
        raise InputError(_WHERE, "energy", "non-negative values", "negative or NaN")
    return bitmap, idx


def _bitmap_tiled(e: np.ndarray, k: int, tile_positions: int) -> np.ndarray:
    """(N, P) -> (N, P) bool: per-tile top-q_i, quotas from `tile_quotas`."""
    n, p = e.shape
    quota = tile_quotas(k, p, tile_positions)
    ntiles = quota.size
    padded = np.full((n, ntiles * tile_positions), -1, dtype=np.result_type(e, np.int64))
    padded[:, :p] = e
    tiles = padded.reshape(n, ntiles, tile_positions)
    order = np.argsort(-tiles, axis=2, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(tile_positions)[None, None, :], axis=2)
    keep = rank < quota[None, :, None]
    return keep.reshape(n, -1)[:, :p]


def _bitmap_threshold(e: np.ndarray, k: int) -> np.ndarray:
    """(N, P) -> (N, P) bool: power-of-two bin threshold, boundary bin filled in position order.

    The boundary bin is the k-th largest bin value of the row, which is what the histogram pass finds.
    """
    p = e.shape[1]
    bins = _bit_length(e)
    boundary = np.partition(bins, p - k, axis=1)[:, p - k : p - k + 1]
    keep = bins > boundary
    need = k - np.count_nonzero(keep, axis=1, keepdims=True)
    at_boundary = bins == boundary
    keep |= at_boundary & (np.cumsum(at_boundary, axis=1) <= need)
    return keep


def _bit_length(e: np.ndarray) -> np.ndarray:
    """Power-of-two bin of non-negative values: 0 -> 0, [2^(b-1), 2^b) -> b (exact for int64).

    Float energies use the binary exponent of ``np.frexp`` (same bins, also below 1; 0 -> smallest).
    """
    if np.issubdtype(e.dtype, np.integer):
        edges = np.array([1 << b for b in range(63)], dtype=np.int64)
        return np.searchsorted(edges, e, side="right").astype(np.int64)
    _, exponent = np.frexp(e)
    return np.where(e > 0, exponent, np.iinfo(np.int32).min).astype(np.int64)


def _check_energy_range(peak: int, channels: int, code: int, shift: int) -> None:
    """Raise if the worst-case energy of ``channels`` coefficients of magnitude up to ``peak``, shifted by
    ``shift``, could exceed int64 (``code``: 0 L2, 1 L1, 2 LINF)."""
    worst = channels * peak * peak if code == 0 else channels * peak if code == 1 else peak
    if worst << shift > _INT64_MAX:
        raise InputError(_WHERE, "energy", "int64 energies (lower haar.width_bits or fewer channels)",
                         f"worst case {worst} << {shift} bits")


# ---- numba kernels -------------------------------------------------------------------------------------

_INT64 = np.dtype(np.int64)
_KERNEL_DTYPES = frozenset((_INT64, np.dtype(np.int32)))  # coefficient dtypes read in place
_NO_SHIFT = np.zeros(0, dtype=np.int64)
_BLOCK = 65536      # positions per accumulation block: its (block,) int64 partial energies stay in L2 (512 KiB)
_RADIX_BITS = 11    # histogram of 2048 buckets per radix round
_SCAN_BLOCK = 256   # positions per vectorized count in the tie scan
_SAMPLES = 2048     # a row's sample: _SAMPLES to 2 * _SAMPLES keys (P / 4 when that is fewer)
_SAMPLED_ROWS = 2048  # rows of this many keys or more start from a sample of every 4th key or sparser
_HASH = np.uint64(0x9E3779B97F4A7C15)  # multiplier of the sample's offsets (2^64 / golden ratio)
_PACK_BYTES = np.uint64(0x0102040810204080)  # (w * this) >> 56: bit q = low bit of byte q of w


def _pack_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per 8-bit mask: its set bit positions, ascending and zero-padded to 8, and its popcount."""
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    offsets = np.zeros((256, 8), dtype=np.int64)
    for m in range(256):
        ones = np.flatnonzero(bits[m])
        offsets[m, :ones.size] = ones
    return offsets, bits.sum(axis=1)


_OFFSETS, _POPCOUNT = _pack_tables()


@numba.njit(cache=True, inline="always")
def _term(v, metric):
    """One coefficient's contribution: v^2 (metric 0, L2), |v| (1, L1; 2, LINF)."""
    if metric == 0:
        return v * v
    return abs(v)


@numba.njit(cache=True, inline="always")
def _combine(a, b, metric):
    """Accumulate two contributions: max for LINF (2), sum otherwise."""
    if metric == 2:
        return max(a, b)
    return a + b


@numba.njit(cache=True, nogil=True)
def _energy_kernel(coef, metric, shifts, shifted, out):
    """Energies of (N, C, P) int64/int32 ``coef`` into ``out`` (N, P) int64, one pass over ``coef``.

    ``metric``: 0 L2, 1 L1, 2 LINF. Each block of positions accumulates over the channels (four at a time,
    so the block's partial energies are read and written once per four channel rows; the first four write
    them), then is shifted left by ``shifts`` when ``shifted``. Returns (min(0, min coef), max(0, max coef))
    for the range check; overflowing sums wrap here and are rejected by the caller from that min and max.
    """
    n_, c_, p_ = coef.shape
    lo = np.int64(0)
    hi = np.int64(0)
    for n in range(n_):
        for p0 in range(0, p_, _BLOCK):
            p1 = min(p0 + _BLOCK, p_)
            m = p1 - p0
            o = out[n, p0:p1]
            c = 0
            while c + 4 <= c_:
                r0, r1 = coef[n, c, p0:p1], coef[n, c + 1, p0:p1]
                r2, r3 = coef[n, c + 2, p0:p1], coef[n, c + 3, p0:p1]
                first = c == 0
                for i in range(m):
                    a, b = np.int64(r0[i]), np.int64(r1[i])
                    d, f = np.int64(r2[i]), np.int64(r3[i])
                    ab = _combine(_term(a, metric), _term(b, metric), metric)
                    df = _combine(_term(d, metric), _term(f, metric), metric)
                    abdf = _combine(ab, df, metric)
                    o[i] = abdf if first else _combine(o[i], abdf, metric)
                    lo = min(lo, min(min(a, b), min(d, f)))
                    hi = max(hi, max(max(a, b), max(d, f)))
                c += 4
            if c == 0:  # fewer than four channels: nothing has written the block yet
                for i in range(m):
                    o[i] = 0
            while c < c_:
                r0 = coef[n, c, p0:p1]
                for i in range(m):
                    a = np.int64(r0[i])
                    o[i] = _combine(o[i], _term(a, metric), metric)
                    lo = min(lo, a)
                    hi = max(hi, a)
                c += 1
            if shifted:
                s = shifts[p0:p1]
                for i in range(m):
                    o[i] = o[i] << s[i]
    return lo, hi


@numba.njit(cache=True, nogil=True)
def _sample_window(row, lo, hi, need, hist):
    """Key window [wl, wh] that likely holds the need-th largest key of ``row`` (keys in [lo, hi]): from a
    histogram of one key per ``step`` (a power of two, at least 4), widened by 3 standard deviations of the
    sample rank. While the window is at most 8 buckets wide and holds over twice the samples of that
    width, the sample is histogrammed again within it (skewed rows pile most keys into a few buckets)."""
    m = row.size
    step = 4
    while 2 * step * _SAMPLES <= m:
        step *= 2
    ns = m // step
    r = need * ns / m
    d = 3.0 * np.sqrt(r) + 4.0
    above = 0  # sampled keys above [lo, hi]
    while True:
        span = hi - lo
        shift = 0
        while (span >> shift) >= hist.size:
            shift += 1
        b = span >> shift
        hist[:b + 1] = 0
        width = np.uint64(span)
        for i in range(ns):  # key i * step + a hashed offset within the step: a regular stride may alias the layout
            v = row[i * step + np.int64((np.uint64(i) * _HASH >> np.uint64(32)) & np.uint64(step - 1))]
            if np.uint64(v - lo) <= width:
                hist[(v - lo) >> shift] += 1
        while b > 0 and above + hist[b] <= r - d:
            above += hist[b]
            b -= 1
        top = b
        wh = min(hi, lo + ((b + 1) << shift) - 1)
        rest = above
        while b > 0 and above + hist[b] < r + d:
            above += hist[b]
            b -= 1
        wl = lo + (b << shift)
        # Refining narrows the range at least 2^_RADIX_BITS / 8-fold, so it ends.
        if shift == 0 or top - b >= 8 or above + hist[b] - rest <= 4 * d:
            return wl, wh
        lo, hi, above = wl, wh, rest


# The kernels below loop over slices with range(size) and index with unsigned counters: numba then
# emits no negative-index wraparound, which otherwise keeps these loops from vectorizing.


@numba.njit(cache=True, nogil=True)
def _nth_equal(row, t, nth):
    """Position of the nth (1-based) key equal to t; the row holds at least nth of them."""
    seen = 0
    start = 0
    while True:
        block = row[start:min(row.size, start + _SCAN_BLOCK)]
        count = 0
        for i in range(block.size):
            count += np.int64(block[i] == t)
        if seen + count >= nth:
            for i in range(block.size):
                seen += np.int64(block[i] == t)
                if seen == nth:
                    return start + i
        seen += count
        start += block.size


@intrinsic
def _add_store8(typingctx, dst, j, src, base):
    """dst[j:j+8] = src[:8] + base as one 8-lane vector load, add and store (no bounds checks)."""
    def codegen(context, builder, sig, args):
        d = context.make_array(sig.args[0])(context, builder, args[0])
        s = context.make_array(sig.args[2])(context, builder, args[2])
        vt = ir.VectorType(ir.IntType(64), 8)
        vec = builder.load(builder.bitcast(s.data, vt.as_pointer()), align=8)
        undef, zero = ir.Constant(vt, ir.Undefined), ir.Constant(ir.IntType(32), 0)
        lane = builder.insert_element(undef, args[3], zero)
        splat = builder.shuffle_vector(lane, undef, ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))
        dst_ptr = builder.bitcast(builder.gep(d.data, [args[1]]), vt.as_pointer())
        builder.store(builder.add(vec, splat), dst_ptr, align=8)
        return context.get_dummy_value()
    return types.void(dst, types.int64, src, types.int64), codegen


@numba.njit(cache=True, nogil=True)
def _compact(flags, p_, out):
    """Write the positions of the 1 bytes among the first p_ 0/1 bytes of ``flags`` (uint64 words) to ``out``
    in ascending order; returns their count.

    Zero words are skipped; the set bytes of any other word, packed into an 8-bit mask, index a table of
    their positions, stored as 8 slots at once while 8 fit in ``out`` (slots past the set ones are
    overwritten next)."""
    flags_u8 = flags.view(np.uint8)
    for i in range(flags_u8.size - p_):
        flags_u8[p_ + i] = 0
    j = 0
    for w in range(flags.size):
        word = flags[w]
        if word == 0:
            continue
        m = (word * _PACK_BYTES) >> np.uint64(56)
        if j + 8 <= out.size:
            _add_store8(out, j, _OFFSETS[m], w * 8)
        else:
            for q in range(_POPCOUNT[m]):
                out[j + q] = w * 8 + _OFFSETS[m, q]
        j += _POPCOUNT[m]
    return j


@numba.njit(cache=True, nogil=True)
def _flag_above(keys, thr, bits, flags):
    """bits = flags = keys > thr (bool and uint8 0/1)."""
    for i in range(keys.size):
        keep = keys[i] > thr
        bits[i] = keep
        flags[i] = keep


@numba.njit(cache=True, nogil=True)
def _exact_kernel(keys, k, bitmap, idx):
    """Exact top-k of each row of non-negative int64 ``keys`` (N, P) into ``bitmap`` (N, P) and ``idx``
    (N, k); False (outputs unfinished) if a key is negative.

    Radix selection of the k-th largest key ``t``: a histogram of ``_RADIX_BITS`` bits over the current
    value range [lo, hi] finds the bucket holding it, the candidates in that bucket are gathered, and the
    range narrows to the bucket until lo == hi. ``need`` is then t's rank among the keys equal to t, i.e.
    the number of ties to keep, and ``ties`` how many keys equal t. The kept set is every key >= t up to
    ``p_r`` (the position of the need-th tie) and every key > t after it: `_flag_above`, one threshold per
    side of ``p_r``, writes it to the bitmap and to ``flags``, which `_compact` turns into idx. On sampled
    rows, the candidates of the first round are the keys inside the sample's window, flagged by the pass
    that counts the keys above it.
    """
    n_, p_ = keys.shape
    nb = 1 << _RADIX_BITS
    hist = np.zeros(nb, dtype=np.int64)
    scratch = np.empty(p_ + 8, dtype=np.int64)
    flags = np.empty((p_ + 7) // 8, dtype=np.uint64)
    flags_u8 = flags.view(np.uint8)
    for n in range(n_):
        row = keys[n]
        lo = row[0]
        hi = row[0]
        for p in range(p_):
            lo = min(lo, row[p])
            hi = max(hi, row[p])
        if lo < 0:
            return False
        cand = row
        m = p_
        need = np.int64(k)  # rank (1 = largest) of the k-th largest key among the candidates
        ties = np.int64(m)  # keys equal to t, once lo == hi
        if hi > lo and p_ >= _SAMPLED_ROWS:
            # First round from a sample: count the keys above a window [wl, wh] that the sample says
            # holds t and gather those inside it; a wrong guess only costs this pass and the gather.
            wl, wh = _sample_window(row, lo, hi, need, hist)
            above = np.int64(0)
            width = np.uint64(wh - wl)
            for i in range(p_):
                v = row[i]
                above += np.int64(v > wh)
                flags_u8[i] = np.uint64(v - wl) <= width  # wl <= v <= wh in one compare
            j = _compact(flags, p_, scratch)
            if above < need <= above + j:
                for i in range(j):
                    scratch[i] = row[scratch[i]]
                need -= above
                cand = scratch[:j]
                m = j
                lo, hi = wl, wh
                ties = m
        while hi > lo:
            # Buckets: at most about one per candidate (small rows would mostly clear and scan empty
            # buckets), at most nb; only the ones the range uses are cleared.
            buckets = nb
            while buckets > 16 and buckets >= 2 * m:
                buckets >>= 1
            span = hi - lo
            shift = 0
            while (span >> shift) >= buckets:
                shift += 1
            b = span >> shift
            hist[:b + 1] = 0
            for i in range(m):
                hist[(cand[i] - lo) >> shift] += 1
            while hist[b] < need:
                need -= hist[b]
                b -= 1
            if shift == 0:
                lo = lo + b
                ties = hist[b]
                break
            base = lo
            lo = base + (b << shift)
            hi = min(hi, lo + ((np.int64(1) << shift) - 1))
            j = 0
            for i in range(m):
                v = cand[i]
                scratch[j] = v
                j += np.int64(((v - base) >> shift) == b)
            cand = scratch[:j]
            m = j
            ties = m
        t = lo
        p_r = p_ - 1 if need == ties else _nth_equal(row, t, need)
        brow = bitmap[n]
        _flag_above(row[:p_r + 1], t - 1, brow[:p_r + 1], flags_u8[:p_r + 1])
        _flag_above(row[p_r + 1:], t, brow[p_r + 1:], flags_u8[p_r + 1:p_])
        _compact(flags, p_, idx[n])
    return True
