"""wccsim report: self-contained HTML structure, every figure present, files beside it, headless Chromium."""

import base64
import json
import shutil
import subprocess
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
                                   ["--max-sqnr-drop-db", "x"]], ids=["negative", "inf", "text"])
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
