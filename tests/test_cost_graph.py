"""Bandwidth that adds up: every tensor is written once, in each stored form its readers need, and each
reader reads that form at the size it was written; a run's totals are the sums over tensors.

Expected sizes are derived here from the shapes (elements x bits, kept positions by the rule), not taken
from the model, for both placements and every scheme."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wccsim.cost import total_cost, workload_cost
from wccsim.cost.workload import NETWORK_INPUT, load_workload
from wccsim.errors import InputError
from wccsim.hw import Normalize, Placement, TopkMode, load_hw
from wccsim.rules import kept_positions

ROOT = Path(__file__).resolve().parents[1]
_HW = load_hw(ROOT / "hw_configs" / "edge_npu.yaml")
# the hand-computed widths below are per_level Haar's (11-bit coefficients); edge_npu.yaml is deferred
EDGE = dataclasses.replace(_HW, datapath=dataclasses.replace(
    _HW.datapath, haar=dataclasses.replace(_HW.datapath.haar, normalize=Normalize.PER_LEVEL)))
CITY = ROOT / "workloads" / "deeplabv3plus_mnv2_cityscapes.csv"
NZF = 0.375
SCHEMES = [("int8", 1.0), ("uniform_nbit", 0.5), ("zvc", 1.0), ("wcc", 0.5), ("wcc", 0.125)]

# a residual add (c adds a) and a concatenation (e reads c and d); e is a WCC layer with two producers
SMALL = """# network: small
# input: 16x24
name,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp,inputs,residual
a,conv,3,8,3,1,1,16,24,1,0,,
b,conv1x1,8,8,1,1,1,16,24,1,0,,
c,conv1x1,8,8,1,1,1,16,24,1,0,b,a
d,dwconv,8,8,3,1,8,16,24,1,0,,
e,conv1x1,16,4,1,1,1,16,24,1,0,c;d,
"""


def _hw(placement, mode=TopkMode.EXACT, hw=EDGE):
    dp = hw.datapath
    return dataclasses.replace(hw, placement=placement, datapath=dataclasses.replace(
        dp, topk=dataclasses.replace(dp.topk, mode=mode)))


def _full(elems, scheme, rate):
    """Bytes of a tensor stored uncompressed under `scheme` at 8-bit activations."""
    if scheme == "zvc":
        return -(-round(NZF * elems) * 8 // 8) + -(-elems // 8)
    bits = max(2, int(rate * 8 + 0.5)) if scheme == "uniform_nbit" else 8
    return -(-elems * bits // 8)


def _compressed(s, rate):
    """Kept columns (cin x k at 8 bits) + a P-bit bitmap of WCC layer `s` (3 Haar levels: pad to 8)."""
    p = (-(-s.ho // 8) * 8) * (-(-s.wo // 8) * 8)
    return s.cin * kept_positions(rate, p) + -(-p // 8)


def _expected(wl, scheme, rate, placement):
    """(bytes each layer writes of its output, bytes each layer reads per pass of its input, residual)."""
    edges, by_name = wl.layer_edges(), {s.name: s for s in wl.layers}
    maps = {NETWORK_INPUT: wl.input_hw} | {s.name: (s.ho, s.wo) for s in wl.layers}

    def full(name):
        s = by_name.get(name)
        elems = s.cout * s.ho * s.wo if s else wl.layers[0].cin * wl.input_hw[0] * wl.input_hw[1]
        return _full(elems, scheme, rate)

    def compressed_by_producer(s, e):
        return (scheme == "wcc" and s.is_pointwise and not s.keep_fp and placement is Placement.COMPRESS_ON_WRITE
                and len(e.inputs) == 1 and maps[e.inputs[0]] == (s.h, s.w))

    reads, full_readers, compressed = {}, {n: [] for n in by_name}, {n: [] for n in by_name}
    for s, e in zip(wl.layers, edges):
        if compressed_by_producer(s, e):
            reads[s.name] = _compressed(s, rate)
            compressed.setdefault(e.inputs[0], []).append(s.name)
        else:
            reads[s.name] = sum(full(n) for n in e.inputs)
            for n in e.inputs:
                full_readers.setdefault(n, []).append(s.name)
        if e.residual:
            full_readers[e.residual].append(s.name)
    full_written = {n: full(n) if full_readers[n] or not compressed[n] else 0 for n in by_name}
    writes = {n: full_written[n] + sum(reads[c] for c in compressed[n]) for n in by_name}
    residual = {s.name: full(e.residual) if e.residual else 0 for s, e in zip(wl.layers, edges)}
    return writes, reads, residual, compressed, full_readers, full


def _check_conservation(wl, hw, scheme, rate):
    costs = workload_cost(wl, hw, scheme, rate, 8, 8, NZF if scheme == "zvc" else None)
    writes, reads, residual, compressed, full_readers, full = _expected(wl, scheme, rate, hw.placement)
    by_name = {c.name: c for c in costs}
    # per tensor, from the rows: the compressed forms are what those readers read; the rest is the full
    # tensor, written when a reader needs it (whose read of it the expectations below check) or none reads it
    for name, c in by_name.items():
        full_part = c.output_write_bytes - sum(by_name[r].input_write_bytes for r in compressed[name])
        assert full_part == (full(name) if full_readers[name] or not compressed[name] else 0)
    assert {c.name: c.output_write_bytes for c in costs} == writes
    assert {c.name: c.input_write_bytes for c in costs} == reads
    assert {c.name: c.residual_read_bytes for c in costs} == residual
    for c in costs:  # each pass reads the input as written
        assert c.act_read_bytes + c.bitmap_bytes == c.act_fetches * c.input_write_bytes
    tot = total_cost(costs)
    assert tot["dram_write_bytes"] == sum(writes.values()) + tot["topk_spill_write_bytes"]
    assert tot["dram_read_bytes"] == (sum(c.act_fetches * c.input_write_bytes for c in costs)
                                      + tot["weight_read_bytes"] + sum(residual.values())
                                      + tot["topk_spill_read_bytes"])
    return costs


@pytest.mark.parametrize("placement", list(Placement))
@pytest.mark.parametrize("scheme,rate", SCHEMES)
def test_small_residual_and_concat_workload_conserves_bytes(tmp_path, placement, scheme, rate):
    p = tmp_path / "small.csv"
    p.write_text(SMALL)
    wl = load_workload(p)
    costs = {c.name: c for c in _check_conservation(wl, _hw(placement), scheme, rate)}
    on_write = placement is Placement.COMPRESS_ON_WRITE and scheme == "wcc"
    a_full, c_full = _full(8 * 16 * 24, scheme, rate), _full(8 * 16 * 24, scheme, rate)
    # by hand: a feeds b (compressed on write) and c's residual add (full); c feeds d and e (full)
    b_in = _compressed(wl.layers[1], rate) if on_write else a_full
    assert costs["a"].output_write_bytes == a_full + (b_in if on_write else 0)
    assert costs["b"].input_write_bytes == b_in and costs["c"].residual_read_bytes == a_full
    assert costs["e"].input_write_bytes == c_full + _full(8 * 16 * 24, scheme, rate)
    assert costs["c"].output_write_bytes == c_full  # d and e read it in full (e's selection needs d too)
    assert costs["e"].input_haar_cycles == 0  # two producers: e compresses on read whatever the placement


@pytest.mark.parametrize("placement", list(Placement))
@pytest.mark.parametrize("mode", [TopkMode.EXACT, TopkMode.TILED])
@pytest.mark.parametrize("scheme,rate", SCHEMES)
def test_cityscapes_every_tensor_is_written_once_and_read_at_that_size(placement, mode, scheme, rate):
    _check_conservation(load_workload(CITY), _hw(placement, mode), scheme, rate)


def test_old_workloads_without_edges_read_the_layer_before(tmp_path):
    p = tmp_path / "chain.csv"
    p.write_text("# input: 16x24\nname,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp\n"
                 "a,conv,3,8,3,1,1,16,24,1,0\nb,conv1x1,8,8,1,1,1,16,24,1,0\n")
    wl = load_workload(p)
    assert wl.edges == () and [e.inputs for e in wl.layer_edges()] == [(NETWORK_INPUT,), ("a",)]
    _check_conservation(wl, EDGE, "wcc", 0.25)


@pytest.mark.parametrize("cells,field", [
    ("x,", "inputs"), ("a;input,", "inputs"), (",b", "residual"), (",a", "residual"), ("c,", "inputs"),
])
def test_bad_edges_one_line_error(tmp_path, cells, field):
    p = tmp_path / "bad.csv"
    p.write_text("# input: 16x24\nname,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp,inputs,residual\n"
                 f"a,conv,3,8,3,1,1,16,24,1,0,,\nb,conv1x1,8,4,1,1,1,16,24,1,0,{cells}\nc,conv1x1,4,4,1,1,1,16,24,1,0,,\n")
    with pytest.raises(InputError) as e:
        load_workload(p)
    assert str(e.value).startswith(f"{p}: line 4: {field}: expected ")


def test_a_spilling_producer_rereads_the_full_tensor_it_writes_anyway(tmp_path):
    p = tmp_path / "small.csv"
    p.write_text(SMALL)
    wl = load_workload(p)
    hw = _hw(Placement.COMPRESS_ON_WRITE, hw=dataclasses.replace(
        EDGE, ofmap_sram=dataclasses.replace(EDGE.ofmap_sram, size_bytes=1024)))
    costs = {c.name: c for c in _check_conservation(wl, hw, "wcc", 0.25)}
    positions, energies = 16 * 24, 16 * 24 * (2 * 11 + 3) // 8  # l2 of 11-bit coefficients over 8 channels
    assert energies > 1024
    # b's input: a writes it in full anyway (c's residual), so the spill reads that back (and the energies)
    b = costs["b"]
    assert (b.topk_spill, b.topk_spill_write_bytes, b.topk_spill_read_bytes) == (1, energies,
                                                                                  8 * 16 * 24 + energies)
    # c's input: b writes only the compressed form, so the spill writes and reads the coefficients
    c = costs["c"]
    assert (c.topk_spill_write_bytes, c.topk_spill_read_bytes) == (8 * positions + energies,) * 2
    # booked on the producers' DRAM traffic
    assert costs["a"].dram_write_bytes == costs["a"].output_write_bytes + energies
    assert costs["b"].dram_write_bytes == costs["b"].output_write_bytes + 8 * positions + energies
