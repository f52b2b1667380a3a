"""Graph splicing: run an ONNX graph with every eligible 1x1 convolution computed by a Python hook.

`plan_graph` turns a model into an ordered list of steps: *segments* (maximal runs, in topological
order, of nodes onnxruntime executes, each a self-contained sub-model) and *spliced layers* (the
eligible 1x1 convolutions, computed by a hook). `run_plan` walks the steps, feeding each one from a
table of named tensors, so an error made in one spliced layer reaches every later layer exactly as on
the chip. Works on any graph: it needs no knowledge of the operators it hands to onnxruntime.

A Conv node is *eligible* (WCC applies) when it is in the default domain, its weight is a constant
(initializer or Constant node) of shape (Cout, Cin, 1, 1), group == 1, all pads are zero, auto_pad is
NOTSET or VALID and both strides are equal. Dilation has no effect on a 1x1 kernel. Every other Conv
with a 1x1 kernel is run by onnxruntime in float and listed in `Plan.unhandled` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

if TYPE_CHECKING:  # onnx is an optional extra: imported by the functions that need it
    import onnx

__all__ = ["SplicedConv", "Segment", "Unhandled", "Plan", "Hook", "plan_graph", "run_plan"]

Hook = Callable[[np.ndarray, np.ndarray, "np.ndarray | None", int], np.ndarray]
"""``hook(x, w, b, stride) -> y``: x float32 (N, Cin, H, W), w (Cout, Cin), b (Cout,) or None,
stride a positive int; y float32 (N, Cout, ceil(H/stride), ceil(W/stride))."""


@dataclass(frozen=True)
class SplicedConv:
    """One eligible 1x1 convolution: tensor names, constant weight (Cout, Cin) float32, bias, stride."""
    name: str
    x: str
    y: str
    w: np.ndarray
    b: np.ndarray | None
    stride: int


@dataclass(frozen=True)
class Segment:
    """A sub-model onnxruntime runs: ``inputs`` are fed from the tensor table, ``outputs`` go back to it."""
    nodes: tuple
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Unhandled:
    """A 1x1 Conv that WCC does not apply to (run in float by onnxruntime), with the reason."""
    name: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """Ordered steps plus what `run_plan` needs to build sub-models. ``release[i]``: tensors dropped
    after step i (no later step or graph output reads them). ``_sessions`` caches onnxruntime sessions."""
    model: onnx.ModelProto
    steps: tuple
    release: tuple[tuple[str, ...], ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    constants: Mapping[str, np.ndarray]
    unhandled: tuple[Unhandled, ...]
    _sessions: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def layers(self) -> tuple[SplicedConv, ...]:
        """The spliced 1x1 convolutions, in execution order."""
        return tuple(s for s in self.steps if isinstance(s, SplicedConv))


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    """Value of a Constant node's tensor-valued attribute, or None (sparse / string forms)."""
    from onnx import helper, numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name in ("value_float", "value_int"):
            return np.array(helper.get_attribute_value(a),
                            np.float32 if a.name == "value_float" else np.int64)
        if a.name in ("value_floats", "value_ints"):
            return np.array(helper.get_attribute_value(a),
                            np.float32 if a.name == "value_floats" else np.int64)
    return None


def _fold_constants(graph: onnx.GraphProto) -> tuple[dict, list]:
    """Initializers and Constant-node values as one name -> array table; the remaining nodes."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for n in graph.node:
        v = _constant_value(n) if n.op_type == "Constant" and n.domain in ("", "ai.onnx") else None
        if v is None:
            nodes.append(n)
        else:
            consts[n.output[0]] = v
    return consts, nodes


def _subgraph_free_names(g: onnx.GraphProto) -> set[str]:
    """Outer-scope names a subgraph (If/Loop/Scan body) reads without defining them."""
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    used = set()
    for n in g.node:
        used.update(_node_reads(n))
        defined.update(n.output)
    return used - defined


def _node_reads(node: onnx.NodeProto) -> set[str]:
    """Every tensor a node reads: explicit inputs plus outer-scope names of its subgraphs."""
    import onnx

    reads = {i for i in node.input if i}
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            reads |= _subgraph_free_names(g)
    return reads


def _toposort(nodes: list, available: set[str]) -> list:
    """Kahn's algorithm, stable (keeps file order among ready nodes); raises on a cycle or a missing input."""
    producers = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    deps = [{producers[r] for r in _node_reads(n) if r in producers and r not in available} for n in nodes]
    done, order = set(), []
    pending = list(range(len(nodes)))
    while pending:
        ready = [i for i in pending if deps[i] <= done]
        if not ready:
            raise ValueError(f"graph has a cycle or an unproduced input near node {nodes[pending[0]].name!r}")
        done.update(ready)
        order.extend(ready)
        pending = [i for i in pending if i not in done]
    return [nodes[i] for i in order]


def _attr(node: onnx.NodeProto, name: str, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _eligibility(node: onnx.NodeProto, consts: Mapping[str, np.ndarray]) -> tuple[SplicedConv | None, str]:
    """(SplicedConv, "") when WCC applies to a Conv node; (None, reason) for 1x1 ones it does not;
    (None, "") for anything else (not a 1x1 Conv: not worth listing)."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
        return None, ""
    w = consts.get(node.input[1])
    if w is None:
        ks = _attr(node, "kernel_shape", None)
        return None, ("weight is not a constant" if ks is not None and all(k == 1 for k in ks) else "")
    if w.ndim < 3 or any(k != 1 for k in w.shape[2:]):
        return None, ""
    reasons = []
    if w.ndim != 4:
        reasons.append(f"{w.ndim - 2}-D convolution")
    if _attr(node, "group", 1) != 1:
        reasons.append(f"group={_attr(node, 'group', 1)}")
    if any(p != 0 for p in _attr(node, "pads", [0])):
        reasons.append(f"pads={list(_attr(node, 'pads', []))}")
    auto_pad = _attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", "VALID"):
        reasons.append(f"auto_pad={auto_pad}")
    strides = list(_attr(node, "strides", [1, 1]))
    if len(set(strides)) != 1:
        reasons.append(f"strides={strides}")
    b = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and b is None:
        reasons.append("bias is not a constant")
    if reasons:
        return None, ", ".join(reasons)
    return SplicedConv(name=node.name or node.output[0], x=node.input[0], y=node.output[0],
                       w=np.asarray(w, np.float32).reshape(w.shape[0], -1),
                       b=None if b is None else np.asarray(b, np.float32), stride=int(strides[0])), ""


def _segments(order: list, consts: Mapping) -> tuple[list, list[Unhandled]]:
    """Group the ordered nodes into steps: SplicedConv or a list of onnxruntime nodes."""
    steps, unhandled, run = [], [], []
    for n in order:
        conv, reason = _eligibility(n, consts)
        if reason:
            unhandled.append(Unhandled(n.name or n.output[0], reason))
        if conv is None:
            run.append(n)
            continue
        if run:
            steps.append(run)
            run = []
        steps.append(conv)
    if run:
        steps.append(run)
    return steps, unhandled


def _reads(step) -> set[str]:
    if isinstance(step, SplicedConv):
        return {step.x}
    return set().union(*(_node_reads(n) for n in step))


def _writes(step) -> set[str]:
    if isinstance(step, SplicedConv):
        return {step.y}
    return {o for n in step for o in n.output if o}


def _finish_segments(raw: list, consts: Mapping, outputs: tuple[str, ...]) -> list:
    """Turn node lists into Segments whose inputs/outputs are the tensors crossing their boundary."""
    steps = []
    for i, step in enumerate(raw):
        if isinstance(step, SplicedConv):
            steps.append(step)
            continue
        later = set(outputs).union(*(_reads(s) for s in raw[i + 1:]))
        written = _writes(step)
        ins = tuple(sorted(r for r in _reads(step) - written if r not in consts))
        outs = tuple(sorted(written & later))
        if outs:  # a run nobody reads (dead nodes) is dropped
            steps.append(Segment(nodes=tuple(step), inputs=ins, outputs=outs))
    return steps


def _release_lists(steps: list, outputs: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """For each step, the tensors whose last reader it is (never graph outputs)."""
    last = {}
    for i, s in enumerate(steps):
        for r in (s.inputs if isinstance(s, Segment) else (s.x,)):
            last[r] = i
    rel = [[] for _ in steps]
    for name, i in last.items():
        if name not in outputs:
            rel[i].append(name)
    return tuple(tuple(sorted(r)) for r in rel)


def plan_graph(model: onnx.ModelProto) -> Plan:
    """Split a model into onnxruntime segments and spliced 1x1 convolutions, in topological order.

    Parameters
    ----------
    model : onnx.ModelProto
        Any ONNX model. Constant nodes are folded into the constant table; subgraph (If/Loop/Scan)
        outer-scope reads count as dependencies.

    Returns
    -------
    Plan
        ``steps`` alternate between `Segment` and `SplicedConv`; ``unhandled`` lists the 1x1 Convs left
        to onnxruntime, with the reason.
    """
    g = model.graph
    consts, nodes = _fold_constants(g)
    inputs = tuple(i.name for i in g.input if i.name not in consts)
    outputs = tuple(o.name for o in g.output)
    order = _toposort(nodes, set(inputs) | set(consts))
    raw, unhandled = _segments(order, consts)
    steps = _finish_segments(raw, consts, outputs)
    return Plan(model=model, steps=tuple(steps), release=_release_lists(steps, outputs), inputs=inputs,
                outputs=outputs, constants=consts, unhandled=tuple(unhandled))


def _session(plan: Plan, index: int, feeds: Mapping[str, np.ndarray]):
    """onnxruntime session of segment `index`, built on first use with the fed tensors' element types."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    seg = plan.steps[index]
    key = (index, tuple(str(feeds[n].dtype) for n in seg.inputs))
    if key not in plan._sessions:
        inits = sorted(set().union(*(_node_reads(n) for n in seg.nodes)) & set(plan.constants))
        graph = helper.make_graph(
            list(seg.nodes), f"segment_{index}",
            [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(feeds[n].dtype), None)
             for n in seg.inputs],
            [onnx.ValueInfoProto(name=n) for n in seg.outputs],
            initializer=[numpy_helper.from_array(np.asarray(plan.constants[n]), n) for n in inits])
        sub = helper.make_model(graph, opset_imports=list(plan.model.opset_import),
                                ir_version=plan.model.ir_version)
        sub.functions.extend(plan.model.functions)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        plan._sessions[key] = ort.InferenceSession(sub.SerializeToString(), opts,
                                                   providers=["CPUExecutionProvider"])
    return plan._sessions[key]


def _apply_conv(conv: SplicedConv, x: np.ndarray, hook: Hook) -> np.ndarray:
    """Run the hook on one spliced layer in float32 and hand back the graph's dtype."""
    y = hook(np.asarray(x, np.float32), conv.w, conv.b, conv.stride)
    return np.asarray(y, dtype=x.dtype)


def run_plan(plan: Plan, feeds: Mapping[str, np.ndarray], hook: Hook,
             on_layer: Callable[[SplicedConv, np.ndarray, np.ndarray], None] | None = None
             ) -> dict[str, np.ndarray]:
    """Execute a plan: onnxruntime for segments, `hook` for every spliced 1x1 convolution.

    Parameters
    ----------
    plan : Plan
    feeds : mapping name -> array
        One array per graph input (``plan.inputs``).
    hook : Hook
        ``hook(x, w, b, stride) -> y`` computing a spliced layer (see `Hook`).
    on_layer : callable, optional
        Called as ``on_layer(conv, x, y)`` after each spliced layer (x, y float32 NCHW).

    Returns
    -------
    dict name -> array
        The graph outputs.
    """
    table = dict(feeds)
    for i, step in enumerate(plan.steps):
        if isinstance(step, SplicedConv):
            x = table[step.x] if step.x in table else np.asarray(plan.constants[step.x])
            table[step.y] = _apply_conv(step, x, hook)
            if on_layer is not None:
                on_layer(step, x, table[step.y])
        else:
            sub_feeds = {n: table[n] for n in step.inputs}
            outs = _session(plan, i, sub_feeds).run(list(step.outputs), sub_feeds)
            table.update(zip(step.outputs, outs))
        for name in plan.release[i]:
            table.pop(name, None)
    return {n: table[n] if n in table else np.asarray(plan.constants[n]) for n in plan.outputs}
