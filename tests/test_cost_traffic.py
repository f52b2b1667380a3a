"""Traffic conservation: DRAM and SRAM bytes against element counts derived here, independently."""

from pathlib import Path

import pytest

from wccsim.cost import layer_cost
from wccsim.shape import LayerKind, LayerShape
from wccsim.hw import hw_from_dict, load_hw

ROOT = Path(__file__).resolve().parents[1]
EDGE = load_hw(ROOT / "hw_configs" / "edge_npu.yaml")  # 16x16 ws, 256/128/128 KB SRAM


def _hw(ifmap=262144, weight=131072, placement="compress_on_write", mode="exact", dataflow="weight_stationary"):
    return hw_from_dict({"name": "t", "clock_mhz": 100, "placement": placement, "topk": {"mode": mode},
                         "mac": {"rows": 16, "cols": 16, "dataflow": dataflow},
                         "sram": {"ifmap": {"size_bytes": ifmap}, "weight": {"size_bytes": weight},
                                  "ofmap": {"size_bytes": 65536}}})


def _pw(cin, cout, h, w):
    return LayerShape("pw", LayerKind.CONV1X1, cin, cout, 1, 1, 1, h, w)


def test_int8_everything_fits_by_hand():
    c = layer_cost(_pw(16, 8, 16, 16), EDGE, "int8", 1.0, 8, 8)
    act, wts, out = 16 * 256, 16 * 8, 8 * 256
    assert (c.act_read_bytes, c.weight_read_bytes, c.output_write_bytes, c.bitmap_bytes) == (act, wts, out, 0)
    assert c.dram_read_bytes == act + wts and c.dram_write_bytes == out
    # SRAM: fills = DRAM reads + outputs; the array reads every activation once (one column fold) and every
    # weight once; one reduction fold, so no partial sums; outputs drained once
    assert c.sram_write_bytes == act + wts + out
    assert c.sram_read_bytes == act + wts + out
    assert (c.ifmap_sram_write_bytes, c.weight_sram_write_bytes, c.ofmap_sram_write_bytes) == (act, wts, out)
    assert (c.ifmap_sram_read_bytes, c.weight_sram_read_bytes, c.ofmap_sram_read_bytes) == (act, wts, out)
    assert c.macs == 16 * 8 * 256
    assert c.tiling == "act and weights resident"


def test_folded_reduction_moves_partial_sums():
    c = layer_cost(_pw(40, 8, 16, 16), EDGE, "int8", 1.0, 8, 8)  # k = 40 on 16 rows: 3 folds
    act, wts, out, psum = 40 * 256, 40 * 8, 8 * 256, 256 * 8 * 2 * 4  # 2 extra folds of int32 partial sums
    assert c.sram_write_bytes == act + wts + out + psum
    assert c.sram_read_bytes == act + wts + out + psum


@pytest.mark.parametrize("hw_side", [16, 24, 64])
def test_wcc_rate_one_reads_int8_plus_bitmap_plus_padding(hw_side):
    s = _pw(32, 16, hw_side, hw_side)
    wcc, base = layer_cost(s, EDGE, "wcc", 1.0, 8, 8), layer_cost(s, EDGE, "int8", 1.0, 8, 8)
    p = (-(-hw_side // 8) * 8) ** 2
    assert wcc.bitmap_bytes == -(-p // 8)
    assert wcc.dram_read_bytes - base.dram_read_bytes == wcc.bitmap_bytes + 32 * (p - hw_side ** 2)
    assert wcc.weight_read_bytes == base.weight_read_bytes
    assert wcc.output_write_bytes == base.output_write_bytes
    assert wcc.macs == 32 * 16 * p


def test_wcc_rate_one_multiple_of_8_is_exactly_the_bitmap():
    s = _pw(24, 24, 32, 40)
    wcc, base = layer_cost(s, EDGE, "wcc", 1.0, 8, 8), layer_cost(s, EDGE, "int8", 1.0, 8, 8)
    assert wcc.dram_read_bytes - base.dram_read_bytes == 32 * 40 // 8


def test_wcc_compressed_read():
    s = _pw(64, 32, 64, 64)
    c = layer_cost(s, EDGE, "wcc", 0.25, 8, 8)
    k = 64 * 64 // 4
    assert c.act_read_bytes == 64 * k
    assert c.bitmap_bytes == 64 * 64 // 8
    assert c.macs == 64 * 32 * k
    # ifmap SRAM holds columns + bitmap; the array reads the columns (and the bitmap) once per column fold
    assert c.ifmap_sram_write_bytes == 64 * k + 512
    assert c.ifmap_sram_read_bytes == 2 * (64 * k + 512)  # 32 outputs on 16 columns: 2 folds
    # k-fold accumulators (64 / 16 = 4 folds) kept at int32 for the inverse Haar, then the full int8 output
    acc = k * 32 * 4 * 4
    assert c.ofmap_sram_write_bytes == acc + 32 * 64 * 64
    assert c.ofmap_sram_read_bytes == acc + 32 * 64 * 64
    assert c.sram_read_bytes == c.ifmap_sram_read_bytes + c.weight_sram_read_bytes + c.ofmap_sram_read_bytes


def test_tiling_rereads_are_counted_and_named():
    s = _pw(64, 64, 32, 32)  # act 64 KB, weights 4 KB
    c = layer_cost(s, _hw(ifmap=16384, weight=1024), "int8", 1.0, 8, 8)
    # weights-outer: 4 x 64 KB + 4 KB; act-outer: 64 KB + 4 x 4 KB (cheaper)
    assert c.tiling == "act in 4 tiles by position, weights re-read x4"
    assert c.act_read_bytes == 65536 and c.weight_read_bytes == 4 * 4096
    c = layer_cost(_pw(256, 256, 8, 8), _hw(ifmap=4096, weight=16384), "int8", 1.0, 8, 8)
    # act 16 KB (4 tiles) vs weights 64 KB (4 tiles): re-reading act is cheaper
    assert c.tiling == "weights in 4 tiles by cout, act re-read x4"
    assert c.act_read_bytes == 4 * 16384 and c.weight_read_bytes == 65536


def test_compress_on_read_reads_full_tensor_and_two_passes_when_it_cannot_buffer():
    s = _pw(64, 32, 64, 64)  # 256 KB input
    full = 64 * 64 * 64
    small = layer_cost(s, _hw(ifmap=65536, placement="compress_on_read"), "wcc", 0.25, 8, 8)
    assert small.act_read_bytes == 2 * full and small.bitmap_bytes == 0
    assert "2 passes" in small.tiling
    tiled = layer_cost(s, _hw(ifmap=65536, placement="compress_on_read", mode="tiled"), "wcc", 0.25, 8, 8)
    assert tiled.act_read_bytes == full
    big = layer_cost(s, _hw(ifmap=1 << 20, placement="compress_on_read"), "wcc", 0.25, 8, 8)
    assert big.act_read_bytes == full


def test_zvc_and_uniform_nbit_sizes():
    s = _pw(16, 16, 32, 32)
    e = 16 * 32 * 32
    z = layer_cost(s, EDGE, "zvc", 1.0, 8, 8, nonzero_fraction=0.25)
    assert z.act_read_bytes == e // 4 and z.bitmap_bytes == e // 8
    u = layer_cost(s, EDGE, "uniform_nbit", 0.5, 8, 8)
    assert u.act_bits == 4
    assert u.act_read_bytes == e // 2 and u.output_write_bytes == 16 * 32 * 32 // 2
    assert u.bops == 8 * 4 * s.macs


def test_conv_counts_input_once_and_im2col_reads():
    s = LayerShape("c", LayerKind.CONV, 8, 16, 3, 1, 1, 16, 16)
    c = layer_cost(s, EDGE, "int8", 1.0, 8, 8)
    assert c.act_read_bytes == 8 * 256
    # array reads every im2col element (256 positions x 72) once: 16 outputs fit the 16 columns
    # k = 72 on 16 rows: 5 folds -> 4 extra partial-sum rounds of 256 x 16 int32
    psum = 256 * 16 * 4 * 4
    assert c.sram_read_bytes == 256 * 72 + 72 * 16 + psum + 16 * 256


def test_energy_is_the_sum_of_its_parts():
    c = layer_cost(_pw(32, 32, 32, 32), EDGE, "wcc", 0.5, 8, 8)
    parts = (c.energy_mac_pj + c.energy_haar_pj + c.energy_topk_pj + c.energy_requant_pj + c.energy_rescale_pj
             + c.energy_sram_pj + c.energy_dram_pj)
    assert c.energy_requant_pj == pytest.approx(32 * 32 * 32 * EDGE.energy.requant_pj)
    assert c.energy_pj == pytest.approx(parts)
    assert c.energy_dram_pj == pytest.approx((c.dram_read_bytes + c.dram_write_bytes) * 162.5)
    assert c.energy_mac_pj == pytest.approx(c.macs * 0.3)
