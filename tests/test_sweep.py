"""wccsim sweep: grid, resume after SIGKILL, torn journal lines, --jobs determinism, dask, input errors."""

import dataclasses
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from filelock import FileLock

from test_run import HW, ROOT, snapshot, write_tiny_trace
from wccsim.cli import main
from wccsim.errors import InputError
from wccsim.results import SCHEMES
from wccsim.runner import run
from wccsim.sweeper import JOURNAL, NetworkPoint, _largest_first, _start_method, prepare, sweep

HW2 = ROOT / "hw_configs" / "mcu_npu.yaml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_trace(tmp_path_factory.mktemp("trace") / "tiny.npz")


def _cli(tiny, out, *extra):
    return [sys.executable, "-m", "wccsim", "sweep", "--hw", str(HW), "--trace", str(tiny), "--out", str(out),
            *extra]


def _journal_keys(path: Path) -> list[str]:
    data = path.read_bytes() if path.exists() else b""
    return [json.loads(line)["key"] for line in data[:data.rfind(b"\n") + 1].splitlines()]


def test_sweep_rows_equal_single_runs(tiny, tmp_path):
    df = sweep([HW, HW2], tiny, tmp_path, rates=[1, 0.5], act_bits=[8, 6], weight_bits=[8])
    assert len(df) == 2 * 2 * 2 * 3 * len(SCHEMES)
    assert not df.duplicated(["hw", "cfg_rate", "cfg_act_bits", "cfg_weight_bits", "layer", "scheme"]).any()
    one = df[(df.hw == "edge_npu") & (df.cfg_rate == 0.5) & (df.cfg_act_bits == 6)].reset_index(drop=True)
    pd.testing.assert_frame_equal(one, run(HW, tiny, rate=0.5, act_bits=6))
    int8 = df[df.scheme == "int8"].drop(columns=["cfg_rate", "cfg_act_bits", "cfg_weight_bits"])
    assert len(int8.drop_duplicates()) == 2 * 3  # one int8 reference per (hw, layer), whatever the config
    on_disk = pd.read_csv(tmp_path / "layers.csv")
    pd.testing.assert_frame_equal(on_disk, df, check_dtype=False)
    meta = json.loads((tmp_path / "sweep.json").read_text())
    assert meta["grid"]["rates"] == [1.0, 0.5] and [h["name"] for h in meta["hw"]] == ["edge_npu", "mcu_npu"]


def test_rerun_skips_finished_points_and_is_byte_identical(tiny, tmp_path, monkeypatch):
    args = dict(rates=[0.5, 0.25], act_bits=[8])
    sweep(HW, tiny, tmp_path, **args)
    first = snapshot(tmp_path)
    import wccsim.sweeper as sw

    def fail(*a, **k):
        raise AssertionError("a finished point was recomputed")
    monkeypatch.setattr(sw, "compute_point", fail)
    sweep(HW, tiny, tmp_path, **args)
    assert snapshot(tmp_path) == first


def test_torn_last_journal_line_is_dropped_and_recomputed(tiny, tmp_path):
    args = dict(rates=[0.5], act_bits=[8, 4])
    ref = sweep(HW, tiny, tmp_path / "ref", **args)
    out = tmp_path / "torn"
    sweep(HW, tiny, out, **args)
    journal = out / JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # crash mid-write
    (out / "layers.csv").unlink()
    df = sweep(HW, tiny, out, **args)
    pd.testing.assert_frame_equal(df, ref)
    keys = _journal_keys(journal)
    assert len(keys) == len(set(keys)) == 6
    assert snapshot(out) == snapshot(tmp_path / "ref")


def test_jobs_1_and_2_give_identical_files(tiny, tmp_path):
    grid = ["--rates", "1,0.5,0.25", "--act-bits", "8,4", "--weight-bits", "8"]
    for jobs in ("1", "2"):
        r = subprocess.run(_cli(tiny, tmp_path / f"j{jobs}", *grid, "--jobs", jobs), capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
    a, b = snapshot(tmp_path / "j1"), snapshot(tmp_path / "j2")
    assert set(a) == {".lock", "layers.csv", "totals.csv", "sweep.json", JOURNAL} and a == b


def test_sigkill_at_random_moments_resumes_without_loss_or_duplicates(tiny, tmp_path):
    grid = ["--rates", "1,0.5,0.25", "--act-bits", "8,4", "--weight-bits", "8,4"]
    n_points = 3 * 2 * 2 * 3
    t0 = time.monotonic()
    subprocess.run(_cli(tiny, tmp_path / "ref", *grid), check=True, capture_output=True)
    duration = time.monotonic() - t0
    out = tmp_path / "killed"
    rng = random.Random(1234)
    kills, partial_states = 0, 0
    while kills < 20 or partial_states < 3:
        proc = subprocess.Popen(_cli(tiny, out, *grid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, duration))
        if proc.poll() is not None:  # finished before the kill: start over so later kills hit a live sweep
            subprocess.run(["rm", "-rf", str(out)], check=True)
            continue
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        keys = _journal_keys(out / JOURNAL)
        assert len(keys) == len(set(keys)) <= n_points  # never a duplicated point
        partial_states += 0 < len(keys) < n_points
        assert kills < 200, "the sweep keeps finishing before the kill"
    subprocess.run(_cli(tiny, out, *grid), check=True, capture_output=True)
    ref, got = snapshot(tmp_path / "ref"), snapshot(out)
    assert got["layers.csv"] == ref["layers.csv"] and got["totals.csv"] == ref["totals.csv"]
    assert got[JOURNAL] == ref[JOURNAL] and len(_journal_keys(out / JOURNAL)) == n_points
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def _children(pid: int) -> list[int]:
    """Live child processes of `pid` (Linux /proc)."""
    kids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            kids.append(int(status.parent.name))
    return kids


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_sigkill_of_a_parallel_sweep_leaves_no_worker_behind(tiny, tmp_path):
    grid = ["--rates", ",".join(str(r / 20) for r in range(1, 21)), "--act-bits", "8,6,4", "--jobs", "2"]
    proc = subprocess.Popen(_cli(tiny, tmp_path / "out", *grid), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _journal_keys(tmp_path / "out" / JOURNAL) and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until the workers are computing
    kids = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert kids, "the sweep never started its workers"
    with open(tmp_path / "out" / ".lock", "a") as f:  # free at once: (forked) workers do not hold the lock
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{k}").exists() for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [k for k in kids if Path(f"/proc/{k}").exists()]
    for k in alive:  # clean up before failing
        os.kill(k, signal.SIGKILL)
    assert not alive, "pool workers outlived the killed sweep"


def test_pool_gets_network_points_then_layer_points_largest_first(tiny):
    ctx, points, _ = prepare([HW, HW2], tiny, [1, 0.5], [8], [8], None, None, 2)
    order = _largest_first(ctx, points)
    work = [ctx.layer_work[p.layer_index] for p in order]
    assert sorted(order, key=points.index) == points and work == sorted(work, reverse=True)
    assert [p.layer for p in order[:4]] == ["conv2"] * 4  # the tiny trace's layers grow with their index
    net = NetworkPoint(0, 1.0, 8, 8, "float")
    assert _largest_first(ctx, points + [net])[0] == net


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is used on Linux only")
def test_workers_are_forked_only_when_it_is_safe(tiny):
    ctx, _, _ = prepare(HW, tiny, [1], [8], [8], None, None, 2)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert _start_method(ctx) == "spawn"  # a lock held by another thread would stay held in a forked child
    finally:
        stop.set()
        other.join()
    assert _start_method(dataclasses.replace(ctx, network=object())) == "spawn"
    if threading.active_count() == 1:
        assert _start_method(ctx) == "fork"


def test_dask_local_cluster_gives_the_same_table(tiny, tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask extra not installed")
    args = dict(rates=[0.5, 0.25], act_bits=[8])
    ref = sweep(HW, tiny, tmp_path / "local", **args)
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=2,
                                  dashboard_address=None) as cluster:
        (worker,) = cluster.workers.values()
        profiler = {"profile", "profile-cycle"}
        assert profiler <= set(worker.periodic_callbacks)  # dask's default: its sampling profiler on
        df = sweep(HW, tiny, tmp_path / "dask", scheduler=cluster.scheduler_address, **args)
        assert not profiler & set(worker.periodic_callbacks)  # stopped by the first task (no preload here)
    pd.testing.assert_frame_equal(df, ref)
    assert snapshot(tmp_path / "dask") == snapshot(tmp_path / "local")


BAD = {
    "rate 0": ["--rates", "1,0"],
    "rate > 1": ["--rates", "2"],
    "rate text": ["--rates", "1,x"],
    "act bits 1": ["--act-bits", "8,1"],
    "weight bits 17": ["--weight-bits", "17"],
    "jobs 0": ["--jobs", "0"],
    "unknown glob": ["--layers", "fc*"],
    "missing trace": ["--trace", "missing.npz"],
    "missing hw": ["--hw", "missing.yaml"],
    "mean without onnx": ["--mean", "0.5,0.5,0.5"],
    "output kind without onnx": ["--output-kind", "alpha"],
    "bad mean": ["--mean", "0.5,x,0.5"],
}


@pytest.mark.parametrize("extra", list(BAD.values()), ids=list(BAD))
def test_bad_arguments_exit_2_and_write_nothing(tiny, tmp_path, capsys, extra):
    out = tmp_path / "out"
    assert main(["sweep", "--hw", str(HW), "--trace", str(tiny), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wccsim: error: ") and err.count("\n") == 1
    assert not out.exists()


def test_locked_directory_is_refused(tiny, tmp_path):
    with open(tmp_path / ".lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        with pytest.raises(InputError, match="no other sweep is writing, got locked$"):
            sweep(HW, tiny, tmp_path, rates=[0.5])


def test_second_sweep_into_a_held_directory_exits_2_with_one_line(tiny, tmp_path, capsys):
    with FileLock(str(tmp_path / ".lock"), blocking=False):  # as a running sweep holds it
        assert main(["sweep", "--hw", str(HW), "--trace", str(tiny), "--out", str(tmp_path), "--rates", "0.5"]) == 2
    assert capsys.readouterr().err == \
        f"wccsim: error: {tmp_path}: expected a sweep directory no other sweep is writing, got locked\n"
    assert os.listdir(tmp_path) == [".lock"]


# ------------------------------------------------------------------------- network-level points

def _cls_model() -> Path:
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    return Path(rapidocr.__file__).parent / "models" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


NET_ARGS = dict(rates=[1, 0.5], act_bits=[8], weight_bits=[8], images=["skimage:text"])


@pytest.fixture(scope="module")
def net_sweep(tiny, tmp_path_factory) -> Path:
    """A finished sweep with network points (PP-OCR cls on one 48 x 192 text line, 2 rates x 1 act_bits)."""
    out = tmp_path_factory.mktemp("net") / "sweep"
    sweep(HW, tiny, out, onnx=_cls_model(), **NET_ARGS)
    return out


def test_network_points_rows_bops_and_metrics_as_wccsim_network(net_sweep, tiny, tmp_path):
    from wccsim.results import NETWORK_COLUMNS
    from wccsim.network.simulate import simulate_network

    net = pd.read_csv(net_sweep / "network.csv")
    assert list(net.columns) == list(NETWORK_COLUMNS)
    assert list(zip(net.scheme, net.cfg_rate)) == [("float", 1), ("int8", 1), ("wcc", 1), ("uniform_nbit", 1),
                                                   ("wcc", 0.5), ("uniform_nbit", 0.5)]
    assert (net.kind == "class").all() and (net.layers == 41).all() and net.iou.isna().all()
    fp, int8 = net.iloc[0], net.iloc[1]
    assert fp.sqnr_db > 80 and fp.top1_agree == 1 and fp.bops == fp.macs * 32 * 32
    assert int8.bops == int8.macs * 64 and 0 < int8.sqnr_db < 60
    # int8 point == uniform 8-bit at rate 1 (same simulation); uniform 4-bit costs half the BOPs
    same = [c for c in NETWORK_COLUMNS if c not in ("scheme",)]
    assert net.iloc[3][same].equals(int8[same])
    assert net.iloc[5].bops == int8.bops / 2 and net.iloc[5].act_bits == 4
    wcc_half = net.iloc[4]
    assert net.iloc[2].bops > int8.bops > wcc_half.bops  # rate 1 pays the Haar term; rate 0.5 halves the MACs
    # the drift numbers are the ones wccsim network reports for the same setting
    s = simulate_network(_cls_model(), ["skimage:text"], HW, rate=0.5, act_bits=8).summary
    out = s["model"]["outputs"][0]
    assert wcc_half.output == out
    for mode, row in (("wcc", wcc_half), ("uniform", net.iloc[5])):
        for m in ("mse", "sqnr_db", "top1_agree", "kl_nats"):
            assert row[m] == pytest.approx(s["mean"][mode][out][m], rel=1e-12, abs=0)
    meta = json.loads((net_sweep / "sweep.json").read_text())
    assert meta["network"]["images"] == ["skimage:text"] and meta["network"]["preprocess"] == "ppocr_cls"


def test_network_points_resume_from_a_cut_journal_and_are_never_recomputed(net_sweep, tiny, tmp_path, monkeypatch):
    import shutil

    import wccsim.sweeper as sw

    out = tmp_path / "cut"
    shutil.copytree(net_sweep, out)
    journal = out / JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    net_lines = [i for i, line in enumerate(lines) if b'\\"network\\"' in line]
    assert len(net_lines) == 6 and len(lines) == 6 + 2 * 3
    keep = [line for i, line in enumerate(lines) if i not in net_lines[2:]]  # lose 4 network points...
    journal.write_bytes(b"".join(keep) + lines[net_lines[2]][:40])           # ...and tear a line
    (out / "network.csv").unlink()
    computed = []
    real = sw.compute_point
    monkeypatch.setattr(sw, "compute_point", lambda ctx, p: computed.append(p) or real(ctx, p))
    sweep(HW, tiny, out, onnx=_cls_model(), **NET_ARGS)
    assert sorted((p.scheme, p.rate) for p in computed) == [("uniform_nbit", 0.5), ("uniform_nbit", 1.0),
                                                            ("wcc", 0.5), ("wcc", 1.0)]
    assert snapshot(out) == snapshot(net_sweep)
    computed.clear()
    sweep(HW, tiny, out, onnx=_cls_model(), **NET_ARGS)  # finished: nothing computed, files unchanged
    assert computed == [] and snapshot(out) == snapshot(net_sweep)


def test_coefficient_designs_share_the_network_points_that_do_not_read_them(net_sweep, tiny, tmp_path,
                                                                               monkeypatch):
    """With two coefficient designs, float, int8 and uniform points run once per hardware config and their
    rows (relabelled) are those of a sweep with the other design alone; WCC runs per design."""
    import wccsim.sweeper as sw

    computed = []
    real = sw.compute_point
    monkeypatch.setattr(sw, "compute_point", lambda ctx, p: computed.append(p) or real(ctx, p))
    out = tmp_path / "two"
    sweep(HW, tiny, out, onnx=_cls_model(), coef=["per_tensor", "per_level"], **NET_ARGS)
    net_computed = [p for p in computed if isinstance(p, sw.NetworkPoint)]
    assert sorted((p.scheme, p.rate, p.hw_index) for p in net_computed) == [
        ("float", 1.0, 0), ("int8", 1.0, 0), ("uniform_nbit", 0.5, 0), ("uniform_nbit", 1.0, 0),
        ("wcc", 0.5, 0), ("wcc", 0.5, 1), ("wcc", 1.0, 0), ("wcc", 1.0, 1)]
    net = pd.read_csv(out / "network.csv")
    assert sorted(set(net.cfg_coef)) == ["per_level:fixed_point", "per_tensor:fixed_point"]
    alone = tmp_path / "alone"
    sweep(HW, tiny, alone, onnx=_cls_model(), coef=["per_level"], **NET_ARGS)
    ref = pd.read_csv(alone / "network.csv")
    mine = net[net.cfg_coef == "per_level:fixed_point"].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, ref)


def test_network_sweep_jobs_2_gives_identical_files(net_sweep, tiny, tmp_path):
    r = subprocess.run(_cli(tiny, tmp_path / "j2", "--rates", "1,0.5", "--act-bits", "8", "--weight-bits", "8",
                            "--onnx", str(_cls_model()), "--image", "skimage:text", "--jobs", "2"),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = snapshot(tmp_path / "j2")
    assert set(got) == {".lock", "layers.csv", "totals.csv", "network.csv", "sweep.json", JOURNAL}
    assert got == snapshot(net_sweep)


NET_BAD = {
    "image without onnx": ["--image", "skimage:text"],
    "threshold without onnx": ["--threshold", "0.5"],
    "size without onnx": ["--size", "48x192"],
    "onnx without image": ["--onnx", "MODEL"],
    "missing model": ["--onnx", "missing.onnx", "--image", "skimage:text"],
    "unknown image": ["--onnx", "MODEL", "--image", "skimage:nope"],
    "bad threshold": ["--onnx", "MODEL", "--image", "skimage:text", "--threshold", "1.5"],
    "threshold text": ["--onnx", "MODEL", "--image", "skimage:text", "--threshold", "x"],
    "bad size": ["--onnx", "MODEL", "--image", "skimage:text", "--size", "48by192"],
    "unknown preset": ["--onnx", "MODEL", "--image", "skimage:text", "--preprocess", "resnet"],
}


@pytest.mark.parametrize("extra", list(NET_BAD.values()), ids=list(NET_BAD))
def test_bad_network_arguments_exit_2_and_write_nothing(tiny, tmp_path, capsys, extra):
    extra = [str(_cls_model()) if a == "MODEL" else a for a in extra]
    out = tmp_path / "out"
    assert main(["sweep", "--hw", str(HW), "--trace", str(tiny), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wccsim: error: ") and err.count("\n") == 1
    assert not out.exists()
