"""Haar unit: bit-exact against a slow per-block Python model, round trips, PyWavelets, saturation, layout."""

from fractions import Fraction

import numpy as np
import pytest
import pywt
from hypothesis import given, settings, strategies as st

from wccsim.datapath.haar import (
    forward_int, inverse_deferred_exact, inverse_int, inverse_kept, pack_layout, per_level_roundtrip_bound,
    unpack_layout,
)
from wccsim.datapath.shifts import round_shift, saturate
from wccsim.errors import InputError
from wccsim.hw import HaarSpec, Normalize, Rounding
from wccsim.reference import haar_forward, haar_inverse
from wccsim.rules import padded_shape, position_levels

ROUNDINGS = list(Rounding)
NORMS = list(Normalize)


# ---- slow reference: Python ints, one 2x2 block at a time -------------------------------------------

def _slow_round_half(v: int, rounding: Rounding, shift: int = 1) -> int:
    q = Fraction(v, 1 << shift)
    if rounding is Rounding.FLOOR:
        return q.numerator // q.denominator
    if rounding is Rounding.HALF_UP:
        return (q + Fraction(1, 2)).__floor__()
    return round(q)  # Fraction.__round__ ties to even


def _slow_clip(v: int, width: int, counter: list) -> int:
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if v < lo or v > hi:
        counter[0] += 1
        return min(max(v, lo), hi)
    return v


def _slow_forward(img, levels, spec):
    """img: list of lists of Python ints (padded). Returns (layout list, saturations)."""
    counter = [0]
    low = [row[:] for row in img]
    bands = []
    for _ in range(levels):
        h, w = len(low) // 2, len(low[0]) // 2
        out = [[[0] * w for _ in range(h)] for _ in range(4)]
        for i in range(h):
            for j in range(w):
                a, b = low[2 * i][2 * j], low[2 * i][2 * j + 1]
                c, d = low[2 * i + 1][2 * j], low[2 * i + 1][2 * j + 1]
                ys = [a + b + c + d, a - b + c - d, a + b - c - d, a - b - c + d]
                for t, y in enumerate(ys):
                    if spec.normalize is Normalize.PER_LEVEL:
                        y = _slow_round_half(y, spec.rounding)
                    out[t][i][j] = _slow_clip(y, spec.width_bits, counter)
        bands.append(out)
        low = out[0]
    layout = [v for row in bands[-1][0] for v in row]
    for lev in range(levels, 0, -1):
        for t in (1, 2, 3):
            layout += [v for row in bands[lev - 1][t] for v in row]
    return layout, counter[0]


def _slow_inverse(layout, hp, wp, levels, spec, width):
    counter = [0]
    vals = [_slow_clip(int(v), width, counter) for v in layout]
    hl, wl = hp >> levels, wp >> levels
    low = [vals[i * wl:(i + 1) * wl] for i in range(hl)]
    off = hl * wl
    dets = {}
    for lev in range(levels, 0, -1):
        h, w = hp >> lev, wp >> lev
        dets[lev] = []
        for _ in range(3):
            dets[lev].append([vals[off + i * w: off + (i + 1) * w] for i in range(h)])
            off += h * w
    for lev in range(levels, 0, -1):
        h, w = hp >> lev, wp >> lev
        new = [[0] * (2 * w) for _ in range(2 * h)]
        sh = 0 if spec.normalize is Normalize.PER_LEVEL else levels - lev
        for i in range(h):
            for j in range(w):
                y1 = low[i][j]
                y2, y3, y4 = (dets[lev][t][i][j] << sh for t in range(3))
                blk = [y1 + y2 + y3 + y4, y1 - y2 + y3 - y4, y1 + y2 - y3 - y4, y1 - y2 - y3 + y4]
                for t, (di, dj) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                    v = blk[t]
                    if spec.normalize is Normalize.PER_LEVEL:
                        v = _slow_round_half(v, spec.rounding)
                    new[2 * i + di][2 * j + dj] = _slow_clip(v, width, counter)
        low = new
    if spec.normalize is Normalize.DEFERRED:
        low = [[_slow_round_half(v, spec.rounding, levels) for v in row] for row in low]
    return low, counter[0]


# ---- bit-exact against the slow model ---------------------------------------------------------------

@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("normalize", NORMS)
@pytest.mark.parametrize("width_bits", [8, 12])
def test_forward_int_matches_slow_model(levels, rounding, normalize, width_bits):
    rng = np.random.default_rng(levels * 100 + width_bits)
    spec = HaarSpec(levels=levels, normalize=normalize, rounding=rounding, width_bits=width_bits)
    x = rng.integers(-128, 128, size=(2, 2, 7, 10))
    got = forward_int(x, spec, 8)
    hp, wp = padded_shape(7, 10, levels)
    total_sat = 0
    for n in range(2):
        for c in range(2):
            img = np.zeros((hp, wp), dtype=np.int64)
            img[:7, :10] = x[n, c]
            layout, sat = _slow_forward(img.tolist(), levels, spec)
            total_sat += sat
            assert got.coef[n, c].tolist() == layout
    assert got.saturations == total_sat
    assert got.width_bits == width_bits


@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("normalize", NORMS)
@pytest.mark.parametrize("width_bits", [9, 14])
def test_inverse_int_matches_slow_model(levels, rounding, normalize, width_bits):
    rng = np.random.default_rng(levels * 7 + width_bits)
    spec = HaarSpec(levels=levels, normalize=normalize, rounding=rounding, width_bits=16)
    h, w = 9, 6
    hp, wp = padded_shape(h, w, levels)
    coef = rng.integers(-300, 300, size=(2, 2, hp * wp))
    got, sat = inverse_int(coef, h, w, spec, width_bits)
    total_sat = 0
    for n in range(2):
        for c in range(2):
            img, s = _slow_inverse(coef[n, c].tolist(), hp, wp, levels, spec, width_bits)
            total_sat += s
            assert got[n, c].tolist() == [row[:w] for row in img[:h]]
    assert sat == total_sat


# ---- round trips ------------------------------------------------------------------------------------

@pytest.mark.parametrize("levels", [1, 2, 3, 4])
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (16, 16), (17, 3), (33, 20)])
def test_deferred_round_trip_is_identity(levels, rounding, shape):
    rng = np.random.default_rng(sum(shape) + levels)
    x = rng.integers(-128, 128, size=(2, 3) + shape)
    spec = HaarSpec(levels=levels, normalize=Normalize.DEFERRED, rounding=rounding, width_bits=8 + 2 * levels)
    fwd = forward_int(x, spec, 8)
    assert fwd.saturations == 0
    np.testing.assert_array_equal(inverse_deferred_exact(fwd.coef, *shape, levels), x)


def test_deferred_exact_rejects_non_forward_coefficients():
    coef = np.zeros((1, 1, 16), dtype=np.int64)
    coef[0, 0, 5] = 1
    with pytest.raises(ValueError, match="not a deferred forward output"):
        inverse_deferred_exact(coef, 4, 4, 2)


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("shape", [(5, 7), (16, 16), (17, 3)])
def test_per_level_round_trip_within_bound(levels, rounding, shape):
    rng = np.random.default_rng(sum(shape) * levels)
    x = rng.integers(-128, 128, size=(3, 4) + shape)
    spec = HaarSpec(levels=levels, normalize=Normalize.PER_LEVEL, rounding=rounding, width_bits=8 + levels)
    fwd = forward_int(x, spec, 8)
    y, sat = inverse_int(fwd.coef, *shape, spec, 8 + levels + 1)
    assert fwd.saturations == 0 and sat == 0
    assert np.abs(y - x).max() <= per_level_roundtrip_bound(levels)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_per_level_bound_is_attained(levels):
    """The derived bound is tight: half_up reaches it on random 8-bit data (fixed seed)."""
    x = np.random.default_rng(0).integers(-128, 128, size=(2, 3, 16, 16))
    spec = HaarSpec(levels=levels, normalize=Normalize.PER_LEVEL, rounding=Rounding.HALF_UP, width_bits=16)
    y, _ = inverse_int(forward_int(x, spec, 8).coef, 16, 16, spec, 16)
    assert np.abs(y - x).max() == per_level_roundtrip_bound(levels)


def test_per_level_bound_values():
    assert [per_level_roundtrip_bound(n) for n in range(1, 6)] == [1, 2, 2, 2, 2]


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("levels", [1, 3])
def test_deferred_inverse_rounds_once(rounding, levels):
    """Deferred inverse == the exact float inverse rounded once with the spec's rounding."""
    rng = np.random.default_rng(levels)
    h, w = 11, 13
    hp, wp = padded_shape(h, w, levels)
    coef = rng.integers(-500, 500, size=(2, 3, hp * wp))
    spec = HaarSpec(levels=levels, normalize=Normalize.DEFERRED, rounding=rounding, width_bits=24)
    got, sat = inverse_int(coef, h, w, spec, 24)
    scaled = haar_inverse(coef.astype(np.float64), h, w, levels) * (1 << levels)
    assert np.array_equal(scaled, np.round(scaled))  # exact integer before the final shift
    want = round_shift(scaled.astype(np.int64), levels, rounding)
    assert sat == 0
    np.testing.assert_array_equal(got, want)


def test_forward_float_inverse_float_round_trip():
    x = np.random.default_rng(3).standard_normal((2, 3, 13, 21))
    for levels in (1, 2, 3, 4):
        np.testing.assert_allclose(haar_inverse(haar_forward(x, levels), 13, 21, levels), x, atol=1e-12)


# ---- PyWavelets ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("shape", [(8, 8), (13, 21), (32, 16)])
def test_forward_float_matches_pywavelets(levels, shape):
    x = np.random.default_rng(levels).standard_normal((2, 2) + shape)
    hp, wp = padded_shape(*shape, levels)
    ours = haar_forward(x, levels)
    pad = np.zeros((2, 2, hp, wp))
    pad[:, :, :shape[0], :shape[1]] = x
    dec = pywt.wavedec2(pad, "haar", mode="periodization", level=levels, axes=(-2, -1))
    # our y2 (a-b+c-d) is pywt's vertical detail cV, y3 (a+b-c-d) is cH, y4 is cD; signs may differ
    parts = [dec[0]]
    for cH, cV, cD in dec[1:]:
        parts += [cV, cH, cD]
    theirs = np.concatenate([p.reshape(2, 2, -1) for p in parts], axis=2)
    np.testing.assert_allclose(np.abs(ours), np.abs(theirs), atol=1e-10)
    np.testing.assert_allclose(np.abs(ours - theirs) * np.abs(ours + theirs), 0, atol=1e-10)

    # inverse: feed pywt's coefficients (sign-aligned to ours) through haar_inverse
    sign = np.where(np.abs(ours - theirs) <= 1e-9, 1.0, -1.0)
    np.testing.assert_allclose(haar_inverse(theirs * sign, hp, wp, levels),
                               pywt.waverec2(dec, "haar", mode="periodization", axes=(-2, -1)), atol=1e-10)


# ---- saturation ----------------------------------------------------------------------------------------

def test_forward_saturation_counted_on_crafted_input():
    x = np.full((1, 1, 2, 2), 127)
    per = HaarSpec(levels=1, normalize=Normalize.PER_LEVEL, width_bits=8)
    fwd = forward_int(x, per, 8)
    assert fwd.saturations == 1  # y1 = 254 clips to 127; y2..y4 = 0
    assert fwd.coef.tolist() == [[[127, 0, 0, 0]]]
    x2 = np.array([[[[127, -128], [-128, 127]]]])
    fwd2 = forward_int(x2, HaarSpec(levels=1, normalize=Normalize.DEFERRED, width_bits=8), 8)
    assert fwd2.coef.tolist() == [[[-2, 0, 0, 127]]] and fwd2.saturations == 1  # y4 = 510
    fwd3 = forward_int(x2, HaarSpec(levels=1, normalize=Normalize.DEFERRED, width_bits=10), 8)
    assert fwd3.saturations == 0 and fwd3.coef.tolist() == [[[-2, 0, 0, 510]]]


def test_inverse_saturation_counted_on_crafted_input():
    spec = HaarSpec(levels=1, normalize=Normalize.PER_LEVEL)
    coef = np.array([[[100, 100, 100, 100]]])  # a = (400 + 1) >> 1 = 200 > 127, others 0
    y, sat = inverse_int(coef, 2, 2, spec, 8)
    assert y.tolist() == [[[[127, 0], [0, 0]]]] and sat == 1
    y, sat = inverse_int(np.array([[[300, 0, 0, 0]]]), 2, 2, spec, 8)  # input register clips, then 64 each
    assert sat == 1 and y.tolist() == [[[[64, 64], [64, 64]]]]


def test_saturate_primitive():
    v, n = saturate(np.array([-200, -128, 0, 127, 128]), 8)
    assert v.tolist() == [-128, -128, 0, 127, 127] and n == 2


# ---- layout --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("levels", [1, 2, 3])
def test_layout_matches_per_level(levels):
    x = np.random.default_rng(5).integers(-128, 128, size=(2, 3, 12, 20))
    fwd = forward_int(x, HaarSpec(levels=levels), 8)
    hp, wp = padded_shape(12, 20, levels)
    assert fwd.coef.shape == (2, 3, hp * wp)
    for lev, band in enumerate(fwd.per_level, start=1):
        assert band.shape == (2, 3, 4, hp >> lev, wp >> lev)
    np.testing.assert_array_equal(pack_layout(fwd.per_level), fwd.coef)
    low, details = unpack_layout(fwd.coef, hp, wp, levels)
    np.testing.assert_array_equal(low, fwd.per_level[-1][:, :, 0])
    plev = position_levels(hp, wp, levels)
    assert plev.shape == (hp * wp,) and plev.dtype == np.int64
    off = low[0, 0].size
    assert (plev[:off] == levels).all()
    for lev in range(levels, 0, -1):
        np.testing.assert_array_equal(details[lev - 1], fwd.per_level[lev - 1][:, :, 1:])
        size = 3 * (hp >> lev) * (wp >> lev)
        assert (plev[off:off + size] == lev).all()
        off += size
    assert off == hp * wp


def test_pad_shape():
    assert padded_shape(1, 1, 3) == (8, 8)
    assert padded_shape(16, 17, 3) == (16, 24)
    assert padded_shape(4, 4, 2) == (4, 4)


# ---- input errors --------------------------------------------------------------------------------------

def test_forward_rejects_values_outside_in_bits():
    with pytest.raises(InputError, match="8-bit signed"):
        forward_int(np.array([[[[128]]]]), HaarSpec(), 8)


def test_forward_input_wider_than_register_saturates_at_level_one():
    x = np.array([[[[1000, 1000], [1000, 1000]]]])  # 11-bit input into an 8-bit unit
    fwd = forward_int(x, HaarSpec(levels=1, width_bits=8), 11)
    assert fwd.coef.tolist() == [[[127, 0, 0, 0]]] and fwd.saturations == 1


def test_forward_rejects_float_input_and_bad_levels():
    with pytest.raises(InputError, match="integer array"):
        forward_int(np.zeros((1, 1, 2, 2)), HaarSpec(), 8)
    with pytest.raises(InputError, match="levels"):
        forward_int(np.zeros((1, 1, 2, 2), dtype=np.int64), HaarSpec(levels=0), 8)
    with pytest.raises(InputError, match="coef"):
        inverse_int(np.zeros((1, 1, 15), dtype=np.int64), 4, 4, HaarSpec(levels=1), 16)


# ---- property tests -----------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(levels=st.integers(1, 4), h=st.integers(1, 19), w=st.integers(1, 19), bits=st.integers(2, 16),
       rounding=st.sampled_from(ROUNDINGS), seed=st.integers(0, 2**31 - 1))
def test_property_round_trips(levels, h, w, bits, rounding, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(1, 2, h, w))
    deferred = HaarSpec(levels=levels, normalize=Normalize.DEFERRED, rounding=rounding, width_bits=bits + 2 * levels)
    fwd = forward_int(x, deferred, bits)
    assert fwd.saturations == 0
    np.testing.assert_array_equal(inverse_deferred_exact(fwd.coef, h, w, levels), x)
    per = HaarSpec(levels=levels, normalize=Normalize.PER_LEVEL, rounding=rounding, width_bits=bits + levels)
    fwd = forward_int(x, per, bits)
    y, sat = inverse_int(fwd.coef, h, w, per, bits + levels + 1)
    assert fwd.saturations == 0 and sat == 0
    assert np.abs(y - x).max() <= per_level_roundtrip_bound(levels)
    assert (position_levels(*padded_shape(h, w, levels), levels) >= 1).all()


# ---- fused kernels: any input dtype, per_level bands, inverse_kept -------------------------------------

def _slow_per_level(img, levels, spec):
    """Per-level (4, h, w) bands of the slow model, as `HaarForward.per_level` holds them (one plane)."""
    layout, _ = _slow_forward(img, levels, spec)
    hp, wp = len(img), len(img[0])
    bands, low = [], np.array(img, dtype=np.int64)
    for lev in range(1, levels + 1):  # re-run the slow model one level at a time to get each low band
        one = HaarSpec(levels=1, normalize=spec.normalize, rounding=spec.rounding, width_bits=spec.width_bits)
        lay, _ = _slow_forward(low.tolist(), 1, one)
        h, w = hp >> lev, wp >> lev
        y = np.array(lay, dtype=np.int64).reshape(4, h, w)
        bands.append(y)
        low = y[0]
    return layout, bands


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
@pytest.mark.parametrize("levels", [1, 2, 4])
@pytest.mark.parametrize("normalize", NORMS)
def test_forward_int_any_dtype_and_per_level_match_slow_model(dtype, levels, normalize):
    rng = np.random.default_rng(levels * 10 + np.dtype(dtype).itemsize)
    spec = HaarSpec(levels=levels, normalize=normalize, rounding=ROUNDINGS[levels % 3],
                    width_bits=8 if normalize is Normalize.PER_LEVEL else 9)  # both saturate sometimes
    h, w = 11, 6
    x = rng.integers(-128, 128, size=(2, 3, h, w)).astype(dtype)
    got = forward_int(x, spec, 8)
    hp, wp = padded_shape(h, w, levels)
    total_sat = 0
    for n in range(2):
        for c in range(3):
            img = np.zeros((hp, wp), dtype=np.int64)
            img[:h, :w] = x[n, c]
            layout, bands = _slow_per_level(img.tolist(), levels, spec)
            total_sat += _slow_forward(img.tolist(), levels, spec)[1]
            assert got.coef[n, c].tolist() == layout
            for lev in range(levels):
                assert got.per_level[lev].dtype == np.int64
                np.testing.assert_array_equal(got.per_level[lev][n, c], bands[lev])
    assert got.saturations == total_sat > 0


def test_lows_and_per_level_are_those_of_the_call_after_the_input_changes():
    """`HaarForward.lows` is computed on first access from a copy of the input: changing (or reusing) the
    caller's array after `forward_int` must not change it."""
    rng = np.random.default_rng(5)
    spec = HaarSpec(levels=3, width_bits=9)
    x = rng.integers(-128, 128, size=(2, 3, 21, 17)).astype(np.int8)
    want = forward_int(x.copy(), spec, 8)
    got = forward_int(x, spec, 8)
    x[...] = 0
    assert got.lows.shape == (2, 3, 12 * 12 + 6 * 6) and got.lows.dtype == np.int64
    np.testing.assert_array_equal(got.lows, want.lows)
    for u, v in zip(got.per_level, want.per_level):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(got.per_level[0][:, :, 0].reshape(2, 3, -1), got.lows[:, :, :144])
    assert forward_int(x[:, :, :8, :8], HaarSpec(levels=1), 8).lows.shape == (2, 3, 0)


def test_forward_int_rejects_out_of_range_narrow_input():
    with pytest.raises(InputError, match="4-bit signed"):
        forward_int(np.array([[[[8]]]], dtype=np.int8), HaarSpec(levels=1), 4)


def _zero_fill(acc, idx, p):
    zf = np.zeros(acc.shape[:2] + (p,), dtype=np.int64)
    for n in range(acc.shape[0]):
        zf[n][:, idx[n]] = acc[n]
    return zf


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("normalize", NORMS)
@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_inverse_kept_equals_inverse_of_zero_fill(levels, rounding, normalize, rate):
    rng = np.random.default_rng(levels * 31 + int(rate * 10))
    h, w = 13, 18
    hp, wp = padded_shape(h, w, levels)
    p = hp * wp
    k = max(1, int(rate * p))
    spec = HaarSpec(levels=levels, normalize=normalize, rounding=rounding, width_bits=16)
    idx = np.sort(np.stack([rng.choice(p, k, replace=False) for _ in range(2)]), axis=1).astype(np.int64)
    for dtype, width in ((np.int32, 12), (np.int64, 20)):  # 12 bits: inputs and levels saturate
        acc = rng.integers(-3000, 3000, size=(2, 3, k)).astype(dtype)
        got, sat = inverse_kept(acc, idx, h, w, spec, width)
        want, want_sat = inverse_int(_zero_fill(acc, idx, p), h, w, spec, width)
        assert got.dtype == np.int64 and got.shape == (2, 3, h, w)
        np.testing.assert_array_equal(got, want)
        assert sat == want_sat
        if width == 12 and k > 10:
            assert sat > 0


def test_inverse_kept_matches_slow_model():
    rng = np.random.default_rng(11)
    levels, h, w = 2, 7, 5
    hp, wp = padded_shape(h, w, levels)
    spec = HaarSpec(levels=levels, normalize=Normalize.DEFERRED, rounding=Rounding.HALF_EVEN)
    idx = np.array([[0, 3, 9, 17, 40, 63], [1, 2, 5, 30, 31, 62]], dtype=np.int64)
    acc = rng.integers(-400, 400, size=(2, 2, 6)).astype(np.int32)
    got, sat = inverse_kept(acc, idx, h, w, spec, 10)
    zf = _zero_fill(acc, idx, hp * wp)
    total = 0
    for n in range(2):
        for c in range(2):
            img, s = _slow_inverse(zf[n, c].tolist(), hp, wp, levels, spec, 10)
            total += s
            assert got[n, c].tolist() == [row[:w] for row in img[:h]]
    assert sat == total


def test_inverse_kept_rejects_bad_idx():
    acc = np.zeros((1, 1, 2), dtype=np.int32)
    for bad in ([[3, 3]], [[4, 2]], [[0, 16]], [[-1, 2]], [[0, 1, 2]]):
        with pytest.raises(InputError, match="idx"):
            inverse_kept(acc, np.array(bad, dtype=np.int64), 4, 4, HaarSpec(levels=1), 16)


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("normalize", NORMS)
@pytest.mark.parametrize("spikes", [0, 3])
def test_rows_redone_exactly_only_where_values_clip(rounding, normalize, spikes):
    """The kernels run each row unclipped and redo it clipped only if a value left the register: rows
    with and without clips in one plane, and planes without any, match the slow model (counts included)."""
    rng = np.random.default_rng(spikes * 7 + ROUNDINGS.index(rounding))
    levels, h, w, width = 2, 13, 22, 12
    spec = HaarSpec(levels=levels, normalize=normalize, rounding=rounding, width_bits=width)
    hp, wp = padded_shape(h, w, levels)
    x = rng.integers(-200, 200, size=(1, 2, h, w))
    coef = rng.integers(-300, 300, size=(1, 2, hp * wp))
    for _ in range(spikes):  # a few values far outside the register: only their rows clip
        x[0, 1, rng.integers(h), rng.integers(w)] = rng.choice([-1, 1]) * 8000
        coef[0, 1, rng.integers(hp * wp)] = rng.choice([-1, 1]) * 5000
    fwd = forward_int(x, spec, 14)
    got, sat = inverse_int(coef, h, w, spec, width)
    want_f = want_i = 0
    for c in range(2):
        img = np.zeros((hp, wp), dtype=np.int64)
        img[:h, :w] = x[0, c]
        layout, s = _slow_forward(img.tolist(), levels, spec)
        assert fwd.coef[0, c].tolist() == layout
        want_f += s
        out, s = _slow_inverse(coef[0, c].tolist(), hp, wp, levels, spec, width)
        assert got[0, c].tolist() == [row[:w] for row in out[:h]]
        want_i += s
    assert fwd.saturations == want_f and sat == want_i
    assert (want_f > 0 and want_i > 0) == (spikes > 0)
