"""Issue 21, acceptance 1: the sweep S on a 2-worker dask LocalCluster against ``--jobs 2``.

S = ``wccsim sweep --hw hw_configs/edge_npu.yaml --hw hw_configs/mcu_npu.yaml --trace traces/ppocr_cls.npz
--rates 1,0.5,0.25,0.125 --act-bits 8,6,4``. Runs interleave (cluster, jobs2, cluster, jobs2, ...) so both
see the same load on a shared machine. Each cluster run gets a fresh cluster (separate worker processes
under dask Nannies, one thread each, 127.0.0.1, ``preload=["wccsim.cluster"]`` as the docs' ``dask worker
--preload wccsim.cluster``), started before the clock as a persistent cluster is started before sweeps are
submitted; its start-up CPU is reported apart. Each sweep is one ``python -m wccsim`` process timed from
start to exit into a fresh directory. Target: the median of the pairs' wall-time ratios <= 1.2, every
cluster run's files byte-identical to its pair's ``--jobs 2`` files.

CPU seconds (user, system) are reported per role: for ``--jobs 2`` the sweep process and its pool workers;
for the cluster the client (the sweep process), the two workers and the scheduler process (scheduler and
nannies, in this process). On a shared machine they vary much less than wall time.

    python bench/cluster.py [--pairs N]   # one JSON line per pair, then a summary; exit 0 when the target holds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
S = ["sweep", "--hw", "hw_configs/edge_npu.yaml", "--hw", "hw_configs/mcu_npu.yaml", "--trace",
     "traces/ppocr_cls.npz", "--rates", "1,0.5,0.25,0.125", "--act-bits", "8,6,4"]
TARGET_RATIO = 1.2  # issue 21: the cluster at most 1.2 x the local pool
WORKERS = 2
# The environment of a user's shell, taken before LocalCluster's nannies (in this process) add their
# pre-spawn variables (MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS, ...) to os.environ.
_SHELL_ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def cpu(who: int = resource.RUSAGE_SELF) -> tuple[float, float]:
    """(user, system) CPU seconds of this process (or its waited children) so far."""
    r = resource.getrusage(who)
    return r.ru_utime, r.ru_stime


def since(before: tuple[float, float], after: tuple[float, float]) -> list[float]:
    return [round(a - b, 2) for a, b in zip(after, before)]


def timed_sweep(out: Path, *extra: str) -> tuple[float, list[float]]:
    """Wall seconds and [user, system] CPU seconds of one ``wccsim sweep`` process (S plus `extra`) writing
    into `out`; the CPU includes its pool workers (waited children)."""
    before = cpu(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "wccsim", *S, "--out", str(out), *extra], cwd=ROOT, env=_SHELL_ENV,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, since(before, cpu(resource.RUSAGE_CHILDREN))


def cluster_sweep(out: Path) -> dict:
    """S on a fresh 2-worker LocalCluster: wall time, CPU per role, and the workers' start-up CPU."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, preload=["wccsim.cluster"]) as cluster, Client(cluster) as client:
        started = client.run(cpu)
        scheduler = cpu()
        wall, client_cpu = timed_sweep(out, "--scheduler", cluster.scheduler_address)
        scheduler = since(scheduler, cpu())
        done = client.run(cpu)
    workers = [since(started[w], done[w]) for w in sorted(done)]
    return {"wall_s": round(wall, 2), "client_cpu": client_cpu, "workers_cpu": workers, "scheduler_cpu": scheduler,
            "total_cpu": [round(client_cpu[i] + scheduler[i] + sum(w[i] for w in workers), 2) for i in (0, 1)],
            "worker_startup_cpu": [[round(x, 2) for x in started[w]] for w in sorted(started)]}


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="interleaved (cluster, jobs2) pairs (default 3)")
    pairs = []
    for i in range(parser.parse_args().pairs):
        with tempfile.TemporaryDirectory() as tmp:
            load_before = os.getloadavg()[0]
            dask = cluster_sweep(Path(tmp) / "dask")
            wall, local_cpu = timed_sweep(Path(tmp) / "jobs2", "--jobs", str(WORKERS))
            pair = {"pair": i + 1, "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                    "cluster": dask, "jobs2": {"wall_s": round(wall, 2), "total_cpu": local_cpu},
                    "ratio": round(dask["wall_s"] / wall, 3),
                    "identical": files(Path(tmp) / "jobs2") == files(Path(tmp) / "dask")}
        print(json.dumps(pair), flush=True)
        pairs.append(pair)
    median = statistics.median(p["ratio"] for p in pairs)
    ok = all(p["identical"] for p in pairs) and median <= TARGET_RATIO
    print(json.dumps({"median_wall_s": {k: round(statistics.median(p[k]["wall_s"] for p in pairs), 2)
                                        for k in ("cluster", "jobs2")},
                      "median_user_s": {k: round(statistics.median(p[k]["total_cpu"][0] for p in pairs), 2)
                                        for k in ("cluster", "jobs2")},
                      "median_ratio": round(median, 3), "target_ratio": TARGET_RATIO,
                      "identical": all(p["identical"] for p in pairs), "ok": ok, "cpus": os.cpu_count()}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
