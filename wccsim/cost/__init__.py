"""Cost model: BOPs, memory traffic, cycles and energy of a layer from its shape and a hardware spec.

Everything runs from shapes alone (no trace): ``layer_cost(shape, hw, scheme, rate, act_bits, weight_bits)``
returns a frozen `LayerCost` whose field names carry their units; ``workload_cost`` does a whole network.
Schemes: ``wcc`` (1x1 layers compressed at `rate`, other layers quantized), ``int8`` (plain quantization at
act_bits), ``uniform_nbit`` (activations at ``max(2, floor(rate * act_bits + 1/2))`` bits, the paper's equal-bit
baseline) and ``zvc`` (zero-value compression with a bitmap; needs the measured `nonzero_fraction`, see
`nonzero_fraction`). Layers marked ``keep_fp`` run as plain quantized layers on the hardware (the paper
keeps them in float; its BOPs count follows ``fp_layers``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from wccsim.cost.bops import hw_bops, paper_bops
from wccsim.cost.energy import OpCounts, layer_energy, selector_pj
from wccsim.cost.graph import LayerIO, effective_act_bits, runs_wcc, standalone_io, workload_io
from wccsim.cost.timing import bound, compute_cycles, haar_unit_cycles, memory_cycles
from wccsim.cost.traffic import Traffic, layer_traffic, tensor_bytes
from wccsim.cost.workload import FpLayers, Scheme, Workload, layer_gemm
from wccsim.shape import LayerShape
from wccsim.errors import InputError
from wccsim.hw import CoefGranularity, CoefScale, DatapathSpec, HwSpec, Metric, Normalize
from wccsim.rules import band_groups, band_levels, check_bits, check_rate, level_sum

__all__ = ["LayerCost", "IDENTITY", "COST_COLUMNS", "SUMMED", "cost_fields", "layer_cost", "workload_cost", "total_cost", "nonzero_fraction", "Scheme"]


@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer under one (hardware, scheme, rate, bits). Units are in the field names.

    The fields after `IDENTITY` are the cost columns of every result table, in this order (`COST_COLUMNS`);
    the numeric ones are summed over layers (`SUMMED`). A new cost term is one new field here.
    """
    name: str
    scheme: str
    rate: float
    act_bits: int
    weight_bits: int
    macs: int                  # MACs the array executes (k kept columns for WCC)
    bops: float                # the paper's count (bops.paper_bops)
    bops_hw: float             # hardware-realistic count (bops.hw_bops)
    dram_read_bytes: int
    dram_write_bytes: int
    sram_read_bytes: int       # all three buffers
    sram_write_bytes: int
    ifmap_sram_read_bytes: int
    ifmap_sram_write_bytes: int
    weight_sram_read_bytes: int
    weight_sram_write_bytes: int
    ofmap_sram_read_bytes: int
    ofmap_sram_write_bytes: int
    act_read_bytes: int        # activation payload read from DRAM (re-reads and passes included)
    weight_read_bytes: int
    bitmap_bytes: int          # bitmap metadata read from DRAM (WCC compress_on_write, ZVC)
    coef_scale_bytes: int      # coefficient-quantizer records of the layer (stages 4b, 5b; WCC only)
    residual_read_bytes: int   # residual tensor read for a fused add
    output_write_bytes: int    # every stored form of the output (full, and compressed per WCC consumer)
    act_fetches: int           # passes over the input: tiling re-reads x top-k passes
    input_write_bytes: int     # the input as its producers wrote it (= what one pass reads)
    topk_buffer_bytes: int     # what this layer's top-k selector holds before it can emit (WCC)
    topk_spill: int            # 1 when that exceeds the SRAM that holds it
    topk_spill_write_bytes: int  # coefficients and energies its spill writes and reads, wherever it runs
    topk_spill_read_bytes: int   # (a second pass over the input on read is in act_fetches)
    input_haar_cycles: int     # forward Haar and top-k run by the producer for this input (compress_on_write)
    input_topk_cycles: int
    input_dram_bytes: int      # DRAM the producer moves for this input: its write, and the spill it runs
    input_energy_pj: float     # energy of that DRAM traffic, and of the Haar and top-k the producer runs
    cycles: int
    compute_cycles: int
    memory_cycles: int
    haar_cycles: int           # the Haar unit of this layer's hardware: its inverse, forwards it runs
    topk_cycles: int           # the top-k unit of this layer's hardware
    bound: str                 # 'compute' or 'memory'
    tiling: str
    energy_pj: float
    energy_mac_pj: float
    energy_haar_pj: float
    energy_topk_pj: float
    energy_requant_pj: float
    energy_rescale_pj: float   # band rescale (stage 5b), one per accumulator of a kept column
    energy_sram_pj: float
    energy_ifmap_sram_pj: float
    energy_weight_sram_pj: float
    energy_ofmap_sram_pj: float
    energy_dram_pj: float


IDENTITY = ("name", "scheme", "rate", "act_bits", "weight_bits")
COST_COLUMNS = tuple(f.name for f in dataclasses.fields(LayerCost) if f.name not in IDENTITY)
SUMMED = tuple(f.name for f in dataclasses.fields(LayerCost) if f.name in COST_COLUMNS and f.type in ("int", "float"))
# The byte counts, input passes and tiling come straight from `Traffic` (weight fetches stay internal).
_TRAFFIC_FIELDS = tuple(f.name for f in dataclasses.fields(Traffic) if f.name in COST_COLUMNS)


def cost_fields(cost: LayerCost) -> dict:
    """The cost columns of one layer as plain Python ints, floats and strings (a table row's cost part)."""
    cast = {"int": int, "float": float, "str": str}
    return {f.name: cast[f.type](getattr(cost, f.name)) for f in dataclasses.fields(LayerCost)
            if f.name in COST_COLUMNS}


def nonzero_fraction(x, scale: float | None = None) -> float:
    """Fraction of non-zero activations, the input of the ZVC baseline.

    Parameters
    ----------
    x : array_like
        Activations (any shape), e.g. a trace's ``<layer>.x`` (N, C, H, W) float32.
    scale : float, optional
        Quantization step; when given, values with ``|x| < scale / 2`` count as zero (they quantize to 0).

    Returns
    -------
    float in [0, 1]
    """
    x = np.asarray(x)
    if x.size == 0:
        raise InputError("nonzero_fraction", "x", "a non-empty array", "an empty array")
    nz = np.count_nonzero(x) if scale is None else np.count_nonzero(np.abs(x) >= scale / 2)
    return float(nz) / x.size


def _check(shape, scheme, rate, act_bits, weight_bits, nzf) -> Scheme:
    try:
        scheme = Scheme(scheme)
    except ValueError:
        raise InputError("layer_cost", "scheme", "one of " + ", ".join(s.value for s in Scheme),
                         repr(scheme)) from None
    check_rate(rate, "layer_cost", "rate")
    check_bits(act_bits, "layer_cost", "act_bits")
    check_bits(weight_bits, "layer_cost", "weight_bits")
    if scheme is Scheme.ZVC and (nzf is None or not 0 <= nzf <= 1):
        raise InputError("layer_cost", "nonzero_fraction", "a measured fraction in [0, 1] for scheme zvc", nzf)
    return scheme


def layer_cost(shape: LayerShape, hw: HwSpec, scheme: Scheme | str, rate: float, act_bits: int,
               weight_bits: int, nonzero_fraction: float | None = None,
               fp_layers: FpLayers = FpLayers.EXCLUDE, io: LayerIO | None = None) -> LayerCost:
    """Cost of one layer from its shape alone.

    Parameters
    ----------
    shape : LayerShape
    hw : HwSpec
    scheme : Scheme or {'wcc', 'int8', 'uniform_nbit', 'zvc'}
    rate : float
        WCC kept fraction in (0, 1]; for uniform_nbit the rate whose equal bit rate sets the stored bits
        (`wccsim.rules.uniform_bits`); ignored by int8 and zvc.
    act_bits, weight_bits : int
        Widths in 2..16.
    nonzero_fraction : float, optional
        Measured fraction of non-zero input activations (required for zvc).
    fp_layers : FpLayers
        How the paper's BOPs count treats ``keep_fp`` layers.
    io : LayerIO, optional
        The layer's tensors in its network (`wccsim.cost.graph.workload_io`); default: the layer alone
        (`standalone_io`: its input as a producer outside writes it, its output in full).

    Returns
    -------
    LayerCost
    """
    scheme = _check(shape, scheme, rate, act_bits, weight_bits, nonzero_fraction)
    dp = hw.datapath
    wcc = runs_wcc(shape, scheme)
    a = effective_act_bits(scheme, rate, act_bits)
    io = io or standalone_io(shape, hw, scheme, rate, act_bits, nonzero_fraction)
    gemm = layer_gemm(shape, shape.wcc_kept(rate, dp.haar.levels) if wcc else None)
    tr = layer_traffic(tensor_bytes(shape, io, weight_bits), gemm, hw, wcc, weight_bits)
    haar_c = (_inverse_haar_cycles(shape, hw) if wcc else 0) + sum(c.haar_cycles for c in io.run_here)
    topk_c = sum(c.topk_cycles for c in io.run_here)
    comp_c = compute_cycles(gemm, dp.mac)
    mem_c = memory_cycles(tr.dram_read_bytes + tr.dram_write_bytes, hw.dram)
    cycles, bnd = bound(comp_c, haar_c, topk_c, mem_c)
    en = layer_energy(_op_counts(shape, io, hw, wcc, gemm.macs, a, weight_bits), tr, hw)
    growth = 2 if dp.haar.normalize is Normalize.DEFERRED else 1
    return LayerCost(
        name=shape.name, scheme=scheme.value, rate=float(rate), act_bits=a, weight_bits=weight_bits,
        macs=gemm.macs,
        bops=paper_bops(shape, scheme is Scheme.WCC, rate, a, weight_bits, fp_layers, dp.haar.levels),
        bops_hw=hw_bops(shape, wcc, rate, a, weight_bits, dp.haar.levels, growth, dp.mac.acc_bits,
                        dp.topk.metric is Metric.L2),
        **{f: getattr(tr, f) for f in _TRAFFIC_FIELDS}, coef_scale_bytes=coef_record_bytes(dp) if wcc else 0,
        **_selection_fields(io, hw),
        cycles=cycles, compute_cycles=comp_c, memory_cycles=mem_c,
        haar_cycles=haar_c, topk_cycles=topk_c, bound=bnd, energy_pj=en.total_pj,
        **{f"energy_{f.name}": getattr(en, f.name) for f in dataclasses.fields(en)})


# Bytes of one scale record per `CoefScale`: stage 4b (int32 multiplier + shift byte; a shift byte; a float32)
# and stage 5b (16-bit multiplier + shift byte; a shift byte; a float32).
_REQUANT_RECORD_BYTES = {CoefScale.FIXED_POINT: 5, CoefScale.POW2: 1, CoefScale.FLOAT: 4}
_RESCALE_RECORD_BYTES = {CoefScale.FIXED_POINT: 3, CoefScale.POW2: 1, CoefScale.FLOAT: 4}


def coef_record_bytes(dp: DatapathSpec) -> int:
    """Bytes of a WCC layer's coefficient-quantizer records: one stage-4b record per distinct (scale group,
    Haar level units) pair (levels share units with per_level Haar, not with deferred), plus one stage-5b
    record per group when there is more than one."""
    levels = dp.haar.levels
    groups = band_groups(levels, dp.coef.granularity)
    units = band_levels(levels) if dp.haar.normalize is Normalize.DEFERRED else np.zeros_like(groups)
    n_4b = len(set(zip(groups.tolist(), units.tolist())))
    n_5b = 0 if dp.coef.granularity is CoefGranularity.PER_TENSOR else int(groups.max()) + 1
    return n_4b * _REQUANT_RECORD_BYTES[dp.coef.scale] + n_5b * _RESCALE_RECORD_BYTES[dp.coef.scale]


def _inverse_haar_cycles(shape: LayerShape, hw: HwSpec) -> int:
    haar = hw.datapath.haar
    hp, wp = shape.wcc_grid(haar.levels)
    return haar_unit_cycles(shape.cout, hp * wp, haar)


def _op_counts(shape: LayerShape, io: LayerIO, hw: HwSpec, wcc: bool, macs: int, act_bits: int,
               weight_bits: int) -> OpCounts:
    """Datapath operations on this layer's hardware: MACs, Haar butterfly adds (2 per element per level:
    the inverse on cout channels of a WCC layer, the forward of every selection run here), top-k metric
    ops and compares of those selections, one requantization per output, one band rescale per accumulator
    of a kept column (``macs / cin``) when the coefficient scales differ by band (shifts with ``pow2``)."""
    levels = hw.datapath.haar.levels
    hp, wp = shape.wcc_grid(levels)
    inverse = round(2 * level_sum(levels) * shape.cout * hp * wp) if wcc else 0
    here = io.run_here
    coef = hw.datapath.coef
    rescales = macs // shape.cin if wcc and coef.granularity is not CoefGranularity.PER_TENSOR else 0
    return OpCounts(macs, act_bits, weight_bits, inverse + sum(c.haar_adds for c in here),
                    sum(c.metric_ops for c in here), sum(c.compares for c in here),
                    shape.cout * shape.ho * shape.wo,
                    0 if coef.scale is CoefScale.POW2 else rescales, rescales if coef.scale is CoefScale.POW2 else 0)


def _selection_fields(io: LayerIO, hw: HwSpec) -> dict:
    """The write side of the layer's input and its top-k selection, wherever that runs (the producer's
    share is booked on the producer in a workload, and only reported here in a layer run alone)."""
    sel = io.selection
    dram_pj = hw.dram.energy_pj_per_byte
    fields = dict(input_write_bytes=io.input.total_bytes, topk_buffer_bytes=0, topk_spill=0,
                  topk_spill_write_bytes=0, topk_spill_read_bytes=0, input_haar_cycles=0, input_topk_cycles=0,
                  input_dram_bytes=io.input.total_bytes, input_energy_pj=io.input.total_bytes * dram_pj)
    if sel is None:
        return fields
    fields.update(topk_buffer_bytes=sel.buffer_bytes, topk_spill=int(sel.spill),
                  topk_spill_write_bytes=sel.spill_write_bytes, topk_spill_read_bytes=sel.spill_read_bytes)
    if sel.by_producer:
        dram = sel.stored_bytes + sel.spill_write_bytes + sel.spill_read_bytes
        fields.update(input_haar_cycles=sel.haar_cycles, input_topk_cycles=sel.topk_cycles,
                      input_dram_bytes=io.input.total_bytes + sel.spill_write_bytes + sel.spill_read_bytes,
                      input_energy_pj=selector_pj(sel, hw.energy) + dram * dram_pj)
    return fields


def workload_cost(wl: Workload, hw: HwSpec, scheme: Scheme | str, rate: float, act_bits: int, weight_bits: int,
                  nonzero_fraction: float | None = None) -> list[LayerCost]:
    """`layer_cost` of every layer of `wl`, in order, each with its tensors in the workload's graph
    (`wccsim.cost.graph.workload_io`: every tensor written once, read by its consumers at that size)."""
    scheme = _check(wl.layers[0], scheme, rate, act_bits, weight_bits, nonzero_fraction)
    ios = workload_io(wl, hw, scheme, rate, act_bits, nonzero_fraction)
    return [layer_cost(s, hw, scheme, rate, act_bits, weight_bits, nonzero_fraction, wl.fp_layers, io)
            for s, io in zip(wl.layers, ios)]


def total_cost(costs: list[LayerCost]) -> dict:
    """Sum of the additive fields over layers (layers run one after another), plus the count of
    memory-bound layers."""
    out = {f: sum(getattr(c, f) for c in costs) for f in SUMMED}
    out["memory_bound_layers"] = sum(c.bound == "memory" for c in costs)
    out["layers"] = len(costs)
    return out
