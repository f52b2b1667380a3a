"""Float64 references: ref_conv against a plain loop, ref_wcc structure and rate 1.0 == ref_conv."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from wccsim.errors import InputError
from wccsim.hw import Metric
from wccsim.reference import float_energy, haar_forward, haar_inverse, ref_conv, ref_wcc
from wccsim.rules import kept_positions, padded_shape


def _rel_err(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def _data(seed, n=2, cin=5, cout=4, h=13, w=19):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, cin, h, w)), rng.standard_normal((cout, cin)), rng.standard_normal(cout)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_ref_conv_matches_loop(stride):
    x, w, b = _data(0, n=1, cin=3, cout=2, h=5, w=7)
    y = ref_conv(x, w, b, stride)
    ho, wo = -(-5 // stride), -(-7 // stride)
    assert y.shape == (1, 2, ho, wo) and y.dtype == np.float64
    for o in range(2):
        for i in range(ho):
            for j in range(wo):
                want = sum(w[o, c] * x[0, c, i * stride, j * stride] for c in range(3)) + b[o]
                assert abs(y[0, o, i, j] - want) <= 1e-12
    np.testing.assert_allclose(ref_conv(x, w[:, :, None, None], None, stride), y - b[None, :, None, None],
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", list(Metric))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("levels", [1, 3])
def test_ref_wcc_rate_one_equals_ref_conv(metric, stride, levels):
    x, w, b = _data(1)
    r = ref_wcc(x, w, b, 1.0, levels=levels, metric=metric, stride=stride)
    assert _rel_err(r.y, ref_conv(x, w, b, stride)) <= 1e-12
    np.testing.assert_array_equal(r.y, ref_conv(x, w, b, stride))  # nothing dropped: exactly the conv
    assert r.selection.bitmap.all()


def test_ref_wcc_matches_explicit_eq9():
    x, w, b = _data(2)
    rate, levels = 0.2, 3
    r = ref_wcc(x, w, b, rate, levels=levels)
    hp, wp = padded_shape(13, 19, levels)
    assert r.k == kept_positions(rate, hp * wp) == r.selection.idx.shape[1]
    coef = haar_forward(x, levels)
    np.testing.assert_array_equal(r.coef, coef)
    # T H x, zero-filled: keep the same positions in every channel, then convolve all positions
    mask = r.selection.bitmap[:, None, :]
    out = np.einsum("oc,ncp->nop", w, coef * mask)
    want = haar_inverse(out, 13, 19, levels) + b[None, :, None, None]
    np.testing.assert_allclose(r.y, want, rtol=0, atol=1e-12)
    # the kept positions carry the largest channel energies
    e = float_energy(coef, Metric.L2)
    kept_min = np.where(r.selection.bitmap, e, np.inf).min(axis=1)
    dropped_max = np.where(r.selection.bitmap, -np.inf, e).max(axis=1)
    assert (dropped_max <= kept_min).all()


def test_ref_wcc_error_shrinks_with_rate():
    x, w, b = _data(3)
    ref = ref_conv(x, w, b)
    errs = [np.abs(ref_wcc(x, w, b, rate).y - ref).max() for rate in (0.1, 0.3, 0.6, 1.0)]
    assert errs[0] > errs[2] > errs[3] and errs[3] < 1e-12


def test_ref_wcc_without_bias_and_with_4d_weights():
    x, w, _ = _data(4)
    r1 = ref_wcc(x, w, None, 0.5)
    r2 = ref_wcc(x, w[:, :, None, None], None, 0.5)
    np.testing.assert_array_equal(r1.y, r2.y)


def test_reference_rejects_bad_shapes():
    x, w, b = _data(5)
    with pytest.raises(InputError, match="w"):
        ref_conv(x, w[:, :3], b)
    with pytest.raises(InputError, match="b"):
        ref_conv(x, w, b[:2])
    with pytest.raises(InputError, match="stride"):
        ref_conv(x, w, b, 0)
    with pytest.raises(InputError, match="x"):
        ref_conv(x[0], w, b)
    with pytest.raises(InputError, match="rate"):
        ref_wcc(x, w, b, 0.0)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 20), w=st.integers(1, 20), levels=st.integers(1, 3), stride=st.integers(1, 3),
       seed=st.integers(0, 2**31 - 1))
def test_property_rate_one_is_plain_conv(h, w, levels, stride, seed):
    x, wt, b = _data(seed, n=1, cin=3, cout=2, h=h, w=w)
    r = ref_wcc(x, wt, b, 1.0, levels=levels, stride=stride)
    assert _rel_err(r.y, ref_conv(x, wt, b, stride)) <= 1e-12
