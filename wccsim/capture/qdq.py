"""A quantized ONNX model's own quantizers and integer outputs (QDQ format, as onnxruntime's
``quantize_static`` writes it), for `wccsim.capture.onnx`.

In QDQ form a quantized 1x1 layer is ``DequantizeLinear(xq) -> Conv(x, DequantizeLinear(wq),
DequantizeLinear(bq)) -> QuantizeLinear -> yq``; onnxruntime fuses the group into one ``QLinearConv``
(or ``ConvInteger``) when it can, and runs the nodes in float otherwise. Steps:

1. `fold_dequantize`: every ``DequantizeLinear`` of constants (weights, biases) becomes a float constant
   (ONNX's formula in float32, ``float(q - zero_point) * scale``), so the float capture sees the weights
   the graph computes with, and the integers are kept.
2. `links`: for each captured Conv, the ``DequantizeLinear`` feeding its input, the dequantized weight and
   bias, and the single ``QuantizeLinear`` reading its output; a Conv without all of them has no `Qdq`.
3. `integer_outputs`: the model run with onnxruntime's full graph optimizations (its QDQ fusion) and, per
   linked Conv, the quantized tensors around it added as graph outputs: the one its input's
   ``DequantizeLinear`` reads (``xq``) and its ``QuantizeLinear`` output (``yq``). Both are outputs of
   ``QuantizeLinear`` nodes, i.e. of the fused nodes themselves, so the fusion is kept (with uint8
   activations; with int8 ones, onnxruntime's x86 conversion of int8 QDQ pairs to uint8 stops at a graph
   output, and those layers run as float Conv). The optimized model
   (``SessionOptions.optimized_model_filepath``) says which Convs ran as an integer convolution: a
   ``QLinearConv``/``ConvInteger`` node reading the layer's quantized weight initializer.

The stored ``x`` is the dequantized ``xq`` of that same run (float32, as ``DequantizeLinear`` computes
it), so ``x`` and ``yq`` belong together: the optimized graph computes the float parts between the
layers (additions, activations) in a different order than the graph as written, which moves some input
codes by one step. The weights are checked on a run without graph optimizations (`wccsim.capture.onnx`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wccsim.capture.onnx_graph import attributes, session
from wccsim.errors import InputError
from wccsim.trace import Qdq

__all__ = ["INTEGER_OPS", "Dequantized", "Link", "fold_dequantize", "links", "integer_outputs", "dequantized_input",
           "layer_qdq"]

INTEGER_OPS = ("QLinearConv", "ConvInteger")


@dataclass(frozen=True)
class Dequantized:
    """A ``DequantizeLinear`` of constants: integers ``q``, float32 ``scale`` and ``zero_point`` (its dtype
    is the tensor's; default uint8 0), ``axis`` (per-axis scales) and the name of ``q``'s initializer."""
    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int
    source: str

    def real(self) -> np.ndarray:
        """``float32(q - zero_point) * scale`` as onnxruntime's DequantizeLinear computes it."""
        shape = [1] * self.q.ndim
        if self.scale.ndim:
            shape[self.axis] = -1
        diff = self.q.astype(np.int64) - self.zero_point.astype(np.int64).reshape(shape)
        return diff.astype(np.float32) * self.scale.astype(np.float32).reshape(shape)


@dataclass(frozen=True)
class Link:
    """The QDQ nodes around one captured Conv: its input's ``DequantizeLinear`` inputs (tensor names: the
    integers, scale, zero point), its weight and bias (`Dequantized`), and the ``QuantizeLinear`` reading
    its output (scale, zero point, output)."""
    xq: str
    x_scale: str
    x_zero_point: str
    w: Dequantized
    b: Dequantized | None
    y_scale: str
    y_zero_point: str
    yq: str


def _zero_point(node, consts: dict) -> np.ndarray:
    """The zero point input of a (De)QuantizeLinear node; ONNX's default is uint8 0."""
    if len(node.input) > 2 and node.input[2]:
        return np.asarray(consts[node.input[2]])
    return np.zeros((), np.uint8)


def fold_dequantize(graph, consts: dict) -> dict[str, Dequantized]:
    """Add every ``DequantizeLinear`` of constants to ``consts`` as its float32 output; returns them by
    output name (empty for a float model)."""
    out = {}
    for n in graph.node:
        if n.op_type == "DequantizeLinear" and all(not i or i in consts for i in n.input):
            scale, zp = np.asarray(consts[n.input[1]], np.float32), _zero_point(n, consts)
            if scale.size == 1:                                      # per tensor, whatever its rank
                scale, zp = scale.reshape(()), zp.reshape(())
            d = Dequantized(np.asarray(consts[n.input[0]]), scale, zp, int(attributes(n).get("axis", 1)), n.input[0])
            out[n.output[0]] = d
            consts[n.output[0]] = d.real()
    return out


def links(graph, convs: list[dict], dq: dict[str, Dequantized], consts: dict) -> dict[str, Link]:
    """`Link` of each captured Conv (``convs`` as `wccsim.capture.onnx` finds them) that is in QDQ form,
    by layer name."""
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    out = {}
    for c in convs:
        node = producer[c["y"]]
        x_dq = producer.get(node.input[0])
        q = readers.get(c["y"], [])
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if (x_dq is None or x_dq.op_type != "DequantizeLinear" or len(q) != 1 or q[0].op_type != "QuantizeLinear"
                or node.input[1] not in dq or (bias is not None and bias not in dq)
                or any(len(n.input) < 3 or n.input[2] not in consts for n in (x_dq, q[0]))):
            continue
        out[c["name"]] = Link(*x_dq.input[:3], dq[node.input[1]], dq.get(bias), *q[0].input[1:3], q[0].output[0])
    return out


def integer_outputs(model_path: str | Path, input_name: str, batch: np.ndarray, layer_links: dict[str, Link],
                    consts: dict) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """Run the model with onnxruntime's graph optimizations (QDQ fusion); returns each linked layer's
    ``(xq, yq)`` (its input and output integers in that run) and the operator it ran as: ``QLinearConv`` or
    ``ConvInteger`` (an integer convolution), else ``Conv`` (float, between the QDQ nodes)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(model_path))
    present = {o.name for o in model.graph.output} | {input_name}
    for link in layer_links.values():
        for name, zp in ((link.xq, link.x_zero_point), (link.yq, link.y_zero_point)):
            if name not in present:
                dtype = helper.np_dtype_to_tensor_dtype(np.asarray(consts[zp]).dtype)
                model.graph.output.append(helper.make_tensor_value_info(name, dtype, None))
                present.add(name)
    with tempfile.TemporaryDirectory() as tmp:
        optimized_path = Path(tmp) / "optimized.onnx"
        sess = session(model.SerializeToString(), optimized_path=optimized_path)
        optimized = onnx.load(str(optimized_path))
    names = list(dict.fromkeys(n for link in layer_links.values() for n in (link.xq, link.yq)))
    values = dict(zip(names, sess.run(names, {input_name: batch})))
    weight_input = {"QLinearConv": 3, "ConvInteger": 1}
    integer = {n.input[weight_input[n.op_type]]: n.op_type for n in optimized.graph.node if n.op_type in INTEGER_OPS}
    ops = {name: integer.get(link.w.source, "Conv") for name, link in layer_links.items()}
    return {name: (values[link.xq], values[link.yq]) for name, link in layer_links.items()}, ops


def dequantized_input(link: Link, consts: dict, xq: np.ndarray) -> np.ndarray:
    """The layer's float input as its ``DequantizeLinear`` computes it from ``xq`` (float32)."""
    return Dequantized(xq, np.asarray(consts[link.x_scale], np.float32).reshape(()),
                       np.asarray(consts[link.x_zero_point]).reshape(()), 1, link.xq).real()


def layer_qdq(link: Link, consts: dict, yq: np.ndarray) -> Qdq:
    """The `Qdq` record of one layer: scales float32, zero points in their tensors' dtypes, weight scale and
    zero point per output channel, the int32 bias as the fused kernel adds it."""
    cout = link.w.q.shape[0]
    per_channel = link.w.scale.ndim == 1
    if per_channel and link.w.axis != 0:
        raise InputError(link.w.source, "DequantizeLinear axis", "0 (scales per output channel)", link.w.axis)
    return Qdq(x_scale=np.asarray(consts[link.x_scale], np.float32).reshape(()),
               x_zero_point=np.asarray(consts[link.x_zero_point]).reshape(()),
               w_scale=np.broadcast_to(link.w.scale, (cout,)).astype(np.float32),
               w_zero_point=np.broadcast_to(link.w.zero_point, (cout,)).copy(),
               y_scale=np.asarray(consts[link.y_scale], np.float32).reshape(()),
               y_zero_point=np.asarray(consts[link.y_zero_point]).reshape(()),
               bq=None if link.b is None else link.b.q.astype(np.int32).reshape(cout),
               yq=np.ascontiguousarray(yq))
