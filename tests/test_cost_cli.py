"""wccsim cost: table without a trace; exit 2 and one line on bad YAML or arguments."""

from pathlib import Path

import pytest

from wccsim.cli import main
from wccsim.cost import total_cost, workload_cost
from wccsim.cost.saving import dram_saving
from wccsim.cost.workload import load_workload
from wccsim.hw import load_hw

ROOT = Path(__file__).resolve().parents[1]
HW = str(ROOT / "hw_configs" / "edge_npu.yaml")
WL = str(ROOT / "workloads" / "deeplabv3plus_mnv2_cityscapes.csv")
GOOD = (ROOT / "hw_configs" / "mcu_npu.yaml").read_text()


def test_cost_prints_per_layer_and_total(capsys, tmp_path):
    out_csv = tmp_path / "c.csv"
    assert main(["cost", "--hw", HW, "--workload", WL, "--rate", "0.25", "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "DRAM_rd[KB]" in lines[1] and "cycles[k]" in lines[1] and "energy[uJ]" in lines[1]
    assert any(line.startswith("head.aspp.project") for line in lines)
    assert any(line.startswith("TOTAL") for line in lines)
    rows = out_csv.read_text().splitlines()
    assert rows[0].startswith("name,scheme,rate") and len(rows) == 1 + 64


def test_cost_input_and_bits(capsys):
    assert main(["cost", "--hw", HW, "--workload", WL, "--rate", "0.5", "--input", "512x1024",
                 "--scheme", "uniform_nbit", "--weight-bits", "4"]) == 0
    assert "512x1024" in capsys.readouterr().out


BAD_HW = [  # ten+ distinct mistakes, each a one-line error
    ("mac:\n  rows: 8", "mac:\n  rows: -4"),
    ("mac:\n  rows: 8", "mac:\n  rowz: 8"),
    ("  acc_bits: 32", "  acc_bits: 12"),
    ("act_bits: 8", "act_bits: 17"),
    ("clock_mhz: 400", "clock_mhz: fast"),
    ("dataflow: weight_stationary", "dataflow: ws"),
    ("placement: compress_on_write", "placement: on_write"),
    ("size_bytes: 65536", "size_bytes: 99999999999999999999"),
    ("size_bytes: 65536", "size_bytes: [1]"),
    ("name: mcu_npu", "name: !!python/object/apply:os.system ['true']"),
    ("elems_per_cycle: 8\ntopk", "elems_per_cycle: 0\ntopk"),
    ("energy_pj_per_byte: 325.0", "energy_pj_per_byte: .nan"),
    ("mac:\n  rows: 8", "mac:\n  rows: 8\n  rows2: [unclosed"),
]


@pytest.mark.parametrize("old,new", BAD_HW)
def test_bad_yaml_exit_2_one_line(tmp_path, capsys, old, new):
    assert old in GOOD
    p = tmp_path / "bad.yaml"
    p.write_text(GOOD.replace(old, new, 1))
    assert main(["cost", "--hw", str(p), "--workload", WL, "--rate", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wccsim: error: {p}: ")


def test_empty_and_directory_yaml(tmp_path, capsys):
    (tmp_path / "empty.yaml").write_text("")
    assert main(["cost", "--hw", str(tmp_path / "empty.yaml"), "--workload", WL, "--rate", "0.5"]) == 2
    assert main(["cost", "--hw", str(tmp_path), "--workload", WL, "--rate", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "empty file" in err and "a directory" in err


@pytest.mark.parametrize("argv", [
    ["--rate", "0"], ["--rate", "x"], ["--rate", "0.5", "--act-bits", "1"], ["--rate", "0.5", "--input", "9"],
    ["--rate", "0.5", "--scheme", "zvc"], ["--rate", "0.5", "--scheme", "nope"],
    ["--rate", "0.5", "--nonzero-fraction", "3"],
])
def test_bad_arguments_exit_2(capsys, argv):
    assert main(["cost", "--hw", HW, "--workload", WL] + argv) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("argv", [[], ["--scheme", "int8"], ["--rate", "0.25", "--nonzero-fraction", "0.6"]])
def test_cost_prints_every_scheme_side_by_side_with_savings(capsys, argv):
    """int8 needs no --rate; the totals table has every scheme (zvc with a measured fraction) in units, and each
    saving is 100 x (1 - scheme / int8) of the model's own totals."""
    assert main(["cost", "--hw", HW, "--workload", WL, *argv]) == 0
    out = capsys.readouterr().out
    table = out[out.index("every scheme"):].splitlines()
    head = table[1].split()
    assert {"GBOPs", "DRAM_rd+wr_MB", "Mcycles", "energy_uJ", "DRAM_saved_%", "energy_saved_%"} <= set(head)
    rows = {ln.split()[0]: dict(zip(head, ln.split())) for ln in table[2:] if ln and not ln.startswith("(")}
    rate = float(argv[argv.index("--rate") + 1]) if "--rate" in argv else 0.5
    assert set(rows) == ({"wcc", "int8", "uniform_nbit", "zvc"} if "--nonzero-fraction" in argv
                         else {"wcc", "int8", "uniform_nbit"})
    hw, wl = load_hw(HW), load_workload(WL)
    int8 = total_cost(workload_cost(wl, hw, "int8", rate, 8, 8))
    for scheme, row in rows.items():
        tot = total_cost(workload_cost(wl, hw, scheme, rate, 8, 8, 0.6 if scheme == "zvc" else None))
        dram = (tot["dram_read_bytes"] + tot["dram_write_bytes"]) / (int8["dram_read_bytes"] + int8["dram_write_bytes"])
        assert float(row["DRAM_saved_%"]) == pytest.approx(100 * (1 - dram), abs=0.051)
        assert float(row["energy_saved_%"]) == pytest.approx(100 * (1 - tot["energy_pj"] / int8["energy_pj"]), abs=0.051)


def test_cost_saving_prints_both_placements_and_topk_designs_reads_and_writes_apart(capsys):
    assert main(["cost", "--hw", HW, "--workload", WL, "--saving", "0.5,0.25"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["placement", "topk", "rate", "rd_MB"]
    rows = [ln.split() for ln in lines[2:]]
    assert [(r[0], r[1], float(r[2])) for r in rows] == [
        (p, m, rate) for p in ("compress_on_write", "compress_on_read") for m in ("exact", "tiled")
        for rate in (0.5, 0.25)]
    lib = dram_saving(load_workload(WL), load_hw(HW), (0.5, 0.25), 8, 8)
    assert [float(r[3]) for r in rows] == [round(x.read_bytes / 1e6, 1) for x in lib]
    assert [float(r[6]) for r in rows] == [round(x.write_bytes / 1e6, 1) for x in lib]
    assert all(int(r[9]) == 0 for r in rows if r[1] == "tiled") and all(int(r[9]) > 0 for r in rows if r[1] == "exact")
    # compress_on_read: every tensor is written in full, as under int8 (plus spilled energies when exact)
    assert all(x.write_bytes == x.int8_write_bytes for x in lib if (x.placement, x.topk_mode) == ("compress_on_read", "tiled"))
