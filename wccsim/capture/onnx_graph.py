"""ONNX graph facts shared by trace capture (`wccsim.capture.onnx`, `wccsim.capture.qdq`) and the spliced
network (`wccsim.network.splice`): constant tensors, node attributes, the onnxruntime session, and the one
rule for which Conv nodes the WCC datapath computes (`pointwise_conv`).

``onnx`` and ``onnxruntime`` are optional extras: imported inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PointwiseConv", "NotPointwise", "attributes", "fed_inputs", "fold_constants", "pointwise_conv", "session"]

_ONNX_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class PointwiseConv:
    """A Conv node the WCC datapath computes: 1x1 kernel, group 1, no padding, one stride for both axes,
    constant weight (Cout, Cin) float32 and bias (Cout,) float32 or None. ``name``: the node's name (its
    output's when unnamed); ``x``, ``y``: its input and output tensor names."""
    name: str
    x: str
    y: str
    w: np.ndarray
    b: np.ndarray | None
    stride: int


@dataclass(frozen=True)
class NotPointwise:
    """Why a Conv-like node is not a `PointwiseConv`. ``kernel_1x1``: the node is a Conv with a 1x1 kernel
    (a pointwise convolution that some other property keeps in float), as opposed to any other kernel or op."""
    reason: str
    kernel_1x1: bool


def attributes(node) -> dict:
    """A node's attributes as {name: Python value} (ints, floats, lists, bytes, tensors)."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _constant_value(node) -> np.ndarray | None:
    """A Constant node's value (``value`` tensor or the scalar / list forms), or None (sparse, strings)."""
    from onnx import helper, numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_floats"):
            return np.array(helper.get_attribute_value(a), np.float32)
        if a.name in ("value_int", "value_ints"):
            return np.array(helper.get_attribute_value(a), np.int64)
    return None


def fed_inputs(graph) -> tuple[str, ...]:
    """The graph inputs a caller feeds: its inputs that are not initializers (exporters before IR version 4
    list every initializer among the inputs too)."""
    inits = {t.name for t in graph.initializer}
    return tuple(i.name for i in graph.input if i.name not in inits)


def fold_constants(graph) -> tuple[dict[str, np.ndarray], list]:
    """Initializers and Constant-node values as one name -> array table, and the graph's other nodes."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for n in graph.node:
        v = _constant_value(n) if n.op_type == "Constant" and n.domain in _ONNX_DOMAINS else None
        if v is None:
            nodes.append(n)
        else:
            consts[n.output[0]] = v
    return consts, nodes


def pointwise_conv(node, consts: dict[str, np.ndarray]) -> PointwiseConv | NotPointwise:
    """The node as a `PointwiseConv` when WCC applies to it, else why not (`NotPointwise`).

    Reasons: the op type (``ConvTranspose``, ...), ``kernel KxK[, group G]``, ``weights computed at run
    time``, ``N-D convolution``, ``group G``, ``pads [...]``, ``unequal strides [...]``, ``bias computed at
    run time`` (several joined by ``, ``). ``auto_pad`` is no reason: with a 1x1 kernel and stride s every
    mode pads nothing (SAME's total padding ``max(0, (ceil(H/s) - 1) s + 1 - H)`` is 0) and gives
    ``ceil(H/s)`` outputs, the subsampled input's size.
    """
    if node.op_type != "Conv" or node.domain not in _ONNX_DOMAINS or len(node.input) < 2:
        return NotPointwise(node.op_type, False)
    a = attributes(node)
    w = consts.get(node.input[1])
    if w is None and "kernel_shape" not in a:
        return NotPointwise("weights computed at run time", False)
    kernel = tuple(w.shape[2:]) if w is not None else tuple(a.get("kernel_shape", ()))
    group = a.get("group", 1)
    if any(k != 1 for k in kernel):
        return NotPointwise(f"kernel {'x'.join(map(str, kernel))}" + (f", group {group}" if group != 1 else ""), False)
    reasons = []
    if w is None:
        reasons.append("weights computed at run time")
    elif w.ndim != 4:
        reasons.append(f"{w.ndim - 2}-D convolution")
    if group != 1:
        reasons.append(f"group {group}")
    if any(p != 0 for p in a.get("pads", [0])):
        reasons.append(f"pads {list(a['pads'])}")
    strides = list(a.get("strides", [1, 1]))
    if len(set(strides)) != 1:
        reasons.append(f"unequal strides {strides}")
    has_bias = len(node.input) > 2 and bool(node.input[2])
    b = consts.get(node.input[2]) if has_bias else None
    if has_bias and b is None:
        reasons.append("bias computed at run time")
    if reasons:
        return NotPointwise(", ".join(reasons), True)
    return PointwiseConv(name=node.name or node.output[0], x=node.input[0], y=node.output[0],
                         w=np.asarray(w, np.float32).reshape(w.shape[0], -1),
                         b=None if b is None else np.asarray(b, np.float32), stride=int(strides[0]))


def session(model_bytes: bytes, *, optimize: bool = True, optimized_path: str | Path | None = None):
    """onnxruntime CPU session, warnings off, its worker threads sleeping between runs (onnxruntime's
    default spins them after each run, which takes the cores from the numpy and numba work between the
    runs of a spliced network: 5x slower on LR-ASPP); ``optimize=False`` runs every node as written (no graph
    optimizations); ``optimized_path``: where onnxruntime writes the graph it optimized (to read which nodes
    it fused into integer convolutions)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
