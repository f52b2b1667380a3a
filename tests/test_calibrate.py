import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wccsim.calibrate import (
    CalibSample, QuantParams, act_params, clip_value, levels, quantize, requant_params, weight_params,
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
    exact = np.percentile(np.abs(x), 99.0)
    assert abs(p - exact) <= exact * 2.0**-7 and p < 1.0          # within its histogram bin (module docstring)
    assert clip_value(x, CalibMethod.PERCENTILE, 8, True, percentile=100.0) == 50.0
    assert clip_value(x, CalibMethod.PERCENTILE, 8, False, percentile=100.0) == 1.0


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.floats(0.01, 100.0), st.booleans(), st.integers(0, 2**32 - 1))
def test_property_histogram_percentile_within_its_bin(n, pct, signed, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * np.exp(rng.uniform(-20, 20))
    m = np.abs(x) if signed else np.maximum(x, 0.0)
    p, exact = clip_value(x, CalibMethod.PERCENTILE, 8, signed, pct), np.percentile(m, pct)
    assert abs(p - exact) <= 2.0**-7 * exact * (1 + 1e-12)
    few = rng.choice([1.0, 3.0, 10.0], n) * np.exp(rng.uniform(-20, 20))  # <= 1 value per bin: exact
    assert clip_value(few, CalibMethod.PERCENTILE, 8, True, pct) == pytest.approx(np.percentile(few, pct), rel=1e-12)


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
    x = rng.normal(size=(2, 16, 128, 128))  # 2^19 elements
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


# ------------------------------------------------- one-pass histogram MSE vs the exhaustive search

def _sse(m: np.ndarray, alpha: float, qmax: int) -> float:
    """Exact squared quantize-dequantize error of the magnitudes ``m`` at clipping value ``alpha``."""
    s = alpha / qmax
    return float(np.sum((np.minimum(np.rint(m / s), qmax) * s - m) ** 2))


def _exhaustive(x: np.ndarray, bits: int, signed: bool) -> tuple[np.ndarray, float]:
    """Slow reference (plain numpy, every element, every candidate ``max * i / 128``): the magnitudes and
    the smallest squared error."""
    m = np.abs(x) if signed else np.maximum(x, 0.0)
    qmax = levels(bits, signed)[1]
    return m, min(_sse(m, m.max() * i / 128, qmax) for i in range(1, 129)) if m.max() > 0 else 0.0


def _assert_within_1pct(x: np.ndarray, bits: int, signed: bool, alpha: float, where: str = "") -> None:
    m, best = _exhaustive(x, bits, signed)
    qmax = levels(bits, signed)[1]
    assert 0 < alpha <= m.max(), where
    assert _sse(m, alpha, qmax) <= 1.01 * best, (where, bits, signed, _sse(m, alpha, qmax) / best)


def _trace_tensors():
    """Every tensor `wccsim run` calibrates with MSE on the bundled trace, per layer (input, output and each
    coefficient group; edge_npu datapath, rate 0.5), on a 16 x 16 crop of image 0, each asked bits/sign."""
    import wccsim.simulate.params as prm
    import wccsim.simulate.wcc as wccmod
    from wccsim.hw import load_hw
    from wccsim.simulate import calibrate_layer
    from wccsim.trace import open_trace

    class Recording(CalibSample):
        def __init__(self, method, _records=None):
            super().__init__(method, _records)
            self.blocks, self.asked = [], set()
            recorded.append(self)

        def add(self, block):
            self.blocks.append(np.array(block, dtype=np.float64).ravel())
            return super().add(block)

        @staticmethod
        def add_columns(samples, q, scale, group):
            real = q * np.asarray(scale)
            for g, s in enumerate(samples):
                s.blocks.append(np.array(real[..., np.asarray(group) == g], dtype=np.float64).ravel())
            CalibSample.add_columns(samples, q, scale, group)

        def clip(self, bits, signed, percentile=99.99):
            self.asked.add((bits, signed))
            return super().clip(bits, signed, percentile)

    spec = load_hw("hw_configs/edge_npu.yaml").datapath
    assert spec.quant.calib is CalibMethod.MSE
    trace = open_trace("traces/ppocrv4_det.npz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prm, "CalibSample", Recording)
        mp.setattr(wccmod, "CalibSample", Recording)
        for info in trace.layers:
            d = trace.layer(info.name)
            recorded: list = []
            calibrate_layer(d.x[:1, :, :16 * d.stride, :16 * d.stride], d.w, d.b, spec, 0.5, stride=d.stride)
            assert len(recorded) >= 3  # input, coefficient group(s), output
            for i, r in enumerate(recorded):
                yield f"{info.name}[{i}]", np.concatenate(r.blocks), r.asked


def test_mse_histogram_within_1pct_of_exhaustive_on_every_layer_of_the_bundled_trace():
    """Acceptance (issue 18, 5): on every layer's input, output and coefficient groups the histogram clip's
    squared error is at most 1.01 x the exhaustive search's, at the bits/sign the run asks and at 4 bits.
    Tensors are a 16 x 16 crop, then a fixed random subset of <= 4096 values (the exhaustive search is
    128 passes); `bench/calib_accuracy.py` checks the full tensors (docs/quantization.md)."""
    rng = np.random.default_rng(0)
    n = 0
    for where, x, asked in _trace_tensors():
        if x.size > 4096:
            x = x[rng.choice(x.size, 4096, replace=False)]
        for bits, signed in asked | {(4, s) for _, s in asked}:
            if (np.abs(x) if signed else np.maximum(x, 0.0)).max() > 0:
                _assert_within_1pct(x, bits, signed, clip_value(x, CalibMethod.MSE, bits, signed), where)
                n += 1
    assert n >= 22 * 3 * 2


_DISTS = {
    "normal": lambda r, n: r.standard_normal(n),
    "laplace": lambda r, n: r.laplace(size=n),
    "relu": lambda r, n: np.maximum(r.standard_normal(n), 0.0),
    "uniform": lambda r, n: r.uniform(-1, 1, n),
    "outliers": lambda r, n: np.concatenate([r.standard_normal(n - 3), [40.0, -25.0, 60.0]]),
    "sparse": lambda r, n: r.standard_normal(n) * (r.random(n) < 0.1),
    "lognormal": lambda r, n: r.lognormal(0.0, 2.0, n) * r.choice([-1, 1], n),
}


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(_DISTS)), st.integers(4, 4000), st.integers(2, 12), st.booleans(),
       st.floats(-30, 30), st.integers(0, 2**32 - 1))
def test_property_mse_histogram_within_1pct_of_exhaustive(dist, n, bits, signed, log_scale, seed):
    x = _DISTS[dist](np.random.default_rng(seed), n) * np.exp(log_scale)
    if (np.abs(x) if signed else np.maximum(x, 0.0)).max() > 0:
        _assert_within_1pct(x, bits, signed, clip_value(x, CalibMethod.MSE, bits, signed))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=8, unique=True), st.integers(1, 3000),
       st.integers(2, 12), st.booleans(), st.floats(-30, 30), st.integers(0, 2**32 - 1))
def test_property_mse_exact_for_few_distinct_values(values, n, bits, signed, log_scale, seed):
    """Values at least 1.5 % apart sit one per histogram bin: every candidate's error is exact, so the
    histogram picks an exhaustive minimizer."""
    rng = np.random.default_rng(seed)
    x = rng.choice(values, n) * rng.choice([-1.0, 1.0], n) * np.exp(log_scale)
    m, best = _exhaustive(x, bits, signed)
    if m.max() > 0:
        alpha = clip_value(x, CalibMethod.MSE, bits, signed)
        assert 0 < alpha <= m.max()
        assert _sse(m, alpha, levels(bits, signed)[1]) <= best * (1 + 1e-9)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(list(CalibMethod)), st.sampled_from(sorted(_DISTS)), st.integers(4, 2000),
       st.integers(2, 16), st.booleans(), st.integers(0, 2**32 - 1))
def test_property_clip_in_range_and_on_the_grid(method, dist, n, bits, signed, seed):
    """alpha in (0, amax] (0 only for data without magnitude); MSE picks a grid point amax * i / 128."""
    x = _DISTS[dist](np.random.default_rng(seed), n)
    amax = (np.abs(x) if signed else np.maximum(x, 0.0)).max()
    alpha = clip_value(x, method, bits, signed, 99.0)
    assert (0 < alpha <= amax) if amax > 0 else alpha == 0.0
    if method is CalibMethod.MSE and amax > 0:
        assert alpha in {amax * i / 128 for i in range(1, 129)}


def test_calib_sample_combines_images_and_refuses_non_finite():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(5000), 3 * rng.laplace(size=7000)
    s = CalibSample(CalibMethod.MSE).add(a).add(b.reshape(70, 100))
    assert s.clip(8, True) == clip_value(np.concatenate([a, b]), CalibMethod.MSE, 8, True)
    assert s.seen == 12000 and s.lo == min(a.min(), b.min())
    assert s.add(a.astype(np.float32)).seen == 17000
    with pytest.raises(ValueError, match="2 NaN or infinite"):
        CalibSample(CalibMethod.MAX).add(np.array([1.0, np.nan, np.inf]))


@pytest.mark.parametrize("method", list(CalibMethod))
def test_a_clip_asked_twice_is_the_same_and_an_add_recomputes_it(method):
    x = np.random.default_rng(7).standard_normal(5000) * 10
    s = CalibSample(method).add(x)
    assert s.clip(8, True) == s.clip(8, True) == clip_value(x, method, 8, True)
    s.add(x * 10)  # a wider block: the clip follows it, it does not come from the first call
    assert s.clip(8, True) == clip_value(np.concatenate([x, x * 10]), method, 8, True) > clip_value(x, method, 8, True)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_groups=st.integers(1, 4), rows=st.integers(1, 6), k=st.integers(1, 40),
       dtype=st.sampled_from([np.int16, np.int32, np.int64]), zeros=st.booleans())
def test_add_columns_equals_adding_each_groups_real_values(seed, n_groups, rows, k, dtype, zeros):
    """`CalibSample.add_columns` fills each group's histogram exactly as adding ``(q * scale)[..., group == g]``
    (the same bins, hence the same clips), blocks combining as `add`'s do."""
    rng = np.random.default_rng(seed)
    fast, slow = CalibSample.group(n_groups, CalibMethod.MSE), [CalibSample(CalibMethod.MSE) for _ in range(n_groups)]
    for _ in range(2):  # two blocks (images)
        q = rng.integers(-3000, 3000, (1, rows, k)).astype(dtype)
        if zeros:
            q[rng.random(q.shape) < 0.3] = 0
        scale = np.exp2(rng.integers(-6, 2, (1, 1, k))) * rng.uniform(0.5, 1.5)
        group = rng.integers(0, n_groups, k)
        CalibSample.add_columns(fast, q, scale, group)
        for g, s in enumerate(slow):
            s.add((q * scale)[..., group == g])
    for f, s in zip(fast, slow):
        for signed in (True, False):
            for a, b in zip(f._bins(signed), s._bins(signed)):
                np.testing.assert_array_equal(a, b)
        assert f.clip(8, True) == s.clip(8, True) and f.seen == s.seen


def test_add_columns_refuses_what_it_cannot_place():
    """Samples not made together, float values, and groups beyond the samples are refused."""
    q, scale = np.ones((1, 2, 3), np.int32), np.ones(3)
    with pytest.raises(ValueError, match="CalibSample.group"):
        CalibSample.add_columns([CalibSample(CalibMethod.MSE), CalibSample(CalibMethod.MSE)], q, scale, np.zeros(3))
    with pytest.raises(ValueError, match="integer values"):
        CalibSample.add_columns(CalibSample.group(1, CalibMethod.MSE), q * 1.0, scale, np.zeros(3))
    with pytest.raises(ValueError, match="groups 0..1"):
        CalibSample.add_columns(CalibSample.group(2, CalibMethod.MSE), q, scale, np.array([0, 1, 2]))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(_DISTS)), st.integers(4, 3000), st.integers(2, 12), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_mse_search_picks_the_argmin_of_every_candidate_summed_whole(dist, n, bits, signed, seed):
    """The pruned, coarse-first MSE search returns the first minimum of the 128 candidates' whole errors."""
    import wccsim.calibrate as cal

    x = _DISTS[dist](np.random.default_rng(seed), n)
    sample = CalibSample(CalibMethod.MSE).add(x)
    bins = sample._bins(signed)
    if bins[0].size == 0 or bins[4][-1] <= 0:
        return
    moments, amax, qmax = cal._moments(*bins), float(bins[4][-1]), float(levels(bits, signed)[1])
    whole = [cal._candidate_sse(*moments, amax * (i + 1) / 128 / qmax, qmax, np.inf) for i in range(128)]
    assert cal._best_candidate(*moments, amax, qmax, 128) == int(np.argmin(whole))
