"""Calibration apart from evaluation (issue 18), mean and worst image, empty outputs, the network verdict."""

import dataclasses
import json
import math
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("onnxruntime")

from wccsim.capture.images import PRESETS, load_image  # noqa: E402
from wccsim.cli import main  # noqa: E402
from wccsim.commands.network import verdict  # noqa: E402
from wccsim.options import resolve_hw as load_hw  # noqa: E402
from wccsim.network.calibration import (  # noqa: E402
    CALIB_IMAGES, EVAL_IMAGES, calibrate_network, calibration_sets, float_layer_inputs,
)
from wccsim.errors import InputError  # noqa: E402
from wccsim.network.drift import empty_output  # noqa: E402
from wccsim.network.grid import network_rows, prepare_network  # noqa: E402
from wccsim.network.hooks import float_hook, plain_mode, wcc_mode  # noqa: E402
from wccsim.network.preprocess import network_input  # noqa: E402
from wccsim.network.simulate import simulate_network  # noqa: E402
from wccsim.network.splice import plan_graph, run_plan  # noqa: E402
from wccsim.options import configure_datapath, make_options  # noqa: E402
from wccsim.results import HIGHER_IS_BETTER, NETWORK_COLUMNS, NETWORK_METRICS, network_aggregate  # noqa: E402
from wccsim.simulate import calibrate_layer, calibrate_plain  # noqa: E402

from pathlib import Path  # noqa: E402

HW = Path(__file__).resolve().parents[1] / "hw_configs" / "edge_npu.yaml"
SIZE = (32, 64)


def _model(path: Path) -> Path:
    """x (1, 3, H, W) -> 1x1 (3->8) -> Relu -> 1x1 (8->4) -> Relu -> 1x1 (4->1, weights 4, bias 0) -> Sigmoid:
    a probability map that is empty (all < 0.3) on a black picture (PP-OCR inputs -1) and not on photos."""
    rng = np.random.default_rng(7)
    w1 = np.abs(rng.standard_normal((8, 3, 1, 1))).astype(np.float32)
    w2 = np.abs(rng.standard_normal((4, 8, 1, 1))).astype(np.float32) * 0.5
    w3 = np.full((1, 4, 1, 1), 4.0, np.float32)
    b1 = np.full(8, 0.1, np.float32)
    b3 = np.full(1, -3.0, np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="c1", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="c2", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="c3", kernel_shape=[1, 1]),
             helper.make_node("Sigmoid", ["c3"], ["prob"])]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1, None, None])],
        initializer=[numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (w3, "w3"),
                                                                (b3, "b3"))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    import matplotlib.image

    black = d / "black.png"
    matplotlib.image.imsave(black, np.zeros((40, 60, 3), np.uint8))
    return {"model": _model(d / "tiny.onnx"), "black": str(black), "dir": d}


def test_default_sets_are_disjoint_bundled_photographs():
    evals, calib, how = calibration_sets(None, None)
    assert evals == EVAL_IMAGES and calib == CALIB_IMAGES and how == "disjoint"
    assert len(evals) >= 8 and not set(evals) & set(calib)
    for spec in (*evals, *calib):  # bundled with scikit-image: no download
        assert load_image(spec).ndim == 3
    assert calibration_sets(["skimage:page"], None, calibrate_on_eval=True)[1:] == (("skimage:page",), "on_eval")


def test_an_evaluation_image_as_calibration_image_is_refused(tiny, tmp_path, capsys):
    same = tmp_path / "copy.png"
    shutil.copy(tiny["black"], same)  # the same photograph under another name
    for calib in ("skimage:camera", str(same)):
        rc = main(["network", "--onnx", str(tiny["model"]), "--image", "skimage:camera", "--image", tiny["black"],
                   "--calib-image", calib, "--hw", str(HW), "--rate", "0.5", "--size", "32x64",
                   "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "--calibrate-on-eval" in err
    assert not (tmp_path / "o").exists()


def test_calibrate_on_eval_is_flagged_optimistic(tiny, tmp_path, capsys):
    out = tmp_path / "opt"
    rc = main(["network", "--onnx", str(tiny["model"]), "--image", "skimage:camera", "--calibrate-on-eval",
               "--hw", str(HW), "--rate", "0.5", "--size", "32x64", "--calib", "max", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "OPTIMISTIC" in text and "optimistic" in text
    cal = json.loads((out / "network.json").read_text())["calibration"]
    assert cal == {"images": ["skimage:camera"], "sets": "on_eval", "optimistic": True,
                   "note": "calibrated on evaluation images: the result is optimistic"}


def test_float_layer_inputs_are_the_float_networks_in_network_order(tiny):
    plan = plan_graph(onnx.load(tiny["model"]))
    xs = [network_input(load_image(s), PRESETS["ppocr_det"], size)[0]
          for s, size in (("skimage:coins", SIZE), ("skimage:astronaut", (64, 32)))]
    alone = []
    for x in xs:
        seen = {}
        run_plan(plan, {"x": x}, float_hook, lambda c, xi, yi: seen.setdefault(c.name, xi))
        alone.append(seen)
    visits = []
    float_layer_inputs(plan, xs, lambda conv, got: visits.append((conv.name, got)))
    assert [v[0] for v in visits] == ["c1", "c2", "c3"]
    for name, got in visits:  # sizes differ per image: no concatenation needed
        for i, x in enumerate(got):
            np.testing.assert_array_equal(x, alone[i][name])
    for layer in ("c1", "c3"):  # an error in a layer's calibration reaches the caller (the last one too)
        with pytest.raises(ZeroDivisionError):
            float_layer_inputs(plan, xs, lambda conv, got: 1 / 0 if conv.name == layer else None)


def test_a_calibration_set_is_one_sample():
    """calibrate_layer / calibrate_plain on a list = on its concatenation (same sizes), for every field."""
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((1, 6, 9, 7)) * s for s in (1.0, 3.0)]
    w, b = rng.standard_normal((5, 6)), rng.standard_normal(5)
    spec = configure_datapath(load_hw(HW), make_options(load_hw(HW), 0.5, None)).datapath
    got, want = calibrate_layer(xs, w, b, spec, 0.5), calibrate_layer(np.concatenate(xs), w, b, spec, 0.5)
    assert got.input_qp == want.input_qp and got.output_qp == want.output_qp
    np.testing.assert_array_equal(got.coef_scale, want.coef_scale)
    np.testing.assert_array_equal(got.bias_q, want.bias_q)
    assert got.input_qp != calibrate_layer(xs[0], w, b, spec, 0.5).input_qp  # the second image counts
    p, q = calibrate_plain(xs, w, b, spec, 4), calibrate_plain([np.concatenate(xs)], w, b, spec, 4)
    assert p.in_qp == q.in_qp and p.out_qp == q.out_qp and p.in_qp.bits == 4


def test_fixed_params_do_not_depend_on_the_other_evaluation_images(tiny):
    kw = dict(rate=0.5, size=SIZE, calib_images=["skimage:coins", "skimage:astronaut"], calib="max")
    both = simulate_network(tiny["model"], ["skimage:camera", "skimage:chelsea"], HW, **kw).summary
    alone = simulate_network(tiny["model"], ["skimage:chelsea"], HW, **kw).summary
    assert both["images"][1]["drift"] == alone["images"][0]["drift"]
    assert both["calibration"]["sets"] == "disjoint" and not both["calibration"]["optimistic"]
    # and the scales really are the calibration set's: calibrating on chelsea itself changes its result
    own = simulate_network(tiny["model"], ["skimage:chelsea"], HW, **{**kw, "calib_images": ["skimage:chelsea"]},
                           calibrate_on_eval=True).summary
    assert own["images"][0]["drift"]["wcc"] != alone["images"][0]["drift"]["wcc"]


def test_images_in_threads_give_the_serial_results(tiny):
    """``jobs``: evaluation images simulated at once, one thread each (BLAS at one thread): the same summary
    and per-layer rows, in image order, as one image at a time; a bad value is one `InputError`, and the
    command exits 2 on it."""
    kw = dict(rate=0.5, size=SIZE, calib_images=["skimage:coins"], calib="mse")
    images = ["skimage:camera", "skimage:chelsea", "skimage:rocket"]
    serial = simulate_network(tiny["model"], images, HW, jobs=1, **kw)
    threaded = simulate_network(tiny["model"], images, HW, jobs=3, **kw)
    assert threaded.summary == serial.summary
    assert threaded.layers.equals(serial.layers)
    assert list(threaded.layers["image"].unique()) == ["camera", "chelsea", "rocket"]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="jobs"):
            simulate_network(tiny["model"], images, HW, jobs=bad, **kw)


def test_network_command_refuses_a_bad_jobs_count(tiny, tmp_path, capsys):
    rc = main(["network", "--onnx", str(tiny["model"]), "--hw", str(HW), "--rate", "0.5", "--size", "32x64",
               "--image", "skimage:camera", "--jobs", "0", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "jobs" in err
    assert not (tmp_path / "o").exists()


def _same(a, b) -> bool:
    """Equal field by field, arrays element by element (dtype and shape included)."""
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(_same(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("calib", ["mse", "percentile", "max"])
def test_calibrate_network_is_each_layer_calibrated_on_its_float_inputs(tiny, calib):
    """Every layer's parameters, every field, for WCC and the plain path, are what `calibrate_layer` /
    `calibrate_plain` give on the float network's inputs of that layer on all calibration images (the
    output histograms read float64 outputs the images' threads computed: the same values, in the same
    order)."""
    plan = plan_graph(onnx.load(tiny["model"]))
    hw = load_hw(HW)
    spec = configure_datapath(hw, make_options(hw, 0.5, None, calib=calib)).datapath
    xs = [network_input(load_image(s), PRESETS["ppocr_det"], size)[0]
          for s, size in (("skimage:coins", SIZE), ("skimage:camera", (64, 32)))]
    params = calibrate_network(plan, xs, {"wcc": wcc_mode(spec, 0.5), "u4": plain_mode(spec, 4)})
    inputs = {}
    float_layer_inputs(plan, xs, lambda conv, got: inputs.setdefault(conv.name, list(got)))
    assert set(params["wcc"]) == set(inputs) == {"c1", "c2", "c3"}
    for conv in plan.layers:
        want = calibrate_layer(inputs[conv.name], conv.w, conv.b, spec, 0.5, conv.stride)
        assert _same(params["wcc"][conv.name], want), conv.name
        want = calibrate_plain(inputs[conv.name], conv.w, conv.b, spec, 4, conv.stride)
        assert _same(params["u4"][conv.name], want) and want.in_qp.bits == 4, conv.name


def test_calibration_progress_counts_the_spliced_layers(tiny, capsys):
    plan = plan_graph(onnx.load(tiny["model"]))
    xs = [network_input(load_image("skimage:coins"), PRESETS["ppocr_det"], SIZE)[0]]
    calibrate_network(plan, xs, {}, progress=True)
    assert "/3 [" in capsys.readouterr().err  # a bar over the 3 spliced layers, drawn on stderr
    calibrate_network(plan, xs, {}, progress=False)
    assert capsys.readouterr().err == ""


def test_empty_maps_are_counted_apart_and_worst_is_no_better_than_mean(tiny):
    res = simulate_network(tiny["model"], ["skimage:camera", tiny["black"], "skimage:chelsea"], HW, rate=0.5,
                           size=SIZE, calib_images=["skimage:coins"], calib="max")
    s = res.summary
    out = s["model"]["outputs"][0]
    assert [r.label for r in res.images if r.empty[out]] == ["black"] == s["empty_images"][out]
    assert all(empty_output(r.reference[out], 0.3) == r.empty[out] for r in res.images)
    assert max(res.images[1].reference[out].max(), 0) <= 0.3 < res.images[0].reference[out].max()
    for mode in ("wcc", "uniform", "int8"):
        ious = [img["drift"][mode][out]["iou"] for img in s["images"]]
        assert ious[1] == 1.0  # the empty map "agrees" whatever the scheme does...
        assert s["mean"][mode][out]["iou"] == pytest.approx((ious[0] + ious[2]) / 2)  # ...and is left out
        assert s["worst"][mode][out]["iou"] == min(ious[0], ious[2])
        for m, mean in s["mean"][mode][out].items():
            worst = s["worst"][mode][out][m]
            if mean is not None:
                assert worst <= mean + 1e-12 if m in HIGHER_IS_BETTER else worst >= mean - 1e-12
        for m in ("sqnr_db", "rel_l2"):  # relative to a near-zero signal on the empty map: left out too
            vals = [img["drift"][mode][out][m] for img in s["images"]]
            assert s["mean"][mode][out][m] == pytest.approx((vals[0] + vals[2]) / 2)
        mse = [img["drift"][mode][out]["mse"] for img in s["images"]]  # absolute errors keep every image
        assert s["mean"][mode][out]["mse"] == pytest.approx(sum(mse) / 3) and s["worst"][mode][out]["mse"] == max(mse)
    agg = network_aggregate([{"iou": 1.0, "sqnr_db": -80.0, "rel_l2": 9.0, "mse": 1.0},
                             {"iou": 0.5, "sqnr_db": 5.0, "rel_l2": 0.5, "mse": 3.0}], [True, False])
    assert agg == {"iou": 0.5, "iou_worst": 0.5, "sqnr_db": 5.0, "sqnr_db_worst": 5.0, "rel_l2": 0.5,
                   "rel_l2_worst": 0.5, "mse": 2.0, "mse_worst": 3.0, "empty_images": 1}
    assert math.isnan(network_aggregate([{"iou": 1.0}], [True])["iou"])


def test_verdict_numbers_are_the_savings_of_the_cost_rows(tiny, tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["network", "--onnx", str(tiny["model"]), "--image", "skimage:camera", "--calib-image",
                 "skimage:coins", "--hw", str(HW), "--rate", "0.5", "--size", "32x64", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    s = json.loads((out / "network.json").read_text())
    cost = {r["scheme"]: r for r in s["cost"]}
    w, u, i8 = cost["wcc"], cost["uniform_nbit"], cost["int8"]
    for r in (w, u):
        assert r["dram_bytes"] == r["dram_read_bytes"] + r["dram_write_bytes"] + r["input_dram_bytes"]
        assert r["dram_saving_pct"] == pytest.approx(100 * (1 - r["dram_bytes"] / i8["dram_bytes"]))
        assert r["energy_saving_pct"] == pytest.approx(100 * (1 - r["energy_total_pj"] / i8["energy_total_pj"]))
        assert r["cycle_saving_pct"] == pytest.approx(100 * (1 - r["cycles"] / i8["cycles"]))
    assert w["layers"] == 3 and u["act_bits"] == 4 and i8["act_bits"] == 8
    block = verdict(s)
    assert block in text and "3 spliced 1x1 layers" in block
    pct = w["dram_saving_pct"]
    assert (f"saves {pct:.1f}% DRAM" if pct >= 0 else f"costs {-pct:.1f}% more DRAM") in block
    assert f"{i8['dram_bytes'] / 1e6:.2f} -> {w['dram_bytes'] / 1e6:.2f} MB" in block
    d = s["mean"]["wcc"]["prob"]
    assert f"IoU {d['iou']:.3f} (worst {s['worst']['wcc']['prob']['iou']:.3f})" in block


def test_network_coef_flag_names_and_runs_that_design(tiny, tmp_path, capsys):
    args = ["network", "--onnx", str(tiny["model"]), "--image", "skimage:camera", "--calib-image", "skimage:coins",
            "--hw", str(HW), "--rate", "0.5", "--size", "32x64"]
    runs = {}
    for coef in ("per_tensor:float", None):
        out = tmp_path / str(coef)
        assert main(args + ["--out", str(out)] + (["--coef", coef] if coef else [])) == 0
        runs[coef] = json.loads((out / "network.json").read_text()), capsys.readouterr().out
    (flag, text), (yaml_run, _) = runs["per_tensor:float"], runs[None]
    assert flag["coef"] == "per_tensor:float" and yaml_run["coef"] == "per_level:fixed_point"
    assert "verdict (edge_npu, coef per_tensor:float, " in text
    assert flag["images"][0]["drift"]["wcc"] != yaml_run["images"][0]["drift"]["wcc"]  # another quantizer ran
    assert flag["images"][0]["drift"]["int8"] == yaml_run["images"][0]["drift"]["int8"]  # int8 reads no coef


def test_sweep_network_rows_have_mean_worst_and_calibration_columns(tiny):
    setup = prepare_network(tiny["model"], ["skimage:camera", tiny["black"]], size=SIZE,
                            calib_images=["skimage:coins"])
    hw = load_hw(HW)
    opts = make_options(hw, 0.5, None, calib="max")
    rows = network_rows(setup, configure_datapath(hw, opts), opts, "wcc")
    assert len(rows) == 1 and set(NETWORK_COLUMNS) <= set(rows[0])
    r = rows[0]
    assert r["empty_images"] == 1 and r["calib_images"] == 1 and r["calibration"] == "disjoint"
    for m in NETWORK_METRICS:
        if not math.isnan(r[m]):
            assert (r[f"{m}_worst"] <= r[m]) if m in HIGHER_IS_BETTER else (r[f"{m}_worst"] >= r[m])
    on_eval = prepare_network(tiny["model"], ["skimage:camera"], size=SIZE, calib_images=["skimage:camera"],
                              calibrate_on_eval=True)
    assert on_eval.calibration == "on_eval"
    with pytest.raises(Exception, match="calibrate-on-eval"):
        prepare_network(tiny["model"], ["skimage:camera"], size=SIZE, calib_images=["skimage:camera"])


def test_sweep_network_points_take_the_network_commands_model_flags(tiny):
    """--output-kind, --output, --mean/--std/--channel-order reach the sweep's network points as they reach
    ``wccsim network``: the rows' kind and metrics follow the kind, the normalization the inputs; a preset's
    own normalization with every output measured keeps the journal key of a sweep without these options."""
    hw = load_hw(HW)
    opts = make_options(hw, 0.5, None, calib="max")
    spec = configure_datapath(hw, opts)
    args = dict(size=SIZE, preprocess="ppocr_det", calib_images=["skimage:coins"])
    plain = prepare_network(tiny["model"], ["skimage:camera"], **args)
    as_logits = prepare_network(tiny["model"], ["skimage:camera"], output_kind="logits", **args)
    renormed = prepare_network(tiny["model"], ["skimage:camera"], mean=(0.2, 0.3, 0.4), std=(0.5, 0.6, 0.7),
                               channel_order="rgb", **args)
    (p,), (lg,), (rn,) = (network_rows(s, spec, opts, "wcc") for s in (plain, as_logits, renormed))
    assert (p["kind"], lg["kind"]) == ("prob_map", "logits") and lg["output"] == "prob"
    assert not math.isnan(p["iou"]) and math.isnan(lg["iou"]) and lg["sqnr_db"] == p["sqnr_db"]
    assert rn["sqnr_db"] != p["sqnr_db"]  # other inputs reached the network
    assert len(plain.key()) == 6 and len(as_logits.key()) == len(renormed.key()) == 8
    assert renormed.meta()["normalization"] == {"channel_order": "rgb", "mean_rgb": [0.2, 0.3, 0.4],
                                                "std_rgb": [0.5, 0.6, 0.7]}
    assert as_logits.meta()["outputs"] == {"prob": "logits"} and plain.meta()["outputs"] is None
    with pytest.raises(InputError, match="--output"):
        prepare_network(tiny["model"], ["skimage:camera"], output="nope", **args)
    with pytest.raises(InputError, match="--output-kind"):
        prepare_network(tiny["model"], ["skimage:camera"], output_kind="class", **args)  # (N, 1, H, W) is no class
