"""Energy of one layer: operation counts x per-operation energies, access counts x per-access energies.

All per-action energies come from the hardware YAML (``energy``, ``sram.*.{read,write}_energy_pj``,
``dram.energy_pj_per_byte``); the shipped defaults are 45 nm figures from M. Horowitz, "Computing's energy
problem (and what we can do about it)", ISSCC 2014 (8-bit add 0.03 pJ, 32-bit add 0.1 pJ, 8-bit mult
0.2 pJ, 32-bit mult 3.1 pJ, 64-bit SRAM read 10 pJ (8 KB) .. 100 pJ (1 MB), DRAM 1.3-2.6 nJ per 64 bits).

- MAC: executed MACs x ``mac_pj`` x (act_bits * weight_bits) / (YAML act_bits * weight_bits): the YAML
  figure is for the configured widths and a multiplier's energy scales about with the product of widths.
- Haar: 2 adds per element per level (butterfly rows then columns), forward and inverse, x ``add_pj``.
- Top-k: ``metric_pj`` per coefficient folded into its position's energy, ``compare_pj`` per position per
  selection pass.
- Requantization: ``requant_pj`` per output element.
- Band rescale (per_level / per_band coefficient scales): ``requant_pj`` per multiply (fixed_point's
  16 x 32-bit multiplier or float, bounded by the 32-bit figure), ``add_pj`` per shift (pow2: a shifter
  costs about an add).
- SRAM: bytes / (word_bits / 8) accesses (rounded up) x the buffer's read or write energy.
- DRAM: bytes x ``energy_pj_per_byte``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wccsim.cost.traffic import Traffic
from wccsim.cost.selector import Compression
from wccsim.hw import EnergySpec, HwSpec, SramSpec

__all__ = ["OpCounts", "Energy", "layer_energy", "selector_pj"]


@dataclass(frozen=True)
class OpCounts:
    """Datapath operations of one layer."""
    macs: int
    act_bits: int
    weight_bits: int
    haar_adds: int
    topk_metric_ops: int
    topk_compares: int
    requants: int
    rescale_mults: int
    rescale_shifts: int


@dataclass(frozen=True)
class Energy:
    """Energy of one layer by component, in pJ (``sram_pj`` is the sum of the three buffers')."""
    mac_pj: float
    haar_pj: float
    topk_pj: float
    requant_pj: float
    rescale_pj: float
    sram_pj: float
    ifmap_sram_pj: float
    weight_sram_pj: float
    ofmap_sram_pj: float
    dram_pj: float

    @property
    def total_pj(self) -> float:
        return (self.mac_pj + self.haar_pj + self.topk_pj + self.requant_pj + self.rescale_pj + self.sram_pj
                + self.dram_pj)


def _sram_pj(sram: SramSpec, read_bytes: int, write_bytes: int) -> float:
    word = sram.word_bits / 8
    return math.ceil(read_bytes / word) * sram.read_energy_pj + math.ceil(write_bytes / word) * sram.write_energy_pj


def layer_energy(ops: OpCounts, traffic: Traffic, hw: HwSpec) -> Energy:
    """Energy of one layer from its operation counts and traffic (rules in the module docstring)."""
    e, q = hw.energy, hw.datapath.quant
    scale = (ops.act_bits * ops.weight_bits) / (q.act_bits * q.weight_bits)
    ifmap = _sram_pj(hw.ifmap_sram, traffic.ifmap_sram_read_bytes, traffic.ifmap_sram_write_bytes)
    weight = _sram_pj(hw.weight_sram, traffic.weight_sram_read_bytes, traffic.weight_sram_write_bytes)
    ofmap = _sram_pj(hw.ofmap_sram, traffic.ofmap_sram_read_bytes, traffic.ofmap_sram_write_bytes)
    dram = (traffic.dram_read_bytes + traffic.dram_write_bytes) * hw.dram.energy_pj_per_byte
    return Energy(ops.macs * e.mac_pj * scale, ops.haar_adds * e.add_pj,
                  _topk_pj(ops.topk_metric_ops, ops.topk_compares, e),
                  ops.requants * e.requant_pj, ops.rescale_mults * e.requant_pj + ops.rescale_shifts * e.add_pj,
                  ifmap + weight + ofmap, ifmap, weight, ofmap, dram)


def _topk_pj(metric_ops: int, compares: int, e: EnergySpec) -> float:
    return metric_ops * e.metric_pj + compares * e.compare_pj


def selector_pj(sel: Compression, e: EnergySpec) -> float:
    """Haar-forward and top-k energy of one compression (wherever it runs), in pJ."""
    return sel.haar_adds * e.add_pj + _topk_pj(sel.metric_ops, sel.compares, e)
