"""Smoke test of the benchmark harness (bench/run.py --quick) and of its PyTorch comparison pipeline.

No timing asserts: the harness must run, print a table and write a valid results.json; the torch
pipeline must compute the paper's Eq. 9 (checked against PyWavelets).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
STATUSES = {"PASS", "FAIL", "SKIP", "MISSING"}  # ERROR (a target crashed) fails the smoke test


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    return proc, out


def test_quick_run_prints_table_and_writes_results(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| # | target | measured | limit | status | note |" in proc.stdout
    res = json.loads(out.read_text())
    assert res["quick"] is True
    for key in ("environment", "memory_bandwidth", "targets", "layers", "threads"):
        assert key in res
    env = res["environment"]
    assert env["versions"]["numpy"] and env["numba"]["threads"] >= 1 and env["blas"]
    assert res["memory_bandwidth"]["gb_per_s_best"] > 0


def test_every_target_has_a_status_and_sane_figures(quick_run):
    proc, out = quick_run
    res = json.loads(out.read_text())
    ids = [t["id"] for t in res["targets"]]
    assert ids == ["1", "2", "3a", "3b", "4", "5a", "5b", "5c", "5d", "6", "7"]
    for t in res["targets"]:
        assert t["status"] in STATUSES
        assert (t["measured"] is None) == (t["status"] in {"SKIP", "MISSING"}), t
        assert t["id"] in proc.stdout
    for group in res["details"].values():
        for row in group if isinstance(group, list) else []:
            for fig in row.values():
                if isinstance(fig, dict) and "min_s" in fig:
                    assert 0 < fig["min_s"] <= fig["median_s"]


def test_torch_absence_is_reported_not_fatal(quick_run):
    proc, out = quick_run
    t1 = json.loads(out.read_text())["targets"][0]
    try:
        import torch  # noqa: F401
    except ImportError:
        assert t1["status"] == "SKIP" and "torch not installed" in t1["note"]
        assert "torch is NOT installed" in proc.stdout
    else:
        assert "torch not installed" not in t1["note"]


def _eq9_pywt(x, w, b, rate, levels):
    """Float64 Eq. 9 with PyWavelets' orthonormal Haar: joint top-k by L2 norm across channels."""
    pywt = pytest.importorskip("pywt")
    n, c, h, wd = x.shape
    m = 2 ** levels
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (0, -h % m), (0, -wd % m)))
    coeffs = pywt.wavedec2(xp, "haar", mode="periodization", level=levels, axes=(2, 3))
    arr, slices = pywt.coeffs_to_array(coeffs, axes=(2, 3))
    energy = (arr ** 2).sum(axis=1).reshape(n, -1)
    k = max(1, int(rate * energy.shape[1]))
    keep = np.zeros_like(energy, dtype=bool)
    np.put_along_axis(keep, np.argsort(-energy, axis=1)[:, :k], True, axis=1)
    arr = arr * keep.reshape(n, 1, *arr.shape[2:])
    out = np.einsum("oc,nchw->nohw", w.astype(np.float64), arr)
    rec = pywt.waverec2(pywt.array_to_coeffs(out, slices, output_format="wavedec2"), "haar",
                        mode="periodization", axes=(2, 3))
    return rec[:, :, :h, :wd] + b.reshape(1, -1, 1, 1)


@pytest.mark.parametrize("rate", [1.0, 0.5, 0.25])
def test_torch_float_wcc_is_eq9(rate):
    pytest.importorskip("torch")
    sys.path.insert(0, str(BENCH))
    try:
        from float_wcc_torch import float_wcc_numpy
    finally:
        sys.path.remove(str(BENCH))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 21, 19)).astype(np.float32)
    w = rng.standard_normal((5, 6)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    got = float_wcc_numpy(x, w, b, rate, levels=3)
    ref = _eq9_pywt(x, w, b, rate, 3)
    assert got.shape == ref.shape == (2, 5, 21, 19)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    if rate == 1.0:
        conv = np.einsum("oc,nchw->nohw", w, x) + b.reshape(1, -1, 1, 1)
        np.testing.assert_allclose(got, conv, rtol=0, atol=1e-4)


def _quality_run(wcc, int8, uniform, worst_shift=0.0):
    """A `network_quality.measure` record with the given mean (SQNR dB, IoU) per mode; worst = mean - shift."""
    mean = {m: {"sqnr_db": v[0], "iou": v[1]} for m, v in (("wcc", wcc), ("int8", int8), ("uniform", uniform))}
    worst = {m: {k: x - worst_shift for k, x in d.items()} for m, d in mean.items()}
    return {"images": list("abcdefgh"), "empty_images": ["a"], "uniform_bits": 4, "mean": mean, "worst": worst}


def test_network_quality_targets_judge_acceptance_1_and_2():
    sys.path.insert(0, str(BENCH))
    try:
        from network_quality import targets
    finally:
        sys.path.remove(str(BENCH))
    ok = {("per_level", 1.0): _quality_run((4.1, 0.65), (5.0, 0.669), (5.0, 0.669)),
          ("per_band", 1.0): _quality_run((4.0, 0.6495), (5.0, 0.669), (5.0, 0.669)),
          ("per_tensor", 1.0): _quality_run((1.0, 0.3), (5.0, 0.669), (5.0, 0.669)),
          ("per_level", 0.5): _quality_run((4.4, 0.65), (5.0, 0.669), (1.3, 0.24), 0.5)}
    rows = {r["id"]: r for r in targets(ok)}
    assert {i: r["status"] for i, r in rows.items()} == {
        "1 per_level SQNR": "PASS", "1 per_level IoU": "PASS", "1 per_band SQNR": "PASS", "1 per_band IoU": "PASS",
        "1 per_tensor": "SKIP", "2 mean sqnr_db": "PASS", "2 mean iou": "PASS", "2 worst sqnr_db": "PASS",
        "2 worst iou": "PASS"}
    assert rows["1 per_band SQNR"]["measured"] == pytest.approx(-1.0)  # the bound itself passes
    bad = dict(ok)
    bad[("per_band", 1.0)] = _quality_run((3.9, 0.648), (5.0, 0.669), (5.0, 0.669))  # -1.1 dB, -0.021 IoU
    bad[("per_level", 0.5)] = _quality_run((4.4, 0.24), (5.0, 0.669), (1.3, 0.24), 0.5)  # a tie is no win
    rows = {r["id"]: r for r in targets(bad)}
    assert [i for i, r in rows.items() if r["status"] == "FAIL"] == [
        "1 per_band SQNR", "1 per_band IoU", "2 mean iou", "2 worst iou"]
