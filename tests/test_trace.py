"""Trace format v1: round trip, lazy reading, and refusal of bad files with one-line errors."""

import io
import json
import zipfile

import numpy as np
import pytest

from wccsim import trace as tr
from wccsim.errors import InputError
from wccsim.trace import LayerData, open_trace, write_trace


def _layers(rng, n=2):
    return [
        LayerData("a", rng.standard_normal((n, 3, 5, 6)).astype(np.float32),
                  rng.standard_normal((4, 3)).astype(np.float32), None,
                  rng.standard_normal((n, 4, 3, 3)).astype(np.float32), 2),
        LayerData("b-1", rng.standard_normal((n, 4, 5, 6)), rng.standard_normal((4, 4)),
                  rng.standard_normal(4), None, 1),
    ]


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "good.npz"
    write_trace(p, {"network": "toy", "source": {"tool": "test"}}, _layers(np.random.default_rng(0)))
    return p


def _npy(arr, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _rewrite(src, dst, replace=None, drop=()):
    """Copy the zip `src` to `dst`, replacing members (name -> bytes) and dropping others."""
    replace = dict(replace or {})
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            zout.writestr(name, replace.pop(name, None) or zin.read(name))
        for name, data in replace.items():
            zout.writestr(name, data)
    return dst


def _meta_bytes(path, **changes):
    meta = dict(open_trace(path).meta, **changes)
    return _npy(np.array(json.dumps(meta)))


def _refused(path, *words):
    with pytest.raises(InputError) as e:
        t = open_trace(path)
        for _ in t:
            pass
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_round_trip_identical_arrays_and_meta(good):
    src = _layers(np.random.default_rng(0))
    t = open_trace(good)
    assert t.n == 2 and [li.name for li in t.layers] == ["a", "b-1"]
    assert t.meta["network"] == "toy" and t.meta["version"] == 1 and t.meta["format"] == "wccsim-trace"
    assert t.layers[0] == tr.LayerInfo("a", 3, 4, 5, 6, 2, False, True)
    assert t.layers[0].ho == 3 and t.layers[0].macs == 4 * 3 * 3 * 3
    got = list(t)
    for s, g in zip(src, got):
        assert g.name == s.name and g.stride == s.stride
        for k in "xwby":
            a, b = getattr(s, k), getattr(g, k)
            assert (a is None) == (b is None)
            if a is not None:
                assert a.dtype == b.dtype and np.array_equal(a, b)
    # a second write of the same data gives a file with the same meta
    assert open_trace(good).meta == t.meta
    assert len(t.sha256) == 64


def test_float16_storage_returns_float32_of_the_stored_values(tmp_path):
    rng = np.random.default_rng(1)
    src = _layers(rng)
    p = tmp_path / "h.npz"
    write_trace(p, {"network": "toy"}, src, store_dtype="float16", compress=True)
    got = open_trace(p).layer("a")
    assert got.x.dtype == np.float32
    assert np.array_equal(got.x, src[0].x.astype(np.float16).astype(np.float32))
    assert np.array_equal(got.w, src[0].w) and np.array_equal(got.y, src[0].y)


def test_numpy_can_read_it_without_pickle(good):
    with np.load(good, allow_pickle=False) as z:
        assert sorted(z.files) == ["a.w", "a.x", "a.y", "b-1.b", "b-1.w", "b-1.x", "meta"]


def test_refuses_pickled_member(good, tmp_path):
    obj = np.empty((2, 3, 5, 6), dtype=object)
    bad = _rewrite(good, tmp_path / "bad.npz", {"a.x.npy": _npy(obj, allow_pickle=True)})
    _refused(bad, "a.x", "pickled")


def test_refuses_truncated_file(good, tmp_path):
    data = good.read_bytes()
    bad = tmp_path / "trunc.npz"
    bad.write_bytes(data[: len(data) // 2])
    _refused(bad, "truncated")


def test_refuses_truncated_member(good, tmp_path):
    raw = zipfile.ZipFile(good).read("a.y.npy")
    bad = _rewrite(good, tmp_path / "bad.npz", {"a.y.npy": raw[:-8]})
    _refused(bad, "a.y", "truncated")


def test_refuses_missing_member(good, tmp_path):
    bad = _rewrite(good, tmp_path / "bad.npz", drop={"b-1.w.npy"})
    _refused(bad, "b-1.w", "missing")


def test_refuses_shape_mismatch(good, tmp_path):
    bad = _rewrite(good, tmp_path / "bad.npz", {"a.w.npy": _npy(np.zeros((4, 2), np.float32))})
    _refused(bad, "a.w", "shape (4, 3)", "shape (4, 2)")


def test_refuses_int_dtype_nan_and_unexpected_member(good, tmp_path):
    _refused(_rewrite(good, tmp_path / "i.npz", {"a.w.npy": _npy(np.zeros((4, 3), np.int32))}), "a.w", "int32")
    x = np.zeros((2, 3, 5, 6), np.float32)
    x[1, 2, 3, 4] = np.nan
    _refused(_rewrite(good, tmp_path / "n.npz", {"a.x.npy": _npy(x)}), "a.x", "NaN")
    _refused(_rewrite(good, tmp_path / "u.npz", {"z.x.npy": _npy(x)}), "z.x", "unexpected")


def test_nonfinite_count_is_chunked():
    a = np.zeros(1000, np.float32)
    a[[3, 500, 999]] = [np.nan, np.inf, -np.inf]
    a[700] = 2e9  # above the magnitude limit (would overflow float32 sums of squares in calibration)
    assert tr._count_bad_values(a, chunk=7) == 4 and tr._count_bad_values(a[:3], chunk=7) == 0


def test_refuses_unknown_version_and_bad_meta(good, tmp_path):
    _refused(_rewrite(good, tmp_path / "v.npz", {"meta.npy": _meta_bytes(good, version=2)}), "meta.version", "2")
    _refused(_rewrite(good, tmp_path / "f.npz", {"meta.npy": _meta_bytes(good, format="x")}), "meta.format")
    layers = open_trace(good).meta["layers"]
    zero = [dict(layers[0], h=0), layers[1]]
    _refused(_rewrite(good, tmp_path / "z.npz", {"meta.npy": _meta_bytes(good, layers=zero)}), "layers[0].h")
    _refused(_rewrite(good, tmp_path / "m.npz", {"meta.npy": _npy(np.array(["{"]))}), "meta")


def test_refuses_layer_larger_than_free_memory(good, monkeypatch):
    monkeypatch.setattr(tr, "_available_memory_bytes", lambda: 1000)
    _refused(good, "fits in 1000 free bytes")


def test_write_validates_and_leaves_no_file(tmp_path):
    rng = np.random.default_rng(2)
    a = _layers(rng)[0]
    bad_cin = LayerData("a", a.x, a.w[:, :2], None, None, 1)
    bad_y = LayerData("a", a.x, a.w, None, a.y[:, :, :2], 2)
    nan_w = LayerData("a", a.x, np.full_like(a.w, np.inf), None, None, 1)
    zero = LayerData("a", a.x[:0], a.w, None, None, 1)
    bad_name = LayerData("a.b", a.x, a.w, None, None, 1)
    p = tmp_path / "w.npz"
    for ld, word in [(bad_cin, "shape"), (bad_y, "a.y"), (nan_w, "a.w"), (zero, "zero-size"), (bad_name, "'a.b'")]:
        with pytest.raises(InputError, match=word):
            write_trace(p, {}, [ld])
    assert list(tmp_path.iterdir()) == []


def _design_only(path, arrays, layers, **meta_fields):
    """A trace written with plain numpy from DESIGN.md section 6 alone: no ``n``, no per-layer ``has_y``."""
    meta = {"format": "wccsim-trace", "version": 1, "network": "toy", "input": {},
            "source": {"tool": "np.savez", "model_file": "none", "sha256": "0" * 64},
            "layers": layers, **meta_fields}
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def _design_arrays(rng, n=3):
    """Layer a (stride 2, no bias, with y) and layer b (bias, no y), and their section-6 meta entries."""
    arrays = {"a.x": rng.standard_normal((n, 3, 5, 6)).astype(np.float32),
              "a.w": rng.standard_normal((4, 3)).astype(np.float32),
              "a.y": rng.standard_normal((n, 4, 3, 3)).astype(np.float32),
              "b.x": rng.standard_normal((n, 4, 5, 6)).astype(np.float16),
              "b.w": rng.standard_normal((2, 4)).astype(np.float32),
              "b.b": rng.standard_normal(2).astype(np.float32)}
    layers = [{"name": "a", "cin": 3, "cout": 4, "h": 5, "w": 6, "stride": 2, "has_bias": False},
              {"name": "b", "cin": 4, "cout": 2, "h": 5, "w": 6, "stride": 1, "has_bias": True}]
    return arrays, layers


def test_design_only_trace_loads_with_n_and_has_y_from_the_arrays(tmp_path):
    arrays, layers = _design_arrays(np.random.default_rng(3))
    t = open_trace(_design_only(tmp_path / "d.npz", arrays, layers))
    assert "n" not in t.meta and t.n == 3
    assert t.layers == [tr.LayerInfo("a", 3, 4, 5, 6, 2, False, True), tr.LayerInfo("b", 4, 2, 5, 6, 1, True, False)]
    a, b = t.layer("a"), t.layer("b")
    assert np.array_equal(a.x, arrays["a.x"]) and np.array_equal(a.y, arrays["a.y"]) and a.b is None
    assert np.array_equal(b.x, arrays["b.x"].astype(np.float32)) and np.array_equal(b.b, arrays["b.b"])
    assert b.y is None
    # written and agreeing with the arrays is as good as absent
    agreeing = [dict(layers[0], has_y=True), dict(layers[1], has_y=False)]
    assert open_trace(_design_only(tmp_path / "e.npz", arrays, agreeing, n=3)).layers == t.layers


@pytest.mark.parametrize("change, words", [
    (lambda a, l, m: m.update(n=2), ("meta.n", "3 (the image count of a.x)", "got 2")),
    (lambda a, l, m: m.update(n=0), ("meta.n", "positive integer")),
    (lambda a, l, m: a.update({"b.x": a["b.x"][:2]}), ("b.x", "shape (3, 4, 5, 6)", "shape (2, 4, 5, 6)")),
    (lambda a, l, m: a.update({"a.y": a["a.y"][:2]}), ("a.y", "shape (3, 4, 3, 3)", "shape (2, 4, 3, 3)")),
    (lambda a, l, m: a.update({"a.x": a["a.x"][0]}), ("a.x", "(N, 3, 5, 6)", "shape (3, 5, 6)")),
    (lambda a, l, m: a.update({"a.w": a["a.w"][:, :2]}), ("a.w", "shape (4, 3)", "shape (4, 2)")),
    (lambda a, l, m: l[0].update(has_y=False), ("a.y", "an unexpected member")),
    (lambda a, l, m: l[1].update(has_y=True), ("b.y", "missing")),
    (lambda a, l, m: l[1].update(has_y="no"), ("meta.layers[1].has_y", "true or false")),
    (lambda a, l, m: l[0].update(has_bias=True), ("a.b", "missing")),
    (lambda a, l, m: a.pop("a.x"), ("a.x", "missing")),
])
def test_design_only_trace_inconsistencies_refused_in_one_line(tmp_path, change, words):
    arrays, layers = _design_arrays(np.random.default_rng(4))
    meta = {}
    change(arrays, layers, meta)
    _refused(_design_only(tmp_path / "bad.npz", arrays, layers, **meta), *words)
