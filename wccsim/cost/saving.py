"""The DRAM saving of WCC over int8 on a workload, per placement and top-k mode, reads and writes apart.

``dram_saving(wl, hw, rates)`` runs `workload_cost` for int8 and for WCC at each rate under both
placements and both top-k designs (``exact``, ``tiled``), everything else from `hw`; the table
docs/cost.md states for the Cityscapes workload (``wccsim cost --saving``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from wccsim.cost import total_cost, workload_cost
from wccsim.cost.workload import Workload
from wccsim.hw import HwSpec, Placement, TopkMode

__all__ = ["SavingRow", "dram_saving"]


@dataclass(frozen=True)
class SavingRow:
    """Network DRAM bytes of WCC at one rate and of int8 on the same hardware, and the spilling layers."""
    placement: str
    topk_mode: str
    rate: float
    read_bytes: int
    write_bytes: int
    int8_read_bytes: int
    int8_write_bytes: int
    spill_layers: int

    @property
    def read_saving(self) -> float:
        """Fraction of int8's DRAM reads saved (negative: WCC reads more)."""
        return 1.0 - self.read_bytes / self.int8_read_bytes

    @property
    def write_saving(self) -> float:
        return 1.0 - self.write_bytes / self.int8_write_bytes


def _with(hw: HwSpec, placement: Placement, mode: TopkMode) -> HwSpec:
    dp = hw.datapath
    return dataclasses.replace(hw, placement=placement, datapath=dataclasses.replace(
        dp, topk=dataclasses.replace(dp.topk, mode=mode)))


def dram_saving(wl: Workload, hw: HwSpec, rates, act_bits: int, weight_bits: int) -> list[SavingRow]:
    """One `SavingRow` per (placement, top-k mode in exact/tiled, rate), in that order; WCC at `act_bits` /
    `weight_bits` against int8 at 8 / 8 bits, the reference every other table uses."""
    base = total_cost(workload_cost(wl, hw, "int8", 1.0, 8, 8))
    rows = []
    for placement in Placement:
        for mode in (TopkMode.EXACT, TopkMode.TILED):
            spec = _with(hw, placement, mode)
            for rate in rates:
                t = total_cost(workload_cost(wl, spec, "wcc", rate, act_bits, weight_bits))
                rows.append(SavingRow(placement.value, mode.value, float(rate), t["dram_read_bytes"],
                                      t["dram_write_bytes"], base["dram_read_bytes"], base["dram_write_bytes"],
                                      t["topk_spill"]))
    return rows
