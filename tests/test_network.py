"""Tests of wccsim.network: graph splicing, preprocessing, whole-network drift, CLI."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from wccsim.errors import InputError
from wccsim.network.preprocess import Preprocess, image_label, load_image, prepare
from wccsim.network.splice import plan_graph, run_plan

rapidocr = pytest.importorskip("rapidocr_onnxruntime")
MODELS = Path(rapidocr.__file__).parent / "models"
DET = MODELS / "ch_PP-OCRv4_det_infer.onnx"
CLS = MODELS / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


def _f64_conv(x, w, b, stride):
    """Independent float64 1x1 conv for the splicing tests."""
    y = np.einsum("oc,nchw->nohw", w.astype(np.float64), x[:, :, ::stride, ::stride].astype(np.float64))
    if b is not None:
        y += b[None, :, None, None]
    return y.astype(np.float32)


def _ort(model, feeds):
    data = model if isinstance(model, (str, Path)) else model.SerializeToString()
    sess = ort.InferenceSession(str(data) if isinstance(data, Path) else data, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _rel(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


def _toy_model():
    """A graph exercising the corner cases: Constant-node weight, initializer weight with bias, stride 2,
    grouped / padded 1x1 convs (must stay in float), a Shape op, two outputs, an out-of-order node list."""
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((6, 4, 1, 1)).astype(np.float32)
    w2 = rng.standard_normal((5, 6, 1, 1)).astype(np.float32)
    b2 = rng.standard_normal(5).astype(np.float32)
    wg = rng.standard_normal((6, 3, 1, 1)).astype(np.float32)
    wp = rng.standard_normal((6, 6, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="c2", kernel_shape=[1, 1], strides=[2, 2]),
        helper.make_node("Constant", [], ["w1"], value=numpy_helper.from_array(w1)),
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "wg"], ["cg"], name="grouped", group=2, kernel_shape=[1, 1]),
        helper.make_node("Conv", ["cg", "wp"], ["cp"], name="padded", pads=[1, 1, 1, 1], kernel_shape=[1, 1]),
        helper.make_node("Shape", ["c2"], ["shape"]),
        helper.make_node("Sigmoid", ["c2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 9, 7])],
        [onnx.ValueInfoProto(name=n) for n in ("y", "cp", "shape")],
        initializer=[numpy_helper.from_array(a, n) for a, n in ((w2, "w2"), (b2, "b2"), (wg, "wg"), (wp, "wp"))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_toy_graph_spliced_equals_onnxruntime_and_lists_unhandled():
    model = _toy_model()
    plan = plan_graph(model)
    assert [c.name for c in plan.layers] == ["c1", "c2"]
    assert plan.layers[1].stride == 2 and plan.layers[1].b is not None
    reasons = {u.name: u.reason for u in plan.unhandled}
    assert reasons == {"grouped": "group=2", "padded": "pads=[1, 1, 1, 1]"}
    x = np.random.default_rng(2).standard_normal((1, 4, 9, 7)).astype(np.float32)
    ref = _ort(model, {"x": x})
    got = run_plan(plan, {"x": x}, _f64_conv)
    assert set(got) == {"y", "cp", "shape"}
    np.testing.assert_array_equal(got["shape"], ref["shape"])
    for n in ("y", "cp"):
        np.testing.assert_allclose(got[n], ref[n], rtol=1e-5, atol=1e-6)


def test_hook_errors_propagate_to_later_layers():
    model = _toy_model()
    plan = plan_graph(model)
    x = np.random.default_rng(3).standard_normal((1, 4, 9, 7)).astype(np.float32)
    seen = []

    def scaled(xx, w, b, s):  # perturbs only the first layer's output
        return _f64_conv(xx, w, b, s) * (1.5 if w.shape[1] == 4 else 1.0)

    got = run_plan(plan, {"x": x}, scaled, on_layer=lambda c, xx, yy: seen.append((c.name, xx.shape, yy.shape)))
    ref = _ort(model, {"x": x})
    assert seen == [("c1", (1, 4, 9, 7), (1, 6, 9, 7)), ("c2", (1, 6, 9, 7), (1, 5, 5, 4))]
    assert _rel(got["y"], ref["y"]) > 1e-2  # the second layer's input changed


@pytest.mark.parametrize("path,kind", [(DET, Preprocess.PPOCR_DET), (CLS, Preprocess.PPOCR_CLS)])
def test_ppocr_spliced_float_reproduces_onnxruntime(path, kind):
    x, _ = prepare(load_image("skimage:page"), kind, side=128)
    plan = plan_graph(onnx.load(path))
    assert len(plan.layers) > 30 and plan.unhandled == ()
    ref = _ort(path, {"x": x})
    got = run_plan(plan, {"x": x}, _f64_conv)
    for name, r in ref.items():
        assert _rel(got[name], r) <= 1e-4
    if kind is Preprocess.PPOCR_DET:
        assert (ref[plan.outputs[0]] > 0.3).mean() > 0.05  # the page has text: the check is not vacuous


def test_preprocess_shapes_and_labels():
    rgb = load_image("skimage:text")
    x, shown = prepare(rgb, Preprocess.PPOCR_DET, side=100)
    assert x.dtype == np.float32 and x.shape[2] % 32 == 0 and x.shape[3] % 32 == 0
    assert shown.shape[:2] == x.shape[2:]
    x, shown = prepare(rgb, Preprocess.PPOCR_CLS)
    assert x.shape == (1, 3, 48, 192) and float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert image_label("skimage:text") == "text" and image_label("/a/b/my photo.png") == "my_photo"


@pytest.mark.parametrize("spec", ["skimage:nope", "skimage:_fetch", "/no/such/file.png"])
def test_bad_image_is_input_error(spec):
    with pytest.raises(InputError):
        load_image(spec)
