"""The numbers a team lead acts on: every saving is 100 x (1 - scheme / int8) of its total (DRAM and energy with
the producers' writes of the layers' inputs and their top-k spills, as a trace run reports them), no "best" row saves
nothing, the headline names the cheapest in-budget setting or says none exists, and `wccsim run` ends with a
verdict built from the same savings."""

import re

import pandas as pd
import pytest
from matplotlib.colors import to_hex

from test_run import HW, ROOT, write_tiny_trace
from wccsim.cli import main
from wccsim.reporting.plots import HW_MARKERS, OKABE_ITO, bops_pareto, sqnr_vs_bits
from wccsim.reporting.tables import focus_config, headline, load_results, spills, summary_table
from wccsim.results import SAVINGS, savings
from wccsim.sweeper import sweep


@pytest.fixture(scope="module")
def sweep_totals(tmp_path_factory) -> pd.DataFrame:
    base = tmp_path_factory.mktemp("decision")
    trace = write_tiny_trace(base / "tiny.npz")
    sweep([HW, ROOT / "hw_configs" / "mcu_npu.yaml"], trace, base / "sweep", rates=[1, 0.5, 0.25], act_bits=[8, 4])
    return load_results(base / "sweep").totals


def test_every_saving_is_one_minus_the_ratio_of_its_total(sweep_totals):
    s = savings(sweep_totals)
    for _, row in s.iterrows():
        int8 = sweep_totals[(sweep_totals.hw == row.hw) & (sweep_totals.scheme == "int8")].iloc[0]
        want = {"dram_saving_pct": (row.dram_read_bytes + row.dram_write_bytes + row.input_dram_bytes)
                / (int8.dram_read_bytes + int8.dram_write_bytes + int8.input_dram_bytes),
                "energy_saving_pct": (row.energy_pj + row.input_energy_pj) / (int8.energy_pj + int8.input_energy_pj),
                "cycle_saving_pct": row.cycles / int8.cycles, "bops_saving_pct": row.bops / int8.bops}
        assert set(want) == set(SAVINGS)
        for name, ratio in want.items():
            assert row[name] == pytest.approx(100 * (1 - ratio), rel=0, abs=1e-9), name
        assert row.sqnr_drop_db == pytest.approx(int8.sqnr_total_db - row.sqnr_total_db, abs=1e-12)


@pytest.mark.parametrize("budget", [0.0, 1.0, 30.0, 200.0])
def test_best_rows_save_and_the_headline_says_which(sweep_totals, budget):
    summary = summary_table(sweep_totals, budget)
    best = summary[summary.best]
    assert (best.energy_saving_pct > 0).all() and (best.sqnr_drop_db <= budget + 1e-12).all()
    assert not (summary.best & (summary.scheme == "int8")).any()
    lines = headline(summary, budget)
    for hw in summary.hw.unique():
        wcc = summary[(summary.hw == hw) & (summary.scheme == "wcc")]
        line = next(ln for ln in lines if ln.startswith(f"{hw}, wcc:"))
        inside = wcc[wcc.within_budget & (wcc.energy_saving_pct > 0)]
        if len(inside):
            cheapest = inside.sort_values(["energy_total_pj", "dram_bytes"]).iloc[0]
            assert "cheapest within budget" in line and f"rate {cheapest.rate:g}," in line
            assert f"{cheapest.energy_saving_pct:.1f}% energy" in line
        else:
            closest = wcc[wcc.energy_saving_pct > 0].sort_values("sqnr_drop_db").iloc[0]
            assert "no setting within the budget" in line and f"rate {closest.rate:g}," in line
            assert f"{closest.sqnr_drop_db - budget:.2f} dB over" in line


def test_run_ends_with_a_verdict_built_from_the_totals(tmp_path, capsys):
    trace = write_tiny_trace(tmp_path / "tiny.npz")
    assert main(["run", "--hw", str(HW), "--trace", str(trace), "--rate", "0.25", "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    block = text[text.index("verdict ("):]
    tot = savings(pd.read_csv(tmp_path / "o" / "totals.csv")).set_index("scheme")

    def said(v):
        return f"saves {v:.1f}%" if v >= 0 else f"costs {-v:.1f}% more"

    wcc_line = re.search(r"  WCC at rate 0.25.*", block).group(0)
    for col in ("dram_saving_pct", "energy_saving_pct", "cycle_saving_pct", "bops_saving_pct"):
        assert said(tot.loc["wcc", col]) in wcc_line, col
    assert f"{tot.loc['int8', 'dram_bytes'] / 1e6:.2f} -> {tot.loc['wcc', 'dram_bytes'] / 1e6:.2f} MB" in wcc_line
    uni = re.search(r"  uniform .*", block).group(0)
    assert said(tot.loc["uniform_nbit", "dram_saving_pct"]) in uni
    zvc = re.search(r"  ZVC .*", block).group(0)
    assert said(tot.loc["zvc", "dram_saving_pct"]) in zvc


def test_plots_tell_hardware_schemes_and_bit_widths_apart(sweep_totals):
    """BOPs vs SQNR: one marker per hardware config; SQNR vs bits: one colour per (scheme, act_bits) line;
    every axis names a unit."""
    fig = bops_pareto(sweep_totals, "t")
    ax = fig.axes[0]
    markers = {}
    for coll in ax.collections:
        hw = coll.get_label().rsplit(" on ", 1)[1]
        markers.setdefault(hw, set()).add(tuple(map(tuple, coll.get_paths()[0].vertices.round(6))))
    assert len(markers) == sweep_totals.hw.nunique() == 2
    assert all(len(v) == 1 for v in markers.values()) and len({next(iter(v)) for v in markers.values()}) == 2
    for hw_name in sweep_totals.hw.unique():
        one = sqnr_vs_bits(sweep_totals[sweep_totals.hw == hw_name], "t").axes[0]
        colours = [to_hex(line.get_color()) for line in one.get_lines() if line.get_label() != "int8"]
        assert len(colours) == 4 and len(set(colours)) == 4 and set(colours) <= {c.lower() for c in OKABE_ITO}
        assert "[bit]" in one.get_xlabel() and "[dB]" in one.get_ylabel()
    assert "[G bit-op]" in ax.get_xlabel() and "[dB]" in ax.get_ylabel() and len(HW_MARKERS) >= 2


def test_report_flags_spilling_layers_and_shows_exact_beside_tiled(tmp_path):
    """issue 17, acceptance 2: the report lists the layers whose exact selection spills, none under the tiled
    selector (edge_npu_tiled.yaml), and shows both designs' DRAM, energy and SQNR in its summary."""
    hws = [ROOT / "hw_configs" / "edge_npu.yaml", ROOT / "hw_configs" / "edge_npu_tiled.yaml"]
    sweep(hws, ROOT / "traces" / "ppocrv4_det.npz", tmp_path / "s", rates=[0.5], act_bits=[8],
          layers="p2o_Conv_[13]6")
    res = load_results(tmp_path / "s")
    text, table = spills(res, focus_config(summary_table(res.totals, 1.0)))
    assert "edge_npu (exact top-k): 1 of 2 WCC layers spill" in text
    assert "edge_npu_tiled (tiled top-k): 0 of 2 WCC layers spill" in text
    assert list(table.layer) == ["p2o_Conv_16"] and list(table.hw) == ["edge_npu"]
    html = (tmp_path / "r.html")
    assert main(["report", str(tmp_path / "s"), "-o", str(html)]) == 0
    page = html.read_text()
    assert "Top-k selections that spill to DRAM" in page and "p2o_Conv_16" in page
    s = savings(res.totals).set_index(["hw", "scheme"])
    assert s.loc[("edge_npu_tiled", "wcc"), "dram_bytes"] < s.loc[("edge_npu", "wcc"), "dram_bytes"]
