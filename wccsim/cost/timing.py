"""Cycles of one layer: MAC array by dataflow, Haar and top-k units, DRAM; the bound.

MAC array (``compute_cycles``): the SCALE-Sim (v2 / 3.0.0) mapping. A GEMM with ``m`` streamed columns,
reduction ``k`` and ``n`` outputs is cut into folds; each fold (R x C array) loads the stationary operand
(R cycles; none for output-stationary), streams the other through the skewed pipeline and drains:

- weight-stationary: rows hold k, cols hold n, m streams: ``ceil(k/R) * ceil(n/C) * (2R + C + m - 2)``
- input-stationary: rows hold k, cols hold m, n streams: ``ceil(k/R) * ceil(m/C) * (2R + C + n - 2)``
- output-stationary: rows hold m, cols hold n, k streams: ``ceil(m/R) * ceil(n/C) * (R + C + k - 2)``

times ``groups`` (a depthwise layer is ``cin`` tiny GEMMs, as SCALE-Sim maps it: pessimistic for NPUs with
depthwise engines). These are cycle counts; SCALE-Sim 3.0.0's COMPUTE_REPORT "Total Cycles" is the index
of the last busy cycle counted from 0, exactly one less, on all 90 cases of tests/data/scalesim_golden.json
(3 arrays x 3 dataflows x 10 GEMMs; docs/validation.md).

Haar unit: one transform of ``channels`` maps (forward over a WCC layer's ``cin``, inverse over its ``cout``)
is ``channels * P * (1 + 1/4 + ...)`` elements at ``haar.elems_per_cycle``. Top-k unit: the energy of
``cin * P`` coefficients at ``topk.elems_per_cycle``, plus one pass over the P positions to select
(``threshold`` mode: two, histogram then select). Which layer's hardware runs them depends on the placement
(`wccsim.cost.selector`); a layer's Haar and top-k cycles are the sums over what its units run.
DRAM: ``ceil(bytes / dram.bandwidth_bytes_per_cycle)``. The units are pipelined with double-buffered SRAMs,
so the layer takes the maximum of the four; it is ``memory``-bound when DRAM is that maximum.
"""

from __future__ import annotations

import math

from wccsim.cost.workload import Gemm
from wccsim.hw import DramSpec, HaarSpec, MacSpec, TopkMode, TopkSpec
from wccsim.rules import ARRAY_MAPPING, level_sum

__all__ = ["compute_cycles", "haar_unit_cycles", "topk_cycles", "memory_cycles", "bound"]

def compute_cycles(gemm: Gemm, mac: MacSpec) -> int:
    """MAC array cycles of `gemm` on a rows x cols array with `mac.dataflow` (formula in the module doc)."""
    mapping = ARRAY_MAPPING[mac.dataflow]
    dims = {"m": gemm.m, "k": gemm.k, "n": gemm.n}
    row_folds, col_folds = mapping.folds(dims, mac.rows, mac.cols)
    r, c = mac.rows, mac.cols
    return gemm.groups * row_folds * col_folds * (mapping.preload * r + r + c + dims[mapping.streamed] - 2)


def haar_unit_cycles(channels: int, positions: int, haar: HaarSpec) -> int:
    """Cycles of one Haar transform (forward or inverse) of `channels` maps of `positions` padded positions."""
    return math.ceil(channels * positions * level_sum(haar.levels) / haar.elems_per_cycle)


def topk_cycles(cin: int, positions: int, topk: TopkSpec) -> int:
    """Top-k unit cycles: energy of cin * P coefficients, then 1 (2 for threshold) pass over P positions."""
    passes = 2 if topk.mode is TopkMode.THRESHOLD else 1
    return math.ceil(cin * positions / topk.elems_per_cycle) + passes * math.ceil(positions / topk.elems_per_cycle)


def memory_cycles(dram_bytes: int, dram: DramSpec) -> int:
    """DRAM transfer cycles at `dram.bandwidth_bytes_per_cycle`."""
    return math.ceil(dram_bytes / dram.bandwidth_bytes_per_cycle)


def bound(compute: int, haar: int, topk: int, memory: int) -> tuple[int, str]:
    """(layer cycles, 'compute' or 'memory'): the slowest of the pipelined units."""
    on_chip = max(compute, haar, topk)
    return max(on_chip, memory), ("memory" if memory > on_chip else "compute")
