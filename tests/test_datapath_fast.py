"""Fast paths of the datapath equal their plain-numpy references, corners included (tolerance 0).

The fast paths (numba kernels, O(P) selection, narrower MAC conversions) exist for speed only
(docs/performance.md); each test here compares one against the numpy formulation it replaces.
"""

import dataclasses

import numpy as np
import pytest

from wccsim.calibrate import QuantParams, requant_params
from wccsim.datapath import haar, mac, requant, topk
from wccsim.datapath.shifts import round_shift, saturate
from wccsim.hw import HaarSpec, MacSpec, Normalize, Overflow, RequantMode, Rounding, TopkMode, TopkSpec
from wccsim.rules import padded_shape

I32_MIN, I32_MAX = requant.INT32_MIN, requant.INT32_MAX


# ------------------------------------------------------------------------------------------ requant

def _acc_cases(rng):
    for trial in range(120):
        shape = tuple(int(v) for v in rng.integers(1, 6, int(rng.integers(1, 4))))
        acc = rng.integers(-(1 << int(rng.integers(2, 40))), 1 << int(rng.integers(2, 40)), shape)
        flat = acc.reshape(-1)
        corners = [I32_MIN, I32_MAX, -(1 << 40), 1 << 40, 0, -1]
        flat[:min(len(corners), flat.size)] = corners[:flat.size]
        scale = float(np.exp(rng.uniform(-25, 8)))
        if trial % 3 == 0:  # uniform parameters held in an array (per-tensor weights, per-column scales)
            scale = np.full((shape[0],) + (1,) * (len(shape) - 1), scale)
        if trial % 5 == 0:  # truly per-channel: the numpy path
            scale = np.exp(rng.uniform(-25, 8, (shape[0],) + (1,) * (len(shape) - 1)))
        signed = bool(trial % 2)
        zp = int(rng.integers(-5, 6)) if signed else int(rng.integers(0, 6))
        yield acc, requant_params(scale, QuantParams(1.0, zp, int(rng.choice([2, 4, 8, 16])), signed))


@pytest.mark.parametrize("mode", list(RequantMode))
def test_requantize_equals_numpy_reference(mode):
    rng = np.random.default_rng(7)
    for acc, params in _acc_cases(rng):
        got, got_sat = requant.requantize(acc, params, mode)
        ref, ref_sat = requant._requantize_numpy(np.asarray(acc, np.int64), params, mode)
        assert got.dtype == ref.dtype == np.int64 and got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)
        assert got_sat == ref_sat


def test_fused_fixed_point_corners():
    # left shift into saturation, INT32 extremes, outputs clamped both ways, shift 0 and 31
    acc = np.array([I32_MIN, I32_MAX, -(1 << 33), 1 << 33, -1, 0, 1, 12345, -12345], dtype=np.int64)
    for real in (2.0 ** -31, 2.0 ** -20, 0.37, 0.9999999, 3.0):
        for bits, signed, zp in ((8, True, 0), (8, False, 3), (16, True, -2)):
            p = requant_params(real, QuantParams(1.0, zp, bits, signed))
            p = dataclasses.replace(p, left_shift=np.int64(2))
            got = requant.requantize(acc, p, RequantMode.FIXED_POINT)
            ref = requant._requantize_numpy(acc, p, RequantMode.FIXED_POINT)
            np.testing.assert_array_equal(got[0], ref[0])
            assert got[1] == ref[1]


def _broadcast_params(rng, shape):
    """Parameter shape broadcasting to ``shape``: per tensor, per channel (axis 1), per column (N, 1, K),
    per element, a random mix, with leading axes sometimes dropped."""
    nd, kind = len(shape), int(rng.integers(0, 5))
    if kind == 0:
        return ()
    ps = [1] * nd
    if kind == 1:
        ps[min(1, nd - 1)] = shape[min(1, nd - 1)]
    elif kind == 2:
        ps[0], ps[-1] = shape[0], shape[-1]
    elif kind == 3:
        ps = list(shape)
    else:
        ps = [d if rng.random() < 0.5 else 1 for d in shape]
    return tuple(ps[int(rng.integers(0, nd + 1)) if rng.random() < 0.3 else 0:])


def test_fused_fixed_point_broadcast_params_equal_numpy():
    """Per-channel, per-column and per-element parameters (the per-Haar-level coefficient requant) run fused
    on int32 and int64 values, any memory order; equal to the numpy stages, counts included."""
    rng = np.random.default_rng(17)
    edge_mult = np.array([0, 1, 1 << 30, I32_MAX, I32_MIN, -7])
    for trial in range(600):
        shape = tuple(int(v) for v in rng.integers(1, 7, int(rng.integers(1, 6))))
        acc = rng.integers(-(1 << int(rng.integers(2, 40))), 1 << int(rng.integers(2, 40)), shape)
        flat = acc.reshape(-1)
        corners = [I32_MIN, I32_MAX, I32_MIN + 1, -(1 << 40), 1 << 40, 0, -1, 1]
        pos = rng.permutation(flat.size)[:len(corners)]
        flat[pos] = corners[:len(pos)]
        ps = _broadcast_params(rng, shape)
        mult = rng.integers(1 << 30, 1 << 31, ps) if trial % 4 else rng.choice(edge_mult, ps)
        left = rng.integers(0, 32, ps) if trial % 2 else rng.integers(0, 3, ps)
        signed = bool(trial % 3)
        p = requant.RequantParams(
            multiplier=np.asarray(mult, np.int64), left_shift=np.asarray(left, np.int64),
            shift=np.asarray(rng.integers(0, 32, ps), np.int64), zero_point=int(rng.integers(0, 6)),
            real_scale=1.0, out_bits=int(rng.choice([2, 8, 16, 31])), signed=signed, float_scale=np.float32(1),
            pow2_shift=0)
        values = acc
        if trial % 5 == 0 and acc.min() >= I32_MIN and acc.max() <= I32_MAX:
            values = acc.astype(np.int32)
        if trial % 7 == 0:
            values = np.asfortranarray(values)
        assert requant._requantize_fused(values, p) is not None  # the fused path, not the numpy fallback
        got, got_sat = requant.requantize(values, p, RequantMode.FIXED_POINT)
        ref, ref_sat = requant._requantize_numpy(np.asarray(acc, np.int64), p, RequantMode.FIXED_POINT)
        assert got.dtype == np.int64 and got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)
        assert got_sat == ref_sat


@pytest.mark.parametrize("field,value", [("shift", -1), ("shift", 32), ("left_shift", -2), ("left_shift", 40),
                                         ("multiplier", 1 << 31), ("multiplier", I32_MIN - 1)])
def test_fused_fixed_point_out_of_range_params_take_numpy(field, value):
    """Shifts outside 0..31 or multipliers outside int32 are not fused: the numpy stages run (and raise
    where they check: right shift, multiplier), for int32 and int64 values alike."""
    acc = np.arange(-6, 6, dtype=np.int64).reshape(2, 3, 2)
    p = requant_params(np.array([0.1, 0.2, 0.3])[None, :, None], QuantParams(1.0, 0, 8, True))
    bad = np.array(getattr(p, field))
    bad.reshape(-1)[1] = value
    p = dataclasses.replace(p, **{field: bad})
    for values in (acc, acc.astype(np.int32)):
        assert requant._requantize_fused(values, p) is None
        if field == "left_shift":
            got = requant.requantize(values, p, RequantMode.FIXED_POINT)
            ref = requant._requantize_numpy(acc, p, RequantMode.FIXED_POINT)
            np.testing.assert_array_equal(got[0], ref[0])
            assert got[1] == ref[1]
        else:
            with pytest.raises(ValueError):
                requant.requantize(values, p, RequantMode.FIXED_POINT)


# --------------------------------------------------------------------------------------------- haar

def _butterfly(low):
    """y1..y4 of every 2x2 block [a b; c d] (paper Eq. 3 without 1/2): (N, C, 2h, 2w) -> (N, C, 4, h, w)."""
    a, b, c, d = low[:, :, 0::2, 0::2], low[:, :, 0::2, 1::2], low[:, :, 1::2, 0::2], low[:, :, 1::2, 1::2]
    return np.stack([a + b + c + d, a - b + c - d, a + b - c - d, a - b - c + d], axis=2)


def _forward_reference(x, spec, in_bits):
    """The numpy formulation: butterfly, round_shift (per_level), saturate, level by level."""
    hp, wp = padded_shape(x.shape[2], x.shape[3], spec.levels)
    h, w = x.shape[2:]
    low = np.pad(np.asarray(x, np.int64), ((0, 0), (0, 0), (0, hp - h), (0, wp - w)))
    per_level, sat = [], 0
    for _ in range(spec.levels):
        y = _butterfly(low)
        if spec.normalize is Normalize.PER_LEVEL:
            y = round_shift(y, 1, spec.rounding)
        y, s = saturate(y, spec.width_bits)
        sat += s
        per_level.append(y)
        low = y[:, :, 0]
    return haar.pack_layout(per_level), per_level, sat


def _inverse_reference(coef, h, w, spec, width_bits):
    hp, wp = padded_shape(h, w, spec.levels)
    coef, sat = saturate(np.asarray(coef, np.int64), width_bits)
    low, details = haar.unpack_layout(coef, hp, wp, spec.levels)
    per_level = spec.normalize is Normalize.PER_LEVEL
    for lev in range(spec.levels, 0, -1):
        det = details[lev - 1] if per_level else details[lev - 1] << np.int64(spec.levels - lev)
        low = haar._inverse_butterfly(low, det)
        if per_level:
            low = round_shift(low, 1, spec.rounding)
        low, s = saturate(low, width_bits)
        sat += s
    if not per_level:
        low = round_shift(low, spec.levels, spec.rounding)
    return low[:, :, :h, :w], sat


@pytest.mark.parametrize("normalize", list(Normalize))
@pytest.mark.parametrize("rounding", list(Rounding))
def test_haar_kernels_equal_numpy_reference(normalize, rounding):
    rng = np.random.default_rng(11)
    for trial in range(12):
        levels, width = int(rng.integers(1, 5)), int(rng.choice([4, 8, 10, 16, 40]))
        spec = HaarSpec(levels=levels, normalize=normalize, rounding=rounding, width_bits=width)
        in_bits = int(rng.integers(2, 20))
        shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 40)), int(rng.integers(1, 40)))
        x = rng.integers(-(1 << (in_bits - 1)), 1 << (in_bits - 1), shape)
        if trial % 4 == 0:
            x[...] = -(1 << (in_bits - 1))  # the negative corner, saturating at narrow widths
        x = x.astype(np.int32) if trial % 2 else x
        got = haar.forward_int(x, spec, in_bits)
        coef, per_level, sat = _forward_reference(x, spec, in_bits)
        np.testing.assert_array_equal(got.coef, coef)
        for a, b in zip(got.per_level, per_level):
            np.testing.assert_array_equal(a, b)
        assert got.saturations == sat
        for cw in (width, width + 3):
            c = rng.integers(-(1 << cw), 1 << cw, coef.shape)
            out, s = haar.inverse_int(c, shape[2], shape[3], spec, cw)
            ref, ref_s = _inverse_reference(c, shape[2], shape[3], spec, cw)
            np.testing.assert_array_equal(out, ref)
            assert s == ref_s


# --------------------------------------------------------------------------------------------- topk

def test_exact_selection_equals_stable_sort():
    rng = np.random.default_rng(5)
    for trial in range(300):
        n, p = int(rng.integers(1, 4)), int(rng.integers(1, 200))
        k = int(rng.integers(1, p + 1))
        e = rng.integers(0, int(rng.choice([1, 2, 5, 1000, 1 << 40])), (n, p)).astype(np.int64)
        if trial % 3 == 0:
            e = e.astype(np.float64)
        order = np.argsort(-e, axis=1, kind="stable")  # reference: ties to the lower position
        ref = np.zeros(e.shape, bool)
        np.put_along_axis(ref, order[:, :k], True, axis=1)
        sel = topk.select(e, k, TopkSpec(mode=TopkMode.EXACT))
        np.testing.assert_array_equal(sel.bitmap, ref)


# ---------------------------------------------------------------------------------------------- mac

@pytest.mark.parametrize("overflow", [Overflow.SATURATE, Overflow.WRAP])  # the end-of-sum modes
def test_mac_narrow_inputs_equal_int64_matmul(overflow):
    rng = np.random.default_rng(3)
    for trial in range(40):
        cout, cin, n, k = (int(v) for v in rng.integers(1, 30, 4))
        cin = int(rng.integers(1000, 2100)) if trial % 8 == 0 else cin
        wq = rng.integers(-128, 128, (cout, cin)).astype(np.int8)
        xq = rng.integers(-128, 128, (n, cin, k)).astype(np.int8)
        if trial % 5 == 0:
            wq[...], xq[...] = -128, -128
        ref = np.matmul(wq.astype(np.int64), xq.astype(np.int64))
        for acc_bits in (16, 24, 32, 40):
            got, ovf = mac.mac_array(wq, xq, MacSpec(acc_bits=acc_bits, overflow=overflow))
            want, want_ovf = mac.accumulate(ref, acc_bits, overflow)
            assert got.dtype == (np.int32 if acc_bits <= 32 else np.int64)
            np.testing.assert_array_equal(got, want)
            assert ovf == want_ovf
