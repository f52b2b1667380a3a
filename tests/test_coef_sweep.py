"""Coefficient quantizer designs as a sweep axis (issue 18, report): ``wccsim sweep --coef``, the ``cfg_coef``
configuration key, resume byte-identical, bad designs refused; and the DRAM bytes of the coefficient traffic
from each band's real width (LL_L at ``coef.ll_bits``, details at ``coef.bits``), by hand."""

import dataclasses
import json
import shutil

import pandas as pd
import pytest
import yaml

from test_report import parse
from test_run import HW, ROOT, snapshot, write_tiny_trace
from wccsim.cli import main
from wccsim.cost import layer_cost
from wccsim.hw import CoefGranularity, CoefScale, TopkMode, hw_from_dict, load_hw, spec_to_dict
from wccsim.options import CoefDesign, apply_coef, parse_coef
from wccsim.reporting import report
from wccsim.runner import run
from wccsim.shape import LayerKind, LayerShape
from wccsim.sweeper import JOURNAL, sweep

HW2 = ROOT / "hw_configs" / "mcu_npu.yaml"
DESIGNS = ["per_tensor", "per_band:pow2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_trace(tmp_path_factory.mktemp("coef") / "tiny.npz", n_layers=2)


@pytest.fixture(scope="module")
def coef_sweep(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("coef_sweep") / "s"
    assert main(["sweep", "--hw", str(HW), "--hw", str(HW2), "--trace", str(tiny), "--rates", "1,0.5",
                 "--coef", ",".join(DESIGNS), "--out", str(out)]) == 0
    return out


# ------------------------------------------------------------------ the axis

def test_parse_coef():
    assert parse_coef("per_band") == CoefDesign(CoefGranularity.PER_BAND)
    assert parse_coef(" per_level:pow2 ") == CoefDesign(CoefGranularity.PER_LEVEL, CoefScale.POW2)


def test_each_design_on_each_hw_gives_the_rows_of_a_run_with_that_design(coef_sweep, tiny):
    df = pd.read_csv(coef_sweep / "layers.csv")
    labels = {"edge_npu": {"per_tensor:fixed_point", "per_band:pow2"}, "mcu_npu": {"per_tensor:fixed_point",
                                                                                  "per_band:pow2"}}
    assert {h: set(g.cfg_coef) for h, g in df.groupby("hw")} == labels
    assert len(df) == 2 * 2 * 2 * 2 * 4  # hw x designs x rates x layers x schemes
    edge = load_hw(HW)
    for text in DESIGNS:
        spec = apply_coef(edge, parse_coef(text))
        one = df[(df.hw == "edge_npu") & (df.cfg_coef == f"{spec.datapath.coef.granularity.value}:"
                                          f"{spec.datapath.coef.scale.value}") & (df.cfg_rate == 0.5)]
        pd.testing.assert_frame_equal(one.reset_index(drop=True), run(spec, tiny, rate=0.5), check_dtype=False)
    # the designs give different datapath results (per_band pow2 vs per_tensor) and the same int8 reference
    wcc = df[(df.scheme == "wcc") & (df.hw == "edge_npu") & (df.cfg_rate == 0.5)]
    wcc = wcc.groupby("cfg_coef").sqnr_total_db.sum()
    assert wcc.nunique() == 2
    int8 = df[df.scheme == "int8"].drop(columns=["cfg_coef", "cfg_rate"]).drop_duplicates()
    assert len(int8) == 2 * 2  # per (hw, layer)
    meta = json.loads((coef_sweep / "sweep.json").read_text())
    assert meta["grid"]["coef"] == DESIGNS
    assert [h["coef"] for h in meta["hw"]] == [["per_tensor:fixed_point", "per_band:pow2"]] * 2
    keys = [json.loads(json.loads(line)["key"]) for line in (coef_sweep / JOURNAL).read_text().splitlines()]
    assert {k[5] for k in keys} == {"per_tensor:fixed_point", "per_band:pow2"}
    totals = pd.read_csv(coef_sweep / "totals.csv")
    assert len(totals) == 2 * 2 * 2 * 4 and "cfg_coef" in totals.columns


def test_without_coef_each_hw_keeps_its_own_design(tiny, tmp_path):
    sweep([HW, ROOT / "hw_configs" / "edge_npu_paper.yaml"], tiny, tmp_path, rates=[0.5])
    df = pd.read_csv(tmp_path / "layers.csv")
    assert dict(df.groupby("hw").cfg_coef.unique().map(list)) == {"edge_npu": ["per_level:fixed_point"],
                                                                   "edge_npu_paper": ["per_tensor:fixed_point"]}
    meta = json.loads((tmp_path / "sweep.json").read_text())
    assert meta["grid"]["coef"] is None and [h["coef"] for h in meta["hw"]] == [["per_level:fixed_point"],
                                                                                  ["per_tensor:fixed_point"]]
    report(tmp_path)  # the report's grid check takes each hw's own design


def test_rerun_with_coef_is_byte_identical_and_computes_nothing(coef_sweep, tiny, tmp_path, monkeypatch):
    out = tmp_path / "again"
    shutil.copytree(coef_sweep, out)
    first = snapshot(out)
    import wccsim.sweeper as sw

    def fail(*a, **k):
        raise AssertionError("a finished point was recomputed")
    monkeypatch.setattr(sw, "compute_point", fail)
    sweep([HW, HW2], tiny, out, rates=[1, 0.5], coef=DESIGNS)
    assert snapshot(out) == first


def test_cut_journal_with_coef_resumes_to_the_same_bytes(coef_sweep, tiny, tmp_path):
    out = tmp_path / "cut"
    out.mkdir()
    lines = (coef_sweep / JOURNAL).read_bytes().splitlines(keepends=True)
    (out / JOURNAL).write_bytes(b"".join(lines[::2]) + lines[1][:30])  # half the points and a torn line
    sweep([HW, HW2], tiny, out, rates=[1, 0.5], coef=DESIGNS)
    assert snapshot(out) == snapshot(coef_sweep)


def test_report_shows_designs_x_rates(coef_sweep, tmp_path):
    html = report(coef_sweep, tmp_path / "r.html")
    page = parse(html)
    assert "fig-coef_designs" in page.figures and "coef-designs" in page.tables
    text = html.read_text()
    for hw in ("edge_npu", "mcu_npu"):
        for design in ("per_tensor:fixed_point", "per_band:pow2"):
            assert f"{hw}, {design}: " in text  # one headline sentence per (hw, design)
    assert (tmp_path / "r_coef_designs.png").is_file()


def _yaml(tmp_path, name, **changes):
    spec = spec_to_dict(load_hw(HW))
    for key, value in changes.items():
        section, field = key.split("__")
        spec[section][field] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("coef,yaml_changes,expect", [
    ("per_x", {}, ("coef", "granularity one of", "per_x")),
    ("per_band:pow3", {}, ("coef", "scale one of", "per_band:pow3")),
    ("per_band:", {}, ("coef", "scale one of")),
    ("per_band,per_band:fixed_point", {}, ("coef", "distinct designs on hw edge_npu", "per_band:fixed_point")),
    ("per_tensor", {"coef__ll_bits": 12}, ("--coef per_tensor:fixed_point on hw edge_npu", "coef.ll_bits",
                                           "granularity per_tensor")),
    ("per_level", {"coef__granularity": "per_tensor", "mac__acc_bits": 40},
     ("--coef per_level:fixed_point on hw edge_npu", "mac.acc_bits", "at most 32")),
])
def test_bad_coef_exits_2_with_one_line_and_writes_nothing(tiny, tmp_path, capsys, coef, yaml_changes, expect):
    hw = _yaml(tmp_path, "hw", **yaml_changes) if yaml_changes else HW
    before = snapshot(tmp_path)
    assert main(["sweep", "--hw", str(hw), "--trace", str(tiny), "--rates", "0.5", "--coef", coef,
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wccsim: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for text in expect:
        assert text in err, f"{text!r} not in {err!r}"
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ coefficient bytes per band width

LAYER = LayerShape("pw", LayerKind.CONV1X1, 64, 32, 1, 1, 1, 64, 64)  # P = 4096 positions, P_LL = 8 x 8 = 64


def _coef_hw(ll_bits: int, mode=TopkMode.EXACT, bits: int | None = None):
    spec = spec_to_dict(load_hw(HW))
    spec["coef"] = dict(spec["coef"], ll_bits=ll_bits, **({} if bits is None else {"bits": bits}))
    spec["haar"] = dict(spec["haar"], normalize="per_level")  # the hand-computed widths below: 11-bit coefficients
    hw = hw_from_dict(spec)
    return dataclasses.replace(hw, datapath=dataclasses.replace(
        hw.datapath, topk=dataclasses.replace(hw.datapath.topk, mode=mode)))


def test_compressed_tensor_counts_ll_at_ll_bits_and_details_at_bits():
    # rate 0.25: k = 1024 kept positions, the 64 LL_L positions among them (kept first)
    c = layer_cost(LAYER, _coef_hw(12), "wcc", 0.25, 8, 8)
    payload = 64 * (64 * 12 + (1024 - 64) * 8) // 8      # 67,584 bytes (65,536 at one 8-bit width)
    assert c.act_read_bytes == payload                     # what the layer reads: the compressed columns
    assert c.bitmap_bytes == 4096 // 8
    assert c.input_write_bytes == payload + 4096 // 8      # what its producer writes for it
    same = layer_cost(LAYER, _coef_hw(8), "wcc", 0.25, 8, 8)
    assert same.act_read_bytes == 64 * 1024 and c.dram_read_bytes - same.dram_read_bytes == payload - 64 * 1024
    narrow = layer_cost(LAYER, _coef_hw(6, bits=10), "wcc", 0.25, 8, 8)
    assert narrow.act_read_bytes == 64 * (64 * 6 + 960 * 10) // 8


def test_selector_buffer_and_spill_count_band_widths():
    energies = 4096 * (2 * 11 + 6) // 8                  # l2 of 11-bit coefficients over 64 channels (unchanged)
    all_coefs = 64 * (64 * 12 + (4096 - 64) * 8) // 8    # every position: LL_L at 12 bits
    c = layer_cost(LAYER, _coef_hw(12), "wcc", 0.25, 8, 8)
    assert c.topk_buffer_bytes == all_coefs + energies and c.topk_spill == 1
    assert (c.topk_spill_write_bytes, c.topk_spill_read_bytes) == (all_coefs, all_coefs)
    # tiled, T = 64 positions: the first tile is the LL_L band (64 positions at 12 bits), the widest tile
    tiled = layer_cost(LAYER, _coef_hw(12, TopkMode.TILED), "wcc", 0.25, 8, 8)
    assert tiled.topk_buffer_bytes == 64 * 64 * 12 // 8 + 64 * 28 // 8
    # narrower LL_L: a tile of details only is the widest
    tiled = layer_cost(LAYER, _coef_hw(4, TopkMode.TILED), "wcc", 0.25, 8, 8)
    assert tiled.topk_buffer_bytes == 64 * 64 * 8 // 8 + 64 * 28 // 8


# ------------------------------------------------------------------ --coef on one run

def test_run_coef_flag_is_the_run_of_that_design(tiny, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--hw", str(HW), "--trace", str(tiny), "--coef", "per_band:pow2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    spec = apply_coef(load_hw(HW), parse_coef("per_band:pow2"))
    pd.testing.assert_frame_equal(pd.read_csv(out / "layers.csv"), run(spec, tiny, rate=0.5), check_dtype=False)
    assert "verdict (edge_npu, coef per_band:pow2, " in text
    meta = json.loads((out / "run.json").read_text())
    assert meta["hw"]["coef"]["granularity"] == "per_band" and meta["hw"]["coef"]["scale"] == "pow2"


@pytest.mark.parametrize("design", ["per_bnd", "per_band:shift"])
def test_run_bad_coef_flag_is_one_line_exit_2_and_writes_nothing(tiny, tmp_path, capsys, design):
    out = tmp_path / "r"
    assert main(["run", "--hw", str(HW), "--trace", str(tiny), "--coef", design, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "coef" in err[0] and design in err[0]
    assert not out.exists()
