"""Issue 21: sweeps on a dask cluster. Bad scheduler addresses (malformed, nobody listening, a server that
never answers, one that answers garbage) are one line and exit 2 within 15 s with nothing created in
``--out``; workers that cannot see the client's files get what each point needs and give identical files."""

import dataclasses
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_run import HW, ROOT, snapshot, write_tiny_trace
from wccsim.capture.images import PRESETS
from wccsim.cli import main
from wccsim.cluster import batches, parse_scheduler
from wccsim.errors import InputError
from wccsim.network.grid import NetworkSetup
from wccsim.sweeper import prepare, sweep

distributed = pytest.importorskip("distributed", reason="dask extra not installed")

ARGS = dict(rates=[0.5, 0.25], act_bits=[8, 4])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_trace(tmp_path_factory.mktemp("trace") / "tiny.npz")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test checks the sweep's stderr, not the server's log
        pass


class _Server:
    """A TCP server on 127.0.0.1 in a daemon thread, stopped by `close`: ``http`` (python's http.server,
    which waits for a request line the dask handshake never sends) or ``garbage`` (writes bytes that are no
    dask message to every connection and keeps it open)."""

    def __init__(self, kind: str):
        if kind == "http":
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuietHandler)
            self.port, self._serve = self.server.server_address[1], self.server.serve_forever
        else:
            self.server = socket.create_server(("127.0.0.1", 0))
            self.port, self._serve, self._stop = self.server.getsockname()[1], self._garbage, threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _garbage(self):
        self.server.settimeout(0.1)
        held = []
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except socket.timeout:
                continue
            conn.sendall(b"\xff" * 64 + b"not dask\r\n")
            held.append(conn)
        for conn in held:
            conn.close()

    def close(self):
        if isinstance(self.server, http.server.HTTPServer):
            self.server.shutdown()
            self.server.server_close()
        else:
            self._stop.set()
            self.thread.join(5)
            self.server.close()


BAD = {
    "empty": lambda: ("", None),
    "malformed": lambda: ("garbage-address", None),
    "wrong scheme": lambda: ("http://127.0.0.1:8786", None),
    "port out of range": lambda: ("tcp://127.0.0.1:99999", None),
    "nobody listening": lambda: (f"tcp://127.0.0.1:{_free_port()}", None),
    "never answers": lambda: _serving("http"),
    "answers garbage": lambda: _serving("garbage"),
}


def _serving(kind: str):
    server = _Server(kind)
    return f"tcp://127.0.0.1:{server.port}", server


@pytest.mark.parametrize("bad", list(BAD), ids=list(BAD))
def test_bad_scheduler_is_one_line_within_15_s_and_creates_nothing(bad, tiny, tmp_path, capsys):
    address, server = BAD[bad]()
    out = tmp_path / "out"
    out.mkdir()
    try:
        start = time.monotonic()
        status = main(["sweep", "--hw", str(HW), "--trace", str(tiny), "--out", str(out), "--rates", "0.5",
                       "--scheduler", address])
        elapsed = time.monotonic() - start
    finally:
        if server is not None:
            server.close()
    err = capsys.readouterr().err
    assert status == 2 and elapsed < 15, (status, elapsed, err)
    assert err.startswith("wccsim: error: options: scheduler: expected ") and err.count("\n") == 1, err
    assert os.listdir(out) == []


@pytest.mark.parametrize("given, used", [("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"),
                                         ("sched.example.org:8786", "tcp://sched.example.org:8786"),
                                         ("tls://[::1]:8786", "tls://[::1]:8786"),
                                         ("inproc://192.168.1.2/123/4", "inproc://192.168.1.2/123/4")])
def test_good_scheduler_addresses_are_accepted(given, used):
    assert parse_scheduler(given) == used


@pytest.mark.parametrize("bad", ["tcp://host", "tcp://:8786", "tcp://host:0", "udp://host:8786", "inproc://",
                                 "tcp://host:8786/path", " tcp://host:8786"])
def test_malformed_scheduler_addresses_are_refused(bad):
    with pytest.raises(InputError, match="^options: scheduler: expected tcp://HOST:PORT"):
        parse_scheduler(bad)


def test_shipped_files_are_the_trace_model_and_image_files(tiny, tmp_path):
    ctx, _, _ = prepare(HW, tiny, [1], [8], [8], None, None, 1)
    image = tmp_path / "line.png"
    image.write_bytes(b"png")
    calib = tmp_path / "calib.png"
    calib.write_bytes(b"png2")
    net = NetworkSetup(str(tmp_path / "m.onnx"), "sha", (str(image), "skimage:text"), ("a", "b"), None,
                       PRESETS["ppocr_det"], 0.3, (str(calib), "skimage:coins"), ("c", "d"), "disjoint")
    ctx = dataclasses.replace(ctx, network=net)
    assert ctx.input_files() == (ctx.trace_path, net.model_path, str(image), str(calib))
    local = dict(zip(ctx.input_files(), ("/w/t.npz", "/w/m.onnx", "/w/line.png", "/w/calib.png")))
    moved = ctx.with_files(local)
    assert (moved.trace_path, moved.network.model_path, moved.network.images, moved.network.calib_images) == \
        ("/w/t.npz", "/w/m.onnx", ("/w/line.png", "skimage:text"), ("/w/calib.png", "skimage:coins"))
    assert moved.network.key() == net.key() and moved.hws == ctx.hws  # journal keys do not change


def _private_mounts_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _private_mounts_work(),
                    reason="needs a private mount namespace (`unshare -m`, root) to hide the client's files")
def test_workers_that_cannot_see_the_clients_files_give_identical_results(tiny, tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    sweep(HW, tiny, ref, **ARGS)
    client_dir, worker_dir = tmp_path / "client", tmp_path / "worker"
    client_dir.mkdir()
    worker_dir.mkdir()
    shutil.copy(tiny, client_dir / "tiny.npz")
    shutil.copy(HW, client_dir / HW.name)
    with distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1", scheduler_port=0,
                                  dashboard_address=None) as cluster:
        # the worker's mount namespace hides the client's directory under an empty tmpfs; it runs elsewhere
        worker = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs {client_dir} && exec {sys.executable} -m "
             f"distributed.cli.dask_worker {cluster.scheduler_address} --nworkers 1 --nthreads 1 "
             f"--local-directory {worker_dir} --no-dashboard --preload wccsim.cluster"],
            cwd=worker_dir, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            with distributed.Client(cluster.scheduler_address) as client:
                client.wait_for_workers(1, timeout=60)
                seen = client.run(os.path.exists, str(client_dir / "tiny.npz"))
                assert list(seen.values()) == [False]
                preloaded = client.run(lambda: "wccsim.simulate" in sys.modules)  # dask_setup ran at start
                assert list(preloaded.values()) == [True]
                profiler = client.run(lambda dask_worker: {"profile", "profile-cycle"} & set(dask_worker.periodic_callbacks))
                assert list(profiler.values()) == [set()]  # removed by the preload before the worker started it
            monkeypatch.chdir(client_dir)
            sweep(HW.name, "tiny.npz", tmp_path / "dask", scheduler=cluster.scheduler_address, **ARGS)
        finally:
            worker.terminate()
            worker.wait(30)
    assert snapshot(tmp_path / "dask") == snapshot(ref)


def test_batches_keep_order_shrink_and_run_unknown_work_alone():
    work = [float("inf")] + [10.0] * 8 + [1.0] * 8  # largest first, as the sweeper orders points
    points = list(range(len(work)))
    got = batches(points, work, workers=1)
    assert [p for b in got for p in b] == points  # every point once, in the given order
    assert got[0] == [0]  # a network point (infinite work) is a batch of its own
    sizes = [sum(work[p] for p in b) for b in got[1:]]
    assert sizes == sorted(sizes, reverse=True) and len(got) < len(points)  # fewer tasks, shrinking work
    assert batches(points, work, workers=len(points) * 10) == [[p] for p in points]  # many workers: one each
