"""The report's quality budget on the whole-network output (issue 19): judged on the mean AND the worst
evaluation image against int8 where network.csv has rows, on the layer aggregate otherwise, and the page
says which; network.csv checked like layers.csv (exit 2, one line, nothing written). Synthetic frames."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from test_report import _cells, _drop_col, _set, parse
from test_run import HW, ROOT, snapshot, write_tiny_trace
from wccsim.cli import main
from wccsim.reporting import budget_notes, report
from wccsim.reporting.tables import NETWORK_OPTIONAL, coef_headline, headline, summary_table
from wccsim.results import CONFIG_KEYS, NETWORK_COLUMNS, NETWORK_METRICS
from wccsim.sweeper import sweep

HW2 = ROOT / "hw_configs" / "mcu_npu.yaml"
NEW = list(NETWORK_OPTIONAL)


# ------------------------------------------------------------------ synthetic totals: the budget logic

def _totals(rows) -> pd.DataFrame:
    """Totals with what `savings` and `summary_table` read; rows: (scheme, coef, rate, energy_pj, sqnr_db)."""
    out = []
    for scheme, coef, rate, energy, sqnr in rows:
        out.append({"hw": "chip", "cfg_coef": coef, "cfg_rate": rate, "cfg_act_bits": 8, "cfg_weight_bits": 8,
                    "scheme": scheme, "rate": rate if scheme == "wcc" else 1.0, "act_bits": 8, "weight_bits": 8,
                    "eff_bits_per_act": 8 * rate, "bops": 1e9 * rate, "dram_read_bytes": 1000 * energy,
                    "dram_write_bytes": 10.0, "input_dram_bytes": 0, "energy_pj": energy, "input_energy_pj": 0.0,
                    "cycles": 100 * energy, "sqnr_total_db": sqnr})
    return pd.DataFrame(out)


PT = "per_tensor:fixed_point"
TOT = _totals([("int8", PT, r, 100.0, 30.0) for r in (1.0, 0.5, 0.25)]
              + [("wcc", PT, 1.0, 120.0, 29.5), ("wcc", PT, 0.5, 70.0, 28.0), ("wcc", PT, 0.25, 50.0, 22.0)]
              + [("uniform_nbit", PT, r, 100.0 * r, 30.0 - 10 * (1 - r)) for r in (1.0, 0.5, 0.25)])


def _net(iou: dict, worst: dict | None = None, kind: str = "prob_map", calibration: str = "disjoint") -> pd.DataFrame:
    """network.csv rows for TOT's configs: iou[(scheme, rate)] = mean; worst[(scheme, rate)] = worst image."""
    rows = []
    for (scheme, rate), mean in iou.items():
        row = {c: np.nan for c in (*NETWORK_COLUMNS, *NEW)}
        row.update(hw="chip", cfg_coef="per_tensor:fixed_point", cfg_rate=rate, cfg_act_bits=8, cfg_weight_bits=8,
                   scheme=scheme, rate=rate, act_bits=8, weight_bits=8, eff_bits_per_act=8.0, output="maps", kind=kind,
                   images=8, layers=2, macs=1.0, bops=1.0, bops_hw=1.0, sqnr_db=10 * mean, iou=mean,
                   empty_images=1, calib_images=8, calibration=calibration)
        row["iou_worst"] = np.nan if worst is None else worst[(scheme, rate)]
        row["sqnr_db_worst"] = np.nan if worst is None else 10 * worst[(scheme, rate)]
        rows.append(row)
    df = pd.DataFrame(rows)
    return df if worst is not None else df.drop(columns=NEW)


MEANS = {("float", 1.0): 1.0, ("int8", 1.0): 0.90, ("wcc", 1.0): 0.89, ("wcc", 0.5): 0.885, ("wcc", 0.25): 0.75,
         ("uniform_nbit", 1.0): 0.90, ("uniform_nbit", 0.5): 0.70, ("uniform_nbit", 0.25): 0.5}


def test_budget_is_judged_on_the_network_mean_and_worst_image():
    worst = dict(MEANS)
    worst.update({("int8", 1.0): 0.60, ("wcc", 0.5): 0.50})  # rate 0.5: mean within 0.02, worst image 0.10 below
    s = summary_table(TOT, 1.0, _net(MEANS, worst), max_score_drop=0.02)
    wcc = s[s.scheme == "wcc"].set_index("cfg_rate")
    assert (s.quality_basis == "network").all()
    assert wcc.net_drop[0.5] == pytest.approx(0.015) and wcc.net_drop_worst[0.5] == pytest.approx(0.10)
    assert wcc.shortfall[0.5] == pytest.approx(0.08)
    assert not wcc.within_budget[0.5] and wcc.shortfall[0.25] == pytest.approx(0.13)
    assert wcc.within_budget[1.0] and wcc.net_drop_worst[1.0] < 0  # within, but it costs more energy than int8
    assert not wcc.best.any()
    line = next(ln for ln in headline(s, 1.0) if ln.startswith("chip, wcc:"))
    assert line.startswith("chip, wcc: no setting within the budget; the closest, rate 0.5,")  # shortfall 0.08 < 0.13
    assert "network output iou 0.885 mean" in line and "worst image 0.500" in line
    assert "0.080 over the 0.02 budget" in line
    # with the worst image alone at fault removed, rate 0.5 is the cheapest within budget
    worst[("wcc", 0.5)] = 0.59
    s = summary_table(TOT, 1.0, _net(MEANS, worst), max_score_drop=0.02)
    best = s[s.best & (s.scheme == "wcc")]
    assert list(best.cfg_rate) == [0.5]
    line = next(ln for ln in headline(s, 1.0) if ln.startswith("chip, wcc:"))
    assert "rate 0.5, coef per_tensor:fixed_point" in line and "cheapest within budget" in line
    assert "worst image 0.590" in line and "30.0% energy" in line


def test_without_worst_columns_the_mean_alone_is_judged_and_the_page_says_so():
    s = summary_table(TOT, 1.0, _net(MEANS), max_score_drop=0.02)
    wcc = s[s.scheme == "wcc"].set_index("cfg_rate")
    assert wcc.net_worst.isna().all() and wcc.within_budget[0.5]
    assert list(s[s.best & (s.scheme == "wcc")].cfg_rate) == [0.5]
    notes = budget_notes(s, _net(MEANS), 1.0)
    assert "worst-image figures are absent" in notes and "may have been calibrated on the evaluation images" in notes


def test_calibration_on_eval_and_empty_images_are_said():
    net = _net(MEANS, MEANS, calibration="on_eval")
    s = summary_table(TOT, 1.0, net)
    notes = budget_notes(s, net, 1.0)
    assert "optimistic" in notes and "1 evaluation image(s) have an empty float output" in notes
    assert "mean over the 8 evaluation image(s) and on the worst image" in notes
    assert "worst-image figures are absent" not in notes


def test_zvc_and_sweeps_without_network_rows_use_the_layer_aggregate():
    tot = pd.concat([TOT, _totals([("zvc", "per_tensor:fixed_point", 1.0, 90.0, 30.0)])], ignore_index=True)
    s = summary_table(tot, 1.0, _net(MEANS, MEANS))
    assert set(s[s.scheme == "zvc"].quality_basis) == {"layer"} and s[s.scheme == "zvc"].best.all()
    assert "layer-aggregate SQNR 0.00 dB below int8" in next(ln for ln in headline(s, 1.0) if "zvc" in ln)
    plain = summary_table(tot, 1.0)
    assert (plain.quality_basis == "layer").all()
    # layer basis: rate 0.5 is 2.0 dB below int8 -> outside a 1 dB budget, inside a 2 dB one
    assert not plain[(plain.scheme == "wcc") & (plain.cfg_rate == 0.5)].within_budget.item()
    assert summary_table(tot, 2.0)[lambda d: (d.scheme == "wcc") & (d.cfg_rate == 0.5)].best.item()
    assert budget_notes(plain, None, 1.0).startswith("Quality budget judged on the layer aggregate")


def test_a_db_measured_output_uses_the_db_budget():
    net = _net(MEANS, MEANS, kind="logits")  # quality_metric -> sqnr_db: int8 9.0 dB, wcc rate 0.5 8.85 dB
    s = summary_table(TOT, 0.1, net, max_score_drop=0.5)
    r = s[(s.scheme == "wcc") & (s.cfg_rate == 0.5)].iloc[0]
    assert r.net_metric == "sqnr_db" and r.net_budget == 0.1 and r.net_drop == pytest.approx(0.15)
    assert not r.within_budget and r.shortfall == pytest.approx(0.05)


def test_coef_headline_names_the_cheapest_in_budget_setting_per_design():
    other = _totals([("wcc", "per_band:pow2", 1.0, 118.0, 29.9), ("wcc", "per_band:pow2", 0.5, 69.0, 29.4),
                     ("wcc", "per_band:pow2", 0.25, 49.0, 27.0)])
    s = summary_table(pd.concat([TOT, other], ignore_index=True), 1.0)
    lines = coef_headline(s, 1.0)
    assert len(lines) == 2
    assert lines[0].startswith("chip, per_tensor:fixed_point: no setting within the budget; the closest, rate 0.5,")
    assert lines[1].startswith("chip, per_band:pow2: rate 0.5, coef per_band:pow2, 8-bit") and "cheapest" in lines[1]


# ------------------------------------------------------------------ network.csv in a real sweep directory

@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("netcheck")
    out = base / "sweep"
    sweep([HW, HW2], write_tiny_trace(base / "tiny.npz", n_layers=2), out, rates=[1, 0.5], act_bits=[8],
          coef=["per_tensor", "per_level"])
    return out


def _write_network(d, *, new: bool = True):
    """A network.csv consistent with d/sweep.json: every (hw, design) x rate x (wcc, uniform_nbit) and the
    float and int8 references; iou falls with the rate."""
    meta = json.loads((d / "sweep.json").read_text())
    rows = []
    for h in meta["hw"]:
        for coef in h["coef"]:
            points = [("float", 1.0), ("int8", 1.0)] + [(s, r) for r in meta["grid"]["rates"]
                                                        for s in ("wcc", "uniform_nbit")]
            for scheme, rate in points:
                row = {c: 0.5 for c in (*NETWORK_COLUMNS, *NEW)}
                row.update(hw=h["name"], cfg_coef=coef, cfg_rate=rate, cfg_act_bits=8, cfg_weight_bits=8,
                           scheme=scheme, act_bits=8, weight_bits=8, output="maps", kind="prob_map", images=8,
                           layers=2, iou=0.7 + 0.2 * rate, iou_worst=0.5 + 0.2 * rate, empty_images=0,
                           calib_images=8, calibration="disjoint")
                rows.append(row)
    df = pd.DataFrame(rows, columns=[*NETWORK_COLUMNS, *NEW])
    (d / "network.csv").write_text((df if new else df.drop(columns=NEW)).to_csv(index=False))


def test_report_reads_network_csv_with_and_without_the_new_columns(sweep_dir, tmp_path):
    for new in (True, False):
        d = tmp_path / f"new{new}"
        shutil.copytree(sweep_dir, d)
        _write_network(d, new=new)
        html = report(d)
        text = html.read_text()
        assert "Quality budget judged on the whole-network output &#x27;maps&#x27;" in text
        assert ("worst-image figures are absent" in text) is (not new)
        page = parse(html)
        assert {"coef-designs", "network-quality", "summary-best"} <= set(page.tables)
        summary = pd.read_csv(d / "report_summary.csv")
        assert set(summary[summary.scheme.isin(["wcc", "uniform_nbit", "int8"])].quality_basis) == {"network"}
        assert set(summary[summary.scheme == "zvc"].quality_basis) == {"layer"}
        assert set(summary.cfg_coef) == {"per_tensor:fixed_point", "per_level:fixed_point"}


def _rows_of(scheme):
    return lambda rows: [rows[0]] + [r for r in rows[1:] if r[rows[0].index("scheme")] != scheme]


BAD_NETWORK = [  # (id, edit of network.csv rows, strings the one-line error must contain)
    ("iou_text", _set("iou", 3, "abc"), ("network.csv", "line 4: iou", "a number", "'abc'")),
    ("worst_text", _set("iou_worst", 2, "bad"), ("line 3: iou_worst", "'bad'")),
    ("images_not_integer", _set("images", 5, "2.5"), ("line 6: images", "an integer")),
    ("empty_images_missing_value", _set("empty_images", 2, ""), ("line 3: empty_images", "an integer")),
    ("empty_hw", _set("hw", 2, ""), ("line 3: hw", "a non-empty label")),
    ("unknown_scheme", _set("scheme", 4, "fp16"), ("line 5: scheme", "one of", "'fp16'")),
    ("unknown_calibration", _set("calibration", 2, "train"), ("line 3: calibration", "'train'")),
    ("missing_column", _drop_col("bops"), ("network.csv", "columns", "missing bops")),
    ("missing_cfg_coef", _drop_col("cfg_coef"), ("columns", "missing cfg_coef")),
    ("other_hw", _set("hw", 3, "npu_32x32"), ("network.csv", "hw/cfg_coef", "npu_32x32")),
    ("other_design", _set("cfg_coef", 3, "per_band:pow2"), ("hw/cfg_coef", "per_band:pow2")),
    ("rate_not_in_sweep", _set("cfg_rate", 3, "0.125"), ("network.csv", "cfg_rate", "0.125", "sweep.json")),
    ("no_uniform_rows", _rows_of("uniform_nbit"), ("network.csv", "scheme", "none for 'uniform_nbit'")),
    ("no_int8_rows", _rows_of("int8"), ("network.csv", "scheme", "none for 'int8'")),
    ("row_twice", lambda rows: rows + [rows[3]], ("network.csv", "rows", "twice")),
    ("row_missing", lambda rows: rows[:-1], ("network.csv", "rows", "none for")),
]


@pytest.mark.parametrize("name,edit,expect", BAD_NETWORK, ids=[c[0] for c in BAD_NETWORK])
def test_bad_network_csv_exits_2_with_one_line_and_writes_nothing(sweep_dir, tmp_path, capsys, name, edit, expect):
    d = tmp_path / "res"
    shutil.copytree(sweep_dir, d)
    _write_network(d)
    _cells("network.csv", edit)(d)
    before = snapshot(tmp_path)
    assert main(["report", str(d)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wccsim: error: {d}") and err.count("\n") == 1 and "Traceback" not in err, err
    for text in expect:
        assert text in err, f"{text!r} not in {err!r}"
    assert snapshot(tmp_path) == before


def test_network_csv_cut_short_exits_2(sweep_dir, tmp_path, capsys):
    d = tmp_path / "res"
    shutil.copytree(sweep_dir, d)
    _write_network(d)
    text = (d / "network.csv").read_text()
    (d / "network.csv").write_text(text[:len(text) // 2])
    assert main(["report", str(d)]) == 2
    err = capsys.readouterr().err
    assert "network.csv" in err and err.count("\n") == 1 and not (d / "report.html").exists()


def test_config_keys_name_the_design():
    assert "cfg_coef" in CONFIG_KEYS and all(f"{m}_worst" in NEW for m in NETWORK_METRICS)


def test_a_drop_reads_below_int8_for_a_score_and_above_for_an_error():
    from wccsim.reporting.tables import worse_side

    assert [worse_side(m) for m in ("iou", "sqnr_db", "miou", "top1_agree")] == ["below"] * 4
    assert [worse_side(m) for m in ("mae", "sad", "kl_nats", "mse")] == ["above"] * 4
