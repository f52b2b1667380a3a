"""Calibration apart from evaluation: every spliced layer's scales fixed once, on a calibration set.

A deployed int8 network has its scales fixed offline (onnxruntime's static quantization: the float network
runs on calibration images, each quantized tensor's range is collected, the scales are frozen); the chip
then runs every image with them. `calibrate_network` does the same for each quantized mode of
``wccsim network`` and the sweep's network points: it runs the calibration images through the spliced
*float* network and, layer by layer in network order, calibrates each spliced 1x1 layer on the float
inputs of all calibration images at once (`wccsim.simulate.calibrate_layer` for WCC,
`wccsim.simulate.calibrate_plain` for int8 and uniform n-bit: inputs, weights, coefficient bands and
output). `fixed_hook` then runs the evaluation images with those frozen parameters
(`wccsim.network.hooks`): an image's result does not depend on which other images are evaluated.

Memory: the calibration images advance through the network in lockstep (one thread each, meeting at a
barrier before every spliced layer; a layer is calibrated while they compute the next), so only two layers'
inputs and float64 outputs of all calibration images (each image's thread computes the output its
histograms read, `wccsim.simulate.params.output_blocks`, before the barrier: in parallel, the same blocks in
the same order), plus each image's live tensors, exist at a time; never every layer's of every image.

Default image sets (scikit-image photographs bundled with the package, no download): evaluation
`EVAL_IMAGES`, calibration `CALIB_IMAGES`, disjoint. Calibrating on an evaluated image is refused unless
asked for (``--calibrate-on-eval``); the result is then flagged optimistic.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from wccsim.capture.onnx_graph import PointwiseConv
from wccsim.errors import InputError
from wccsim.network.hooks import LayerMode, float_hook
from wccsim.network.splice import Hook, Plan, run_plan
from wccsim.options import progress_bar
from wccsim.simulate.layer import prepare
from wccsim.simulate.params import output_blocks

__all__ = ["EVAL_IMAGES", "CALIB_IMAGES", "DISJOINT", "ON_EVAL", "image_id", "calibration_sets",
           "float_layer_inputs", "calibrate_network", "fixed_hook"]

# Evaluation photographs (>= 8; with text and without: PP-OCR's `text` has an empty float map).
EVAL_IMAGES = tuple(f"skimage:{n}" for n in ("astronaut", "camera", "chelsea", "coffee", "coins", "page", "rocket",
                                             "text"))
# Calibration photographs, disjoint from the evaluation set.
CALIB_IMAGES = tuple(f"skimage:{n}" for n in ("immunohistochemistry", "hubble_deep_field", "horse", "logo"))
DISJOINT, ON_EVAL = "disjoint", "on_eval"


def image_id(spec: str) -> str:
    """An image's identity for the disjointness check: ``skimage:NAME`` itself, a file by its bytes' SHA-256
    (the same photograph under two paths is one image)."""
    if spec.startswith("skimage:") or not Path(spec).is_file():
        return spec
    return "sha256:" + hashlib.sha256(Path(spec).read_bytes()).hexdigest()


def calibration_sets(images: Sequence[str] | None, calib_images: Sequence[str] | None,
                     calibrate_on_eval: bool = False) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(evaluation images, calibration images, `DISJOINT` or `ON_EVAL`) from the options.

    Defaults: `EVAL_IMAGES`; `CALIB_IMAGES`, or the evaluation images themselves with `calibrate_on_eval`.
    An evaluation image that is also a calibration image is an `InputError` unless `calibrate_on_eval`.
    """
    evals = tuple(images) if images else EVAL_IMAGES
    calib = tuple(calib_images) if calib_images else (evals if calibrate_on_eval else CALIB_IMAGES)
    eval_ids = {image_id(s): s for s in evals}
    shared = [s for s in calib if image_id(s) in eval_ids]
    if shared and not calibrate_on_eval:
        raise InputError("--calib-image", shared[0], "calibration images apart from the evaluation images "
                         "(or --calibrate-on-eval, an optimistic result)", "also an evaluation image")
    return evals, calib, ON_EVAL if shared else DISJOINT


def _by_weight(plan: Plan) -> dict:
    """The plan's spliced layers by the identity of their weights: a hook sees a layer's weights, not its
    name (``conv.w``, the array `run_plan` passes; the plan keeps it alive)."""
    return {id(c.w): c for c in plan.layers}


def float_layer_inputs(plan: Plan, inputs: Sequence[np.ndarray], visit: Callable[[PointwiseConv, list], None],
                       per_input: Callable[[PointwiseConv, np.ndarray], Any] | None = None) -> None:
    """Run every input through the spliced float network in lockstep and call ``visit(conv, xs)`` once
    per spliced layer, in network order, with the float inputs of that layer for all inputs (the float
    network's own activations, `wccsim.reference.ref_conv` in float64 for the 1x1 layers), or with
    ``per_input(conv, x)`` of each, computed in the input's own thread.

    One thread per input runs `run_plan`; they meet at a barrier before each spliced layer, whose action
    hands the layer to ``visit`` in one more thread and lets the inputs go on: a layer is visited while the
    float network computes the next one (the next barrier waits for that visit first, so visits run one at
    a time, in network order, and at most two layers' items are alive). An error in any thread (or in
    ``visit``) breaks the barrier and is raised here.
    """
    n = len(inputs)
    slots: list = [None] * n
    errors: list = []
    order = iter(plan.layers)
    by_weight = _by_weight(plan)

    visiting: list = []  # the previous layer's visit (a Future), at most one

    def finish_visit():
        while visiting:
            visiting.pop().result()

    def action():
        try:
            finish_visit()
            visiting.append(pool.submit(visit, next(order), list(slots)))
        except BaseException as e:  # re-raised by the caller: a thread must not die silently
            errors.append(e)
            raise

    barrier = threading.Barrier(n, action=action)

    def worker(i: int):
        def hook(x, w, b, stride):
            slots[i] = x if per_input is None else per_input(by_weight[id(w)], x)
            barrier.wait()
            return float_hook(x, w, b, stride)
        try:
            run_plan(plan, {plan.inputs[0]: inputs[i]}, hook)
        except threading.BrokenBarrierError:
            pass  # another thread failed first; its error is reported
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    with ThreadPoolExecutor(1) as pool:
        threads = [threading.Thread(target=worker, args=(i,), name=f"calib-{i}") for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            finish_visit()
        except BaseException as e:
            errors.append(e)
    if errors:
        raise errors[0]


def calibrate_network(plan: Plan, inputs: Sequence[np.ndarray], modes: Mapping[Any, LayerMode],
                      progress: bool = False) -> dict:
    """Fixed parameters of every spliced layer for every mode, calibrated on the float network's layer
    inputs of the calibration `inputs` (preprocessed, float32 NCHW, one per image); `progress`: a bar over
    the spliced layers on stderr (None: when stderr is a terminal). The BLAS libraries run one thread each
    meanwhile (`float_layer_inputs` runs one thread per image and one for the layer being calibrated).

    Returns
    -------
    dict mode -> {layer name: params}
    """
    if not inputs:
        raise InputError("--calib-image", "", "at least one calibration image", "none")
    params = {m: {} for m in modes}
    bar = progress_bar(None, f"calibration on {len(inputs)} images (layers)", progress, total=len(plan.layers))

    def with_outputs(conv, x):  # in the image's thread: the float64 output the output histograms read
        return x, list(output_blocks(prepare(x, conv.w, conv.b, conv.stride)))

    def visit(conv, items):
        xs = [x for x, _ in items]
        # what the modes of this layer share (`wccsim.network.hooks.shared_samples`)
        shared: dict = {"outputs": [y for _, ys in items for y in ys]}
        del items
        for m, mode in modes.items():
            params[m][conv.name] = mode.calibrate(xs, conv, shared)
        bar.update(1)

    try:  # BLAS at one thread: its idle workers busy-wait between calls, taking the cores these threads need
        with threadpool_limits(1, "blas"):
            float_layer_inputs(plan, inputs, visit, with_outputs)
    finally:
        bar.close()
    return params


def fixed_hook(plan: Plan, mode: LayerMode, params: Mapping[str, Any]) -> Hook:
    """Hook running each spliced layer of `plan` with its fixed parameters (`calibrate_network`).

    The layer is found by its weights (`_by_weight`)."""
    by_weight = _by_weight(plan)

    def hook(x, w, b, stride):
        conv = by_weight.get(id(w))
        if conv is None:
            raise ValueError("fixed_hook: a layer of another plan")
        return np.asarray(mode.run(x, params[conv.name], conv), np.float32)
    return hook
