"""Tests of wccsim.network: graph splicing, preprocessing, whole-network drift, CLI."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from wccsim.capture.images import PRESETS, load_image
from wccsim.cli import main
from wccsim.network.drift import OutputKind, binary_iou, class_agreement, output_kind
from wccsim.network.hooks import Mode, float_hook
from wccsim.network.preprocess import image_label, network_input, resolve_preset
from wccsim.network.simulate import simulate_network
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
    assert reasons == {"grouped": "group 2", "padded": "pads [1, 1, 1, 1]"}
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


def test_subgraph_outer_scope_reads_are_dependencies():
    """An If node whose branches read a spliced layer's output (outer scope) must run after that layer."""
    w = np.random.default_rng(4).standard_normal((3, 2, 1, 1)).astype(np.float32)
    then_g = helper.make_graph([helper.make_node("Relu", ["c"], ["t"])], "then", [], [onnx.ValueInfoProto(name="t")])
    else_g = helper.make_graph([helper.make_node("Neg", ["c"], ["e"])], "else", [], [onnx.ValueInfoProto(name="e")])
    nodes = [
        helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g),
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("Conv", ["x", "w"], ["c"], name="c", kernel_shape=[1, 1]),
    ]
    graph = helper.make_graph(nodes, "ifs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                              [onnx.ValueInfoProto(name="y")],
                              initializer=[numpy_helper.from_array(w, "w"),
                                           numpy_helper.from_array(np.float32(0), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    plan = plan_graph(model)
    assert [c.name for c in plan.layers] == ["c"]
    for sign in (1.0, -1.0):
        x = sign * np.abs(np.random.default_rng(5).standard_normal((1, 2, 3, 3))).astype(np.float32)
        got = run_plan(plan, {"x": x}, _f64_conv)["y"]
        np.testing.assert_allclose(got, _ort(model, {"x": x})["y"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path,preset", [(DET, "ppocr_det"), (CLS, "ppocr_cls")])
def test_ppocr_spliced_float_reproduces_onnxruntime(path, preset):
    model = onnx.load(path)
    assert resolve_preset(model, "auto").name == preset
    x, picture = network_input(load_image("skimage:page"), PRESETS[preset], (96, 192) if preset == "ppocr_det" else None)
    assert picture.shape == (x.shape[2], x.shape[3], 3) and picture.dtype == np.uint8
    plan = plan_graph(model)
    assert len(plan.layers) > 30 and plan.unhandled == ()
    ref = _ort(path, {"x": x})
    got = run_plan(plan, {"x": x}, _f64_conv)
    for name, r in ref.items():
        assert _rel(got[name], r) <= 1e-4
    if preset == "ppocr_det":
        assert (ref[plan.outputs[0]] > 0.3).mean() > 0.05  # the page has text: the check is not vacuous


def test_network_input_undoes_to_the_picture():
    rgb = load_image("skimage:astronaut")
    x, picture = network_input(rgb, PRESETS["ppocr_det"], (64, 64))
    # BGR, (v/255 - 0.5)/0.5: channel 0 of x is the blue channel of the picture
    np.testing.assert_allclose((x[0, 0] * 0.5 + 0.5) * 255, picture[:, :, 2], atol=0.5)
    assert image_label("skimage:text") == "text" and image_label("/a/b/my photo.png") == "my_photo"


# ------------------------------------------------------------------------------ drift metrics

def test_binary_iou_and_kinds():
    a = np.zeros((1, 1, 4, 4))
    a[0, 0, :2] = 0.9
    b = a.copy()
    b[0, 0, 0] = 0.1  # half of the positives lost
    assert binary_iou(a, b, 0.3) == 0.5
    assert binary_iou(np.zeros_like(a), np.zeros_like(a), 0.3) == 1.0
    assert output_kind(a) is OutputKind.PROB_MAP
    assert output_kind(np.array([[0.2, 0.8]])) is OutputKind.CLASS
    assert output_kind(a * 5) is OutputKind.LOGITS


def test_class_agreement_logits_and_probabilities():
    p = np.array([[0.7, 0.3], [0.4, 0.6]])
    same = class_agreement(p, p)
    assert same == {"top1_agree": 1.0, "kl_nats": 0.0}
    flipped = class_agreement(p, p[:, ::-1])
    assert flipped["top1_agree"] == 0.0
    expected = np.mean([0.7 * np.log(0.7 / 0.3) + 0.3 * np.log(0.3 / 0.7),
                        0.4 * np.log(0.4 / 0.6) + 0.6 * np.log(0.6 / 0.4)])
    assert flipped["kl_nats"] == pytest.approx(expected, rel=1e-9)
    logits = np.log(p) + 3.0  # not distributions: softmax recovers p
    assert class_agreement(logits, p)["kl_nats"] == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------- whole network

HW = Path(__file__).resolve().parents[1] / "hw_configs" / "edge_npu.yaml"


def _float_everywhere():
    return {Mode.WCC: float_hook, Mode.UNIFORM: float_hook}


def test_float_reference_mode_reproduces_float_network():
    """Datapath replaced by the float reference at rate 1.0: the spliced network is the float network."""
    res = simulate_network(DET, ["skimage:page", "skimage:text"], HW, rate=1.0, size=(96, 192),
                           hooks=_float_everywhere())
    s = res.summary
    assert s["reproduction_max_err"] <= 1e-4
    out = s["model"]["outputs"][0]
    for mode in ("wcc", "uniform"):
        for img in s["images"]:
            d = img["drift"][mode][out]
            assert d["iou"] == 1.0 and d["max_abs"] <= 1e-4
    assert len(res.layers) == 2 * len(s["spliced_layers"]) == 84
    assert list(res.layers["image"].unique()) == ["page", "text"]


def test_perturbed_layers_drift_and_mean_over_images():
    def noisy(x, w, b, stride):  # 1 % relative noise on every spliced layer, deterministic
        y = float_hook(x, w, b, stride)
        return y + np.float32(0.01) * np.float32(y.std()) * np.sin(np.arange(y.size, dtype=np.float32)).reshape(y.shape)

    res = simulate_network(CLS, ["skimage:text", "skimage:page"], HW, rate=0.5,
                           hooks={Mode.WCC: noisy, Mode.UNIFORM: float_hook})
    s = res.summary
    out = s["model"]["outputs"][0]
    per_image = [img["drift"]["wcc"][out]["kl_nats"] for img in s["images"]]
    assert min(per_image) > 0
    assert s["mean"]["wcc"][out]["kl_nats"] == pytest.approx(np.mean(per_image))
    assert s["mean"]["uniform"][out]["kl_nats"] < 1e-9
    lay = res.layers
    # isolated error is one layer's noise; propagated error accumulates along the network
    assert (lay["wcc_isolated_sqnr_db"] > 30).all()
    assert lay["wcc_propagated_sqnr_db"].min() < lay["wcc_isolated_sqnr_db"].min()


def test_cli_detector_end_to_end(tmp_path):
    out = tmp_path / "det"
    rc = main(["network", "--onnx", str(DET), "--image", "skimage:page", "--hw", str(HW), "--rate", "0.5",
               "--size", "96x192", "--calib", "max", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "network.json").read_text())
    assert s["reproduction_max_err"] <= 1e-4 and s["uniform_bits"] == 4 and s["unhandled"] == []
    d = s["images"][0]["drift"]
    name = s["model"]["outputs"][0]
    assert 0.0 <= d["uniform"][name]["iou"] <= 1.0 and 0.0 <= d["wcc"][name]["iou"] <= 1.0
    assert d["wcc"][name]["iou"] > d["uniform"][name]["iou"]  # the paper's claim, by a wide margin here
    lay = pd.read_csv(out / "network_layers.csv")
    assert len(lay) == len(s["spliced_layers"]) == 42
    assert (lay["wcc_isolated_sqnr_db"] > 0).all()
    assert (out / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_classifier_end_to_end_from_an_image_file(tmp_path):
    import matplotlib.image

    photo = tmp_path / "line.png"
    matplotlib.image.imsave(photo, load_image("skimage:text")[:60])
    out = tmp_path / "out"
    rc = main(["network", "--onnx", str(CLS), "--image", str(photo), "--hw", str(HW), "--rate", "1.0",
               "--act-bits", "8", "--calib", "max", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "network.json").read_text())
    d = s["mean"]["wcc"][s["model"]["outputs"][0]]
    assert d["top1_agree"] in (0.0, 1.0) and 0.0 <= d["kl_nats"] < 0.1
    assert s["preprocess"] == "ppocr_cls" and (out / "line.png").is_file()


@pytest.mark.parametrize("extra", [
    ["--rate", "0"], ["--rate", "x"], ["--rate", "0.5", "--act-bits", "1"],
    ["--rate", "0.5", "--size", "50x50"], ["--rate", "0.5", "--preprocess", "resnet"],
    ["--rate", "0.5", "--threshold", "1.5"], ["--rate", "0.5", "--image", "skimage:nope"],
])
def test_cli_bad_arguments_exit_2(tmp_path, capsys, extra):
    rc = main(["network", "--onnx", str(DET), "--image", "skimage:page", "--hw", str(HW),
               "--out", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("wccsim: error:") and err.count("\n") == 1
    assert not (tmp_path / "network.json").exists()


def test_cli_missing_model_exit_2(tmp_path, capsys):
    rc = main(["network", "--onnx", str(tmp_path / "none.onnx"), "--image", "skimage:page", "--hw", str(HW),
               "--rate", "0.5"])
    assert rc == 2 and "no such file" in capsys.readouterr().err
