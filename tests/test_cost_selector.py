"""What an exact, threshold or tiled top-k must hold before it can emit, and the spill when that does not
fit the SRAM holding it, by hand on one layer (rules: wccsim/cost/selector.py, docs/cost.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wccsim.cost import layer_cost
from wccsim.hw import Normalize, Placement, TopkMode, load_hw
from wccsim.shape import LayerKind, LayerShape

ROOT = Path(__file__).resolve().parents[1]
_HW = load_hw(ROOT / "hw_configs" / "edge_npu.yaml")  # ifmap 256 KB, ofmap 128 KB, l2, 3 levels, T = 64
# the hand-computed widths below are per_level Haar's (11-bit coefficients); edge_npu.yaml is deferred
EDGE = dataclasses.replace(_HW, datapath=dataclasses.replace(
    _HW.datapath, haar=dataclasses.replace(_HW.datapath.haar, normalize=Normalize.PER_LEVEL)))
LAYER = LayerShape("pw", LayerKind.CONV1X1, 64, 32, 1, 1, 1, 64, 64)  # P = 4096 positions
P, COEF = 4096, 64 * 4096                 # coefficients held at 8 bits
ENERGIES = P * (2 * 11 + 6) // 8          # l2 of 11-bit coefficients (8 + 3 levels) over 64 = 2^6 channels
TILE = 64 * 64 + 64 * 28 // 8             # one tile of T = 64 positions


def _hw(placement=Placement.COMPRESS_ON_WRITE, mode=TopkMode.EXACT, ofmap=None, ifmap=None):
    dp = EDGE.datapath
    hw = dataclasses.replace(EDGE, placement=placement, datapath=dataclasses.replace(
        dp, topk=dataclasses.replace(dp.topk, mode=mode)))
    if ofmap:
        hw = dataclasses.replace(hw, ofmap_sram=dataclasses.replace(hw.ofmap_sram, size_bytes=ofmap))
    if ifmap:
        hw = dataclasses.replace(hw, ifmap_sram=dataclasses.replace(hw.ifmap_sram, size_bytes=ifmap))
    return hw


@pytest.mark.parametrize("mode", [TopkMode.EXACT, TopkMode.THRESHOLD])
def test_exact_selection_on_write_spills_the_coefficients(mode):
    c = layer_cost(LAYER, _hw(mode=mode), "wcc", 0.25, 8, 8)
    assert c.topk_buffer_bytes == COEF + ENERGIES > EDGE.ofmap_sram.size_bytes
    assert c.topk_spill == 1
    # full write + full read of the coefficients (the energies fit once the coefficients are out)
    assert (c.topk_spill_write_bytes, c.topk_spill_read_bytes) == (COEF, COEF)
    assert c.input_write_bytes == 64 * 1024 + P // 8  # then the compressed write the layer reads
    # a layer run alone: the producer's spill is reported, not added to this layer's own DRAM traffic
    assert c.dram_write_bytes == c.output_write_bytes == 32 * 64 * 64


def test_tiled_selection_fits_and_moves_only_the_compressed_tensor():
    exact = layer_cost(LAYER, _hw(), "wcc", 0.25, 8, 8)
    tiled = layer_cost(LAYER, _hw(mode=TopkMode.TILED), "wcc", 0.25, 8, 8)
    assert (tiled.topk_buffer_bytes, tiled.topk_spill) == (TILE, 0)
    assert (tiled.topk_spill_write_bytes, tiled.topk_spill_read_bytes) == (0, 0)
    assert tiled.input_write_bytes == exact.input_write_bytes
    # same Haar and top-k work: the energy difference on the producer is the spill's DRAM energy
    assert exact.input_energy_pj - tiled.input_energy_pj == pytest.approx(2 * COEF * EDGE.dram.energy_pj_per_byte)


def test_energies_spill_too_when_they_alone_do_not_fit():
    c = layer_cost(LAYER, _hw(ofmap=8192), "wcc", 0.25, 8, 8)
    assert (c.topk_spill_write_bytes, c.topk_spill_read_bytes) == (COEF + ENERGIES, COEF + ENERGIES)


def test_exact_selection_on_read_passes_twice_over_the_input():
    full = 64 * 64 * 64
    c = layer_cost(LAYER, _hw(Placement.COMPRESS_ON_READ), "wcc", 0.25, 8, 8)  # 256 KB ifmap < COEF + ENERGIES
    assert c.topk_spill == 1 and c.act_fetches == 2 and c.act_read_bytes == 2 * full
    assert (c.topk_spill_write_bytes, c.topk_spill_read_bytes) == (0, 0)
    fits = layer_cost(LAYER, _hw(Placement.COMPRESS_ON_READ, ifmap=COEF + ENERGIES), "wcc", 0.25, 8, 8)
    assert fits.topk_spill == 0 and fits.act_fetches == 1 and fits.act_read_bytes == full
    # the Haar unit runs the forward twice when it spills (energy pass, select pass), the inverse once
    forward = -(-64 * P * 21 // (16 * 16))
    assert c.haar_cycles - fits.haar_cycles == forward
    assert c.dram_read_bytes - fits.dram_read_bytes == full


def test_baselines_have_no_selector():
    for scheme in ("int8", "uniform_nbit"):
        c = layer_cost(LAYER, _hw(), scheme, 0.25, 8, 8)
        assert (c.topk_buffer_bytes, c.topk_spill, c.topk_cycles, c.input_haar_cycles) == (0, 0, 0, 0)
