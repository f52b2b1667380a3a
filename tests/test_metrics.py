"""Error statistics: hand-computed values, zero-error and zero-reference corners, input checks."""

import math

import numpy as np
import pytest

from wccsim.errors import InputError
from wccsim.metrics import ErrorStats, error_stats


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
