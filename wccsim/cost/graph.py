"""Where each layer's DRAM tensors come from and go to: every tensor is written once, in each stored form
its readers need, and each reader reads that form at the size it was written (docs/cost.md).

Stored forms (``a`` = the scheme's activation width, `effective_act_bits`):

- full: ``ceil(elements * a / 8)`` bytes; ZVC: the non-zeros (``round(nonzero_fraction * elements)`` at
  ``a`` bits) plus a 1-bit-per-element bitmap.
- compressed (scheme ``wcc``, ``compress_on_write``): the kept columns and bitmap of one WCC consumer
  (`wccsim.cost.selector.compression`), written by the producer for that consumer. A producer compresses
  for a WCC consumer whose input is its output alone and at its own map size; a WCC layer whose input is a
  concatenation of several producers (the joint selection needs every channel) or a resampled tensor (an
  upsample or pooling between them) compresses on read, whatever the placement, and says so (`LayerIO`).

A producer writes its output in full when any reader needs the full form (a non-WCC layer, a residual add,
a WCC layer that compresses on read) or when nothing in the workload reads it (the network output), plus
one compressed form per WCC consumer it compresses for. A layer run alone (`standalone_io`, a trace's
layer) reads its input as a producer outside would have written it and writes its output in full; so does
a workload's first layer, the network input's writer lying outside the workload.
"""

from __future__ import annotations

from dataclasses import dataclass

from wccsim.cost.selector import Compression, compression
from wccsim.cost.workload import NETWORK_INPUT, Edges, Scheme, Workload
from wccsim.hw import HwSpec, Placement
from wccsim.rules import uniform_bits
from wccsim.shape import LayerShape

__all__ = ["Stored", "LayerIO", "effective_act_bits", "runs_wcc", "stored_form", "standalone_io", "workload_io"]


@dataclass(frozen=True)
class Stored:
    """One stored form of a tensor in DRAM: payload and bitmap bytes, and the elements the payload holds."""
    payload_bytes: int
    bitmap_bytes: int
    elems: int

    @property
    def total_bytes(self) -> int:
        return self.payload_bytes + self.bitmap_bytes


@dataclass(frozen=True)
class LayerIO:
    """A layer's DRAM tensors as stored.

    ``input`` is what the layer reads per pass of its (concatenated) input, exactly what its producers
    wrote for it; ``selection`` the compression of that input when the layer runs as WCC (on the producer
    when ``selection.by_producer``); ``output_bytes`` every form of its output it writes; ``produced`` the
    compressions it runs for its consumers (their Haar, top-k and spill are booked on this layer).
    """
    input: Stored
    residual_bytes: int
    selection: Compression | None
    output_bytes: int
    produced: tuple[Compression, ...] = ()

    @property
    def run_here(self) -> tuple[Compression, ...]:
        """The selections this layer's hardware runs: its consumers' (``produced``) and its own when it
        compresses on read."""
        own = (self.selection,) if self.selection and not self.selection.by_producer else ()
        return self.produced + own


def _bytes(elems: int, bits: int) -> int:
    return -(-elems * bits // 8)


def effective_act_bits(scheme: Scheme, rate: float, act_bits: int) -> int:
    """Activation width the scheme stores: `wccsim.rules.uniform_bits` for uniform_nbit
    (``max(2, floor(rate * act_bits + 1/2))``), else act_bits."""
    return uniform_bits(rate, act_bits) if scheme is Scheme.UNIFORM_NBIT else act_bits


def runs_wcc(shape: LayerShape, scheme: Scheme) -> bool:
    """Scheme wcc compresses every dense 1x1 layer the paper quantizes (not the ``keep_fp`` ones)."""
    return scheme is Scheme.WCC and shape.is_pointwise and not shape.keep_fp


def stored_form(scheme: Scheme, elems: int, act_bits: int, nonzero_fraction: float | None) -> Stored:
    """The full (uncompressed) form of a tensor of `elems` elements under `scheme` (module docstring)."""
    if scheme is Scheme.ZVC:
        return Stored(_bytes(round(nonzero_fraction * elems), act_bits), _bytes(elems, 1), elems)
    return Stored(_bytes(elems, act_bits), 0, elems)


def _compressed(sel: Compression) -> Stored:
    return Stored(sel.payload_bytes, sel.bitmap_bytes, sel.kept_elems)


def standalone_io(shape: LayerShape, hw: HwSpec, scheme: Scheme, rate: float, act_bits: int,
                  nonzero_fraction: float | None) -> LayerIO:
    """`LayerIO` of a layer run alone: its input as a producer outside writes it, its output in full."""
    a = effective_act_bits(scheme, rate, act_bits)
    on_write = hw.placement is Placement.COMPRESS_ON_WRITE
    sel = compression(shape, hw, rate, a, on_write) if runs_wcc(shape, scheme) else None
    full = stored_form(scheme, shape.cin * shape.h * shape.w, a, nonzero_fraction)
    return LayerIO(_compressed(sel) if sel and on_write else full, 0, sel,
                   _bytes(shape.cout * shape.ho * shape.wo, a))


def workload_io(wl: Workload, hw: HwSpec, scheme: Scheme, rate: float, act_bits: int,
                nonzero_fraction: float | None) -> tuple[LayerIO, ...]:
    """`LayerIO` of every layer of `wl` from its edges (rules in the module docstring)."""
    a = effective_act_bits(scheme, rate, act_bits)
    edges = wl.layer_edges()
    by_name = {s.name: s for s in wl.layers}
    maps = {NETWORK_INPUT: wl.input_hw} | {s.name: (s.ho, s.wo) for s in wl.layers}

    def full(name: str) -> Stored:
        s = by_name.get(name)
        elems = s.cout * s.ho * s.wo if s else wl.layers[0].cin * wl.input_hw[0] * wl.input_hw[1]
        return stored_form(scheme, elems, a, nonzero_fraction)

    def by_producer(s: LayerShape, e: Edges) -> bool:
        return (hw.placement is Placement.COMPRESS_ON_WRITE and len(e.inputs) == 1
                and maps[e.inputs[0]] == (s.h, s.w))

    on_write = [runs_wcc(s, scheme) and by_producer(s, e) for s, e in zip(wl.layers, edges)]
    full_readers = {s.name: 0 for s in wl.layers}
    for e, w in zip(edges, on_write):
        for name in e.inputs if not w else ():
            full_readers[name] = full_readers.get(name, 0) + 1
        if e.residual:
            full_readers[e.residual] += 1
    sels = [compression(s, hw, rate, a, w, full(e.inputs[0]).total_bytes if w and full_readers.get(e.inputs[0])
                        else 0) if runs_wcc(s, scheme) else None
            for s, e, w in zip(wl.layers, edges, on_write)]
    produced = {s.name: [] for s in wl.layers}
    for e, sel in zip(edges, sels):
        if sel and sel.by_producer and e.inputs[0] in produced:
            produced[e.inputs[0]].append(sel)
    out = []
    for s, e, sel in zip(wl.layers, edges, sels):
        forms = [full(n) for n in e.inputs]
        read = _compressed(sel) if sel and sel.by_producer else Stored(
            sum(f.payload_bytes for f in forms), sum(f.bitmap_bytes for f in forms), sum(f.elems for f in forms))
        writes_full = full_readers[s.name] > 0 or not produced[s.name]  # a reader needs it, or none reads it
        out.append(LayerIO(read, full(e.residual).total_bytes if e.residual else 0, sel,
                           full(s.name).total_bytes * writes_full + sum(c.stored_bytes for c in produced[s.name]),
                           tuple(produced[s.name])))
    return tuple(out)
