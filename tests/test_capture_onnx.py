"""ONNX capture: layer selection, weight extraction, honest y, and the bundled real traces."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from wccsim.capture.images import PRESETS, load_image, parse_size, preprocess_images  # noqa: E402
from wccsim.capture.onnx import capture_onnx, capture_onnx_trace, resolve_model, sha256_file  # noqa: E402
from wccsim.errors import InputError  # noqa: E402
from wccsim.reference import ref_conv  # noqa: E402
from wccsim.trace import open_trace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DET = ROOT / "traces" / "ppocrv4_det.npz"
CLS = ROOT / "traces" / "ppocr_cls.npz"
TOL_REL_L2 = 1e-4


def _rel_l2(ref, got):
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(np.asarray(got, np.float64) - ref) / np.linalg.norm(ref))


def _toy_model(path):
    """Synthetic graph: 1x1 stride-2 conv (initializer weights, bias), depthwise 3x3 (skipped),
    1x1 conv with weights in a Constant node (no bias), global pool + 1x1 conv on 1 pixel (skipped)."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((8, 3, 1, 1)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    wd = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((5, 8, 1, 1)).astype(np.float32)
    w3 = rng.standard_normal((4, 5, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="pw.1", kernel_shape=[1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "wd"], ["d1"], name="dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Constant", [], ["w2"], value=numpy_helper.from_array(w2, "w2")),
        helper.make_node("Conv", ["d1", "w2"], ["c2"], name="pw2"),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"]),
        helper.make_node("Conv", ["g", "w3"], ["fc"], name="fc"),
    ]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("fc", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (wd, "wd"),
                                                                           (w3, "w3"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return w1, b1, w2


@pytest.mark.parametrize("store", ["float32", "float16"])
def test_toy_model_layers_skips_macs_and_y(tmp_path, store):
    w1, b1, w2 = _toy_model(tmp_path / "toy.onnx")
    x = np.random.default_rng(1).standard_normal((2, 3, 10, 9)).astype(np.float32)
    meta, layers = capture_onnx(tmp_path / "toy.onnx", x, store_dtype=store)
    assert [ld.name for ld in layers] == ["pw_1", "pw2"]
    assert [ld.stride for ld in layers] == [2, 1]
    assert np.array_equal(layers[0].w, w1[:, :, 0, 0]) and np.array_equal(layers[0].b, b1)
    assert np.array_equal(layers[1].w, w2[:, :, 0, 0]) and layers[1].b is None
    assert layers[0].y.shape == (2, 8, 5, 5)
    assert {s["node"]: s["reason"] for s in meta["skipped"]} == {"dw": "kernel 3x3, group 8", "fc": "1x1 pixel input (fully connected layer)"}
    # MACs per sample: 8*3*5*5 + 8*1*9*5*5 + 5*8*5*5 + 4*5*1*1
    assert meta["model_conv_macs"] == 600 + 1800 + 1000 + 20
    assert meta["source"]["sha256"] == sha256_file(tmp_path / "toy.onnx")
    if store == "float16":
        assert np.array_equal(layers[0].x, x.astype(np.float16).astype(np.float32))
    for ld in layers:
        assert _rel_l2(ref_conv(ld.x, ld.w, ld.b, stride=ld.stride), ld.y) <= TOL_REL_L2


def test_bundled_cls_trace_y_matches_ref_conv_every_layer():
    t = open_trace(CLS)
    assert t.meta["source"]["sha256"] == sha256_file(resolve_model("rapidocr:ch_ppocr_mobile_v2.0_cls_infer.onnx"))
    assert len(t.layers) >= 20 and all(li.has_y for li in t.layers)
    for ld in t:
        assert _rel_l2(ref_conv(ld.x, ld.w, ld.b, stride=ld.stride), ld.y) <= TOL_REL_L2, ld.name


def test_bundled_det_trace_regenerates():
    """Capture the bundled trace's first image again at its size and compare every layer with the file:
    same layers and shapes, identical weights and biases, same activations (float16 storage, so compare
    after rounding), and ref_conv reproduces onnxruntime's y on the stored x for every layer."""
    t = open_trace(DET)
    model = resolve_model("rapidocr:" + t.meta["source"]["model_file"])
    assert t.meta["source"]["sha256"] == sha256_file(model)
    spec, size = t.meta["input"]["images"][0], tuple(t.meta["input"]["size_hw_px"])
    assert min(size) >= 512
    batch = preprocess_images([load_image(spec)], PRESETS[t.meta["input"]["preprocess"]], size)
    meta, layers = capture_onnx(model, batch, store_dtype="float16")
    assert [dataclasses.replace(ld.info(), has_y=False) for ld in layers] == t.layers
    assert meta["model_conv_macs"] == t.meta["model_conv_macs"] and meta["skipped"] == t.meta["skipped"]
    for fresh in layers:
        stored = t.layer(fresh.name)
        assert np.array_equal(stored.w, fresh.w) and np.array_equal(stored.b, fresh.b), fresh.name
        assert _rel_l2(stored.x[:1], fresh.x) <= 1e-3, fresh.name
        assert _rel_l2(ref_conv(fresh.x, fresh.w, fresh.b, stride=fresh.stride), fresh.y) <= TOL_REL_L2


def test_bundled_det_trace_is_real_and_small():
    t = open_trace(DET)
    assert DET.stat().st_size <= 25e6
    assert t.meta["network"] == "ch_PP-OCRv4_det_infer" and len(t.layers) == 22
    assert 0.3 < sum(li.macs for li in t.layers) / t.meta["model_conv_macs"] < 0.5


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "wccsim", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_info_on_bundled_traces():
    for path in (DET, CLS):
        out = _cli("trace", "info", str(path))
        assert out.returncode == 0, out.stderr
        assert "Cin" in out.stdout and "MACs" in out.stdout and "total" in out.stdout
        assert "conv MACs per sample" in out.stdout
        assert len([line for line in out.stdout.splitlines() if line.startswith("p2o_Conv_")
                    or line.startswith("Conv_")]) == len(open_trace(path).layers)


def test_cli_capture_then_info(tmp_path):
    out = tmp_path / "cls.npz"
    r = _cli("trace", "capture", "--onnx", "rapidocr:ch_ppocr_mobile_v2.0_cls_infer.onnx",
             "--image", "skimage:text", "--float16", "-o", str(out))
    assert r.returncode == 0, r.stderr
    t = open_trace(out)
    assert t.n == 1 and t.meta["input"]["size_hw_px"] == [48, 192]
    ld = t.layer(t.layers[-1].name)
    assert _rel_l2(ref_conv(ld.x, ld.w, ld.b, stride=ld.stride), ld.y) <= TOL_REL_L2
    bad = _cli("trace", "capture", "--onnx", "rapidocr:ch_PP-OCRv4_det_infer.onnx", "--image",
               "skimage:astronaut", "--size", "500x500", "-o", str(tmp_path / "d.npz"))
    assert bad.returncode == 2 and "multiples of 32" in bad.stderr and not (tmp_path / "d.npz").exists()


def test_image_and_size_errors():
    assert parse_size("736x1280") == (736, 1280)
    for text in ("736", "0x32", "axb"):
        with pytest.raises(InputError, match="--size"):
            parse_size(text)
    with pytest.raises(InputError, match="skimage.data"):
        load_image("skimage:no_such_image")
    with pytest.raises(InputError, match="no such file"):
        load_image("/nonexistent.png")
    gray = load_image("skimage:camera")
    assert gray.shape == (512, 512, 3) and gray.dtype == np.uint8
    x = preprocess_images([gray, load_image("skimage:coffee")], PRESETS["ppocr_det"], (64, 96))
    assert x.shape == (2, 3, 64, 96) and x.dtype == np.float32 and -1.0 <= x.min() and x.max() <= 1.0
    line = preprocess_images([load_image("skimage:text")], PRESETS["ppocr_cls"])
    assert line.shape == (1, 3, 48, 192) and np.all(line[0, :, :, 126:] == 0)  # 48*448/172 -> 126 wide
    assert preprocess_images([load_image("skimage:page")], PRESETS["ppocr_rec"]).shape == (1, 3, 48, 320)


@pytest.mark.parametrize("name, lo, hi", [("imagenet", -0.485 / 0.229, (1 - 0.406) / 0.225), ("unit", 0.0, 1.0),
                                          ("signed_unit", -1.0, 1.0)])
def test_generic_presets_rgb_range_and_default_size(name, lo, hi):
    """RGB order (a pure-red image lights channel 0 only), the documented value range, and the default size:
    short side 512, sides multiples of 32 (coffee is 400x600 -> 512x768)."""
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 255
    x = preprocess_images([red], PRESETS[name], (20, 30))
    p = PRESETS[name]
    want = [(255 / 255 - p.mean[0]) / p.std[0], (0 - p.mean[1]) / p.std[1], (0 - p.mean[2]) / p.std[2]]
    np.testing.assert_allclose(x[0, :, 10, 15], want, rtol=1e-6)
    assert np.isclose(x.min(), min(want)) and min(want) >= lo - 1e-6 and max(want) <= hi + 1e-6
    assert preprocess_images([load_image("skimage:coffee")], p).shape == (1, 3, 512, 768)
