"""Graph splicing: run an ONNX graph with every eligible 1x1 convolution computed by a Python hook.

`plan_graph` turns a model into an ordered list of steps: *segments* (maximal runs, in topological
order, of nodes onnxruntime executes, each a self-contained sub-model) and *spliced layers* (the
eligible 1x1 convolutions, computed by a hook). `run_plan` walks the steps, feeding each one from a
table of named tensors, so an error made in one spliced layer reaches every later layer exactly as on
the chip. Works on any graph: it needs no knowledge of the operators it hands to onnxruntime.

A Conv node is *eligible* (WCC applies) by the rule trace capture uses too,
`wccsim.capture.onnx_graph.pointwise_conv`: default domain, a constant weight of shape (Cout, Cin, 1, 1),
group 1, no padding, equal strides, a constant bias or none. Every other Conv with a 1x1 kernel is run by
onnxruntime in float and listed in `Plan.unhandled` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from wccsim.capture.onnx_graph import (NotPointwise, PointwiseConv, fed_inputs, fold_constants, pointwise_conv,
                                       session)

if TYPE_CHECKING:  # onnx is an optional extra: imported by the functions that need it
    import onnx

__all__ = ["Segment", "Unhandled", "Plan", "Hook", "plan_graph", "run_plan"]

Hook = Callable[[np.ndarray, np.ndarray, "np.ndarray | None", int], np.ndarray]
"""``hook(x, w, b, stride) -> y``: x float32 (N, Cin, H, W), w (Cout, Cin), b (Cout,) or None,
stride a positive int; y float32 (N, Cout, ceil(H/stride), ceil(W/stride))."""


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
    def layers(self) -> tuple[PointwiseConv, ...]:
        """The spliced 1x1 convolutions, in execution order."""
        return tuple(s for s in self.steps if isinstance(s, PointwiseConv))


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


def _segments(order: list, consts: Mapping) -> tuple[list, list[Unhandled]]:
    """Group the ordered nodes into steps: PointwiseConv or a list of onnxruntime nodes; the 1x1 Convs left
    to onnxruntime (`wccsim.capture.onnx_graph.pointwise_conv`) with their reasons."""
    steps, unhandled, run = [], [], []
    for n in order:
        conv = pointwise_conv(n, consts)
        if isinstance(conv, NotPointwise):
            if conv.kernel_1x1:
                unhandled.append(Unhandled(n.name or n.output[0], conv.reason))
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
    if isinstance(step, PointwiseConv):
        return {step.x}
    return set().union(*(_node_reads(n) for n in step))


def _writes(step) -> set[str]:
    if isinstance(step, PointwiseConv):
        return {step.y}
    return {o for n in step for o in n.output if o}


def _finish_segments(raw: list, consts: Mapping, outputs: tuple[str, ...]) -> list:
    """Turn node lists into Segments whose inputs/outputs are the tensors crossing their boundary."""
    steps = []
    for i, step in enumerate(raw):
        if isinstance(step, PointwiseConv):
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
        ``steps`` alternate between `Segment` and `PointwiseConv`; ``unhandled`` lists the 1x1 Convs left
        to onnxruntime, with the reason.
    """
    g = model.graph
    consts, nodes = fold_constants(g)
    inputs = fed_inputs(g)
    outputs = tuple(o.name for o in g.output)
    order = _toposort(nodes, set(inputs) | set(consts))
    raw, unhandled = _segments(order, consts)
    steps = _finish_segments(raw, consts, outputs)
    return Plan(model=model, steps=tuple(steps), release=_release_lists(steps, outputs), inputs=inputs,
                outputs=outputs, constants=consts, unhandled=tuple(unhandled))


def _session(plan: Plan, index: int, feeds: Mapping[str, np.ndarray]):
    """onnxruntime session of segment `index`, built on first use with the fed tensors' element types."""
    import onnx
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
        plan._sessions[key] = session(sub.SerializeToString())
    return plan._sessions[key]


def _apply_conv(conv: PointwiseConv, x: np.ndarray, hook: Hook) -> np.ndarray:
    """Run the hook on one spliced layer in float32 and hand back the graph's dtype."""
    y = hook(np.asarray(x, np.float32), conv.w, conv.b, conv.stride)
    return np.asarray(y, dtype=x.dtype)


def run_plan(plan: Plan, feeds: Mapping[str, np.ndarray], hook: Hook,
             on_layer: Callable[[PointwiseConv, np.ndarray, np.ndarray], None] | None = None
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
        if isinstance(step, PointwiseConv):
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
