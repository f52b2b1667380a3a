"""layer_cost entry point, workloads (CSV, generation, rescale), nonzero_fraction, input validation."""

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from wccsim.cost import LayerCost, layer_cost, nonzero_fraction, total_cost, workload_cost
from wccsim.cost.workload import load_workload, rescale_workload
from wccsim.shape import LayerKind, LayerShape
from wccsim.errors import InputError
from wccsim.hw import CoefGranularity, CoefScale, Normalize, Placement, TopkMode, load_hw

ROOT = Path(__file__).resolve().parents[1]
EDGE = load_hw(ROOT / "hw_configs" / "edge_npu.yaml")
CITY = ROOT / "workloads" / "deeplabv3plus_mnv2_cityscapes.csv"


def test_generated_workloads_are_up_to_date():
    spec = importlib.util.spec_from_file_location("make_workloads", ROOT / "workloads" / "make_workloads.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for filename in mod.WORKLOADS:
        assert (ROOT / "workloads" / filename).read_text() == mod.render(filename), filename


def test_deeplab_workload_structure():
    wl = load_workload(CITY)
    assert wl.input_hw == (1024, 2048)
    names = [s.name for s in wl.layers]
    assert [s.name for s in wl.layers if s.keep_fp] == ["features.0", "head.classifier.3"]
    assert "features.18" not in names  # VainF drops the final 320->1280 conv
    pws = [s for s in wl.layers if s.is_pointwise]
    assert len(pws) == 35 + 7  # backbone 1x1s + project, aspp b0/b1-3/pool/project, classifier pw, last 1x1
    aspp = next(s for s in wl.layers if s.name == "head.aspp.b0")
    assert (aspp.h, aspp.w, aspp.cin) == (64, 128, 320)  # output stride 16


def test_rescale_keeps_downsampling_factors():
    wl = rescale_workload(load_workload(CITY), (513, 513))
    voc = load_workload(ROOT / "workloads" / "deeplabv3plus_mnv2_voc.csv")
    assert [(s.h, s.w) for s in wl.layers] == [(s.h, s.w) for s in voc.layers]


def test_every_field_and_units():
    c = layer_cost(load_workload(CITY).layers[3], EDGE, "wcc", 0.5, 8, 8)
    assert isinstance(c, LayerCost)
    names = {f.name for f in dataclasses.fields(LayerCost)}
    assert {"macs", "bops", "bops_hw", "dram_read_bytes", "dram_write_bytes", "sram_read_bytes",
            "sram_write_bytes", "bitmap_bytes", "act_read_bytes", "weight_read_bytes", "output_write_bytes",
            "cycles", "compute_cycles", "memory_cycles", "haar_cycles", "topk_cycles", "bound", "energy_pj",
            "tiling"} <= names
    assert c.bound in ("compute", "memory")
    assert c.cycles == max(c.compute_cycles, c.haar_cycles, c.topk_cycles, c.memory_cycles)
    # compress_on_write: the producer (outside a layer run alone) runs the forward Haar and the top-k
    assert c.haar_cycles > 0 and c.topk_cycles == 0 and c.input_haar_cycles > 0 and c.input_topk_cycles > 0
    r = layer_cost(load_workload(CITY).layers[3], dataclasses.replace(EDGE, placement=Placement.COMPRESS_ON_READ),
                   "wcc", 0.5, 8, 8)
    assert r.haar_cycles == c.haar_cycles + c.input_haar_cycles * r.act_fetches
    assert r.topk_cycles == c.input_topk_cycles and (r.input_haar_cycles, r.input_topk_cycles) == (0, 0)


def test_wcc_saves_on_pointwise_only():
    wl = load_workload(CITY)
    hw = _tiled(EDGE)  # no spill: a non-WCC layer reads what it reads under int8
    wcc = workload_cost(wl, hw, "wcc", 0.25, 8, 8)
    base = workload_cost(wl, hw, "int8", 0.25, 8, 8)
    for a, b, s in zip(wcc, base, wl.layers):
        if s.name == "head.aspp.pool":  # a 1x1 map padded to 8x8: k = 16 columns instead of 1 position
            assert a.macs == 16 * b.macs
        elif s.is_pointwise and not s.keep_fp:
            assert a.macs < b.macs
        else:
            assert (a.macs, a.dram_read_bytes, a.topk_buffer_bytes) == (b.macs, b.dram_read_bytes, 0)
    tw, tb = total_cost(wcc), total_cost(base)
    assert tw["energy_pj"] < tb["energy_pj"] and tw["bops"] < tb["bops"]
    assert tw["dram_read_bytes"] < tb["dram_read_bytes"] and tw["dram_write_bytes"] < tb["dram_write_bytes"]


def _tiled(hw):
    dp = hw.datapath
    return dataclasses.replace(hw, datapath=dataclasses.replace(dp, topk=dataclasses.replace(dp.topk,
                                                                                            mode=TopkMode.TILED)))


def _haar(channels, s, hw):  # one transform on the padded ho x wo map, 3 levels: 21/16 coefficients per pixel
    p = (-(-s.ho // 8) * 8) * (-(-s.wo // 8) * 8)
    return -(-channels * p * 21 // (16 * hw.datapath.haar.elems_per_cycle)), p


@pytest.mark.parametrize("placement", list(Placement))
@pytest.mark.parametrize("mode", [TopkMode.EXACT, TopkMode.TILED])
def test_haar_and_topk_are_booked_on_the_hardware_that_runs_them(placement, mode):
    """compress_on_write: the producer runs the forward Haar and top-k of each WCC consumer it compresses
    for (shown on the consumer as input_*), the consumer its inverse; compress_on_read, or a WCC input
    concatenated or resampled: the WCC layer runs all three. The forward runs twice when a spill re-reads
    the input (on read, or a producer that writes the full tensor anyway)."""
    wl = load_workload(CITY)
    hw = dataclasses.replace(_tiled(EDGE) if mode is TopkMode.TILED else EDGE, placement=placement)
    costs = workload_cost(wl, hw, "wcc", 0.25, 8, 8)
    haar, topk = {s.name: 0 for s in wl.layers}, {s.name: 0 for s in wl.layers}
    wcc = {s.name for s in wl.layers if s.is_pointwise and not s.keep_fp}
    read_in_full = {n for s, e in zip(wl.layers, wl.layer_edges()) for n in e.inputs
                    if s.name not in wcc or len(e.inputs) > 1 or s.name == "head.aspp.pool"}
    read_in_full |= {e.residual for e in wl.layer_edges()}
    for c, s, e in zip(costs, wl.layers, wl.layer_edges()):
        if not (s.is_pointwise and not s.keep_fp):
            assert (c.input_haar_cycles, c.topk_buffer_bytes) == (0, 0)
            continue
        forward, p = _haar(s.cin, s, hw)
        selection = -(-s.cin * p // 16) + -(-p // 16)
        haar[s.name] += _haar(s.cout, s, hw)[0]
        on_write = placement is Placement.COMPRESS_ON_WRITE and len(e.inputs) == 1 and s.name != "head.aspp.pool"
        runner = e.inputs[0] if on_write else s.name
        # a spill re-reads the input and transforms it again, except a producer that writes no full tensor
        # (it spills its coefficients instead)
        forward *= 2 if c.topk_spill and (not on_write or e.inputs[0] in read_in_full) else 1
        haar[runner] += forward
        topk[runner] += selection
        assert (c.input_haar_cycles, c.input_topk_cycles) == ((forward, selection) if on_write else (0, 0))
    assert [c.haar_cycles for c in costs] == [haar[s.name] for s in wl.layers]
    assert [c.topk_cycles for c in costs] == [topk[s.name] for s in wl.layers]


def test_nonzero_fraction():
    x = np.array([[0.0, 1.0], [-2.0, 0.0]], dtype=np.float32)
    assert nonzero_fraction(x) == 0.5
    assert nonzero_fraction(np.array([0.01, 0.2, -0.3, 0.0]), scale=0.1) == 0.5
    with pytest.raises(InputError):
        nonzero_fraction(np.zeros(0))


@pytest.mark.parametrize("kwargs,field", [
    ({"scheme": "jpeg"}, "scheme"), ({"rate": 0.0}, "rate"), ({"rate": 1.5}, "rate"),
    ({"act_bits": 1}, "act_bits"), ({"weight_bits": 17}, "weight_bits"),
    ({"scheme": "zvc"}, "nonzero_fraction"), ({"scheme": "zvc", "nonzero_fraction": 2.0}, "nonzero_fraction"),
])
def test_layer_cost_rejects_bad_arguments(kwargs, field):
    args = {"scheme": "wcc", "rate": 0.5, "act_bits": 8, "weight_bits": 8} | kwargs
    shape = LayerShape("pw", LayerKind.CONV1X1, 8, 8, 1, 1, 1, 8, 8)
    with pytest.raises(InputError, match=field):
        layer_cost(shape, EDGE, **args)


@pytest.mark.parametrize("text,message", [
    ("name,kind\n", "header"),
    ("name,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp\n", "at least one layer"),
    ("name,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp\na,fc,1,1,1,1,1,1,1,1,0\n", "kind"),
    ("name,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp\na,conv,x,1,1,1,1,1,1,1,0\n", "cin"),
    ("name,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp\na,conv,4,4,3,1,3,8,8,1,0\n", "groups"),
    ("name,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp\na,conv1x1,4,4,3,1,1,8,8,1,0\n", "kernel"),
    ("name,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp\na,dwconv,4,8,3,1,4,8,8,1,0\n", "groups"),
    ("name,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp\na,conv,4,4,3,1,1,0,8,1,0\n", "h"),
    ("# input: big\nname,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp\na,conv,4,4,3,1,1,8,8,1,0\n",
     "input"),
])
def test_bad_workload_one_line_error(tmp_path, text, message):
    p = tmp_path / "w.csv"
    p.write_text(text)
    with pytest.raises(InputError, match=message) as e:
        load_workload(p)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{p}: ")


_HEADER = "name,kind,cin,cout,kernel,stride,groups,h,w,dilation,keep_fp\n"
_ROW = "a,conv,4,4,3,1,1,8,8,1,0\n"


@pytest.mark.parametrize("text,line,field", [
    (_HEADER + "b,conv,4,x,3,1,1,8,8,1,0\n", 2, "cout"),
    ("# network: n\n# input: 8x8\n#\n" + _HEADER + _ROW + "\n" + "b,conv,4,4,3,1,1,8,8,1,2\n", 7, "keep_fp"),
    ("# network: n\n\n" + _HEADER + "# a note between rows\n" + _ROW + _ROW + "c,fc,1,1,1,1,1,1,1,1,0\n", 7, "kind"),
])
def test_workload_errors_give_the_files_own_line_number(tmp_path, text, line, field):
    p = tmp_path / "w.csv"
    p.write_text(text)
    assert text.splitlines()[line - 1].startswith(("b,", "c,"))  # the line the error must name
    with pytest.raises(InputError) as e:
        load_workload(p)
    assert str(e.value).startswith(f"{p}: line {line}: {field}: expected ")


@pytest.mark.parametrize("gran,scale,normalize,want_bytes", [
    ("per_tensor", "fixed_point", "per_level", 5),            # one int32 multiplier + shift
    ("per_tensor", "fixed_point", "deferred", 3 * 5),         # one per level (deferred units differ)
    ("per_level", "fixed_point", "per_level", 4 * 5 + 4 * 3),  # L + 1 groups, each with a 16-bit rescale
    ("per_band", "pow2", "per_level", 10 * 1 + 10 * 1),       # 3L + 1 shifts in 4b and in 5b
    ("per_band", "float", "deferred", 10 * 4 + 10 * 4),
])
def test_coefficient_quantizer_costs(gran, scale, normalize, want_bytes):
    """Scale records per layer and the rescale unit's energy: one multiply (or shift) per accumulator of a
    kept column, none with one scale; other layers and schemes pay nothing."""
    hw = dataclasses.replace(EDGE, datapath=dataclasses.replace(
        EDGE.datapath, coef=dataclasses.replace(EDGE.datapath.coef, granularity=CoefGranularity(gran),
                                                scale=CoefScale(scale)),
        haar=dataclasses.replace(EDGE.datapath.haar, normalize=Normalize(normalize), width_bits=20)))
    shape = LayerShape("pw", LayerKind.CONV1X1, 24, 40, 1, 1, 1, 16, 16)
    c = layer_cost(shape, hw, "wcc", 0.5, 8, 8)
    assert c.coef_scale_bytes == want_bytes
    rescales = 0 if gran == "per_tensor" else 40 * shape.wcc_kept(0.5, 3)
    per_op = hw.energy.add_pj if scale == "pow2" else hw.energy.requant_pj
    assert c.energy_rescale_pj == pytest.approx(rescales * per_op, rel=1e-12)
    assert layer_cost(shape, hw, "int8", 0.5, 8, 8).coef_scale_bytes == 0
    assert layer_cost(shape, hw, "int8", 0.5, 8, 8).energy_rescale_pj == 0
