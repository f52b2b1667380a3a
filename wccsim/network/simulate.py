"""Whole-network simulation: float network, WCC network, uniform-quantized and int8 network on real images.

`simulate_network` is the library entry point behind ``wccsim network``. It first fixes every quantized
mode's parameters on a calibration set apart from the evaluation images (`wccsim.network.calibration`),
then per evaluation image runs

1. the float network, whole, in onnxruntime (the reference every drift is measured against);
2. the spliced network with every eligible 1x1 convolution in float64 (`Mode.FLOAT`): it must reproduce
   step 1 (reported as ``reproduction``; proves the splicing), and it records each layer's float input
   and output; on those inputs each layer is also run alone through each quantized mode (*isolated*
   error, as ``wccsim run`` reports it);
3. the spliced network with the 1x1 layers on the WCC datapath (`Mode.WCC`), with plain uniform
   quantization at `wccsim.rules.uniform_bits` (`Mode.UNIFORM`) and with plain int8 (`Mode.INT8`), all
   with the fixed parameters, errors propagating from layer to layer (*propagated* error, and the drift of
   the measured graph output, ``--output``).

Summary: per mode and measured output the mean and the worst evaluation image
(`wccsim.results.network_aggregate`; an image whose float output is empty is counted apart), and the
cost-model totals of the spliced layers per scheme with their savings against int8 (`wccsim.network.costs`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from wccsim.capture.images import load_image
from wccsim.capture.onnx_graph import fed_inputs, session
from wccsim.errors import InputError
from wccsim.network.calibration import DISJOINT, calibrate_network, calibration_sets, fixed_hook
from wccsim.network.costs import spliced_totals
from wccsim.network.drift import OutputKind, empty_output, output_drift, pick_output, resolve_output_kind, tensor_error
from wccsim.network.hooks import QUANT_MODES, Mode, float_hook, layer_modes
from wccsim.network.preprocess import AUTO, image_label, network_input, normalization, resolve_preset
from wccsim.network.splice import Hook, Plan, plan_graph, run_plan
from wccsim.options import check_jobs, configure_datapath, make_options, progress_bar, resolve_hw
from wccsim.results import hw_coef_design, network_aggregate, savings
from wccsim.rules import uniform_bits
from wccsim.shape import LayerShape

if TYPE_CHECKING:  # onnx is an optional extra, imported where a model is loaded
    import onnx

__all__ = ["ImageRun", "NetworkResult", "check_threshold", "load_model", "simulate_image",
           "simulate_network"]


@dataclass(frozen=True)
class ImageRun:
    """One image: its label, the RGB picture the network saw (H, W, 3) uint8, the graph outputs of the
    float network (``reference``) and of each spliced mode, per-output drift, per-layer rows and, per
    output, whether the float output is empty (`wccsim.network.drift.empty_output`)."""
    spec: str
    label: str
    picture: np.ndarray
    reference: dict
    outputs: dict
    reproduction: dict
    drift: dict
    layers: list
    empty: dict


@dataclass(frozen=True)
class NetworkResult:
    """``summary``: JSON-ready dict (network.json); ``layers``: one row per (image, layer)
    (network_layers.csv); ``images``: the arrays, for the pictures."""
    summary: dict
    layers: pd.DataFrame
    images: tuple[ImageRun, ...]


def load_model(path) -> onnx.ModelProto:
    """Load an ONNX model with one graph input; bad paths and files are `InputError`s."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise InputError("--onnx", str(p), "an existing ONNX model file", "no such file")
    try:
        model = onnx.load(str(p))
    except Exception as e:  # protobuf decode errors of a non-ONNX file
        raise InputError("--onnx", str(p), "an ONNX model", f"unreadable ({type(e).__name__})") from None
    inputs = fed_inputs(model.graph)
    if len(inputs) != 1:
        raise InputError("--onnx", str(p), "a network with exactly one image input", f"inputs {list(inputs)}")
    return model


def _layer_row(conv, x: np.ndarray) -> dict:
    return {"layer": conv.name, "cin": int(conv.w.shape[1]), "cout": int(conv.w.shape[0]),
            "h": int(x.shape[2]), "w": int(x.shape[3]), "stride": int(conv.stride)}


def _float_pass(plan: Plan, feeds: Mapping, hooks: Mapping[Mode, Hook]) -> tuple[dict, dict, list]:
    """Spliced float run: graph outputs, each layer's float (x, y), and isolated errors per quantized mode."""
    taps, rows = {}, []

    def on_layer(conv, x, y):
        taps[conv.name] = y
        row = _layer_row(conv, x)
        for mode in QUANT_MODES:
            err = tensor_error(y, hooks[mode](x, conv.w, conv.b, conv.stride))
            row.update({f"{mode.value}_isolated_mse": err["mse"], f"{mode.value}_isolated_sqnr_db": err["sqnr_db"]})
        rows.append(row)

    return run_plan(plan, feeds, hooks[Mode.FLOAT], on_layer), taps, rows


def _quant_pass(plan: Plan, feeds: Mapping, hook: Hook, taps: Mapping, mode: Mode) -> tuple[dict, list]:
    """Spliced run with one quantized mode: graph outputs and, per layer, the propagated error."""
    rows = []

    def on_layer(conv, x, y):
        err = tensor_error(taps[conv.name], y)
        rows.append({f"{mode.value}_propagated_mse": err["mse"], f"{mode.value}_propagated_sqnr_db": err["sqnr_db"]})

    return run_plan(plan, feeds, hook, on_layer), rows


def simulate_image(plan: Plan, reference_session, spec: str, label: str, x: np.ndarray, picture: np.ndarray,
                   hooks: Mapping[Mode, Hook], threshold: float, measured: Mapping[str, OutputKind]) -> ImageRun:
    """All runs of one preprocessed image `x` (float32 NCHW); see the module docstring for the steps.
    `measured`: the graph outputs whose drift is measured, with their kinds."""
    feeds = {plan.inputs[0]: x}
    names = [o.name for o in reference_session.get_outputs()]
    reference = dict(zip(names, reference_session.run(names, feeds)))             # 1. float network
    spliced, taps, rows = _float_pass(plan, feeds, hooks)                         # 2. spliced float
    outputs = {Mode.FLOAT: spliced}
    for mode in QUANT_MODES:                                                     # 3. WCC, uniform
        outputs[mode], prop = _quant_pass(plan, feeds, hooks[mode], taps, mode)
        for row, p in zip(rows, prop):
            row.update(p)
    reproduction = {n: _reproduction(reference[n], spliced[n]) for n in plan.outputs}
    drift = {mode: {n: output_drift(reference[n], outputs[mode][n], threshold, k) for n, k in measured.items()}
             for mode in QUANT_MODES}
    empty = {n: empty_output(reference[n], threshold, k) for n, k in measured.items()}
    return ImageRun(spec, label, picture, reference, outputs, reproduction, drift, rows, empty)


def _unique_labels(specs: Sequence[str]) -> list[str]:
    """File-name labels of the images, suffixed ``_2``, ``_3``... where two would collide."""
    seen, labels = {}, []
    for spec in specs:
        base = image_label(spec)
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return labels


def _reproduction(ref: np.ndarray, got: np.ndarray) -> dict:
    """`tensor_error` plus ``max_scaled`` = max |err| / max(1, max |ref|): relative for outputs above 1,
    absolute for probabilities (a near-empty probability map makes any relative error meaningless)."""
    err = tensor_error(ref, got)
    err["max_scaled"] = err["max_abs"] / max(1.0, float(np.max(np.abs(ref))) if np.size(ref) else 1.0)
    return err


def _jobs(jobs, images: int) -> int:
    """Images simulated at once: ``jobs`` (a positive integer; else an `InputError`), by default the CPUs this
    process may use; never more than ``images``."""
    if jobs is None:
        jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(check_jobs(jobs), images))


def check_threshold(threshold) -> float:
    """The IoU binarization threshold as a float in (0, 1); anything else is an `InputError`."""
    if not isinstance(threshold, (int, float)) or not 0.0 < float(threshold) < 1.0:
        raise InputError("options", "threshold", "a number in (0, 1)", threshold)
    return float(threshold)


def _finite(v):
    """JSON-safe number: non-finite floats become None (SQNR of an exact result is +inf)."""
    return v if not isinstance(v, float) or math.isfinite(v) else None


def _aggregates(runs: Sequence[ImageRun], measured: Mapping[str, OutputKind]) -> dict:
    """mode -> measured output -> `network_aggregate` over the evaluation images."""
    return {m: {n: network_aggregate([r.drift[m][n] for r in runs], [r.empty[n] for r in runs])
                for n in measured} for m in QUANT_MODES}


def _cost_records(hw, opts, runs: Sequence[ImageRun]) -> list[dict]:
    """Cost totals of the spliced layers per scheme (`wccsim.network.costs.spliced_totals`, mean over the
    images) with `wccsim.results.savings` against int8 (``dram_bytes`` etc.; producers' input writes in)."""
    shapes = [[LayerShape.pointwise(r["layer"], r["cin"], r["cout"], r["h"], r["w"], r["stride"]) for r in run.layers]
              for run in runs]
    tot = savings(spliced_totals(hw, opts, shapes))
    return [{k: _finite(v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
            for rec in tot.to_dict(orient="records")]


def _summarize(model_path, hw, opts, bits: int, threshold: float, preset, plan: Plan, runs: Sequence[ImageRun],
               measured: Mapping[str, OutputKind], calib_images: Sequence[str], calibration: str) -> dict:
    """network.json: configuration, calibration, spliced / unhandled layers, per-image drift, mean and worst
    image per mode and measured output, empty outputs, cost totals and savings of the spliced layers."""
    def image_entry(r):
        return {"image": r.spec, "label": r.label, "input_shape": list(r.picture.shape[:2]), "empty": r.empty,
                "reproduction": {n: {k: _finite(v) for k, v in e.items()} for n, e in r.reproduction.items()},
                "drift": {m.value: {n: {k: _finite(v) for k, v in d.items()} for n, d in r.drift[m].items()}
                          for m in QUANT_MODES}}

    agg = _aggregates(runs, measured)
    keys = {n: list(runs[0].drift[Mode.WCC][n]) for n in measured}

    def pick(suffix):
        return {m.value: {n: {k: _finite(agg[m][n][k + suffix]) for k in keys[n]} for n in measured}
                for m in QUANT_MODES}

    optimistic = calibration != DISJOINT
    return {
        "model": {"path": str(model_path), "sha256": hashlib.sha256(Path(model_path).read_bytes()).hexdigest(),
                  "input": plan.inputs[0], "outputs": list(measured),
                  "kinds": {n: k.value for n, k in measured.items()}, "graph_outputs": list(plan.outputs)},
        "hw": hw.name, "coef": hw_coef_design(hw), "rate": opts.rate, "act_bits": opts.act_bits,
        "weight_bits": opts.weight_bits, "uniform_bits": bits, "calib": hw.datapath.quant.calib.value,
        "threshold": threshold, "preprocess": preset.name, "normalization": normalization(preset),
        "calibration": {"images": list(calib_images), "sets": calibration, "optimistic": optimistic,
                        "note": ("calibrated on evaluation images: the result is optimistic" if optimistic else
                                 "scales fixed on calibration images disjoint from the evaluation images")},
        "spliced_layers": [c.name for c in plan.layers],
        "unhandled": [{"node": u.name, "reason": u.reason} for u in plan.unhandled],
        "reproduction_max_err": max(e["max_scaled"] for r in runs for e in r.reproduction.values()),
        "images": [image_entry(r) for r in runs],
        "empty_images": {n: [r.label for r in runs if r.empty[n]] for n in measured},
        "mean": pick(""), "worst": pick("_worst"),
        "cost": _cost_records(hw, opts, runs),
    }


def simulate_network(model_path, images: Sequence[str] | None, hw, *, rate: float = 0.5,
                     act_bits: int | None = None, threshold: float = 0.3, size: tuple[int, int] | None = None,
                     preprocess: str = AUTO, calib=None, mean: Sequence[float] | None = None,
                     std: Sequence[float] | None = None, channel_order: str | None = None, output: str | None = None,
                     output_kind: str | None = None, calib_images: Sequence[str] | None = None,
                     calibrate_on_eval: bool = False, hooks: Mapping[Mode, Hook] | None = None,
                     progress: bool | None = None, jobs: int | None = None) -> NetworkResult:
    """Run an ONNX network on images with its 1x1 convolutions on the WCC datapath; measure the drift.

    Parameters
    ----------
    model_path : path to an ONNX model with one image input
    images : sequence of str, optional
        Evaluation images: files or ``skimage:NAME``; each is preprocessed on its own (its own size unless
        `size`). Default `wccsim.network.calibration.EVAL_IMAGES`.
    hw : HwSpec or path to a hardware YAML
    rate : float in (0, 1]
        Fraction of Haar positions kept in every spliced layer.
    act_bits : int in 2..16, optional
        Activation bits (default: the hardware spec's); the uniform baseline gets
        `wccsim.rules.uniform_bits` (max(2, floor(rate * act_bits + 1/2))), int8 8/8.
    threshold : float in (0, 1)
        Binarization threshold of a probability-map output for the IoU (DB's default 0.3).
    size : (H, W) pixels, optional
        Network input size (default: the preset's rule, e.g. PP-OCR det short side 736).
    preprocess : str
        A `wccsim.capture.images.PRESETS` name, or ``auto`` (from the model's output rank).
    mean, std : three floats R, G, B, optional; channel_order : "rgb" or "bgr", optional
        Override the preset's normalization (`wccsim.network.preprocess.override_preset`).
    output : str, optional
        The graph output whose drift is measured (default: the first).
    output_kind : str, optional
        A `wccsim.network.drift.OutputKind` value (default: detected from the float output).
    calib : {"max", "percentile", "mse"} or CalibMethod, optional
        Overrides the YAML's calibration method (as ``wccsim run --calib``).
    calib_images : sequence of str, optional
        Calibration images (default `wccsim.network.calibration.CALIB_IMAGES`, or the evaluation images
        with `calibrate_on_eval`); every mode's scales are fixed on them once.
    calibrate_on_eval : bool
        Allow calibration images that are evaluation images (an optimistic result, said in the summary);
        without it they are an `InputError`.
    hooks : mapping Mode -> Hook, optional
        Replace the per-layer computations (e.g. a float stand-in for the datapath in tests); called from
        `jobs` threads at once.
    progress : bool, optional
        Bars on stderr over the calibration's layers and the evaluation images (default: when stderr is a
        terminal).
    jobs : int >= 1, optional
        Images preprocessed and evaluation images simulated at once, one thread each (default: the CPUs
        this process may use, at most the number of evaluation images). Every datapath kernel releases the
        GIL. With more than one, the BLAS libraries use one thread each throughout (their idle workers
        busy-wait between calls and would take the cores the threads need); with one, everything but the
        calibration runs in the calling thread. The results do not depend on it.

    Returns
    -------
    NetworkResult
    """
    evals, calibs, calibration = calibration_sets(images, calib_images, calibrate_on_eval)
    hw = resolve_hw(hw)                                                          # 1. hardware, options
    opts = make_options(hw, rate, act_bits, calib=calib)
    threshold = check_threshold(threshold)
    hw = configure_datapath(hw, opts)
    hw8 = configure_datapath(hw, dataclasses.replace(opts, act_bits=8, weight_bits=8))
    bits = uniform_bits(opts.rate, opts.act_bits)
    model = load_model(model_path)                                               # 2. model, plan, preset
    plan = plan_graph(model)
    preset = resolve_preset(model, preprocess, mean, std, channel_order)
    modes = layer_modes(hw.datapath, hw8.datapath, opts.rate, bits)
    jobs = _jobs(jobs, len(evals))
    with (ThreadPoolExecutor(jobs) if jobs > 1 else nullcontext()) as pool, \
            threadpool_limits(1, "blas") if jobs > 1 else nullcontext():
        each = pool.map if pool else map  # one job: in this thread
        def inputs(specs):
            return list(each(lambda spec: network_input(load_image(spec), preset, size), specs))
        pictures = [(spec, *p) for spec, p in zip(evals, inputs(evals))]         # 3. inputs
        params = calibrate_network(plan, [p[0] for p in inputs(calibs)], modes, progress)  # 4. calibration
        hooks = {Mode.FLOAT: float_hook, **{m: fixed_hook(plan, modes[m], params[m]) for m in QUANT_MODES},
                 **(hooks or {})}
        float_session = session(model.SerializeToString())
        target = pick_output(plan.outputs, output)                               # the measured output, its kind
        first = float_session.run([target], {plan.inputs[0]: pictures[0][1]})[0]
        measured = {target: resolve_output_kind(output_kind, first)}

        def run_image(job):                                                      # 5. runs per image
            label, (spec, x, pic) = job
            return simulate_image(plan, float_session, spec, label, x, pic, hooks, threshold, measured)

        runs = list(progress_bar(each(run_image, zip(_unique_labels(evals), pictures)), "images", progress,
                                 total=len(pictures)))
    rows = [dict(image=r.label, layer_index=i, **row) for r in runs for i, row in enumerate(r.layers)]
    summary = _summarize(model_path, hw, opts, bits, threshold, preset, plan, runs, measured, calibs,  # 6.
                         calibration)
    return NetworkResult(summary, pd.DataFrame(rows), tuple(runs))
