import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wccsim.calibrate import (
    QuantParams, act_params, clip_value, levels, quantize, requant_params, weight_params,
)
from wccsim.hw import ActSign, CalibMethod, WeightGranularity


def _qmse(x, qp):
    return float(np.mean(((quantize(x, qp) - qp.zero_point) * qp.scale - x) ** 2))


def test_levels_are_symmetric_narrow_when_signed():
    assert levels(8, True) == (-127, 127)
    assert levels(8, False) == (0, 255)
    assert levels(2, True) == (-1, 1)
    with pytest.raises(ValueError):
        levels(1, True)


def test_max_and_percentile():
    x = np.concatenate([np.linspace(-1, 1, 10001), [-50.0]])
    assert clip_value(x, CalibMethod.MAX, 8, True) == 50.0
    assert clip_value(x, CalibMethod.MAX, 8, False) == 1.0
    p = clip_value(x, CalibMethod.PERCENTILE, 8, True, percentile=99.0)
    assert p == pytest.approx(np.percentile(np.abs(x), 99.0))
    assert p < 1.0


def test_mse_clips_outliers_and_beats_max():
    rng = np.random.default_rng(0)
    x = rng.laplace(size=200_000)
    alpha = clip_value(x, CalibMethod.MSE, 4, True)
    assert alpha < np.abs(x).max()
    qp_mse = act_params(x, 4, ActSign.SIGNED, CalibMethod.MSE)
    qp_max = act_params(x, 4, ActSign.SIGNED, CalibMethod.MAX)
    assert _qmse(x, qp_mse) < _qmse(x, qp_max)
    # deterministic
    assert clip_value(x, CalibMethod.MSE, 4, True) == alpha


def test_mse_on_large_tensor_is_deterministic_and_sane():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 16, 128, 128))  # > 2^18 elements: strided subsample
    a1 = clip_value(x, CalibMethod.MSE, 8, True)
    a2 = clip_value(x.copy(), CalibMethod.MSE, 8, True)
    assert a1 == a2 and 2.0 < a1 <= np.abs(x).max()


def test_act_params_auto_sign():
    pos = np.abs(np.random.default_rng(2).normal(size=1000))
    qp = act_params(pos, 8, ActSign.AUTO, CalibMethod.MAX)
    assert not qp.signed and qp.zero_point == 0
    assert qp.scale == pytest.approx(pos.max() / 255)
    qp = act_params(pos - 0.5, 8, ActSign.AUTO, CalibMethod.MAX)
    assert qp.signed and qp.scale == pytest.approx(np.abs(pos - 0.5).max() / 127)
    qp = act_params(pos - 0.5, 8, ActSign.UNSIGNED, CalibMethod.MAX)
    assert not qp.signed and quantize(pos - 0.5, qp).min() == 0


def test_all_zero_tensor():
    qp = act_params(np.zeros(10), 8, ActSign.AUTO, CalibMethod.MSE)
    assert qp.scale == 1.0
    assert (quantize(np.zeros(10), qp) == 0).all()
    assert (weight_params(np.zeros((3, 4)), 8, WeightGranularity.PER_CHANNEL) == 1.0).all()


def test_quantize_rounds_half_to_even_and_clips():
    qp = QuantParams(scale=1.0, zero_point=0, bits=8, signed=True)
    assert quantize(np.array([0.5, 1.5, 2.5, -0.5, -1.5, 300.0, -300.0]), qp).tolist() == [0, 2, 2, 0, -2, 127, -127]
    qpu = QuantParams(scale=1.0, zero_point=3, bits=4, signed=False)
    assert quantize(np.array([-10.0, 0.0, 20.0]), qpu).tolist() == [0, 3, 15]


def test_weight_params():
    w = np.array([[1.0, -2.0], [0.5, 0.25]])
    assert weight_params(w, 8, WeightGranularity.PER_TENSOR) == pytest.approx(2.0 / 127)
    np.testing.assert_allclose(weight_params(w, 8, WeightGranularity.PER_CHANNEL), [2.0 / 127, 0.5 / 127])
    qp = QuantParams(scale=1.0, zero_point=0, bits=8, signed=True)
    s = weight_params(w, 8, WeightGranularity.PER_CHANNEL).reshape(-1, 1)
    assert quantize(w, qp, scale=s).tolist() == [[64, -127], [127, 64]]


def test_requant_params_record():
    out = QuantParams(scale=0.5, zero_point=2, bits=8, signed=True)
    p = requant_params(0.01, out, weight_scale=0.02)
    assert p.real_scale == pytest.approx(0.0004)
    assert int(p.multiplier) * 2.0 ** (-31 - int(p.shift)) == pytest.approx(0.0004, rel=1e-9)
    assert p.float_scale.dtype == np.float32
    assert p.float_scale == np.float32(np.float32(0.01) * np.float32(0.02)) / np.float32(0.5)
    assert int(p.pow2_shift) == 12  # 2^-12: the largest power of two not above 0.0004
    assert (p.zero_point, p.out_bits, p.signed) == (2, 8, True)
    with pytest.raises(ValueError):
        requant_params(0.0, out)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 16), st.sampled_from(list(CalibMethod)), st.booleans(), st.integers(0, 2**32 - 1))
def test_property_quantized_values_in_levels(bits, method, signed, seed):
    x = np.random.default_rng(seed).normal(size=500) * 3
    qp = act_params(x, bits, ActSign.SIGNED if signed else ActSign.UNSIGNED, method)
    q = quantize(x, qp)
    lo, hi = levels(bits, signed)
    assert qp.scale > 0 and q.min() >= lo and q.max() <= hi
    # in-range values are within half a step
    inside = np.abs(x) <= (hi - qp.zero_point) * qp.scale
    if not signed:
        inside &= x >= 0
    err = np.abs((q - qp.zero_point) * qp.scale - x)[inside]
    assert (err <= qp.scale / 2 * (1 + 1e-9)).all()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("qp", [QuantParams(0.037, 0, 8, True), QuantParams(0.02, 0, 8, False),
                                QuantParams(0.5, 0, 4, True), QuantParams(0.25, 3, 8, False),
                                QuantParams(1e-3, 0, 16, True)])
def test_quantize_fused_path_equals_the_numpy_formula(dtype, qp):
    """Per-tensor float32/64 inputs take a numba pass; it must equal clip(rint(x / s) + zp) exactly,
    exact ties (round half to even), clipping and strided views included."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((2, 5, 7, 9)) * 40 * qp.scale * 2 ** (qp.bits - 4)).astype(dtype)
    x.flat[:40] = (np.arange(40) - 20) * qp.scale * 0.5            # k + 1/2 steps: ties
    qmin, qmax = levels(qp.bits, qp.signed)
    for view in (x, x[:, :, ::2, ::3]):
        want = np.clip(np.rint(view.astype(np.float64) / qp.scale) + qp.zero_point, qmin, qmax).astype(np.int64)
        got = quantize(view, qp)
        assert got.dtype == np.int64 and got.shape == view.shape
        np.testing.assert_array_equal(got, want)
