"""Joint top-k selector: k rule, energies, exact/tiled/threshold selection, ties, overlap."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from wccsim.datapath.haar import forward_int
from wccsim.datapath.topk import deferred_level_shift, energy, overlap, select, tile_quotas
from wccsim.errors import InputError
from wccsim.hw import HaarSpec, Metric, Normalize, TopkMode, TopkSpec
from wccsim.reference import haar_forward
from wccsim.rules import Selection, kept_positions, padded_shape, position_levels

MODES = list(TopkMode)


def _spec(mode, tile=8):
    return TopkSpec(mode=mode, tile_positions=tile)


def _check_selection(sel: Selection, n: int, p: int, k: int) -> None:
    assert sel.k == k
    assert sel.bitmap.shape == (n, p) and sel.bitmap.dtype == bool
    assert sel.idx.shape == (n, k) and sel.idx.dtype == np.int64
    assert (sel.bitmap.sum(axis=1) == k).all()
    assert (np.diff(sel.idx, axis=1) > 0).all()
    assert np.take_along_axis(sel.bitmap, sel.idx, axis=1).all()


# ---- kept_positions ------------------------------------------------------------------------------------------

def test_num_kept_exact_decimal():
    assert 0.29 * 100 < 29  # the float product would give 28
    assert kept_positions(0.29, 100) == 29
    assert kept_positions(0.1, 30) == 3  # 0.1 * 30 = 3.0000000000000004 in float; exact is 3 too
    assert kept_positions(0.57, 100) == 57  # 0.57 * 100 = 56.99999999999999 in float
    assert kept_positions(1.0, 1) == 1 and kept_positions(1, 64) == 64
    assert kept_positions(1e-9, 64) == 1  # max(1, ...)
    assert kept_positions(0.5, 3) == 1 and kept_positions(0.999, 1000) == 999


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.0000001, float("nan"), float("inf"), True, "0.5", None])
def test_num_kept_rejects_bad_rate(rate):
    with pytest.raises(InputError, match="rate"):
        kept_positions(rate, 10)


def test_num_kept_rejects_bad_positions():
    with pytest.raises(InputError, match="positions"):
        kept_positions(0.5, 0)


# ---- energy --------------------------------------------------------------------------------------------

def test_energy_metrics_on_crafted_coefficients():
    coef = np.array([[[3, -1, 0], [-4, 2, 0]]])  # (N=1, C=2, P=3)
    assert energy(coef, Metric.L2).tolist() == [[25, 5, 0]]
    assert energy(coef, Metric.L1).tolist() == [[7, 3, 0]]
    assert energy(coef, Metric.LINF).tolist() == [[4, 2, 0]]
    assert energy(coef, Metric.L2, np.array([0, 2, 4])).tolist() == [[25, 20, 0]]
    assert energy(coef, Metric.L2).dtype == np.int64


def test_energy_overflow_guard():
    coef = np.full((1, 4, 2), 1 << 30, dtype=np.int64)  # 4 * 2^60 = 2^62 fits, shifted by 1 does not
    assert energy(coef, Metric.L2)[0, 0] == 1 << 62
    with pytest.raises(InputError, match="int64"):
        energy(coef, Metric.L2, np.array([1, 0]))
    with pytest.raises(InputError, match="int64"):
        energy(np.full((1, 9, 1), 1 << 30, dtype=np.int64), Metric.L2)  # 9 * 2^60 > 2^63 - 1


def test_energy_rejects_float_coefficients():
    with pytest.raises(InputError, match="integer"):
        energy(np.zeros((1, 2, 3)), Metric.L2)


@pytest.mark.parametrize("metric", list(Metric))
def test_deferred_level_shift_restores_orthonormal_order(metric):
    """Deferred coefficients weighted by the shift give exactly 4^L (or 2^L) x the orthonormal energy."""
    levels, h, w = 3, 12, 20
    x = np.random.default_rng(1).integers(-128, 128, size=(2, 3, h, w))
    hp, wp = padded_shape(h, w, levels)
    fwd = forward_int(x, HaarSpec(levels=levels, normalize=Normalize.DEFERRED, width_bits=20), 8)
    got = energy(fwd.coef, metric, deferred_level_shift(hp, wp, levels, metric))
    ortho = haar_forward(x.astype(np.float64), levels)
    if metric is Metric.L2:
        want = (ortho ** 2).sum(axis=1) * 4 ** levels
    elif metric is Metric.L1:
        want = np.abs(ortho).sum(axis=1) * 2 ** levels
    else:
        want = np.abs(ortho).max(axis=1) * 2 ** levels
    np.testing.assert_array_equal(got, want)  # exact: the float values here are small integers
    shift = deferred_level_shift(hp, wp, levels, metric)
    per = 2 if metric is Metric.L2 else 1
    np.testing.assert_array_equal(shift, per * (levels - position_levels(hp, wp, levels)))


# ---- exact ---------------------------------------------------------------------------------------------

def test_exact_ties_choose_lower_positions():
    e = np.array([[5, 7, 5, 5, 7, 0, 5]])
    assert select(e, 1, _spec(TopkMode.EXACT)).idx.tolist() == [[1]]
    assert select(e, 3, _spec(TopkMode.EXACT)).idx.tolist() == [[0, 1, 4]]
    assert select(e, 4, _spec(TopkMode.EXACT)).idx.tolist() == [[0, 1, 2, 4]]
    assert select(np.zeros((1, 6), dtype=np.int64), 2, _spec(TopkMode.EXACT)).idx.tolist() == [[0, 1]]


def test_exact_matches_sorted_order_per_row():
    rng = np.random.default_rng(2)
    e = rng.integers(0, 20, size=(4, 50))
    sel = select(e, 13, _spec(TopkMode.EXACT))
    _check_selection(sel, 4, 50, 13)
    for row in range(4):
        ranked = sorted(range(50), key=lambda p: (-e[row, p], p))[:13]
        assert sel.idx[row].tolist() == sorted(ranked)


def test_select_accepts_unsigned_energies():
    e = np.array([[3, 9, 0, 9]], dtype=np.uint32)
    for mode in MODES:
        assert select(e, 2, _spec(mode, tile=2)).idx.tolist() == [[1, 3]]


def test_select_accepts_float_energies():
    e = np.array([[0.5, 2.0, 1.5, 2.0]])
    assert select(e, 2, _spec(TopkMode.EXACT)).idx.tolist() == [[1, 3]]


# ---- tiled and threshold -------------------------------------------------------------------------------

def test_tile_quotas_largest_remainder():
    assert tile_quotas(5, 10, 4).tolist() == [2, 2, 1]
    assert tile_quotas(10, 10, 4).tolist() == [4, 4, 2]
    assert tile_quotas(1, 64, 8).tolist() == [1] + [0] * 7  # ties to the lower tile
    q = tile_quotas(37, 200, 16)
    assert q.sum() == 37 and (q <= 16).all() and q[-1] <= 8


def test_tiled_keeps_quota_per_tile():
    e = np.array([[9, 1, 1, 8, 7, 7, 0, 1, 3, 3]])  # tiles [0..3], [4..7], [8, 9]; k = 5 -> quotas 2, 2, 1
    sel = select(e, 5, _spec(TopkMode.TILED, tile=4))
    assert sel.idx.tolist() == [[0, 3, 4, 5, 8]]


def test_threshold_fills_boundary_bin_in_position_order():
    # bins: 9 -> 4, 8 -> 4, 5 -> 3, 6 -> 3, 7 -> 3, 1 -> 1; k = 4 keeps bin 4 and the first two of bin 3
    e = np.array([[5, 9, 1, 6, 8, 7]])
    assert select(e, 4, _spec(TopkMode.THRESHOLD)).idx.tolist() == [[0, 1, 3, 4]]
    # exact would keep 9, 8, 7, 6 instead
    assert select(e, 4, _spec(TopkMode.EXACT)).idx.tolist() == [[1, 3, 4, 5]]


def test_threshold_exact_on_full_int64_range():
    e = np.array([[(1 << 62) + 1, 1 << 62, (1 << 62) - 1, 0]], dtype=np.int64)
    assert select(e, 2, _spec(TopkMode.THRESHOLD)).idx.tolist() == [[0, 1]]
    assert select(e, 1, _spec(TopkMode.THRESHOLD)).idx.tolist() == [[0]]


@pytest.mark.parametrize("mode", MODES)
def test_modes_keep_exactly_k_and_overlap(mode):
    rng = np.random.default_rng(4)
    coef = rng.integers(-100, 100, size=(3, 8, 256)) * (rng.random((3, 1, 256)) < 0.3)
    e = energy(coef, Metric.L2)
    for k in (1, 17, 77, 256):
        sel = select(e, k, _spec(mode, tile=64))
        _check_selection(sel, 3, 256, k)
        ov = overlap(sel, select(e, k, _spec(TopkMode.EXACT)))
        assert 0.0 <= ov <= 1.0
        if k == 256 or mode is TopkMode.EXACT:
            assert ov == 1.0
    # sparse data: the approximations find most of the same positions at 30 % kept
    k = kept_positions(0.3, 256)
    ov = overlap(select(e, k, _spec(mode, tile=64)), select(e, k, _spec(TopkMode.EXACT)))
    assert ov > 0.6


def test_overlap_value_and_mismatch():
    a = select(np.array([[4, 3, 2, 1]]), 2, _spec(TopkMode.EXACT))
    b = select(np.array([[4, 1, 2, 3]]), 2, _spec(TopkMode.EXACT))
    assert overlap(a, b) == 0.5
    with pytest.raises(InputError, match="overlap"):
        overlap(a, select(np.array([[4, 3, 2, 1]]), 3, _spec(TopkMode.EXACT)))


def test_select_rejects_bad_k_and_negative_energy():
    with pytest.raises(InputError, match="k"):
        select(np.ones((1, 4)), 5, _spec(TopkMode.EXACT))
    with pytest.raises(InputError, match="k"):
        select(np.ones((1, 4)), 0, _spec(TopkMode.EXACT))
    with pytest.raises(InputError, match="non-negative"):
        select(np.array([[1, -1]]), 1, _spec(TopkMode.EXACT))
    with pytest.raises(InputError, match="tile_positions"):
        select(np.ones((1, 4), dtype=np.int64), 1, _spec(TopkMode.TILED, tile=0))


# ---- property tests -----------------------------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 3), p=st.integers(1, 300), rate=st.floats(1e-6, 1.0, exclude_min=False),
       tile=st.integers(1, 70), hi=st.integers(1, 1 << 40), mode=st.sampled_from(MODES),
       seed=st.integers(0, 2**31 - 1))
def test_property_every_mode_keeps_exactly_k(n, p, rate, tile, hi, mode, seed):
    e = np.random.default_rng(seed).integers(0, hi, size=(n, p), endpoint=True)
    k = kept_positions(rate, p)
    assert 1 <= k <= p
    sel = select(e, k, _spec(mode, tile=tile))
    _check_selection(sel, n, p, k)
    exact = select(e, k, _spec(TopkMode.EXACT))
    # exact keeps the k largest: nothing dropped beats anything kept
    kept_min = np.where(exact.bitmap, e, np.iinfo(np.int64).max).min(axis=1)
    dropped_max = np.where(exact.bitmap, -1, e).max(axis=1)
    assert (dropped_max <= kept_min).all()
    assert 0.0 <= overlap(sel, exact) <= 1.0
