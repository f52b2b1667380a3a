"""The numba top-k kernels (one-pass energy, radix exact selection) equal plain formulations, tolerance 0.

`topk.energy` is compared with a per-metric numpy sum/max in int64 followed by the left shift;
`topk.select` (``EXACT``) with a stable sort by (-energy, position) taking the first ``k``. Cases lean on
ties (small value ranges, all equal, all zero), the k = 1 and k = P ends, odd P, several images, deferred
level shifts, int32 and int64 coefficients and float energies.
"""

import numpy as np
import pytest

from wccsim.datapath import topk
from wccsim.datapath.topk import deferred_level_shift, energy, select
from wccsim.errors import InputError
from wccsim.hw import Metric, TopkMode, TopkSpec
from wccsim.rules import padded_shape

EXACT = TopkSpec(mode=TopkMode.EXACT)


def _plain_energy(coef, metric, shift=None):
    c = np.asarray(coef).astype(np.int64)
    if metric is Metric.L2:
        e = (c * c).sum(axis=1)
    elif metric is Metric.L1:
        e = np.abs(c).sum(axis=1)
    else:
        e = np.abs(c).max(axis=1)
    return e if shift is None else e << shift


def _plain_select(e, k):
    """Bitmap and ascending idx of the k largest per row, ties to the lower position (stable sort)."""
    n, p = e.shape
    bitmap = np.zeros((n, p), dtype=bool)
    idx = np.zeros((n, k), dtype=np.int64)
    for row in range(n):
        order = sorted(range(p), key=lambda q: (-e[row, q], q))[:k]
        bitmap[row, order] = True
        idx[row] = sorted(order)
    return bitmap, idx


def _assert_select_equal(e, k):
    sel = select(e, k, EXACT)
    bitmap, idx = _plain_select(e, k)
    assert sel.k == k
    assert sel.bitmap.dtype == bool and sel.bitmap.shape == bitmap.shape
    assert sel.idx.dtype == np.int64 and sel.idx.shape == idx.shape
    np.testing.assert_array_equal(sel.bitmap, bitmap)
    np.testing.assert_array_equal(sel.idx, idx)


def _energy_cases(rng):
    for trial in range(150):
        n, c = int(rng.integers(1, 4)), int(rng.integers(1, 11))
        levels = int(rng.integers(1, 4))
        h, w = int(rng.integers(1, 20)), int(rng.integers(1, 20))
        hp, wp = padded_shape(h, w, levels)
        if trial % 5 == 0:  # odd P without a level layout
            hp, wp, levels = 1, int(rng.choice([1, 3, 7, 2049])), 0
        bound = int(rng.choice([1, 2, 4, 128, 1 << 15, 1 << 20]))
        coef = rng.integers(-bound + 1, bound, (n, c, hp * wp))
        if trial % 7 == 0:
            coef[:] = int(rng.integers(-2, 3))
        metric = list(Metric)[trial % 3]
        shift = deferred_level_shift(hp, wp, levels, metric) if levels and trial % 2 else None
        dtype = np.int32 if trial % 4 < 2 else np.int64
        yield coef.astype(dtype), metric, shift


def test_energy_equals_plain_formulation():
    rng = np.random.default_rng(11)
    for coef, metric, shift in _energy_cases(rng):
        got = energy(coef, metric, shift)
        assert got.dtype == np.int64 and got.shape == (coef.shape[0], coef.shape[2])
        np.testing.assert_array_equal(got, _plain_energy(coef, metric, shift))


def test_energy_reads_int32_and_strided_coefficients():
    rng = np.random.default_rng(12)
    coef = rng.integers(-300, 300, (2, 9, 40))
    for metric in Metric:
        want = _plain_energy(coef, metric)
        np.testing.assert_array_equal(energy(coef.astype(np.int32), metric), want)
        np.testing.assert_array_equal(energy(np.asfortranarray(coef), metric), want)
        np.testing.assert_array_equal(energy(coef.astype(np.int16), metric), want)


def test_energy_range_check_on_int32_extremes():
    coef = np.full((1, 3, 4), np.iinfo(np.int32).min, dtype=np.int32)  # 3 * 2^62 > 2^63 - 1
    with pytest.raises(InputError, match="int64"):
        energy(coef, Metric.L2)
    assert (energy(coef[:, :1], Metric.L2) == 1 << 62).all()  # 1 * 2^62 fits
    assert (energy(coef, Metric.LINF) == 1 << 31).all()
    with pytest.raises(InputError, match="int64"):
        energy(coef[:, :1], Metric.L2, np.ones(4, dtype=np.int64))


def test_energy_zero_coefficients_take_any_shift():
    got = energy(np.zeros((1, 2, 3), dtype=np.int64), Metric.L2, np.array([100, 0, 64]))
    assert got.tolist() == [[0, 0, 0]]


def test_exact_select_equals_stable_sort():
    rng = np.random.default_rng(13)
    for trial in range(400):
        n, p = int(rng.integers(1, 4)), int(rng.choice([1, 2, 3, 7, 16, 33, 64, 255, 1000]))
        top = int(rng.choice([1, 2, 3, 5, 100, 1 << 20, 1 << 40, 1 << 62]))
        e = rng.integers(0, top, (n, p))
        if trial % 9 == 0:
            e[:] = e[0, 0]  # all equal (all zero when top == 1)
        if trial % 11 == 0:
            e[0, int(rng.integers(0, p))] = (1 << 62) + 7  # one outlier far above the rest
        if trial % 4 == 0:
            e = e.astype(np.float64)
        for k in {1, p, max(1, p // 2), max(1, p // 4), int(rng.integers(1, p + 1))}:
            _assert_select_equal(e, k)


def test_exact_select_on_layer_energies():
    rng = np.random.default_rng(14)
    for coef, metric, shift in list(_energy_cases(rng))[:60]:
        e = energy(coef, metric, shift)
        p = e.shape[1]
        for k in {1, p, max(1, p // 2), max(1, p // 4)}:
            _assert_select_equal(e, k)


def test_exact_select_float_corners():
    e = np.array([[0.0, -0.0, np.inf, 1e-300, 5e-324, 2.0, 2.0, 0.0]])
    for k in range(1, 9):
        _assert_select_equal(e, k)
    _assert_select_equal(e.astype(np.float32), 3)


def test_exact_select_rejects_negative_and_nan():
    for e in (np.array([[1, -1, 3]]), np.array([[0, 1], [2, -5]]), np.array([[1.0, np.nan]]),
              np.array([[1.0, -0.5]]), np.array([[1, 1 << 63]], dtype=np.uint64)):
        with pytest.raises(InputError, match="non-negative"):
            select(e, 1, EXACT)


def test_exact_select_empty_batch():
    sel = select(np.zeros((0, 5), dtype=np.int64), 2, EXACT)
    assert sel.bitmap.shape == (0, 5) and sel.idx.shape == (0, 2) and sel.idx.dtype == np.int64


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16])
def test_gather_equals_take_along_axis(dtype):
    rng = np.random.default_rng(5)
    coef = rng.integers(-30000, 30000, (3, 5, 37))
    idx = np.sort(np.stack([rng.choice(37, 11, replace=False) for _ in range(3)]), axis=1)
    got = topk.gather(coef, idx, dtype)
    assert got.dtype == dtype and np.array_equal(got, np.take_along_axis(coef, idx[:, None, :], axis=2))


def test_gather_refuses_positions_out_of_range():
    with pytest.raises(InputError, match="idx"):
        topk.gather(np.zeros((1, 2, 4), np.int64), np.array([[0, 4]]))


def test_exact_select_sampled_rows():
    """Rows of topk._SAMPLED_ROWS keys or more take the sampled first round: its window guess must not
    matter (wide, tie-heavy and skewed rows; a key far outside the sample's range; negatives the sample
    misses)."""
    rng = np.random.default_rng(15)
    p = 1 << 14
    rows = [rng.integers(0, 1 << 40, p), rng.integers(0, 3, p), np.zeros(p, np.int64),
            np.where(rng.random(p) < 0.9, 0, rng.integers(0, 1 << 20, p)), rng.geometric(0.01, p)]
    rows[2][5] = 1 << 62  # an outlier at an unsampled position
    for row in rows:
        e = np.stack([row, row[::-1]]).astype(np.int64)
        for k in (1, 7, p // 4, p // 2, p - 3, p):
            sel = select(e, k, EXACT)
            order = np.lexsort((np.arange(p)[None, :].repeat(2, 0), -e), axis=1)[:, :k]
            np.testing.assert_array_equal(sel.idx, np.sort(order, axis=1))
            assert sel.bitmap.sum() == 2 * k and np.take_along_axis(sel.bitmap, sel.idx, 1).all()
    for pos in (0, 5, p - 1):  # sampled or not
        e = rng.integers(0, 100, (1, p))
        e[0, pos] = -1
        with pytest.raises(InputError, match="non-negative"):
            select(e, p // 2, EXACT)


def test_energy_rows_longer_than_one_block():
    rng = np.random.default_rng(16)
    p = topk._BLOCK + 37
    coef = rng.integers(-1000, 1000, (2, 5, p))
    shift = rng.integers(0, 4, p)
    for metric in Metric:
        np.testing.assert_array_equal(energy(coef, metric, shift), _plain_energy(coef, metric, shift))
        np.testing.assert_array_equal(energy(coef.astype(np.int32), metric), _plain_energy(coef, metric))


def _lexsort_select(e, k):
    """Ascending kept positions per row: the k largest, ties to the lower position (lexsort reference)."""
    p = e.shape[1]
    order = np.lexsort((np.arange(p)[None, :].repeat(e.shape[0], 0), -e), axis=1)[:, :k]
    return np.sort(order, axis=1)


def test_exact_select_compaction_tails_and_skewed_rows():
    """The 8-positions-per-word compaction (P not a multiple of 8, k near P, dense and sparse kept sets) and
    the sample window's refinement on rows whose keys pile into the lowest histogram bucket."""
    rng = np.random.default_rng(17)
    for p in (1, 7, 8, 9, 15, 16, 17, 63, 65, 2047, 2048, 2053, 9001):
        rows = [rng.integers(0, 5, p), rng.integers(0, 1 << 30, p), np.full(p, 3),
                rng.geometric(0.05, p) ** 3, np.where(rng.random(p) < 0.97, rng.integers(0, 64, p), 1 << 40)]
        for row in rows:
            e = np.stack([row, row[::-1]]).astype(np.int64)
            for k in sorted({1, 2, 7, 8, 9, p // 3, p // 2, p - 9, p - 8, p - 1, p} & set(range(1, p + 1))):
                for ee in (e, np.minimum(e, np.iinfo(np.int32).max).astype(np.int32), e.astype(np.float64)):
                    sel = select(ee, k, EXACT)
                    want = _lexsort_select(ee, k)
                    np.testing.assert_array_equal(sel.idx, want)
                    bitmap = np.zeros(e.shape, dtype=bool)
                    np.put_along_axis(bitmap, want, True, axis=1)
                    np.testing.assert_array_equal(sel.bitmap, bitmap)
