import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wccsim.calibrate import QuantParams, requant_params
from wccsim.datapath.mac import int_matmul
from wccsim.datapath.requant import (
    INT32_MAX, INT32_MIN, bias_requant_dequant, out_range, quantize_multiplier, requantize, rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from wccsim.hw import RequantMode


# ---- plain Python big-integer transcriptions of gemmlowp fixedpoint.h (scalar reference) ----
def srdhm_ref(a: int, b: int) -> int:
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else (1 - (1 << 30))
    v = ab + nudge
    q = abs(v) // (1 << 31)
    return q if v >= 0 else -q  # C integer division truncates toward zero


def rdbpot_ref(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def mbqm_ref(x: int, multiplier: int, left: int, right: int) -> int:
    """TFLite MultiplyByQuantizedMultiplier with explicit (saturating) left and right shifts."""
    x = min(max(x << left, INT32_MIN), INT32_MAX)
    return rdbpot_ref(srdhm_ref(x, multiplier), right)


def _int32_mix(rng, n):
    """Uniform int32, small values, and values near the extremes."""
    parts = [rng.integers(INT32_MIN, INT32_MAX + 1, n // 2),
             rng.integers(-1000, 1001, n // 4),
             rng.choice([INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX], n - n // 2 - n // 4)]
    out = np.concatenate(parts)
    rng.shuffle(out)
    return out


def test_srdhm_bit_exact_100k():
    rng = np.random.default_rng(1)
    n = 120_000
    a, b = _int32_mix(rng, n), _int32_mix(rng, n)
    got = saturating_rounding_doubling_high_mul(a, b)
    ref = [srdhm_ref(int(x), int(y)) for x, y in zip(a.tolist(), b.tolist())]
    assert got.tolist() == ref


def test_srdhm_corners():
    assert int(saturating_rounding_doubling_high_mul(np.int64(INT32_MIN), np.int64(INT32_MIN))) == INT32_MAX
    assert int(saturating_rounding_doubling_high_mul(np.int64(INT32_MIN), np.int64(INT32_MAX))) == -INT32_MAX
    assert int(saturating_rounding_doubling_high_mul(np.int64(INT32_MAX), np.int64(INT32_MAX))) == INT32_MAX - 1
    # ties round up: 1 * 2^30 / 2^31 = 0.5 -> 1 ; -0.5 -> 0 ; 1.5 -> 2 ; -1.5 -> -1
    got = saturating_rounding_doubling_high_mul(np.array([1, -1, 3, -3]), np.int64(1 << 30))
    assert got.tolist() == [1, 0, 2, -1]


def test_rdbpot_bit_exact_100k():
    rng = np.random.default_rng(2)
    n = 110_000
    x = _int32_mix(rng, n)
    e = rng.integers(0, 32, n)
    got = rounding_divide_by_pot(x, e)
    ref = [rdbpot_ref(int(v), int(s)) for v, s in zip(x.tolist(), e.tolist())]
    assert got.tolist() == ref


def test_rejects_non_int32():
    with pytest.raises(ValueError):
        saturating_rounding_doubling_high_mul(np.int64(1 << 31), np.int64(1))
    with pytest.raises(ValueError):
        rounding_divide_by_pot(np.int64(1), 32)


@pytest.mark.parametrize("real", [1e-9, 2.0 ** -32, 0.0001234, 0.25, 0.5, 0.75, 0.9999999999, 1.0, 3.7, 1e5])
def test_quantize_multiplier_accuracy(real):
    m, s = quantize_multiplier(real)
    m, s = int(m), int(s)
    assert (1 << 30) <= m <= INT32_MAX
    approx = m * 2.0 ** (-31 - s)
    assert abs(approx - real) <= 2.0 ** (-31 - s) / 2 * 1.0000001


def test_quantize_multiplier_carry_and_zero():
    m, s = quantize_multiplier(1 - 2.0 ** -40)  # rounds up to 2^31 -> halved, exponent + 1
    assert int(m) == 1 << 30 and int(s) == -1
    m, s = quantize_multiplier(0.0)
    assert int(m) == 0 and int(s) == 0
    m, s = quantize_multiplier(2.0 ** -40)  # below 2^-32: TFLite flushes to zero
    assert int(m) == 0 and int(s) == 0


def test_fixed_point_requantize_matches_python():
    rng = np.random.default_rng(3)
    n = 20_000
    acc = _int32_mix(rng, n)
    for real in (0.00037, 0.0123, 0.5, 1.7):
        qp = QuantParams(scale=1.0, zero_point=3, bits=8, signed=True)
        p = requant_params(real, qp)
        got, _ = requantize(acc, p, RequantMode.FIXED_POINT)
        m, e = (int(v) for v in quantize_multiplier(real))
        assert (int(p.multiplier), int(p.left_shift), int(p.shift)) == (m, max(0, -e), max(0, e))  # TFLite
        ref = [min(max(mbqm_ref(int(v), m, max(0, -e), max(0, e)) + 3, -128), 127) for v in acc.tolist()]
        assert got.tolist() == ref


def test_pre_shift_removes_double_rounding():
    """60 * 0.30417 = 18.25: TFLite's SRDHM then RDBPOT rounds twice (36.5 -> 37 -> 19); a pre-shift into the
    int32 headroom (in_bits=16) gives the correctly rounded 18."""
    qp = QuantParams(scale=1.0, zero_point=0, bits=8, signed=True)
    real = 0.3041666666
    tfl = requant_params(real, qp)
    assert int(requantize(np.array([60]), tfl, RequantMode.FIXED_POINT)[0][0]) == 19
    narrow = requant_params(real, qp, in_bits=16)
    assert (int(narrow.left_shift), int(narrow.shift)) == (15, 16)
    assert int(requantize(np.array([60]), narrow, RequantMode.FIXED_POINT)[0][0]) == 18
    x = np.arange(-(1 << 15), 1 << 15)
    for r in (0.3041666666, 0.01, 0.7, 1.9, 37.0):
        p = requant_params(r, QuantParams(scale=1.0, zero_point=0, bits=16, signed=True), in_bits=16)
        q, _ = requantize(x, p, RequantMode.FIXED_POINT)
        exact = np.clip(x * r, -(1 << 15), (1 << 15) - 1)
        assert np.abs(q - exact).max() <= 0.5 + 2.0 ** -14


def test_requantize_counts_saturations_and_int32_input():
    qp = QuantParams(scale=1.0, zero_point=0, bits=8, signed=True)
    p = requant_params(1.0 / 16, qp)
    acc = np.array([0, 16 * 200, -16 * 200, 1 << 40, 16 * 5])
    for mode in RequantMode:
        q, sat = requantize(acc, p, mode)
        assert q.tolist() == [0, 127, -128, 127, 5]
        assert sat == 4  # two output clamps + one int32 input saturation (which then clamps too)


def test_pow2_rounding_half_up():
    qp = QuantParams(scale=1.0, zero_point=0, bits=8, signed=True)
    p = requant_params(0.26, qp)  # rounded down to 2^-2
    assert int(p.pow2_shift) == 2
    assert int(requant_params(0.24, qp).pow2_shift) == 3  # 2^-3: never above the real multiplier
    q, _ = requantize(np.array([6, -6, 5, -5, 2, -2]), p, RequantMode.POW2)
    assert q.tolist() == [2, -1, 1, -1, 1, 0]  # (v + 2) >> 2
    p_up = requant_params(4.1, qp)
    assert int(p_up.pow2_shift) == -2
    assert requantize(np.array([3, -40]), p_up, RequantMode.POW2)[0].tolist() == [12, -128]


def test_per_channel_broadcast():
    qp = QuantParams(scale=0.5, zero_point=0, bits=8, signed=True)
    p = requant_params(np.array([[0.01], [0.02]]), qp)
    acc = np.array([[[100, 200]], [[100, 200]]]).reshape(1, 2, 2)
    for mode in (RequantMode.FIXED_POINT, RequantMode.FLOAT32):
        assert requantize(acc, p, mode)[0].tolist() == [[[2, 4], [4, 8]]]


@settings(max_examples=200, deadline=None)
@given(st.integers(INT32_MIN, INT32_MAX), st.floats(1e-6, 100.0), st.integers(2, 16), st.booleans(),
       st.integers(-100, 100))
def test_property_fixed_point_close_to_real(x, real, bits, signed, zp):
    lo, hi = out_range(bits, signed)
    zp = min(max(zp, lo), hi)
    p = requant_params(real, QuantParams(scale=1.0, zero_point=zp, bits=bits, signed=signed))
    q, _ = requantize(np.array([x]), p, RequantMode.FIXED_POINT)
    assert lo <= int(q[0]) <= hi
    assert int(q[0]) == min(max(mbqm_ref(x, int(p.multiplier), int(p.left_shift), int(p.shift)) + zp, lo), hi)
    exact = x * real + zp
    if lo <= exact <= hi:
        # SRDHM then RDBPOT round twice: 1/2 + 2^-(shift+1) steps, plus the multiplier's relative error
        assert abs(int(q[0]) - exact) <= 0.5 + 2.0 ** -(int(p.shift) + 1) + abs(x) * real * 2.0 ** -30 + 1e-9


# ---- FLOAT32 mode against onnxruntime QLinearConv (plain int8 1x1 conv) ----
def _qlinearconv_model(x_dtype, cin, cout, x_scale, x_zp, w_scale, y_scale, y_zp, wq, bias):
    from onnx import TensorProto, helper, numpy_helper

    xt = TensorProto.INT8 if x_dtype == np.int8 else TensorProto.UINT8
    inits = [
        numpy_helper.from_array(np.array(x_scale, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(x_zp, x_dtype), "x_zp"),
        numpy_helper.from_array(wq.reshape(cout, cin, 1, 1).astype(np.int8), "w"),
        numpy_helper.from_array(np.asarray(w_scale, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(np.shape(w_scale), np.int8), "w_zp"),
        numpy_helper.from_array(np.array(y_scale, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(y_zp, x_dtype), "y_zp"),
        numpy_helper.from_array(bias.astype(np.int32), "b"),
    ]
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "b"],
                            ["y"], kernel_shape=[1, 1])
    graph = helper.make_graph([node], "qlc", [helper.make_tensor_value_info("x", xt, None)],
                              [helper.make_tensor_value_info("y", xt, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def _run_ort(model_bytes, xq):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": xq})[0]


@pytest.mark.parametrize("x_dtype,x_zp,per_channel", [(np.int8, 0, False), (np.uint8, 0, False),
                                                      (np.int8, 0, True), (np.uint8, 128, True)])
def test_float32_mode_matches_onnxruntime_qlinearconv(x_dtype, x_zp, per_channel):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(7)
    cin = cout = 96
    h = w = 80
    info = np.iinfo(x_dtype)
    xq = rng.integers(info.min, info.max + 1, size=(1, cin, h, w)).astype(x_dtype)
    wq = rng.integers(-127, 128, size=(cout, cin))
    wq[0, :] = -128  # the -128 corner
    bias = rng.integers(-20000, 20000, size=cout)
    x_scale, y_scale = 0.0173, 0.05
    y_zp = 0 if x_dtype == np.int8 else 128  # onnxruntime: output type = input type
    w_scale = rng.uniform(0.002, 0.01, cout) if per_channel else 0.0042
    model = _qlinearconv_model(x_dtype, cin, cout, x_scale, x_zp, w_scale, y_scale, y_zp, wq, bias)
    y_ort = _run_ort(model, xq)

    x_int = xq.astype(np.int64).reshape(1, cin, h * w) - x_zp
    acc = int_matmul(wq, x_int) + bias.reshape(1, cout, 1)
    w_s = np.asarray(w_scale).reshape(-1, 1) if per_channel else w_scale
    out_qp = QuantParams(scale=y_scale, zero_point=y_zp, bits=8, signed=x_dtype == np.int8)
    p = requant_params(x_scale, out_qp, weight_scale=w_s)
    q, sat = requantize(acc, p, RequantMode.FLOAT32)
    assert sat > 0  # the scales are chosen so that some outputs clamp
    np.testing.assert_array_equal(q.reshape(1, cout, h, w), y_ort.astype(np.int64))


@pytest.mark.parametrize("per_channel", [False, True])
def test_plain_int8_baseline_float32_equals_onnxruntime(per_channel):
    """End to end: the plain int8 baseline's own integers and scales, run by onnxruntime QLinearConv, give
    exactly its output_q (realistic layer: 96 -> 96 channels at 80x80, smooth signed input)."""
    pytest.importorskip("onnxruntime")
    from wccsim.simulate import simulate_plain
    from wccsim.hw import DatapathSpec, QuantSpec, RequantSpec, WeightGranularity

    rng = np.random.default_rng(11)
    cin = cout = 96
    f = np.exp(-8 * np.pi ** 2 * (np.fft.fftfreq(80)[:, None] ** 2 + np.fft.rfftfreq(80)[None, :] ** 2))
    x = np.fft.irfft2(np.fft.rfft2(rng.normal(size=(1, cin, 80, 80))) * f, s=(80, 80)) * 20
    w = rng.normal(size=(cout, cin)) * np.linspace(0.02, 0.2, cout)[:, None]
    b = rng.normal(size=cout)
    gran = WeightGranularity.PER_CHANNEL if per_channel else WeightGranularity.PER_TENSOR
    spec = DatapathSpec(quant=QuantSpec(weight_granularity=gran), requant=RequantSpec(mode=RequantMode.FLOAT32))
    res = simulate_plain(x, w, b, spec, 8)
    st_ = res.stages
    assert st_["input_q"].signed and st_["output_q"].signed
    w_scale = np.ravel(st_["weight_q"].scale) if per_channel else st_["weight_q"].scale
    model = _qlinearconv_model(np.int8, cin, cout, st_["input_q"].scale, 0, w_scale, st_["output_q"].scale, 0,
                               st_["weight_q"].values, st_["bias_q"].values)
    y_ort = _run_ort(model, st_["input_q"].values.astype(np.int8))
    np.testing.assert_array_equal(st_["output_q"].values, y_ort.astype(np.int64))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), channels=st.integers(1, 5), h=st.integers(1, 4), w=st.integers(1, 5),
       acc_dtype=st.sampled_from([np.int32, np.int64]), per_channel=st.booleans(), bits=st.integers(2, 16),
       signed=st.booleans(), zp=st.integers(-3, 3), in_bits=st.sampled_from([8, 32]))
def test_bias_requant_dequant_equals_the_stages(seed, channels, h, w, acc_dtype, per_channel, bits, signed, zp,
                                                 in_bits):
    """The fused stage 8 gives the integers, dequantized values and saturation count of bias + `requantize`
    + dequantize, per tensor and per channel, with saturation at every step (wide accumulators, left shifts,
    clamps)."""
    rng = np.random.default_rng(seed)
    lim = np.iinfo(acc_dtype).max // 4
    acc = rng.integers(-lim, lim, (1, channels, h, w), dtype=np.int64).astype(acc_dtype)
    bias = rng.integers(-(1 << 31), 1 << 31, channels, dtype=np.int64)
    scale = rng.uniform(1e-6, 2.0, (1, channels, 1, 1)) if per_channel else float(rng.uniform(1e-6, 2.0))
    out_qp = QuantParams(float(rng.uniform(0.01, 1.0)), zp, bits, signed)
    rp = requant_params(rng.uniform(1e-7, 4.0, (1, channels, 1, 1)) if per_channel else float(rng.uniform(1e-7, 4.0)),
                        out_qp, in_bits=in_bits)
    q, sat = requantize(acc + bias[None, :, None, None], rp, RequantMode.FIXED_POINT)
    want = np.multiply(q - zp if zp else q, scale)
    got = np.empty(acc.shape)
    assert bias_requant_dequant(acc, bias, rp, zp, scale, got) == sat
    np.testing.assert_array_equal(got, want)


def test_bias_requant_dequant_declines_what_it_does_not_model():
    """Per-position parameters and a non-contiguous destination are left to the stages (None, nothing
    written)."""
    acc = np.arange(12, dtype=np.int64).reshape(1, 2, 2, 3)
    rp = requant_params(np.full((1, 1, 1, 3), 0.5), QuantParams(1.0, 0, 8, True))
    out = np.full(acc.shape, 7.0)
    assert bias_requant_dequant(acc, np.zeros(2, np.int64), rp, 0, 1.0, out) is None
    assert (out == 7.0).all()
    per_tensor = requant_params(0.5, QuantParams(1.0, 0, 8, True))
    strided = np.empty((1, 2, 2, 6))[..., ::2]
    assert bias_requant_dequant(acc, np.zeros(2, np.int64), per_tensor, 0, 1.0, strided) is None
