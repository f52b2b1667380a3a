"""wccsim report: self-contained HTML structure, every figure present, files beside it, headless Chromium."""

import base64
import csv
import io
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from test_run import HW, ROOT, snapshot, write_tiny_trace
from wccsim.cli import main
from wccsim.reporting import FIGURES, report
from wccsim.sweeper import sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collects figures (id -> img src), table ids, and every URL-bearing attribute."""

    def __init__(self):
        super().__init__()
        self.figures, self.tables, self.urls, self.scripts, self._fig = {}, [], [], 0, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure":
            self._fig = a.get("id")
        elif tag == "img" and self._fig:
            self.figures[self._fig] = a.get("src", "")
        elif tag == "table":
            self.tables.append(a.get("id"))
        elif tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if key in a:
                self.urls.append(a[key])

    def handle_endtag(self, tag):
        if tag == "figure":
            self._fig = None


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("report")
    trace = write_tiny_trace(base / "tiny.npz")
    out = base / "sweep"
    sweep([HW, ROOT / "hw_configs" / "mcu_npu.yaml"], trace, out, rates=[1, 0.5, 0.25], act_bits=[8, 4])
    return out


def test_sweep_report_is_self_contained_with_every_figure(sweep_dir, tmp_path):
    html = report(sweep_dir, tmp_path / "r.html", max_sqnr_drop_db=3.0)
    page = parse(html)
    assert set(page.figures) == {f"fig-{f}" for f in FIGURES}
    for src in page.figures.values():
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert all(u.startswith("data:") for u in page.urls) and page.scripts == 0  # nothing fetched, no JS
    assert {"summary-best", "summary-all"} <= set(page.tables)
    for fig in FIGURES:
        assert (tmp_path / f"r_{fig}.png").read_bytes().startswith(PNG_MAGIC)
    summary = (tmp_path / "r_summary.csv").read_text().splitlines()
    assert summary[0].startswith("hw,scheme,") and len(summary) > 1


def test_run_dir_report_and_network_outputs_are_included(tmp_path, capsys):
    trace = write_tiny_trace(tmp_path / "tiny.npz", n_layers=2)
    run_dir = tmp_path / "run"
    assert main(["run", "--hw", str(HW), "--trace", str(trace), "--out", str(run_dir)]) == 0
    # What `wccsim network` leaves in an out dir: network.json and pictures.
    (run_dir / "network.json").write_text(json.dumps(
        {"rate": 0.5, "mean": {"wcc": {"out": {"sqnr_db": 4.07, "iou": 0.92}},
                               "uniform": {"out": {"sqnr_db": 1.15, "iou": 0.7}}}}))
    (run_dir / "det_map.png").write_bytes(_tiny_png())
    assert main(["report", str(run_dir)]) == 0
    page = parse(run_dir / "report.html")
    assert set(page.figures) == {f"fig-{f}" for f in FIGURES} | {"fig-network-det_map"}
    assert "network-drift" in page.tables and "4.07" in (run_dir / "report.html").read_text()
    # A second report in the same directory does not pick up its own PNGs as network pictures.
    assert main(["report", str(run_dir)]) == 0
    assert "fig-network-report_roofline" not in parse(run_dir / "report.html").figures


def _tiny_png() -> bytes:
    from matplotlib.figure import Figure

    from wccsim.reporting.plots import png_bytes

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().imshow(np.eye(4))
    return png_bytes(fig)


@pytest.mark.parametrize("extra", [["--max-sqnr-drop-db", "-1"], ["--max-sqnr-drop-db", "inf"],
                                   ["--max-sqnr-drop-db", "x"], ["--max-score-drop", "-0.1"],
                                   ["--max-score-drop", "nan"]], ids=["negative", "inf", "text", "score_negative",
                                                                      "score_nan"])
def test_bad_budget_exits_2_and_keeps_the_old_report(sweep_dir, tmp_path, capsys, extra):
    out = tmp_path / "r.html"
    out.write_text("old report")
    assert main(["report", str(sweep_dir), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wccsim: error: ") and err.count("\n") == 1
    assert snapshot(tmp_path) == {"r.html": b"old report"}


def test_missing_directory_or_table_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err.count("\n") == 2
    assert not (tmp_path / "r.html").exists()


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(sweep_dir, tmp_path):
    html = report(sweep_dir, tmp_path / "r.html")
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1200,2400", f"--screenshot={shot}", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ERR_" not in proc.stderr and "Failed to load" not in proc.stderr
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[0] >= 2000 and img.shape[1] >= 1000
    assert img[..., :3].std() > 0.05  # not a blank page: figures and tables were painted


@pytest.fixture(scope="module")
def net_dir(tmp_path_factory) -> Path:
    """A sweep with network points: PP-OCRv4 det on skimage:page at 96 x 192, one rate, one act_bits."""
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    base = tmp_path_factory.mktemp("netreport")
    out = base / "sweep"
    sweep(HW, write_tiny_trace(base / "tiny.npz", n_layers=2), out, rates=[0.5], act_bits=[8],
          onnx=Path(rapidocr.__file__).parent / "models" / "ch_PP-OCRv4_det_infer.onnx", images=["skimage:page"],
          size=(96, 192))
    return out


def test_network_csv_adds_the_quality_vs_bops_figure_and_table(net_dir, tmp_path):
    from wccsim.reporting import NETWORK_FIGURE

    html = report(net_dir, tmp_path / "r.html")
    page = parse(html)
    assert set(page.figures) == {f"fig-{f}" for f in (*FIGURES, NETWORK_FIGURE)}
    src = page.figures[f"fig-{NETWORK_FIGURE}"]
    assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "network-quality" in page.tables
    assert (tmp_path / f"r_{NETWORK_FIGURE}.png").read_bytes().startswith(PNG_MAGIC)
    text = html.read_text()
    assert "IoU of the binarized map vs float" in text and "uniform_nbit" in text


def test_bad_network_csv_exits_2(net_dir, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(net_dir, bad)
    (bad / "network.csv").write_text("hw,scheme\nedge_npu,wcc\n")
    assert main(["report", str(bad), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "network.csv" in err and err.count("\n") == 1 and not (tmp_path / "r.html").exists()


# ------------------------------------------------------------------ bad result directories (issue 19)

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("report_run")
    out = base / "run"
    assert main(["run", "--hw", str(HW), "--trace", str(write_tiny_trace(base / "tiny.npz", n_layers=2)),
                 "--out", str(out)]) == 0
    return out


def _text(path: Path, fn):
    path.write_text(fn(path.read_text()))


def _json(name: str, fn):
    def edit(d: Path):
        doc = json.loads((d / name).read_text())
        fn(doc)
        (d / name).write_text(json.dumps(doc))
    return edit


def _cells(name: str, fn):
    """Edit a CSV as a list of rows (header first) and write it back as wccsim does."""
    def edit(d: Path):
        rows = list(csv.reader(io.StringIO((d / name).read_text())))
        rows = fn(rows) or rows
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        (d / name).write_text(buf.getvalue())
    return edit


def _set(col: str, row: int, value: str):
    """Set cell `col` of data row `row` (1 = first row below the header)."""
    def fn(rows):
        rows[row][rows[0].index(col)] = value
    return fn


def _times2(col: str):
    def fn(rows):
        i = rows[0].index(col)
        rows[1][i] = repr(float(rows[1][i]) * 2)
    return fn


def _drop_col(col: str):
    def fn(rows):
        i = rows[0].index(col)
        return [r[:i] + r[i + 1:] for r in rows]
    return fn


def _unlink(name: str):
    return lambda d: (d / name).unlink()


BAD_RESULTS = [  # (id, base directory, edit of a copy, strings the one-line error must contain)
    ("run_json_truncated", "run", lambda d: _text(d / "run.json", lambda t: t[:len(t) // 2]),
     ("run.json", "valid JSON")),
    ("run_json_malformed", "run", lambda d: (d / "run.json").write_text("{'hw': edge}\n"), ("run.json", "valid JSON")),
    ("run_json_not_an_object", "run", lambda d: (d / "run.json").write_text("[1, 2]\n"), ("run.json", "a JSON object")),
    ("run_json_without_layers", "run", _json("run.json", lambda m: m.pop("layers")), ("run.json", "layers", "missing")),
    ("run_json_options_not_a_mapping", "run", _json("run.json", lambda m: m.update(options=[0.5])),
     ("run.json", "options.rate", "missing")),
    ("run_json_other_rate", "run", _json("run.json", lambda m: m["options"].update(rate=0.25)),
     ("layers.csv", "cfg_rate", "0.5")),
    ("run_json_more_layers", "run", _json("run.json", lambda m: m["layers"].append("conv9")),
     ("layers.csv", "layer", "'conv9'")),
    ("run_json_scheme_not_in_table", "run", _json("run.json", lambda m: m["schemes"].append("fp16")),
     ("layers.csv", "scheme", "'fp16'")),
    ("sweep_json_truncated", "sweep", lambda d: _text(d / "sweep.json", lambda t: t[:100]),
     ("sweep.json", "valid JSON")),
    ("sweep_json_empty", "sweep", lambda d: (d / "sweep.json").write_text(""), ("sweep.json", "valid JSON")),
    ("sweep_json_without_rates", "sweep", _json("sweep.json", lambda m: m["grid"].pop("rates")),
     ("sweep.json", "grid.rates", "missing")),
    ("sweep_json_hw_not_a_list", "sweep", _json("sweep.json", lambda m: m.update(hw={"name": "edge_npu"})),
     ("sweep.json", "hw", "a list")),
    ("sweep_json_rates_not_numbers", "sweep", _json("sweep.json", lambda m: m["grid"].update(rates=[[1]])),
     ("sweep.json", "grid.rates", "names or numbers")),
    ("sweep_json_fewer_act_bits", "sweep", _json("sweep.json", lambda m: m["grid"].update(act_bits=[8])),
     ("layers.csv", "cfg_act_bits", "4")),
    ("layers_csv_cut_short", "sweep", lambda d: _text(d / "layers.csv", lambda t: t[:3000]),
     ("layers.csv", "cut short")),
    ("layers_csv_cut_at_a_line_end", "sweep", lambda d: _text(d / "layers.csv",
                                                               lambda t: "".join(t.splitlines(True)[:40])),
     ("layers.csv", "hw/cfg_coef", "none for ('mcu_npu', 'per_tensor:fixed_point')")),
    ("layers_csv_run_cut_short", "run", lambda d: _text(d / "layers.csv", lambda t: "".join(t.splitlines(True)[:7])),
     ("layers.csv", "rows", "expected 8 rows", "got 6;")),
    ("layers_csv_empty", "run", lambda d: (d / "layers.csv").write_text(""), ("layers.csv", "empty file")),
    ("layers_csv_header_only", "run", lambda d: _text(d / "layers.csv", lambda t: t.splitlines(True)[0]),
     ("layers.csv", "rows", "none")),
    ("layers_csv_not_utf8", "run", lambda d: (d / "layers.csv").write_bytes(b"\xff\xfe\x00garbage\n"),
     ("layers.csv", "UTF-8")),
    ("layers_csv_not_a_table", "run", lambda d: (d / "layers.csv").write_text("<html>not a table</html>\n"),
     ("layers.csv", "columns", "missing hw")),
    ("layers_csv_cycles_abc", "run", _cells("layers.csv", _set("cycles", 3, "abc")),
     ("layers.csv", "line 4: cycles", "a number", "'abc'")),
    ("layers_csv_bits_text", "sweep", _cells("layers.csv", _set("cfg_act_bits", 7, "eight")),
     ("layers.csv", "line 8: cfg_act_bits", "'eight'")),
    ("layers_csv_empty_label", "run", _cells("layers.csv", _set("bound", 2, "")),
     ("layers.csv", "line 3: bound", "a non-empty label")),
    ("layers_csv_missing_column", "run", _cells("layers.csv", _drop_col("energy_pj")),
     ("layers.csv", "columns", "missing energy_pj")),
    ("layers_csv_row_short_a_cell", "run", _cells("layers.csv", lambda r: r[2].pop() and None),
     ("layers.csv", "line 3", "cells")),
    ("layers_csv_other_design", "sweep", _cells("layers.csv", _set("cfg_coef", 2, "per_band:pow2")),
     ("layers.csv", "hw/cfg_coef", "'per_band:pow2'")),
    ("sweep_json_without_hw_coef", "sweep", _json("sweep.json", lambda m: m["hw"][0].pop("coef")),
     ("sweep.json", "hw.*.coef", "missing")),
    ("run_json_other_design", "run", _json("run.json", lambda m: m["hw"]["coef"].update(granularity="per_band")),
     ("layers.csv", "hw/cfg_coef", "per_band:fixed_point")),
    ("layers_csv_duplicate_row", "sweep", _cells("layers.csv", lambda r: r[:-1] + [r[1]]),
     ("layers.csv", "rows", "twice")),
    ("layers_csv_other_hw", "run", _cells("layers.csv", _set("hw", 1, "npu_32x32")),
     ("layers.csv", "hw", "'npu_32x32'")),
    ("totals_csv_cut_short", "sweep", lambda d: _text(d / "totals.csv", lambda t: t[:700]),
     ("totals.csv", "cut short")),
    ("totals_csv_cycles_abc", "run", _cells("totals.csv", _set("cycles", 1, "abc")),
     ("totals.csv", "line 2: cycles", "'abc'")),
    ("totals_csv_energy_edited", "sweep", _cells("totals.csv", _times2("energy_pj")),
     ("totals.csv", "energy_pj", "the totals of layers.csv")),
    ("totals_csv_row_missing", "sweep", _cells("totals.csv", lambda r: r[:-1]), ("totals.csv", "rows")),
    ("totals_csv_missing_column", "run", _cells("totals.csv", _drop_col("bops")), ("totals.csv", "columns", "bops")),
    ("totals_csv_absent", "run", _unlink("totals.csv"), ("no totals.csv",)),
    ("network_json_truncated", "run", lambda d: (d / "network.json").write_text('{"rate": 0.'),
     ("network.json", "valid JSON")),
    ("not_a_result_no_json", "run", _unlink("run.json"), ("run.json or sweep.json",)),
    ("not_a_result_both_json", "run", lambda d: (d / "sweep.json").write_text("{}"), ("both run.json and sweep.json",)),
    ("not_a_result_other_files", "run",
     lambda d: [p.unlink() for p in d.iterdir()] and (d / "notes.txt").write_text("hello\n"),
     ("layers.csv, totals.csv", "no layers.csv, totals.csv, run.json or sweep.json")),
]


@pytest.mark.parametrize("name,base,edit,expect", BAD_RESULTS, ids=[c[0] for c in BAD_RESULTS])
def test_bad_result_directory_exits_2_with_one_line_and_writes_nothing(run_dir, sweep_dir, tmp_path, capsys,
                                                                        name, base, edit, expect):
    d = tmp_path / "res"
    shutil.copytree({"run": run_dir, "sweep": sweep_dir}[base], d)
    edit(d)
    before = snapshot(tmp_path)
    assert main(["report", str(d)]) == 2       # default output DIR/report.html: must not appear
    err = capsys.readouterr().err
    assert err.startswith(f"wccsim: error: {d}") and err.count("\n") == 1 and "Traceback" not in err, err
    for text in expect:
        assert text in err, f"{text!r} not in {err!r}"
    assert snapshot(tmp_path) == before


def test_good_result_directories_pass_the_checks(run_dir, sweep_dir):
    from wccsim.reporting.tables import load_results

    for d, kind, rows in ((run_dir, "run", 2 * 4), (sweep_dir, "sweep", 2 * 3 * 2 * 3 * 4)):
        res = load_results(d)
        assert res.kind == kind and len(res.layers) == rows
        meta = json.loads((d / f"{kind}.json").read_text())
        assert meta["schemes"] == list(dict.fromkeys(res.layers.scheme))


def test_truncated_json_exits_2_in_a_real_process(run_dir, tmp_path):
    d = tmp_path / "res"
    shutil.copytree(run_dir, d)
    _text(d / "run.json", lambda t: t[:200])
    r = subprocess.run([sys.executable, "-m", "wccsim", "report", str(d)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "run.json" in r.stderr, r.stderr
    assert not (d / "report.html").exists()
