"""Block-by-block evaluation (issue #6, memory): the layer runs image by image and channel block by channel
block; keep=False keeps nothing big. Neither may change a number."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wccsim.calibrate import CalibSample, act_params
from wccsim.simulate import layer as layer_mod
from wccsim.simulate import calibrate_plain, run_datapath, run_plain, calibrate_layer, simulate_layer, simulate_plain
from wccsim.hw import ActSign, CalibMethod, DatapathSpec, QuantSpec, RequantMode, RequantSpec, WeightGranularity
from wccsim.metrics import ErrorSum, error_stats

from test_layer import smooth_maps

SPECS = {
    "default": DatapathSpec(),
    "max_pow2_per_channel": DatapathSpec(quant=QuantSpec(calib=CalibMethod.MAX,
                                                         weight_granularity=WeightGranularity.PER_CHANNEL),
                                         requant=RequantSpec(mode=RequantMode.POW2)),
    "percentile_unsigned": DatapathSpec(quant=QuantSpec(calib=CalibMethod.PERCENTILE, act_sign=ActSign.UNSIGNED)),
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    x = smooth_maps(rng, 3, 10, 19, 22, relu=True).astype(np.float32)
    w = rng.normal(size=(7, 10)) / 3
    b = rng.normal(size=7) * 0.1
    return x, w, b


@pytest.mark.parametrize("name", sorted(SPECS))
def test_many_blocks_equal_one_block(data, name, monkeypatch):
    """1 output channel per block (7 blocks per image, 21 in all) gives the same stages and counters as one
    block per image, and the same errors up to the float64 summation order."""
    x, w, b = data
    spec = SPECS[name]
    one = simulate_layer(x, w, b, spec, 0.4, stride=1)
    monkeypatch.setattr(layer_mod, "_BLOCK_ELEMS", 1)
    assert len(layer_mod.prepare(x, w, b, 1).blocks()) == 7
    many = simulate_layer(x, w, b, spec, 0.4, stride=1)
    assert list(one.stages) == list(many.stages)
    for s in one.stages:
        assert np.array_equal(one.stages[s].values, many.stages[s].values), s
    assert one.counters == many.counters and np.array_equal(one.y, many.y)
    for res_one, res_many in [(one, many)] + [(one.baselines[k], many.baselines[k]) for k in one.baselines]:
        assert np.array_equal(res_one.y, res_many.y)
        for key, e in res_one.errors.items():
            for f in ("mse", "sqnr_db", "max_abs"):
                assert math.isclose(getattr(e, f), getattr(res_many.errors[key], f), rel_tol=1e-12)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_keep_false_changes_no_number(data, name):
    x, w, b = data
    spec = SPECS[name]
    full = simulate_layer(x, w, b, spec, 0.3, stride=2)
    lean = simulate_layer(x, w, b, spec, 0.3, stride=2, keep=False)
    assert lean.y is None and lean.stages == {} and lean.output_shape == full.y.shape
    assert lean.errors == full.errors and lean.counters == full.counters  # same blocks, same order: exact
    assert lean.topk_overlap_with_ref == full.topk_overlap_with_ref
    assert np.array_equal(lean.selection.idx, full.selection.idx)
    for k, base in full.baselines.items():
        other = lean.baselines[k]
        assert other.y is None and other.errors == base.errors and other.counters == base.counters
        assert other.input_nonzero_fraction == base.input_nonzero_fraction
    plain = simulate_plain(x, w, b, spec, 6, stride=2)
    plain_lean = simulate_plain(x, w, b, spec, 6, stride=2, keep=False)
    assert plain_lean.errors == plain.errors and plain_lean.counters == plain.counters


def test_nonzero_fraction_counts_codes_off_the_zero_point(data):
    x, w, b = data
    r = simulate_plain(x, w, b, DatapathSpec(), 8)
    q = r.stages["input_q"]
    assert r.input_nonzero_fraction == np.count_nonzero(q.values != q.zero_point) / q.values.size
    assert 0.0 < r.input_nonzero_fraction < 1.0  # post-ReLU data: zeros exist


def test_run_datapath_keep_false_same_output(data):
    x, w, b = data
    params = calibrate_layer(x, w, b, DatapathSpec(), 0.5)
    full = run_datapath(x, params, DatapathSpec(), 0.5)
    lean = run_datapath(x, params, DatapathSpec(), 0.5, keep=False)
    assert lean.stages == {} and np.array_equal(lean.y, full.y) and lean.counters == full.counters


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS)
@pytest.mark.parametrize("stride", [1, 2])
def test_float32_output_and_input_are_the_float64_paths_values(data, spec, stride):
    """The network's hooks run on float32 activations and want float32 outputs (`y_dtype`): the same
    values as the float64 path rounded to float32, from a float32 input as from its float64 copy (the
    quantizer widens each value exactly), and without recorded stages the input codes straight in the MAC's
    narrow dtype; odd sizes, WCC and the plain path."""
    x, w, b = data
    x32 = x[:, :, 1:, :-2].astype(np.float32)  # odd height, strided below
    x64 = x32.astype(np.float64)
    params = calibrate_layer(x64, w, b, spec, 0.5, stride)
    ref = run_datapath(x64, params, spec, 0.5, stride)  # stages recorded: the int64 codes path
    got = run_datapath(x32, params, spec, 0.5, stride, keep=False, y_dtype=np.float32)
    assert got.y.dtype == np.float32 and np.array_equal(got.y, ref.y.astype(np.float32))
    assert got.counters == ref.counters
    plain = calibrate_plain([x64], w, b, spec, 6, stride)
    ref_p = run_plain(x64, plain, spec, stride)
    got_p = run_plain(x32, plain, spec, stride, keep=False, y_dtype=np.float32)
    assert got_p.y.dtype == np.float32 and np.array_equal(got_p.y, ref_p.y.astype(np.float32))
    assert got_p.counters == ref_p.counters and got_p.input_nonzero_fraction == ref_p.input_nonzero_fraction


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 400), cuts=st.lists(st.integers(0, 400), max_size=6),
       method=st.sampled_from(list(CalibMethod)), sign=st.sampled_from(list(ActSign)),
       bits=st.integers(2, 12), seed=st.integers(0, 2**32 - 1))
def test_calib_sample_in_blocks_equals_whole_tensor(size, cuts, method, sign, bits, seed):
    """CalibSample fed in arbitrary blocks gives exactly act_params of the whole tensor."""
    x = np.random.default_rng(seed).standard_normal(size) * 3 - 0.5
    edges = sorted({0, size, *[c % (size + 1) for c in cuts]})
    sample = CalibSample(method)
    for lo, hi in zip(edges, edges[1:]):
        sample.add(x[lo:hi])
    assert sample.params(bits, sign, 99.0) == act_params(x, bits, sign, method, 99.0)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 300), cut=st.integers(0, 300), seed=st.integers(0, 2**32 - 1))
def test_error_sum_in_blocks_matches_error_stats(size, cut, seed):
    rng = np.random.default_rng(seed)
    ref, test = rng.standard_normal(size), rng.standard_normal(size)
    cut %= size + 1
    acc = ErrorSum()
    for lo, hi in ((0, cut), (cut, size)):
        if hi > lo:
            acc.add(ref[lo:hi], test[lo:hi])
    got, want = acc.stats(), error_stats(ref, test)
    assert got.max_abs == want.max_abs
    assert math.isclose(got.mse, want.mse, rel_tol=1e-12) and math.isclose(got.sqnr_db, want.sqnr_db, rel_tol=1e-12)


def test_keep_false_working_set_is_bounded():
    """simulate_layer(keep=False) never holds the output tensor per stage: its peak of traced allocations
    (numpy reports to tracemalloc) stays under 3x the layer's float32 tensors (x, w, b, y), the
    `wccsim run` memory target of issue #6. Holding one float64 output alone would take 4x."""
    import tracemalloc
    rng = np.random.default_rng(0)
    x = smooth_maps(rng, 2, 16, 128, 128, relu=True).astype(np.float32)
    w = (rng.normal(size=(32, 16)) / 4).astype(np.float32)
    b = (rng.normal(size=32) * 0.1).astype(np.float32)
    layer_bytes = x.nbytes + w.nbytes + b.nbytes + 4 * 2 * 32 * 128 * 128
    simulate_layer(x[:, :, :16, :16], w, b, DatapathSpec(), 0.5, keep=False)  # compile outside the trace
    tracemalloc.start()
    try:
        simulate_layer(x, w, b, DatapathSpec(), 0.5, keep=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * layer_bytes, (peak / 2**20, layer_bytes / 2**20)


def test_keep_false_bias_add_does_not_wrap_a_saturated_accumulator():
    """Accumulators saturated at the int32 ceiling plus a large positive bias exceed int32: the bias add
    must not wrap in the lean path (pre_requant is acc_bits + 1 wide)."""
    from wccsim.hw import MacSpec, Overflow
    spec = DatapathSpec(quant=QuantSpec(act_bits=16, weight_bits=16, calib=CalibMethod.MAX,
                                        act_sign=ActSign.SIGNED),
                        mac=MacSpec(acc_bits=32, overflow=Overflow.SATURATE))
    x = np.full((1, 8, 4, 4), 1.0)
    w = np.full((2, 8), 1.0)
    b = np.array([1e3, -1e3])
    full = simulate_plain(x, w, b, spec, 16)
    assert full.counters["acc_overflows"] > 0
    assert full.stages["pre_requant"].values.max() > np.iinfo(np.int32).max  # the case this test is about
    lean = simulate_plain(x, w, b, spec, 16, keep=False)
    assert lean.errors == full.errors and lean.counters == full.counters
