import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wccsim.calibrate import quantize
from wccsim.datapath import haar, topk
from wccsim.simulate import (
    calibrate_and_run, calibrate_layer, run_datapath, simulate_layer, simulate_plain,
)
from wccsim.datapath.mac import accumulate, int_matmul
from wccsim.errors import InputError
from wccsim.hw import (
    ActSign, DatapathSpec, HaarSpec, MacSpec, Metric, Normalize, Overflow, QuantSpec, RequantMode, RequantSpec,
    TopkMode, TopkSpec, WeightGranularity,
)
from wccsim.metrics import error_stats
from wccsim.reference import ref_conv, ref_wcc
from wccsim.rules import kept_positions, padded_shape, uniform_bits

STAGE_ORDER = ["input_q", "haar_l1", "haar_l2", "haar_l3", "haar_coef", "energy", "bitmap", "kept", "coef_q",
               "weight_q", "acc", "zero_filled", "inverse", "bias_q", "pre_requant", "output_q"]


def smooth_maps(rng, n, c, h, w, sigma=2.0, relu=False):
    """Spatially correlated feature maps (noise low-passed by a Gaussian in the Fourier domain), unit std."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    transfer = np.exp(-2 * (np.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))
    x = np.fft.irfft2(np.fft.rfft2(rng.normal(size=(n, c, h, w))) * transfer, s=(h, w))
    x /= x.std()
    return np.maximum(x, 0.0) if relu else x


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(0)
    x = smooth_maps(rng, 1, 16, 24, 32)
    w = rng.normal(size=(12, 16)) / 4
    b = rng.normal(size=12) * 0.2
    return x, w, b


def _same_stats(got, want):
    """Errors accumulated block by block (image, channel block) equal the whole-tensor ones up to the
    float64 summation order."""
    return all(math.isclose(getattr(got, f), getattr(want, f), rel_tol=1e-12) for f in ("mse", "sqnr_db", "max_abs"))


def _fits(stage):
    v = stage.values
    if stage.signed:
        lo, hi = -(1 << (stage.width_bits - 1)), (1 << (stage.width_bits - 1)) - 1
    else:
        lo, hi = 0, (1 << stage.width_bits) - 1
    holds = np.issubdtype(v.dtype, np.signedinteger) and np.iinfo(v.dtype).min <= lo and np.iinfo(v.dtype).max >= hi
    return holds and (v.size == 0 or (v.min() >= lo and v.max() <= hi))


def test_errors_are_the_documented_comparisons(layer):
    x, w, b = layer
    r = simulate_layer(x, w, b, DatapathSpec(), 0.3)
    y_ref = ref_conv(x, w, b)
    rw = ref_wcc(x, w, b, 0.3)
    assert _same_stats(r.errors["total"], error_stats(y_ref, r.y))
    assert _same_stats(r.errors["quant"], error_stats(rw.y, r.y))
    assert _same_stats(r.errors["compress"], error_stats(y_ref, rw.y))
    assert r.k == rw.k == kept_positions(0.3, 24 * 32) and r.positions == 24 * 32
    assert 0.8 <= r.topk_overlap_with_ref <= 1.0
    assert _same_stats(r.baselines["int8"].errors["total"], error_stats(y_ref, r.baselines["int8"].y))


def test_stages_in_hardware_order_and_fit_their_widths(layer):
    x, w, b = layer
    r = simulate_layer(x, w, b, DatapathSpec(), 0.5)
    assert list(r.stages) == STAGE_ORDER
    for name, s in r.stages.items():
        assert _fits(s), name
        assert len(s.order.split(",")) == s.values.ndim, name
    assert r.stages["inverse"].width_bits == 32 + 3
    base = r.baselines["int8"]
    assert list(base.stages) == ["input_q", "weight_q", "acc", "bias_q", "pre_requant", "output_q"]
    assert all(_fits(s) for s in base.stages.values())


def test_stages_are_consistent_with_each_other(layer):
    x, w, b = layer
    r = simulate_layer(x, w, b, DatapathSpec(), 0.4)
    st_ = r.stages
    k = r.k
    assert (st_["bitmap"].values.sum(axis=1) == k).all()
    kept = np.take_along_axis(st_["haar_coef"].values, r.selection.idx[:, None, :], axis=2)
    np.testing.assert_array_equal(kept, st_["kept"].values)
    # coefficient requant: dequantized coef_q within half a step of the kept real values, except clipped ones
    step = st_["coef_q"].scale
    real = st_["kept"].values * st_["kept"].scale
    deq = st_["coef_q"].values * step
    inside = (real >= -128.5 * step) & (real <= 127.5 * step)
    assert r.counters["coef_saturations"] == np.count_nonzero(~inside)
    assert np.abs(deq - real)[inside].max() <= step * (0.5 + 1e-6)
    assert (np.abs(deq[~inside]) >= 127 * step).all()
    acc, _ = accumulate(int_matmul(st_["weight_q"].values, st_["coef_q"].values), 32, Overflow.SATURATE)
    np.testing.assert_array_equal(acc, st_["acc"].values)
    zf = st_["zero_filled"].values
    assert (zf[~r.selection.bitmap[:, None, :].repeat(zf.shape[1], axis=1)] == 0).all()
    np.testing.assert_array_equal(st_["pre_requant"].values,
                                  st_["inverse"].values + st_["bias_q"].values[None, :, None, None])
    out = st_["output_q"]
    np.testing.assert_array_equal((out.values - out.zero_point) * out.scale, r.y)
    np.testing.assert_array_equal(st_["haar_l1"].values, haar.forward_int(
        st_["input_q"].values, HaarSpec(), 8).per_level[0])


def test_rate_one_is_haar_keep_all_conv_inverse(layer):
    x, w, b = layer
    r = simulate_layer(x, w, b, DatapathSpec(), 1.0)
    assert r.k == r.positions and r.stages["bitmap"].values.all()
    assert r.topk_overlap_with_ref == 1.0
    # compression error: exactly zero (ref_wcc subtracts the conv of the dropped part, empty here)
    assert r.errors["compress"].mse == 0.0 and r.errors["compress"].max_abs == 0.0
    assert r.errors["compress"].sqnr_db == float("inf")


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("normalize", list(Normalize))
def test_rate_one_sqnr_vs_plain_int8(relu, normalize):
    """Documented margin: at rate 1.0 WCC differs from plain int8 only by quantizing Haar coefficients
    instead of pixels. Both errors pass through the same orthonormal inverse and weights, so the loss is
    bounded by the step ratio: SQNR_wcc >= SQNR_int8 - 20 log10(s_coef / s_in) - 3 dB. (The ratio is
    large: 8-bit coefficients span the LL band, ~2^L times the pixels; 13-23 dB on smooth maps.)"""
    rng = np.random.default_rng(3)
    x = smooth_maps(rng, 1, 24, 32, 32, sigma=3.0, relu=relu)
    w = rng.normal(size=(16, 24)) / 5
    b = rng.normal(size=16) * 0.1
    spec = DatapathSpec(haar=HaarSpec(normalize=normalize, width_bits=20))
    r = simulate_layer(x, w, b, spec, 1.0)
    int8 = r.baselines["int8"].errors["total"].sqnr_db
    step_ratio_db = 20 * np.log10(r.stages["coef_q"].scale / r.stages["input_q"].scale)
    assert r.errors["total"].sqnr_db >= int8 - step_ratio_db - 3.0
    assert r.errors["total"].sqnr_db > 20.0


def test_wcc_beats_uniform_at_equal_bit_rate():
    """The paper's Figure 1 claim on smooth maps: 8-bit WCC at rate 1/4 beats 2-bit uniform quantization."""
    rng = np.random.default_rng(4)
    x = smooth_maps(rng, 1, 24, 32, 32, sigma=3.0)
    w = rng.normal(size=(16, 24)) / 5
    r = simulate_layer(x, w, None, DatapathSpec(), 0.25)
    uni = r.baselines["uniform_nbit"]
    assert uni.act_bits == 2 and uni.weight_bits == 8
    assert r.errors["total"].sqnr_db > uni.errors["total"].sqnr_db + 2.0


def test_uniform_bits_rule():
    assert [uniform_bits(r, 8) for r in (1.0, 0.5, 0.25, 0.3125, 0.3, 0.1)] == [8, 4, 2, 3, 2, 2]
    assert uniform_bits(0.29, 16) == 5  # 4.64 -> 5


def test_plain_is_the_int8_baseline_code_path(layer):
    x, w, b = layer
    r = simulate_layer(x, w, b, DatapathSpec(), 0.5)
    p = simulate_plain(x, w, b, DatapathSpec(), 8)
    np.testing.assert_array_equal(p.y, r.baselines["int8"].y)
    assert p.errors["total"] == r.baselines["int8"].errors["total"]
    assert p.act_bits == 8 and p.counters["acc_overflows"] == 0


def test_per_channel_weights(layer):
    x, w, b = layer
    w = w * np.linspace(0.05, 3.0, w.shape[0])[:, None]  # very different row ranges
    pt = simulate_layer(x, w, b, DatapathSpec(), 1.0)
    spec = DatapathSpec(quant=QuantSpec(weight_granularity=WeightGranularity.PER_CHANNEL))
    pc = simulate_layer(x, w, b, spec, 1.0)
    wq = pc.stages["weight_q"]
    assert wq.scale.shape == (w.shape[0], 1)
    assert (np.abs(wq.values).max(axis=1) == 127).all()
    assert pc.baselines["int8"].errors["total"].sqnr_db > pt.baselines["int8"].errors["total"].sqnr_db
    assert pc.errors["total"].sqnr_db > 20


def test_unsigned_input(layer):
    _, w, b = layer
    x = smooth_maps(np.random.default_rng(5), 1, 16, 16, 16, relu=True)
    r = simulate_layer(x, w, b, DatapathSpec(), 0.5)
    s = r.stages["input_q"]
    assert not s.signed and s.values.min() == 0 and s.values.max() == 255
    assert r.errors["total"].sqnr_db > 15
    signed = simulate_layer(x, w, b, DatapathSpec(quant=QuantSpec(act_sign=ActSign.SIGNED)), 0.5)
    assert signed.stages["input_q"].signed and signed.stages["input_q"].values.max() == 127


def test_no_bias_odd_sizes_and_stride(layer):
    _, w, _ = layer
    x = smooth_maps(np.random.default_rng(6), 2, 16, 13, 21)
    r = simulate_layer(x, w, None, DatapathSpec(), 0.5)
    assert r.y.shape == (2, 12, 13, 21) and r.positions == 16 * 24
    assert (r.stages["bias_q"].values == 0).all()
    r2 = simulate_layer(x, w, None, DatapathSpec(), 0.5, stride=2)
    assert r2.y.shape == ref_conv(x, w, None, stride=2).shape == (2, 12, 7, 11)
    assert r2.positions == 8 * 16
    assert _same_stats(r2.errors["total"], error_stats(ref_conv(x, w, None, stride=2), r2.y))
    assert r2.baselines["int8"].y.shape == r2.y.shape


def test_output_requant_modes(layer):
    """FLOAT32 and FIXED_POINT realize the calibrated scale (same error to ~0.1 dB); POW2 rounds the
    multiplier down to a power of two (output steps up to 2x coarser: at most ~6 dB worse)."""
    x, w, b = layer
    res = {m: simulate_layer(x, w, b, DatapathSpec(requant=RequantSpec(mode=m)), 0.5) for m in RequantMode}
    fixed = res[RequantMode.FIXED_POINT]
    for m, r in res.items():
        margin = 6.5 if m is RequantMode.POW2 else 0.1
        for got, ref in ((r.errors["quant"], fixed.errors["quant"]),
                         (r.baselines["int8"].errors["total"], fixed.baselines["int8"].errors["total"])):
            assert got.sqnr_db >= ref.sqnr_db - margin, m
        out = r.stages["output_q"]
        np.testing.assert_array_equal((out.values - out.zero_point) * out.scale, r.y)
    # FLOAT32 rounds once (half to even); TFLite fixed point rounds twice (SRDHM, RDBPOT): off by one, rarely
    diff = res[RequantMode.FLOAT32].stages["output_q"].values - fixed.stages["output_q"].values
    assert np.abs(diff).max() <= 1 and np.mean(diff != 0) < 0.05


def test_accumulator_overflow_is_counted(layer):
    x, w, b = layer
    r = simulate_layer(x, w, b, DatapathSpec(mac=MacSpec(acc_bits=12, overflow=Overflow.WRAP)), 1.0)
    assert r.counters["acc_overflows"] > 0 and r.baselines["int8"].counters["acc_overflows"] > 0
    assert _fits(r.stages["acc"])


def test_invalid_inputs(layer):
    x, w, b = layer
    with pytest.raises(InputError):
        simulate_layer(x, w[:, :5], b, DatapathSpec(), 0.5)
    with pytest.raises(InputError):
        simulate_layer(x, w, b, DatapathSpec(), 0.0)
    with pytest.raises(InputError):
        simulate_layer(x, w, b[:3], DatapathSpec(), 0.5)
    with pytest.raises(InputError):
        simulate_plain(x, w, b, DatapathSpec(), 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 2), cin=st.integers(1, 6), cout=st.integers(1, 5), h=st.integers(1, 19),
       w=st.integers(1, 19), rate=st.floats(0.001, 1.0), act_bits=st.integers(2, 16),
       weight_bits=st.integers(2, 16), lev=st.integers(1, 3), normalize=st.sampled_from(list(Normalize)),
       metric=st.sampled_from(list(Metric)), mode=st.sampled_from(list(TopkMode)), relu=st.booleans(),
       bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_property_invariants(n, cin, cout, h, w, rate, act_bits, weight_bits, lev, normalize, metric, mode,
                             relu, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, cin, h, w))
    x = np.maximum(x, 0) if relu else x
    wt = rng.normal(size=(cout, cin))
    b = rng.normal(size=cout) if bias else None
    spec = DatapathSpec(quant=QuantSpec(act_bits=act_bits, weight_bits=weight_bits),
                        haar=HaarSpec(levels=lev, normalize=normalize, width_bits=act_bits + 2 + 2 * lev),
                        topk=TopkSpec(metric=metric, mode=mode, tile_positions=16),
                        mac=MacSpec(acc_bits=48))
    r = simulate_layer(x, wt, b, spec, rate)
    hp, wp = padded_shape(h, w, lev)
    assert r.positions == hp * wp and r.k == kept_positions(rate, hp * wp)
    assert (r.selection.bitmap.sum(axis=1) == r.k).all()
    assert (np.diff(r.selection.idx, axis=1) > 0).all()
    assert r.y.shape == (n, cout, h, w) and np.isfinite(r.y).all()
    for name, s in r.stages.items():
        assert _fits(s), name
    assert r.stages["coef_q"].width_bits == act_bits
    uni = r.baselines["uniform_nbit"]
    assert uni.act_bits == uniform_bits(rate, act_bits) == uni.stages["input_q"].width_bits
    for base in r.baselines.values():
        assert all(_fits(s) for s in base.stages.values())
    if r.k == r.positions:
        assert r.errors["compress"].mse == 0.0


@pytest.mark.parametrize("spec", [
    DatapathSpec(),
    DatapathSpec(haar=HaarSpec(normalize=Normalize.DEFERRED, width_bits=20),
                 quant=QuantSpec(weight_granularity=WeightGranularity.PER_CHANNEL),
                 requant=RequantSpec(mode=RequantMode.POW2)),
])
@pytest.mark.parametrize("stride", [1, 2])
def test_run_datapath_with_calibrated_params_is_simulate_layer(layer, spec, stride):
    x, w, b = layer
    r = simulate_layer(x, w, b, spec, 0.3, stride)
    params = calibrate_layer(x, w, b, spec, 0.3, stride)
    both_params, both = calibrate_and_run(x, w, b, spec, 0.3, stride)
    assert (both_params.input_qp, both_params.coef_ref_scale, both_params.output_qp) == \
        (params.input_qp, params.coef_ref_scale, params.output_qp)
    np.testing.assert_array_equal(both_params.coef_scale, params.coef_scale)
    assert np.array_equal(both_params.weight_q, params.weight_q) and np.array_equal(both_params.bias_q, params.bias_q)
    for d in (run_datapath(x, params, spec, 0.3, stride), both):
        assert list(d.stages) == list(r.stages) == STAGE_ORDER
        for name, s in r.stages.items():
            got = d.stages[name]
            np.testing.assert_array_equal(got.values, s.values, err_msg=name)
            np.testing.assert_array_equal(got.scale, s.scale, err_msg=name)
            assert (got.width_bits, got.signed, got.order, got.zero_point) == (s.width_bits, s.signed, s.order,
                                                                              s.zero_point), name
        np.testing.assert_array_equal(d.y, r.y)
        assert d.counters == r.counters and (d.k, d.positions) == (r.k, r.positions)
        np.testing.assert_array_equal(d.selection.idx, r.selection.idx)


def test_params_from_one_tensor_apply_to_another(layer):
    """Fixed offline scales, as a chip has them: calibrate on image A, run image B of the same layer shape.
    The datapath keeps A's quantizers (B's own calibration would differ) and stays accurate on B."""
    x, w, b = layer
    other = smooth_maps(np.random.default_rng(7), *x.shape) * 0.8
    spec = DatapathSpec()
    params = calibrate_layer(x, w, b, spec, 0.5)
    d = run_datapath(other, params, spec, 0.5)
    own = simulate_layer(other, w, b, spec, 0.5)
    assert d.stages["input_q"].scale == params.input_qp.scale != own.stages["input_q"].scale
    assert d.stages["coef_q"].scale == params.coef_ref_scale != own.stages["coef_q"].scale
    out = d.stages["output_q"]
    assert out.scale == params.output_qp.scale
    np.testing.assert_array_equal((out.values - out.zero_point) * out.scale, d.y)
    np.testing.assert_array_equal(d.stages["input_q"].values, quantize(other, params.input_qp))
    np.testing.assert_array_equal(d.stages["weight_q"].values, params.weight_q)
    np.testing.assert_array_equal(d.stages["bias_q"].values, params.bias_q)
    assert topk.overlap(d.selection, own.selection) > 0.9  # B's integers at A's input scale: nearly B's choice
    assert error_stats(ref_conv(other, w, b), d.y).sqnr_db > own.errors["total"].sqnr_db - 3.0
    assert error_stats(ref_conv(other, w, b), d.y).sqnr_db > 15.0


def test_run_datapath_invalid_inputs(layer):
    x, w, b = layer
    params = calibrate_layer(x, w, b, DatapathSpec(), 0.5)
    with pytest.raises(InputError):
        run_datapath(x[:, :5], params, DatapathSpec(), 0.5)
    with pytest.raises(InputError):
        run_datapath(x, params, DatapathSpec(), 0.5, stride=0)
    with pytest.raises(InputError):
        run_datapath(x, params, DatapathSpec(quant=QuantSpec(act_bits=6)), 0.5)
    with pytest.raises(InputError):
        run_datapath(x, params, DatapathSpec(haar=HaarSpec(levels=2)), 0.5)
    with pytest.raises(InputError):
        run_datapath(x, params, DatapathSpec(), 0.0)


def test_spec_is_not_mutated(layer):
    x, w, b = layer
    spec = DatapathSpec()
    before = dataclasses.asdict(spec)
    simulate_layer(x, w, b, spec, 0.5)
    assert dataclasses.asdict(spec) == before


def test_public_api_exports():
    import wccsim
    from wccsim.api import simulate_layer as api_simulate_layer

    assert wccsim.simulate_layer is api_simulate_layer is simulate_layer
    assert wccsim.simulate_plain is simulate_plain
    with pytest.raises(AttributeError):
        wccsim.no_such_name  # noqa: B018
