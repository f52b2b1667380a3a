"""Issue 18, the deployed model's own scales: ``trace capture --onnx`` on a QDQ model (onnxruntime's
``quantize_static``) records each 1x1 layer's scales, zero points and integer output; ``run --scales trace``
uses them, and the int8 row's ``framework_mismatches`` is 0 on every layer onnxruntime runs as an integer
convolution (a small model built here, and PP-OCRv4 det)."""

import zipfile
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static  # noqa: E402

import wccsim  # noqa: E402
from wccsim.calibrate import QuantParams, requant_params  # noqa: E402
from wccsim.capture.images import PRESETS, load_image, preprocess_images  # noqa: E402
from wccsim.capture.onnx import capture_onnx_trace  # noqa: E402
from wccsim.capture.qdq import INTEGER_OPS  # noqa: E402
from wccsim.cli import main  # noqa: E402
from wccsim.commands.trace import info_table  # noqa: E402
from wccsim.datapath.requant import requantize  # noqa: E402
from wccsim.errors import InputError  # noqa: E402
from wccsim.hw import RequantMode  # noqa: E402
from wccsim.simulate.params import DeployedQuant, quantize_input  # noqa: E402
from wccsim.trace import open_trace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ["skimage:astronaut", "skimage:coffee"]


def _hw(tmp_path: Path, mode: str) -> Path:
    """edge_npu.yaml with the output requantization ``mode`` (32-bit accumulators, as onnxruntime's)."""
    text = (ROOT / "hw_configs" / "edge_npu.yaml").read_text()
    line = "  mode: fixed_point              # gemmlowp / TFLite int32 multiplier + shift\n"
    assert line in text and "acc_bits: 32" in text
    path = tmp_path / f"ort_{mode}.yaml"
    path.write_text(text.replace(line, f"  mode: {mode}\n"))
    return path


class _Reader(CalibrationDataReader):
    def __init__(self, name: str, batches: list[np.ndarray]):
        self.it = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self.it, None)


def _small_model(path: Path) -> None:
    """3x3 conv, then 1x1 convs of odd sizes: 7->5 with bias and a ReLU (folded into the next
    QuantizeLinear by the quantizer), 5->9 stride 2 without bias, 9->6 with bias."""
    rng = np.random.default_rng(3)
    nodes, inits = [], []
    for name, x, y, cin, cout, k, stride, bias in (("c0", "X", "a", 3, 7, 3, 1, True),
                                                   ("c1", "a", "b", 7, 5, 1, 1, True),
                                                   ("c2", "br", "c", 5, 9, 1, 2, False),
                                                   ("c3", "c", "d", 9, 6, 1, 1, True)):
        inits.append(numpy_helper.from_array((rng.standard_normal((cout, cin, k, k)) * 0.4).astype(np.float32),
                                             f"{name}_w"))
        inputs = [x, f"{name}_w"]
        if bias:
            inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), f"{name}_b"))
            inputs.append(f"{name}_b")
        nodes.append(helper.make_node("Conv", inputs, [y], name=name, kernel_shape=[k, k], strides=[stride] * 2,
                                      pads=[k // 2] * 4))
        if name == "c1":
            nodes.append(helper.make_node("Relu", ["b"], ["br"], name="relu"))
    graph = helper.make_graph(nodes, "small",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3, None, None])],
                              [helper.make_tensor_value_info("d", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _quantize(src: Path, dst: Path, batches: list[np.ndarray], per_channel: bool, act=QuantType.QUInt8,
              **kw) -> None:
    name = onnx.load(str(src)).graph.input[0].name
    quantize_static(str(src), str(dst), _Reader(name, batches), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=act, weight_type=QuantType.QInt8, **kw)


def _integer_layers(trace_path: Path) -> list[str]:
    ops = open_trace(trace_path).meta["source"]["executed_as"]
    return sorted(name for name, op in ops.items() if op in INTEGER_OPS)


def _int8_mismatches(df) -> dict:
    rows = df[df.scheme == "int8"]
    return dict(zip(rows.layer, rows.framework_mismatches))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """{per_channel: trace path} of the small model quantized with uint8 activations."""
    root = tmp_path_factory.mktemp("qdq_small")
    _small_model(root / "f.onnx")
    batches = [preprocess_images([load_image(s)], PRESETS["unit"], (23, 19)) for s in IMAGES]
    out = {}
    for per_channel in (False, True):
        q = root / f"q{int(per_channel)}.onnx"
        _quantize(root / "f.onnx", q, batches, per_channel)
        out[per_channel] = root / f"q{int(per_channel)}.npz"
        capture_onnx_trace(str(q), ["skimage:chelsea", "skimage:rocket"], out[per_channel], preset="unit",
                           size=(21, 27))
    return out


@pytest.mark.parametrize("per_channel", [False, True])
def test_small_model_int8_row_equals_onnxruntime(small, tmp_path, per_channel):
    path = small[per_channel]
    trace = open_trace(path)
    assert [li.name for li in trace.layers] == ["c1", "c2", "c3"] and all(li.has_qdq for li in trace.layers)
    assert _integer_layers(path) == ["c1", "c2", "c3"]          # all three run as QLinearConv
    assert "scales trace): 3 layers; ran as QLinearConv (3)" in info_table(trace)
    c2 = trace.layer("c2").qdq
    assert c2.bq is None and c2.yq.dtype == np.uint8 and c2.yq.shape == (2, 9, 11, 14)
    c1 = trace.layer("c1").qdq
    assert int(c1.x_zero_point) != 0                            # asymmetric uint8 input
    assert (len(set(c1.w_scale.tolist())) > 1) == per_channel
    df = wccsim.run(_hw(tmp_path, "float32"), path, rate=1.0, scales="trace")
    assert _int8_mismatches(df) == {"c1": 0, "c2": 0, "c3": 0}
    assert df[df.scheme != "int8"].framework_mismatches.isna().all()
    # the count can fail: gemmlowp fixed point rounds some outputs differently from MLAS's float32
    fixed = wccsim.run(_hw(tmp_path, "fixed_point"), path, rate=1.0, scales="trace")
    assert sum(_int8_mismatches(fixed).values()) > 0


def test_cli_run_scales_trace_says_how_many_integers_differ(small, tmp_path, capsys):
    assert main(["run", "--hw", str(_hw(tmp_path, "float32")), "--trace", str(small[False]), "--scales", "trace",
                 "--rate", "1.0", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    elems = sum(2 * c * h * w for c, h, w in ((5, 21, 27), (9, 11, 14), (6, 11, 14)))
    assert f"own integers: 0 of {elems:,} outputs differ (0 of 3 layers with any" in out, out
    csv = (tmp_path / "o" / "layers.csv").read_text().splitlines()
    col = csv[0].split(",").index("framework_mismatches")
    assert [ln.split(",")[col] for ln in csv[1:5]] == ["", "0", "", ""]   # wcc, int8, uniform_nbit, zvc


def test_calibrated_run_leaves_framework_mismatches_empty(small, tmp_path):
    df = wccsim.run(_hw(tmp_path, "float32"), small[True], rate=0.5)
    assert df.framework_mismatches.isna().all()


def test_int8_activations_captured_and_run(tmp_path):
    """int8 activations: the trace records int8 zero points and integers; where onnxruntime fused the
    layer, the int8 row equals it (on x86 onnxruntime converts int8 QDQ pairs to uint8, which a graph output
    on the QuantizeLinear prevents: those layers run as float Conv and are reported so)."""
    _small_model(tmp_path / "f.onnx")
    batches = [preprocess_images([load_image(s)], PRESETS["unit"], (23, 19)) for s in IMAGES]
    _quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", batches, True, act=QuantType.QInt8)
    capture_onnx_trace(str(tmp_path / "q.onnx"), ["skimage:chelsea"], tmp_path / "q.npz", preset="unit",
                       size=(21, 27))
    assert open_trace(tmp_path / "q.npz").layer("c3").qdq.yq.dtype == np.int8
    df = wccsim.run(_hw(tmp_path, "float32"), tmp_path / "q.npz", rate=1.0, scales="trace")
    mism = _int8_mismatches(df)
    assert all(mism[name] == 0 for name in _integer_layers(tmp_path / "q.npz"))


def test_bundled_network_quantize_static_int8_row_equals_onnxruntime(tmp_path):
    """PP-OCRv4 det quantized by quantize_static (QDQ, per-channel weights, uint8 activations, its Conv
    nodes) on two calibration images at 64x64, captured on a third: every 1x1 layer runs as QLinearConv
    and the int8 row reproduces all its output integers."""
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    from onnx import version_converter

    det = Path(rapidocr.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"
    model = onnx.load(str(det))
    consts = [n for n in model.graph.node if n.op_type == "Constant"]  # Paddle2ONNX keeps weights there
    model.graph.initializer.extend(numpy_helper.from_array(numpy_helper.to_array(n.attribute[0].t), n.output[0])
                                   for n in consts)
    for n in consts:
        model.graph.node.remove(n)
    onnx.save(version_converter.convert_version(model, 13), str(tmp_path / "det.onnx"))  # per-axis DQ
    batches = [preprocess_images([load_image(s)], PRESETS["ppocr_det"], (64, 64)) for s in IMAGES]
    _quantize(tmp_path / "det.onnx", tmp_path / "det_q.onnx", batches, True, op_types_to_quantize=["Conv"])
    capture_onnx_trace(str(tmp_path / "det_q.onnx"), ["skimage:text"], tmp_path / "det_q.npz", preset="ppocr_det",
                       size=(64, 64))
    trace = open_trace(tmp_path / "det_q.npz")
    assert len(trace.layers) == 22 and _integer_layers(tmp_path / "det_q.npz") == sorted(li.name for li in trace.layers)
    df = wccsim.run(_hw(tmp_path, "float32"), trace, rate=1.0, scales="trace")
    assert set(_int8_mismatches(df).values()) == {0}


def test_float32_requant_equals_mlas_formula():
    """``float32`` mode against MLAS's ``MlasRequantizeOutput`` written apart: float32 product, clamp to the
    output range minus the zero point, round half to even by the 1.5 * 2^23 magic number, + zero point."""
    rng = np.random.default_rng(5)
    acc = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 20000), rng.integers(-3000, 3000, 20000),
                          np.array([-(1 << 31), (1 << 31) - 1, 0, 1, -1])]).astype(np.int64)
    for signed, zp in ((False, 131), (True, -7), (False, 0)):
        qp = QuantParams(scale=0.0371, zero_point=zp, bits=8, signed=signed)
        p = requant_params(np.float32(0.0123), qp, weight_scale=np.float32(0.00731))
        lo, hi = (-128, 127) if signed else (0, 255)
        f = acc.astype(np.float32) * np.float32(p.float_scale)
        f = np.minimum(np.maximum(f, np.float32(lo - zp)), np.float32(hi - zp))
        magic = np.float32(12582912.0)
        ref = ((f + magic).view(np.int32) - magic.view(np.int32)).astype(np.int64) + zp
        np.testing.assert_array_equal(requantize(acc, p, RequantMode.FLOAT32)[0], ref)


def test_deployed_input_quantizer_keeps_the_full_register_range():
    qp = DeployedQuant(0.5, -3, 8, True)
    xq, x_int = quantize_input(np.array([-70.0, -62.5, 0.0, 70.0]), qp)
    assert xq.tolist() == [-128, -128, -3, 127] and x_int.tolist() == [-125, -125, 0, 130]
    assert x_int.dtype == np.int16                              # codes - zero point need 9 bits


def test_trace_without_scales_refused_with_one_line(tmp_path, capsys):
    rc = main(["run", "--hw", str(ROOT / "hw_configs" / "edge_npu.yaml"), "--trace",
               str(ROOT / "traces" / "ppocr_cls.npz"), "--scales", "trace", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "ppocr_cls.npz" in err and ".yq" in err, err
    assert not (tmp_path / "o" / "layers.csv").exists()


@pytest.mark.parametrize("args,expect", [(["--scales", "trace", "--act-bits", "6"], "act_bits/weight_bits"),
                                         (["--scales", "max"], "scales")])
def test_bad_scales_options_refused(small, tmp_path, capsys, args, expect):
    rc = main(["run", "--hw", str(ROOT / "hw_configs" / "edge_npu.yaml"), "--trace", str(small[True]), *args,
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and expect in err, err


def _rewrite_member(src: Path, dst: Path, member: str, arr: np.ndarray) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename == member + ".npy":
                with zout.open(member + ".npy", "w") as f:
                    np.lib.format.write_array(f, arr, allow_pickle=False)
            else:
                zout.writestr(info, zin.read(info.filename))


@pytest.mark.parametrize("member,arr,expect", [
    ("c1.w_scale", np.full(4, 0.01, np.float32), "c1.w_scale: expected shape (5,)"),
    ("c2.x_scale", np.full(1, 0.01, np.float32), "c2.x_scale: expected shape ()"),
    ("c1.y_scale", np.array(-0.5, np.float32), "c1.y_scale: expected finite scales > 0"),
    ("c1.x_zero_point", np.array(3, np.int32), "c1.x_zero_point: expected int8 or uint8"),
    ("c3.yq", np.zeros((2, 6, 11, 14), np.int8), "c3.yq: expected dtype uint8"),
])
def test_inconsistent_qdq_members_refused(small, tmp_path, capsys, member, arr, expect):
    bad = tmp_path / "bad.npz"
    _rewrite_member(small[False], bad, member, arr)
    with pytest.raises(InputError, match="^"):
        trace = open_trace(bad)
        for li in trace.layers:
            trace.layer(li.name)
    rc = main(["run", "--hw", str(ROOT / "hw_configs" / "edge_npu.yaml"), "--trace", str(bad), "--scales", "trace",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and expect in err, err


def test_qdq_members_round_trip_and_float_traces_keep_their_meta(small, tmp_path):
    from wccsim.trace import write_trace

    trace = open_trace(small[True])
    layers = [trace.layer(li.name) for li in trace.layers]
    write_trace(tmp_path / "copy.npz", dict(trace.meta), layers)
    again = open_trace(tmp_path / "copy.npz")
    for a, b in zip(layers, again):
        for s, arr in a.members().items():
            assert arr.dtype == b.members()[s].dtype and np.array_equal(arr, b.members()[s]), s
    float_only = [layers[0].__class__(ld.name, ld.x, ld.w, ld.b, ld.y, ld.stride) for ld in layers]
    write_trace(tmp_path / "float.npz", {}, float_only)
    assert all("has_qdq" not in d for d in open_trace(tmp_path / "float.npz").meta["layers"])
