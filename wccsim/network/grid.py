"""Network-level sweep points: output drift and BOPs of a whole network per (hw, rate, bits, scheme).

``wccsim sweep --onnx MODEL --image IMG ... --calib-image IMG ...`` adds, beside its per-layer points, one
*network point* per (hw, rate, act_bits, weight_bits, scheme) with scheme ``wcc`` or ``uniform_nbit``, plus
two reference points per hw: ``float`` (the spliced network with float64 1x1 layers) and ``int8`` (plain
8-bit activations and weights). A point first fixes its scheme's parameters of every spliced layer on the
calibration images (`wccsim.network.calibration`, disjoint from the evaluation images unless
``--calibrate-on-eval``), then runs the spliced network (`wccsim.network.splice.run_plan`) on every
evaluation image with them, measures each graph output against the float network
(`wccsim.network.drift.output_drift`, as ``wccsim network`` does), aggregates mean and worst image
(`wccsim.results.network_aggregate`) and counts the BOPs of the spliced 1x1 layers with the cost model
(`wccsim.network.costs`). The float network's outputs (onnxruntime, whole graph) are computed once per
process and reused by every point.

BOPs cover the spliced 1x1 layers only (the layers the simulation quantizes; every other layer runs in float
in onnxruntime and is left out of the count, for every scheme alike): ``bops`` is the paper's count
(MACs x weight_bits x act_bits, plus the Haar term for WCC), ``float`` counts 32 x 32 per MAC.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from wccsim.capture.images import PRESETS, Preprocess, load_image
from wccsim.capture.onnx_graph import fed_inputs, session
from wccsim.errors import InputError
from wccsim.network.calibration import calibrate_network, calibration_sets, fixed_hook
from wccsim.network.costs import scheme_cost
from wccsim.network.drift import (OutputKind, empty_output, output_drift, output_kind, pick_output,
                                  resolve_output_kind)
from wccsim.network.hooks import float_hook, plain_mode, wcc_mode
from wccsim.network.preprocess import network_input, normalization, resolve_preset
from wccsim.network.simulate import check_threshold, load_model
from wccsim.network.splice import plan_graph, run_plan
from wccsim.options import configure_datapath
from wccsim.results import NETWORK_METRICS, NETWORK_SCHEMES, hw_coef_design, network_aggregate
from wccsim.shape import LayerShape

__all__ = ["NetworkSetup", "prepare_network", "network_rows"]

_FLOAT_BITS = 32


@dataclass(frozen=True)
class NetworkSetup:
    """Validated network options of a sweep (picklable: workers rebuild the model from the path).

    ``image_ids`` / ``calib_ids`` identify the evaluation / calibration images in journal keys (the spec,
    plus the SHA-256 of a file's bytes); ``calibration`` is "disjoint" or "on_eval"; ``preset`` the
    preprocessing with any ``--mean``/``--std``/``--channel-order`` override; ``outputs`` the measured graph
    outputs with their kinds (None: every output, kind detected)."""
    model_path: str
    model_sha256: str
    images: tuple[str, ...]
    image_ids: tuple[str, ...]
    size: tuple[int, int] | None
    preset: Preprocess
    threshold: float
    calib_images: tuple[str, ...]
    calib_ids: tuple[str, ...]
    calibration: str
    outputs: tuple[tuple[str, str], ...] | None = None

    def key(self) -> list:
        """The JSON-ready identity of the network part of a journal key (a preset's own normalization and every
        output measured add nothing, so such keys are those of sweeps before these options existed)."""
        key = [self.model_sha256, list(self.image_ids), None if self.size is None else list(self.size),
               self.preset.name, self.threshold, list(self.calib_ids)]
        if self.preset != PRESETS[self.preset.name] or self.outputs is not None:
            key += [normalization(self.preset), None if self.outputs is None else [list(o) for o in self.outputs]]
        return key

    def meta(self) -> dict:
        """sweep.json's ``network`` entry."""
        return {"model": Path(self.model_path).name, "sha256": self.model_sha256, "images": list(self.images),
                "size": None if self.size is None else list(self.size), "preprocess": self.preset.name,
                "normalization": normalization(self.preset), "threshold": self.threshold,
                "calib_images": list(self.calib_images), "calibration": self.calibration,
                "outputs": None if self.outputs is None else {n: k for n, k in self.outputs}}


def prepare_network(onnx, images: Sequence[str], size=None, preprocess: str = "auto",
                    threshold: float = 0.3, calib_images: Sequence[str] | None = None,
                    calibrate_on_eval: bool = False, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None, channel_order: str | None = None, output: str | None = None,
                    output_kind: str | None = None) -> NetworkSetup:
    """Validate the network options (model, evaluation and calibration images, size, preset and its
    overrides, threshold, measured output and kind) before anything is written
    (`wccsim.network.calibration.calibration_sets` for the two image sets).

    Every image is loaded and preprocessed once here, so a bad image or size is refused up front; with
    ``output`` or ``output_kind`` the float network runs once on the first image, so an unknown output or
    a kind its shape cannot have is refused up front too.
    """
    images = tuple(str(i) for i in images)
    if not images:
        raise InputError("options", "image", "at least one --image with --onnx", "none")
    images, calibs, calibration = calibration_sets(images, [str(i) for i in calib_images or ()], calibrate_on_eval)
    if size is not None and (len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size)):
        raise InputError("options", "size", "(H, W) positive integers", size)
    threshold = check_threshold(threshold)
    model = load_model(onnx)
    preset = resolve_preset(model, preprocess, mean, std, channel_order)
    xs = [network_input(load_image(spec), preset, size)[0] for spec in (*images, *calibs)]
    outputs = None
    if output is not None or output_kind is not None:
        name = pick_output([o.name for o in model.graph.output], output)
        ref = session(model.SerializeToString()).run([name], {fed_inputs(model.graph)[0]: xs[0]})[0]
        outputs = ((name, resolve_output_kind(output_kind, ref).value),)
    return NetworkSetup(str(Path(onnx).resolve()), _sha256(onnx), images, _ids(images),
                        None if size is None else (int(size[0]), int(size[1])), preset, threshold,
                        calibs, _ids(calibs), calibration, outputs)


def network_rows(setup: NetworkSetup, hw, opts, scheme: str) -> list[dict]:
    """Simulate one network point: calibrate `scheme` on the calibration images, then run every evaluation
    image through the spliced network with those fixed parameters.

    Parameters
    ----------
    setup : NetworkSetup
    hw : HwSpec
        Already configured with the point's bit widths (`wccsim.options.configure_datapath`).
    opts : RunOptions
        The point's rate, act_bits, weight_bits (float and int8 points: 1.0, 8, 8).
    scheme : one of `wccsim.results.NETWORK_SCHEMES`

    Returns
    -------
    list of dict, one per graph output, with `wccsim.results.NETWORK_COLUMNS`: metrics are means over the
    evaluation images and ``<metric>_worst`` the worst image (`wccsim.results.network_aggregate`;
    `wccsim.results.RELATIVE_METRICS` over the images whose float output is not empty), BOPs and MACs means
    over the images (the sum over the spliced layers of one image).
    """
    net = _cached_network(setup)
    hook, cost, used = _scheme(net, hw, opts, scheme)
    kinds = ({n: output_kind(net.references[0][n]) for n in net.plan.outputs} if setup.outputs is None else
             {n: OutputKind(k) for n, k in setup.outputs})
    drifts, counts = [], []
    for x, ref in zip(net.inputs, net.references):
        shapes = []
        outs = run_plan(net.plan, {net.plan.inputs[0]: x}, hook,
                        lambda conv, xi, yi: shapes.append(_shape(conv, xi)))
        drifts.append({n: output_drift(ref[n], outs[n], setup.threshold, kinds[n]) for n in kinds})
        counts.append(np.sum([cost(s) for s in shapes], axis=0) if shapes else np.zeros(3))
    macs, bops, bops_hw = np.mean(counts, axis=0)
    rows = []
    for name, kind in kinds.items():
        row = {"hw": hw.name, "cfg_coef": hw_coef_design(hw), "cfg_rate": opts.rate, "cfg_act_bits": opts.act_bits,
               "cfg_weight_bits": opts.weight_bits, "scheme": scheme, **used, "output": name,
               "kind": kind.value, "images": len(net.inputs),
               "layers": len(net.plan.layers), "macs": float(macs), "bops": float(bops), "bops_hw": float(bops_hw),
               "calib_images": len(setup.calib_images), "calibration": setup.calibration}
        agg = network_aggregate([d[name] for d in drifts], [empty_output(r[name], setup.threshold, kind)
                                                            for r in net.references])
        row.update({c: agg.get(c, np.nan) for m in NETWORK_METRICS for c in (m, f"{m}_worst")})
        row["empty_images"] = agg["empty_images"]
        rows.append(row)
    return rows


# -------------------------------------------------------------------------------------------- helpers

def _scheme(net, hw, opts, scheme: str):
    """(hook with the scheme's fixed parameters, cost(shape) -> (macs, bops, bops_hw), the row's rate /
    act_bits / weight_bits / eff bits)."""
    if scheme not in NETWORK_SCHEMES:
        raise InputError("options", "scheme", f"one of {list(NETWORK_SCHEMES)}", scheme)
    if scheme == "float":
        int8 = scheme_cost(hw, opts, "int8")[0]

        def fp(s):
            macs = int8(s).macs
            return macs, macs * _FLOAT_BITS * _FLOAT_BITS, macs * _FLOAT_BITS * _FLOAT_BITS
        return float_hook, fp, _used(1.0, _FLOAT_BITS, _FLOAT_BITS, _FLOAT_BITS)
    cost, rate, a, w, eff = scheme_cost(hw, opts, scheme)
    if scheme == "wcc":
        mode = wcc_mode(hw.datapath, opts.rate)
    else:
        spec = hw.datapath if scheme == "uniform_nbit" else \
            configure_datapath(hw, dataclasses.replace(opts, act_bits=8, weight_bits=8)).datapath
        mode = plain_mode(spec, a)
    params = calibrate_network(net.plan, net.calib_inputs, {scheme: mode})[scheme]

    def counts(s):
        c = cost(s)
        return c.macs, c.bops, c.bops_hw
    return fixed_hook(net.plan, mode, params), counts, _used(rate, a, w, eff)


def _used(rate: float, act_bits: int, weight_bits: int, eff: float) -> dict:
    return {"rate": float(rate), "act_bits": int(act_bits), "weight_bits": int(weight_bits),
            "eff_bits_per_act": float(eff)}


def _shape(conv, x: np.ndarray):
    """The cost model's shape of a spliced 1x1 layer from its input (N, Cin, H, W)."""
    return LayerShape.pointwise(conv.name, conv.w.shape[1], conv.w.shape[0], x.shape[2], x.shape[3], conv.stride)


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _ids(specs: Sequence[str]) -> tuple[str, ...]:
    return tuple(spec if spec.startswith("skimage:") else f"{Path(spec).name}@{_sha256(spec)}" for spec in specs)


@dataclass(frozen=True)
class _Network:
    plan: object
    inputs: tuple
    references: tuple
    calib_inputs: tuple


_NETWORKS: dict = {}


def _cached_network(setup: NetworkSetup) -> _Network:
    """Plan, preprocessed evaluation and calibration inputs and float-network outputs, built once per
    process per setup."""
    if setup not in _NETWORKS:
        model = load_model(setup.model_path)
        plan = plan_graph(model)

        def prep(specs):
            return tuple(network_input(load_image(s), setup.preset, setup.size)[0] for s in specs)
        inputs = prep(setup.images)
        sess = session(model.SerializeToString())
        names = [o.name for o in sess.get_outputs()]
        refs = tuple(dict(zip(names, sess.run(names, {plan.inputs[0]: x}))) for x in inputs)
        _NETWORKS[setup] = _Network(plan, inputs, refs, prep(setup.calib_images))
    return _NETWORKS[setup]
