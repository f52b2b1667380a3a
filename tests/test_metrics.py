"""Error statistics: hand-computed values, zero-error and zero-reference corners, input checks."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from wccsim.errors import InputError
from wccsim.metrics import ErrorStats, ErrorSum, error_stats


def test_error_stats_hand_values():
    s = error_stats(np.array([3.0, 4.0]), np.array([3.0, 3.0]))
    assert s.mse == 0.5
    assert s.max_abs == 1.0
    assert s.sqnr_db == pytest.approx(10 * math.log10(25.0), abs=1e-12)


def test_error_stats_zero_error_is_plus_inf():
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    assert error_stats(x, x) == ErrorStats(0.0, math.inf, 0.0)


def test_error_stats_zero_reference_is_minus_inf():
    s = error_stats(np.zeros(3), np.array([0.0, 1.0, 0.0]))
    assert s.sqnr_db == -math.inf and s.max_abs == 1.0


def test_error_stats_tiny_error_does_not_underflow():
    s = error_stats(np.array([1e-150]), np.array([1e50]))  # energy ratio 1e-400 underflows float64
    assert s.sqnr_db == pytest.approx(-4000.0, rel=1e-9)


def test_error_stats_rejects_mismatch_and_nan():
    with pytest.raises(InputError, match="shape"):
        error_stats(np.zeros(3), np.zeros(4))
    with pytest.raises(InputError, match="finite"):
        error_stats(np.zeros(2), np.array([0.0, np.nan]))
    with pytest.raises(InputError, match="finite"):
        error_stats(np.array([np.inf, 0.0]), np.zeros(2))


def test_error_stats_of_finite_values_whose_squares_overflow_are_not_called_nan():
    s = error_stats(np.array([1e200]), np.array([-1e200]))  # sums overflow to inf: not a NaN/Inf input
    assert s.max_abs == 2e200 and s.mse == math.inf


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3 * 4096 + 17), f32=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_one_pass_sums_equal_numpy_float64_over_blocks(n, f32, seed):
    """The one-pass kernel (runs of 4096 elements) against numpy's float64 arithmetic on the widened
    arrays, added over uneven blocks as `ErrorSum` is used (image by image, channel block by block)."""
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4)
    test = (ref + rng.standard_normal(n) * 10.0 ** rng.integers(-6, 1)).astype(np.float32 if f32 else np.float64)
    cuts = sorted({0, n, *rng.integers(1, n, size=min(3, n - 1)).tolist()}) if n > 1 else [0, n]
    acc = ErrorSum()
    for a, b in zip(cuts, cuts[1:]):
        acc.add(ref[a:b], test[a:b])
    err = test.astype(np.float64) - ref
    assert acc.count == n and acc.max_abs == np.max(np.abs(err))
    assert acc.err_energy == pytest.approx(np.sum(err * err), rel=1e-12)
    assert acc.ref_energy == pytest.approx(np.sum(ref * ref), rel=1e-12)
