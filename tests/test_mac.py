import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wccsim.datapath.mac import accumulate, exact_chunk, int_matmul, mac_array
from wccsim.hw import MacSpec, Overflow


def _ref(wq, xq):
    """Plain int64 matmul (numpy integer loops, no BLAS, no float)."""
    return np.matmul(np.asarray(wq, np.int64), np.asarray(xq, np.int64))


@pytest.mark.parametrize("n,cout,cin,k", [(1, 1, 1, 1), (2, 7, 33, 5), (1, 16, 1024, 9), (1, 3, 1025, 4),
                                          (2, 5, 4096, 3), (1, 96, 96, 640)])
def test_int8_random_equals_int64(n, cout, cin, k):
    rng = np.random.default_rng(cin * 31 + k)
    wq = rng.integers(-128, 128, size=(cout, cin))
    xq = rng.integers(-128, 128, size=(n, cin, k))
    np.testing.assert_array_equal(int_matmul(wq, xq), _ref(wq, xq))


@pytest.mark.parametrize("wv,xv", [(-128, -128), (127, 127), (-128, 127), (127, -128)])
def test_int8_corners_k4096(wv, xv):
    cin = 4096
    wq = np.full((3, cin), wv)
    xq = np.full((1, cin, 2), xv)
    got = int_matmul(wq, xq)
    assert got.dtype == np.int32  # 4096 * 128 * 128 = 2^26 < 2^31: every exact sum fits int32
    assert (got == cin * wv * xv).all()


def test_chunk_bound_is_tight_at_minus128():
    # 1024 * 128 * 128 == 2^24: the largest exact float32 chunk for int8.
    assert exact_chunk(128, 128, 1 << 24) == 1024
    assert exact_chunk(127, 127, 1 << 24) == 1040
    # One chunk of 1024 products of -128 x -128 must be exact: 2^24 is representable, 2^24 + 1 is not.
    wq = np.full((1, 1025), -128)
    xq = np.full((1, 1025, 1), -128)
    wq[0, -1] = 1
    xq[0, -1, 0] = 1
    assert int_matmul(wq, xq)[0, 0, 0] == (1 << 24) + 1


@pytest.mark.parametrize("bits", [12, 16])
def test_wide_operands(bits):
    rng = np.random.default_rng(bits)
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)
    wq = rng.integers(lo, hi, size=(9, 2048))
    xq = rng.integers(lo, hi, size=(2, 2048, 7))
    wq[0, :] = lo
    xq[0, :, 0] = lo
    got = int_matmul(wq, xq)
    np.testing.assert_array_equal(got, _ref(wq, xq))
    assert got[0, 0, 0] == 2048 * lo * lo


def test_very_wide_operands_fall_back_to_int64():
    wq = np.array([[1 << 30, -(1 << 30)]])
    xq = np.array([[[1 << 30], [1 << 30]]])
    assert int_matmul(wq, xq)[0, 0, 0] == 0
    xq2 = np.array([[[1 << 30], [-(1 << 30)]]])
    assert int_matmul(wq, xq2)[0, 0, 0] == 1 << 61


def test_python_int_reference_small():
    rng = np.random.default_rng(5)
    wq = rng.integers(-128, 128, size=(4, 50))
    xq = rng.integers(-128, 128, size=(1, 50, 3))
    ref = [[sum(int(wq[o, c]) * int(xq[0, c, j]) for c in range(50)) for j in range(3)] for o in range(4)]
    assert int_matmul(wq, xq)[0].tolist() == ref


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 8), st.integers(1, 300), st.integers(1, 6), st.integers(2, 16),
       st.integers(0, 2**32 - 1))
def test_property_equals_int64(n, cout, cin, k, bits, seed):
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)
    wq = rng.integers(lo, hi, size=(cout, cin))
    xq = rng.integers(lo, hi, size=(n, cin, k))
    np.testing.assert_array_equal(int_matmul(wq, xq), _ref(wq, xq))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        int_matmul(np.zeros((2, 3), int), np.zeros((1, 4, 2), int))


def test_accumulate_saturate_and_wrap():
    acc = np.array([-(1 << 31) - 1, -(1 << 31), 0, (1 << 31) - 1, 1 << 31, 5 << 31], dtype=np.int64)
    sat, n_sat = accumulate(acc, 32, Overflow.SATURATE)
    assert n_sat == 3
    assert sat.tolist() == [-(1 << 31), -(1 << 31), 0, (1 << 31) - 1, (1 << 31) - 1, (1 << 31) - 1]
    wrp, n_wrp = accumulate(acc, 32, Overflow.WRAP)
    assert n_wrp == 3
    assert wrp.tolist() == np.array(acc).astype(np.int32).astype(np.int64).tolist()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-(1 << 40), 1 << 40), min_size=1, max_size=20), st.integers(2, 32))
def test_accumulate_wrap_is_modular(values, bits):
    acc = np.array(values, dtype=np.int64)
    wrp, _ = accumulate(acc, bits, Overflow.WRAP)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    assert ((wrp >= lo) & (wrp <= hi)).all()
    assert (((wrp - acc) % (1 << bits)) == 0).all()


def test_mac_array_counts_overflows():
    wq = np.full((2, 300), 127)
    xq = np.full((1, 300, 4), 127)
    acc, n = mac_array(wq, xq, MacSpec(acc_bits=16, overflow=Overflow.SATURATE))
    assert n == 8 and (acc == (1 << 15) - 1).all()
    acc, n = mac_array(wq, xq, MacSpec(acc_bits=32))
    assert n == 0 and (acc == 300 * 127 * 127).all()


def test_result_dtype_rule():
    """int_matmul: int32 iff Cin * max|W| * max|X| < 2^31; mac_array: int32 iff acc_bits <= 32."""
    w = np.full((2, 3), -128, np.int8)
    assert int_matmul(w, np.full((1, 3, 4), -128, np.int8)).dtype == np.int32
    big = np.full((1, 2), 1 << 15)  # 2 * 2^15 * 2^15 = 2^31: no longer provably int32
    assert int_matmul(big, np.full((1, 2, 1), 1 << 15)).dtype == np.int64
    assert int_matmul(big, np.full((1, 2, 1), (1 << 15) - 1)).dtype == np.int32
    for acc_bits, dtype in ((16, np.int32), (32, np.int32), (33, np.int64), (40, np.int64)):
        acc, _ = mac_array(big, np.full((1, 2, 1), 1 << 15), MacSpec(acc_bits=acc_bits))
        assert acc.dtype == dtype


@pytest.mark.parametrize("overflow", [Overflow.SATURATE, Overflow.WRAP])  # the end-of-sum modes
@pytest.mark.parametrize("bits,cin", [(8, 4096), (12, 2048), (16, 300)])
def test_narrow_accumulator_equals_accumulate_of_exact_sum(overflow, bits, cin):
    rng = np.random.default_rng(bits * cin)
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)
    wq = rng.integers(lo, hi, size=(5, cin))
    xq = rng.integers(lo, hi, size=(2, cin, 6))
    wq[0], xq[0, :, 0], xq[1, :, 1] = lo, lo, hi - 1  # the negative corner, both signs of the sum
    exact = _ref(wq, xq)
    for acc_bits in (16, 24, 32, 40):
        got, n = mac_array(wq, xq, MacSpec(acc_bits=acc_bits, overflow=overflow))
        want, want_n = accumulate(exact, acc_bits, overflow)
        np.testing.assert_array_equal(got, want)
        assert n == want_n


@pytest.mark.parametrize("overflow", [Overflow.SATURATE, Overflow.WRAP])
@pytest.mark.parametrize("n,cout,cin,k,bits", [(3, 5, 40, 7, 8), (2, 4, 1500, 3, 8), (3, 2, 9, 5, 16),
                                               (2, 3, 4, 0, 8), (0, 3, 4, 5, 8)])
def test_batch_equals_reference_and_each_image(overflow, n, cout, cin, k, bits):
    """A batch equals the int64 reference and each image run alone, values and overflow counts, on the
    float32 (one chunk and chunked) and float64 paths, and for empty batches or columns."""
    rng = np.random.default_rng(n * 1000 + cin + bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    dtype = np.int8 if bits == 8 else np.int64
    wq = rng.integers(lo, hi + 1, size=(cout, cin)).astype(dtype)
    xq = rng.integers(lo, hi + 1, size=(n, cin, k)).astype(dtype)
    spec = MacSpec(acc_bits=20, overflow=overflow)
    got, count = mac_array(wq, xq, spec)
    want, want_count = accumulate(_ref(wq, xq), 20, overflow)
    assert got.shape == (n, cout, k) and got.dtype == np.int32 and count == want_count
    np.testing.assert_array_equal(got, want)
    for i in range(n):
        one, one_count = mac_array(wq, xq[i:i + 1], spec)
        np.testing.assert_array_equal(one[0], got[i])


def _each_add_ref(wq, xq, acc_bits):
    """Plain Python: a saturating register clipped after every addition, ascending input channel."""
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    out, count = np.zeros((xq.shape[0], wq.shape[0], xq.shape[2]), np.int64), 0
    for n in range(xq.shape[0]):
        for o in range(wq.shape[0]):
            for j in range(xq.shape[2]):
                acc, hit = 0, False
                for c in range(wq.shape[1]):
                    acc += int(wq[o, c]) * int(xq[n, c, j])
                    if not lo <= acc <= hi:
                        acc, hit = min(max(acc, lo), hi), True
                out[n, o, j] = acc
                count += hit
    return out, count


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 2), st.integers(1, 6), st.integers(1, 90), st.integers(1, 5), st.integers(14, 20),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_saturate_each_add_equals_plain_loop(n, cout, cin, k, acc_bits, skew, seed):
    """Per-addition saturation in ascending-channel order, bit for bit, with its overflow count; where no
    partial sum leaves the range it equals the end-of-sum clip. ``skew``: same-sign products first, so partial
    sums overshoot and come back (the case where the two clips differ)."""
    rng = np.random.default_rng(seed)
    wq = rng.integers(-128, 128, size=(cout, cin))
    xq = rng.integers(-128, 128, size=(n, cin, k))
    if skew:
        wq = np.sort(wq, axis=1)[:, ::-1]
        xq = np.abs(xq)
    got, ovf = mac_array(wq, xq, MacSpec(acc_bits=acc_bits, overflow=Overflow.SATURATE_EACH_ADD))
    want, count = _each_add_ref(wq, xq, acc_bits)
    np.testing.assert_array_equal(got, want)
    assert ovf == count
    end, _ = mac_array(wq, xq, MacSpec(acc_bits=acc_bits, overflow=Overflow.SATURATE))
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    bound = _ref(np.abs(wq), np.abs(xq))
    np.testing.assert_array_equal(got[bound <= hi], end[bound <= hi])


def test_saturate_each_add_differs_from_end_clip():
    """+100 x 127 three times, then -100 x 127 three times, at 16 bits: the register clips at 32767 on the way
    up (38100), so it ends at 32767 - 38100 = -5333 instead of the exact 0 that the end-of-sum clip keeps."""
    wq = np.array([[100, 100, 100, -100, -100, -100]])
    xq = np.full((1, 6, 1), 127)
    each, ovf = mac_array(wq, xq, MacSpec(acc_bits=16, overflow=Overflow.SATURATE_EACH_ADD))
    end, ovf_end = mac_array(wq, xq, MacSpec(acc_bits=16, overflow=Overflow.SATURATE))
    assert each[0, 0, 0] == 32767 - 38100 and ovf == 1
    assert end[0, 0, 0] == 0 and ovf_end == 0
