"""Capture a v1 trace of every 1x1 convolution of an ONNX model, run with onnxruntime.

Steps (`capture_onnx`):

1. Find the Conv nodes. A node is captured when its kernel is 1x1, ``group == 1``, padding is zero, the
   strides are equal, and its weight (and bias) are constants: graph initializers or outputs of
   ``Constant`` nodes (Paddle2ONNX exports such as PP-OCR keep them in ``Constant`` nodes). Every other
   Conv/ConvTranspose is skipped and listed in ``meta["skipped"]`` with the reason; so are 1x1 convs whose
   input map is 1x1 pixel (fully connected layers such as squeeze-excitation: WCC has nothing to compress).
2. Add the input and output of every Conv/ConvTranspose as graph outputs and run the model once on the
   batch. Output shapes give the MACs of the whole model (``meta["model_conv_macs"]``, per sample).
3. Check each captured layer: onnxruntime running that single Conv node on the captured input must
   reproduce the in-graph output (relative L2 error <= 1e-5), proving the extracted weights are the ones
   the graph uses.
4. ``y`` is the framework's output for exactly the stored ``x``: the in-graph output for float32 storage;
   for float16 storage ``x`` is rounded to float16 first and ``y`` is onnxruntime's single-Conv output on
   the rounded ``x`` (stored float32).

A quantized model in QDQ form (`wccsim.capture.qdq`): its constant ``DequantizeLinear`` nodes are folded
into float weights and biases first and step 2 runs without graph optimizations (every node as written;
step 3 checks the weights on it). A second run with onnxruntime's QDQ fusion gives each layer in QDQ form its input and
output integers: ``x`` is then the dequantized input of that run, ``y`` onnxruntime's single Conv on it,
and `wccsim.trace.Qdq` holds the scales, zero points, integer bias and ``yq``;
``meta["source"]["executed_as"]`` names the operator each of those layers ran as
(``QLinearConv``/``ConvInteger``: an integer convolution; ``Conv``: float).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import re
from pathlib import Path

import numpy as np

from wccsim.capture import qdq
from wccsim.capture.images import image_batch
from wccsim.capture.layer_check import checked_layer, write_captured
from wccsim.capture.onnx_graph import NotPointwise, fed_inputs, fold_constants, pointwise_conv, session
from wccsim.errors import InputError
from wccsim.trace import LayerData, LayerInfo

__all__ = ["KNOWN_MODELS", "resolve_model", "capture_onnx", "capture_onnx_trace", "run_onnx", "sha256_file"]

# Models shipped in the rapidocr-onnxruntime 1.4.4 wheel -> preprocessing preset.
KNOWN_MODELS = {
    "ch_PP-OCRv4_det_infer.onnx": "ppocr_det",
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": "ppocr_cls",
    "ch_PP-OCRv4_rec_infer.onnx": "ppocr_rec",
}


def resolve_model(spec: str) -> Path:
    """Path of an ONNX model: a file path, or ``rapidocr:NAME`` for a model inside the rapidocr wheel."""
    if spec.startswith("rapidocr:"):
        name = spec.split(":", 1)[1]
        try:
            path = Path(str(importlib.resources.files("rapidocr_onnxruntime") / "models" / name))
        except ModuleNotFoundError:
            raise InputError(spec, "", "rapidocr-onnxruntime installed (pip install wccsim[capture])",
                             "not installed") from None
        if not path.is_file():
            raise InputError(spec, "", f"one of {sorted(KNOWN_MODELS)}", repr(name))
        return path
    if not Path(spec).is_file():
        raise InputError(spec, "", "an ONNX model file or rapidocr:NAME", "no such file")
    return Path(spec)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def capture_onnx_trace(model: str, images: list[str], out: str | Path, *, preset: str | None = None,
                       size: tuple[int, int] | None = None, store_dtype: str = "float32",
                       compress: bool = False, store_y: bool = True,
                       keep: list[str] | None = None) -> list[LayerInfo]:
    """Load the model and images, preprocess, capture and write the trace to `out` (atomically).

    Parameters
    ----------
    model : ONNX file path or ``rapidocr:NAME``.
    images : image specs (file paths or ``skimage:NAME``), all resized to one size.
    out : destination ``.npz``.
    preset : preprocessing preset name (see `wccsim.capture.images`); default from the model file name.
    size : (H, W) input size in pixels; default from the preset and the first image.
    store_dtype : "float32" or "float16" storage of ``x``.
    compress : deflate the members.
    store_y : keep each layer's ``y`` (without it the file is about 3x smaller; the per-layer check of
        step 3 still runs at capture).
    keep : globs on layer names: store only the matching layers (the others are listed in
        ``meta["skipped"]``); None stores all.
    """
    path = resolve_model(model)
    preset = preset or KNOWN_MODELS.get(path.name)
    batch, input_meta = image_batch(str(path), images, preset, size, " (unknown model: name it)")
    meta, layers = capture_onnx(path, batch, store_dtype=store_dtype)
    return write_captured(out, meta, layers, batch, input_meta, store_dtype=store_dtype, compress=compress,
                          store_y=store_y, keep=keep)


def capture_onnx(model_path: str | Path, batch: np.ndarray, *,
                 store_dtype: str = "float32") -> tuple[dict, list[LayerData]]:
    """Run the model on `batch` and return (meta without layers, captured layers).

    Parameters
    ----------
    model_path : ONNX file.
    batch : (N, C, H, W) float32, already preprocessed for the model.
    store_dtype : "float32" or "float16": the precision ``x`` will be stored in (``y`` follows it).
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    consts, _ = fold_constants(model.graph)
    dq = qdq.fold_dequantize(model.graph, consts)                   # QDQ weights and biases -> float
    convs, skipped = _find_convs(model.graph, consts)
    input_name = fed_inputs(model.graph)[0]
    links = qdq.links(model.graph, convs, dq, consts)
    values = _run_exposed(model, input_name, batch, optimize=not dq)
    ints, ops = qdq.integer_outputs(model_path, input_name, batch, links, consts) if links else ({}, {})
    layers, nodes = [], {}
    for c in convs:
        x = values[c["x"]]
        if x.shape[2] * x.shape[3] == 1:
            skipped.append({"node": c["node"], "reason": "1x1 pixel input (fully connected layer)"})
            continue
        ld = checked_layer(c["name"], c["node"], c["w"], c["b"], c["stride"], x, values[c["y"]],
                           _run_single_conv, store_dtype)
        if c["name"] in links:                       # x, y and yq of the fused run (`wccsim.capture.qdq`)
            link, (xq, yq) = links[c["name"]], ints[c["name"]]
            x = qdq.dequantized_input(link, consts, xq)
            ld = checked_layer(c["name"], c["node"], c["w"], c["b"], c["stride"], x,
                               _run_single_conv(c["w"], c["b"], c["stride"], x), _run_single_conv, store_dtype)
            ld = dataclasses.replace(ld, qdq=qdq.layer_qdq(link, consts, yq))
        layers.append(ld)
        nodes[c["name"]] = c["node"]
    executed = {ld.name: ops[ld.name] for ld in layers if ld.name in ops}
    meta = {
        "network": Path(model_path).stem,
        "source": {"tool": f"onnxruntime {ort.__version__}", "model_file": Path(model_path).name,
                   "sha256": sha256_file(model_path), "nodes": nodes,
                   **({"executed_as": executed} if executed else {})},
        "model_conv_macs": _model_conv_macs(model.graph, consts, values),
        "skipped": skipped,
        "y_source": "onnxruntime in-graph output" if store_dtype != "float16" and not links else
                    "onnxruntime single Conv node on the float16-rounded x" if not links else
                    "onnxruntime single Conv node on the stored x (QDQ layers: the dequantized input of the "
                    "fused run)",
    }
    return meta, layers


def _find_convs(graph, consts: dict) -> tuple[list[dict], list[dict]]:
    """Split Conv/ConvTranspose nodes into captured 1x1 layers (`pointwise_conv`) and skipped nodes with
    reasons."""
    convs, skipped, names = [], [], set()
    for i, node in enumerate(n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")):
        label = node.name or f"{node.op_type}_{i}"
        conv = pointwise_conv(node, consts)
        if isinstance(conv, NotPointwise):
            skipped.append({"node": label, "reason": conv.reason})
            continue
        name = re.sub(r"[^A-Za-z0-9_\-]", "_", label)
        name = name if name not in names else f"{name}_{i}"
        names.add(name)
        convs.append({"name": name, "node": label, "x": conv.x, "y": conv.y, "w": conv.w, "b": conv.b,
                      "stride": conv.stride})
    return convs, skipped


def _run_exposed(model, input_name: str, batch: np.ndarray, optimize: bool = True) -> dict[str, np.ndarray]:
    """Run with the input and output of every Conv/ConvTranspose added as graph outputs
    (`wccsim.capture.onnx_graph.session`)."""
    from onnx import TensorProto, helper

    present = {o.name for o in model.graph.output}
    wanted = [t for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")
              for t in (n.input[0], n.output[0])]
    for t in dict.fromkeys(wanted):
        if t not in present and t != input_name:
            model.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
            present.add(t)
    sess = session(model.SerializeToString(), optimize=optimize)
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(names, {input_name: batch})))
    values[input_name] = batch
    return values


def run_onnx(model_path: str | Path, batch: np.ndarray) -> list[np.ndarray]:
    """onnxruntime's outputs (CPU, graph order) of the model with one input fed `batch` (float32)."""
    sess = session(Path(model_path).read_bytes())
    return sess.run(None, {sess.get_inputs()[0].name: np.asarray(batch, np.float32)})


def _run_single_conv(w: np.ndarray, b: np.ndarray | None, stride: int, x: np.ndarray) -> np.ndarray:
    """onnxruntime's output of one 1x1 Conv node: w (Cout, Cin), b (Cout,) or None, x (N, Cin, H, W)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(w[:, :, None, None].astype(np.float32), "W")]
    if b is not None:
        inits.append(numpy_helper.from_array(b.astype(np.float32), "B"))
    node = helper.make_node("Conv", ["X", "W"] + (["B"] if b is not None else []), ["Y"],
                            kernel_shape=[1, 1], strides=[stride, stride])
    graph = helper.make_graph([node], "conv1x1", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return session(model.SerializeToString()).run(["Y"], {"X": x.astype(np.float32)})[0]


def _model_conv_macs(graph, consts: dict, values: dict) -> int | None:
    """MACs per sample of all Conv and ConvTranspose nodes (None when a weight is not constant).

    Conv: prod(W.shape) * Ho * Wo with W (Cout, Cin/group, kh, kw); ConvTranspose: prod(W.shape) * H * W
    of its input, W being (Cin, Cout/group, kh, kw).
    """
    total = 0
    for n in graph.node:
        if n.op_type not in ("Conv", "ConvTranspose"):
            continue
        if n.input[1] not in consts:
            return None
        spatial = values[n.output[0] if n.op_type == "Conv" else n.input[0]].shape[2:]
        total += int(np.prod(consts[n.input[1]].shape)) * int(np.prod(spatial))
    return total
