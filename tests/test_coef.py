"""Coefficient quantizer designs (``coef:``): bit-exact against a plain-integer model of stages 4b-8.

The model reads the ``kept`` stage, the layer's offline integer records (`LayerParams.coef`) and the
weights, and recomputes with Python ints, one value at a time: the per-band coefficient requant (gemmlowp
fixed point / float32 multiply / rounding shift; LL_L into ``ll_bits``), the MAC sums, the band rescale
(16-bit multiplier + shift / shift / float32 multiply), zero-fill, the inverse Haar (`test_haar`'s slow
model) and the bias. The offline records are checked against the calibrated real scales they encode.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_haar import _slow_inverse
from test_layer import smooth_maps
from test_requant import mbqm_ref
from wccsim.datapath.rescale import RESCALE_MULT_BITS, RescaleParams, _rescale_columns, rescale, rescale_params
from wccsim.errors import InputError
from wccsim.hw import (
    CoefGranularity, CoefScale, CoefSpec, DatapathSpec, HaarSpec, Normalize, QuantSpec,
    WeightGranularity, hw_from_dict, load_hw, spec_to_dict,
)
from wccsim.rules import band_groups, band_levels, padded_shape, position_bands
from wccsim.simulate import calibrate_layer, simulate_layer

ROOT = Path(__file__).resolve().parents[1]


def _requant_one(x: int, rp, b: int, mode: CoefScale, out_bits: int) -> int:
    """One kept coefficient of band ``b`` through the coefficient requant, in Python ints."""
    if mode is CoefScale.FIXED_POINT:
        y = mbqm_ref(x, int(rp.multiplier[b]), int(rp.left_shift[b]), int(rp.shift[b]))
    elif mode is CoefScale.POW2:
        s = int(rp.pow2_shift[b])
        y = (x + (1 << (s - 1))) >> s if s > 0 else x << -s
    else:
        y = int(np.rint(np.float32(x) * np.float32(rp.float_scale[b])))
    hi = (1 << (out_bits - 1)) - 1
    return min(max(y, -hi - 1), hi)


def _rescale_one(x: int, p, b: int, mode: CoefScale, acc_bits: int) -> int:
    if mode is CoefScale.FLOAT:
        y = int(np.rint(np.float32(x) * np.float32(p.float_scale[b])))
    else:
        m, s = int(p.multiplier[b]), int(p.shift[b])
        y = (x * m + ((1 << (s - 1)) if s else 0)) >> s
    hi = (1 << (acc_bits - 1)) - 1
    return min(max(y, -hi - 1), hi)


def _model(r, params, spec: DatapathSpec):
    """Stages coef_q, acc, zero_filled, pre_requant of image 0, recomputed in Python ints."""
    kept = r.stages["kept"].values[0]
    idx = r.selection.idx[0]
    h, w = r.output_shape[2:]
    hp, wp = padded_shape(h, w, spec.haar.levels)
    band = position_bands(hp, wp, spec.haar.levels)[idx]
    mode, rp, acc_bits = spec.coef.scale, params.coef.requant, spec.mac.acc_bits
    cq = [[_requant_one(int(kept[c, j]), rp, band[j], mode, spec.coef_ll_bits if band[j] == 0 else spec.coef_bits)
           for j in range(len(idx))] for c in range(kept.shape[0])]
    wq = params.weight_q.tolist()
    hi = (1 << (acc_bits - 1)) - 1
    acc = [[min(max(sum(wq[o][c] * cq[c][j] for c in range(len(cq))), -hi - 1), hi) for j in range(len(idx))]
           for o in range(len(wq))]
    res = acc if params.coef.rescale is None else \
        [[_rescale_one(v, params.coef.rescale, band[j], mode, acc_bits) for j, v in enumerate(row)] for row in acc]
    zf = [[0] * (hp * wp) for _ in res]
    for o, row in enumerate(res):
        for j, p in enumerate(idx):
            zf[o][p] = row[j]
    width = r.stages["inverse"].width_bits
    pre = []
    for o, layout in enumerate(zf):
        spatial = _slow_inverse(layout, hp, wp, spec.haar.levels, spec.haar, width)[0]
        pre.append([[v + int(params.bias_q[o]) for v in row[:w]] for row in spatial[:h]])
    return np.array(cq), np.array(acc), np.array(zf), np.array(pre)


def _spec(gran, scale, bits=8, ll_bits=None, normalize=Normalize.PER_LEVEL, levels=3, per_channel=False):
    return DatapathSpec(quant=QuantSpec(weight_granularity=WeightGranularity.PER_CHANNEL if per_channel
                                        else WeightGranularity.PER_TENSOR),
                        haar=HaarSpec(levels=levels, normalize=normalize, width_bits=20 if normalize is
                                      Normalize.DEFERRED else 16),
                        coef=CoefSpec(granularity=gran, scale=scale, bits=bits, ll_bits=ll_bits))


def _check_bit_exact(x, w, b, spec, rate, stride=1):
    r = simulate_layer(x[:1], w, b, spec, rate, stride)
    params = calibrate_layer(x[:1], w, b, spec, rate, stride)
    cq, acc, zf, pre = _model(r, params, spec)
    np.testing.assert_array_equal(r.stages["coef_q"].values[0], cq)
    np.testing.assert_array_equal(r.stages["acc"].values[0], acc)
    np.testing.assert_array_equal(r.stages["zero_filled"].values[0], zf)
    np.testing.assert_array_equal(r.stages["pre_requant"].values[0], pre)
    return r, params


GRANS, SCALES = list(CoefGranularity), list(CoefScale)


@pytest.mark.parametrize("gran", GRANS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("case", ["odd_signed_bias", "unsigned_nobias_stride", "ll_bits_deferred"])
def test_coef_designs_bit_exact_against_plain_integers(gran, scale, case):
    rng = np.random.default_rng(hash((gran.value, scale.value, case)) % 2**32)
    if case == "odd_signed_bias":            # 13 x 11: padded to 16 x 16
        x, w, b, spec, rate, stride = smooth_maps(rng, 1, 7, 13, 11), rng.normal(size=(5, 7)), rng.normal(size=5), \
            _spec(gran, scale), 0.6, 1
    elif case == "unsigned_nobias_stride":   # post-ReLU input (unsigned codes), stride 2, per-channel weights
        x, w, b, spec, rate, stride = smooth_maps(rng, 1, 6, 19, 17, relu=True), rng.normal(size=(4, 6)), None, \
            _spec(gran, scale, bits=6, per_channel=True), 1.0, 2
    else:                                    # LL_L wider than the details, deferred Haar, 2 levels
        ll = 10 if gran is not CoefGranularity.PER_TENSOR else None
        x, w, b, spec, rate, stride = smooth_maps(rng, 1, 5, 9, 14), rng.normal(size=(6, 5)), rng.normal(size=6), \
            _spec(gran, scale, ll_bits=ll, normalize=Normalize.DEFERRED, levels=2), 0.4, 1
    r, params = _check_bit_exact(x, w, b, spec, rate, stride)
    assert (params.coef.rescale is None) == (gran is CoefGranularity.PER_TENSOR)
    if case == "unsigned_nobias_stride":
        assert not r.stages["input_q"].signed
    if case == "ll_bits_deferred" and ll:
        assert np.abs(r.stages["coef_q"].values).max() > 127  # LL_L uses its 10 bits
    assert r.errors["total"].sqnr_db > 10


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gran=st.sampled_from(GRANS), scale=st.sampled_from(SCALES), cin=st.integers(1, 6), cout=st.integers(1, 5),
       h=st.integers(1, 12), w=st.integers(1, 12), levels=st.integers(1, 3), bits=st.integers(3, 9),
       ll_extra=st.integers(0, 3), rate=st.sampled_from([0.1, 0.5, 1.0]), relu=st.booleans(), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_property_bit_exact(gran, scale, cin, cout, h, w, levels, bits, ll_extra, rate, relu, bias, seed):
    rng = np.random.default_rng(seed)
    ll = bits + ll_extra if gran is not CoefGranularity.PER_TENSOR else None
    x = smooth_maps(rng, 1, cin, h, w, relu=relu) if h * w > 1 else rng.normal(size=(1, cin, h, w))
    _check_bit_exact(x, rng.normal(size=(cout, cin)), rng.normal(size=cout) if bias else None,
                     _spec(gran, scale, bits, ll, levels=levels), rate)


@pytest.mark.parametrize("gran", GRANS)
@pytest.mark.parametrize("scale", SCALES)
def test_band_scales_encode_the_calibration(gran, scale):
    """Records against the real scales: one scale per group; pow2 scales powers of two apart and at least
    the fixed-point ones; the rescale ratio within 2^-16 (fixed point) or exact (pow2); coef_q dequantized
    within half a step of the kept values wherever it is not clipped."""
    rng = np.random.default_rng(3)
    x, w = smooth_maps(rng, 1, 8, 24, 24), rng.normal(size=(6, 8))
    spec = _spec(gran, scale)
    r, params = _check_bit_exact(x, w, None, spec, 1.0)
    groups = band_groups(3, gran)
    s = params.coef_scale
    assert all(len(set(s[groups == g].tolist())) == 1 for g in set(groups.tolist()))   # one scale per group
    distinct = len(set(s.tolist()))                       # pow2 may round two groups to one power of two
    assert distinct <= len(set(groups.tolist())) if scale is CoefScale.POW2 else distinct == len(set(groups.tolist()))
    assert params.coef_ref_scale == s.max()
    if scale is CoefScale.POW2:
        ratio = np.log2(s / s.max())
        assert np.array_equal(ratio, np.round(ratio))
        fixed = _check_bit_exact(x, w, None, _spec(gran, CoefScale.FIXED_POINT), 1.0)[1].coef_scale
        assert np.all(s >= fixed) and np.all(s < 2 * fixed)
    if params.coef.rescale is not None:
        p = params.coef.rescale
        got = p.multiplier / np.exp2(p.shift)
        tol = 0 if scale is CoefScale.POW2 else 2.0 ** -RESCALE_MULT_BITS
        assert np.all(np.abs(got - s / s.max()) <= tol * s / s.max() + (scale is CoefScale.FLOAT))
    st_ = r.stages
    step = st_["coef_q"].scale
    real = st_["kept"].values * st_["kept"].scale
    hi = 2 ** (spec.coef_bits - 1) - 1
    inside = np.abs(real) <= (hi + 0.5) * step
    err = np.abs(st_["coef_q"].values * step - real) / step    # in steps; the multiplier's realization
    assert err[inside].max() <= 0.5 + 1e-4                      # error (<= 2^-24 relative) x 127 steps
    assert inside.mean() > 0.99


def test_finer_coefficient_scales_beat_per_tensor_at_rate_one():
    """The LL_L band spans ~2^L times the input range: a separate LL_L scale gives the detail bands finer
    steps, so per_level and per_band lose less than per_tensor (same data, same weights)."""
    rng = np.random.default_rng(11)
    x, w, b = smooth_maps(rng, 1, 16, 32, 32), rng.normal(size=(12, 16)), rng.normal(size=12)
    sqnr = {g: simulate_layer(x, w, b, _spec(g, CoefScale.FIXED_POINT), 1.0, keep=False).errors["total"].sqnr_db
            for g in GRANS}
    assert sqnr[CoefGranularity.PER_LEVEL] > sqnr[CoefGranularity.PER_TENSOR] + 1.0
    assert sqnr[CoefGranularity.PER_BAND] >= sqnr[CoefGranularity.PER_LEVEL] - 0.5


@pytest.mark.parametrize("mode", [CoefScale.FIXED_POINT, CoefScale.POW2, CoefScale.FLOAT])
def test_rescale_unit_corners(mode):
    real = np.array([1.0, 0.5, 0.25, 2.0 ** -20])
    if mode is not CoefScale.POW2:
        real = np.append(real, [0.7, 1 - 2.0 ** -20])
    p = rescale_params(real, mode)
    x = np.array([(1 << 31) - 1, -(1 << 31), 0, 1, -1, 12345, -3, 2])[:, None]
    y, sat = rescale(x, p, mode, 32)
    want = [[_rescale_one(int(v), p, j, mode, 32) for j in range(real.size)] for v in x[:, 0]]
    np.testing.assert_array_equal(y, want)
    assert y[0, 0] == ((1 << 31) - 1 if mode is not CoefScale.FLOAT else (1 << 31) - 1) and y[1, 0] == -(1 << 31)
    assert sat == (1 if mode is CoefScale.FLOAT else 0)   # float32(2^31 - 1) = 2^31 saturates
    with pytest.raises(ValueError):
        rescale_params(np.array([1.5]), mode)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), rows=st.integers(1, 5), k=st.integers(1, 9), acc_bits=st.integers(8, 32),
       mode=st.sampled_from([CoefScale.FIXED_POINT, CoefScale.POW2]), dtype=st.sampled_from([np.int32, np.int64]),
       lead=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_rescale_in_one_pass_is_the_plain_integer_rescale(n, rows, k, acc_bits, mode, dtype, lead, seed):
    """`rescale` with one record entry per column ((k,) or (1, 1, k)) runs one numba pass: every value and
    the saturation count equal the plain-integer rescale of each element (`_rescale_one`), extremes of the
    register included."""
    rng = np.random.default_rng(seed)
    real = np.exp2(-rng.integers(0, 12, k).astype(float))
    if mode is CoefScale.FIXED_POINT:
        real = real * rng.uniform(0.5, 1.0, k)
    p = rescale_params(real, mode)
    if lead:
        p = RescaleParams(*(getattr(p, f)[None, None, :] for f in ("multiplier", "shift", "float_scale",
                                                                    "real_scale")))
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    x = rng.integers(lo, hi, (n, rows, k), endpoint=True)
    x.reshape(-1)[:2] = [lo, hi][:x.size]
    y, sat = rescale(x.astype(dtype), p, mode, acc_bits)
    flat = RescaleParams(*(np.asarray(getattr(p, f)).reshape(-1) for f in ("multiplier", "shift", "float_scale",
                                                                            "real_scale")))
    want = np.array([[[_rescale_one(int(v), flat, j, mode, acc_bits) for j, v in enumerate(row)] for row in img]
                     for img in x])
    np.testing.assert_array_equal(y, want)
    assert y.dtype == np.int64 and sat == 0  # ratios <= 1: no value grows (module docstring)
    assert _rescale_columns(x.astype(dtype), p, acc_bits) is not None  # the one-pass kernel ran


def test_coef_yaml_is_validated():
    base = spec_to_dict(load_hw(ROOT / "hw_configs" / "edge_npu_paper.yaml"))
    hw = hw_from_dict({**base, "coef": {"granularity": "per_band", "scale": "pow2", "ll_bits": 10}})
    assert (hw.datapath.coef_bits, hw.datapath.coef_ll_bits) == (8, 10)
    assert hw_from_dict(spec_to_dict(hw)) == hw
    assert hw_from_dict(base).datapath.coef == CoefSpec() and hw_from_dict(base).datapath.coef_ll_bits == 8
    bad = [({"granularity": "per_pixel"}, "coef.granularity"), ({"scale": "float16"}, "coef.scale"),
           ({"bits": 1}, "coef.bits"), ({"ll_bits": 10}, "coef.ll_bits"), ({"bitz": 8}, "coef.bitz"),
           ({"bits": True}, "coef.bits")]
    for coef, key in bad:
        with pytest.raises(InputError, match=key.replace(".", r"\.")):
            hw_from_dict({**base, "coef": coef})
    with pytest.raises(InputError, match=r"mac\.acc_bits"):
        hw_from_dict({**base, "mac": {**base["mac"], "acc_bits": 40}, "coef": {"granularity": "per_level"}})
    assert band_levels(3).tolist() == [3, 3, 3, 3, 2, 2, 2, 1, 1, 1]
    assert dataclasses.replace(hw.datapath, coef=CoefSpec()).coef_ll_bits == 8
