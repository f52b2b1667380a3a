"""Calibration's share of `wccsim run` (issue 18, acceptance 5: at most 10 %).

Usage::

    python bench/calib_time.py [--trace traces/ppocrv4_det.npz] [--hw hw_configs/edge_npu.yaml] [--runs 3]

Two measurements, each the median of ``--runs`` runs after a warm-up (numba's first calls, and its on-disk
cache), with `CalibSample`'s construction (its bin records: ``__init__`` and ``group``; the samples ``group``
makes count twice, which errs high), ``add`` and ``add_columns`` (histogram filling; the coefficients'
conversion to real units and split into scale groups happen inside ``add_columns``) and ``clip`` (clip
values) timed by wrapping them (`timing.time_method`, in the fresh process too: bench/timing.py imports
the standard library only):

- ``command``: the command as users run it, ``wccsim run --hw HW --trace TRACE --out DIR``, in a fresh
  process each time: share = calibration / the process's wall time (start-up, imports, trace, simulation,
  files). The issue's 38 % (1.9 of 5.1 s) reads as such a share. numba's one-time start-up, which lands in
  the first kernel a process calls, is paid before the command by a MAC kernel and reported apart.
- ``in_process``: `wccsim.runner.run` called in one process (no start-up, no files): share = calibration /
  the call's time; stricter.

Not counted as calibration: the float convolution that produces the outputs to calibrate on
(`simulate_layer` needs it for its error figures anyway). Output: a table on stdout and
``bench/calib_time_results.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import envinfo  # noqa: E402
from report import format_table, target  # noqa: E402
from timing import time_method  # noqa: E402

import wccsim.calibrate as cal  # noqa: E402
from wccsim.atomic import write_text  # noqa: E402
from wccsim.runner import run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "calib_time_results.json"
LIMIT = 0.10


TIMED = ("__init__", "group", "add", "add_columns", "clip")

# the command in a fresh process, with the same wrappers; writes {"rc", "calib_s", "numba_start_s"} to the file
# argv[1]. numba's one-time start-up (about 0.5 s: LLVM and the target context) falls into whichever kernel the
# process calls first, in `wccsim run` a histogram; it is paid here first, by a MAC kernel, and reported apart.
_CHILD = """
import json, sys, time
sys.path.insert(0, %r)
import numpy as np
import wccsim.calibrate as cal
from timing import time_method
from wccsim.datapath.mac import int_matmul
t = time.perf_counter()
int_matmul(np.ones((1, 1), np.int8), np.ones((1, 1, 1), np.int8))  # numba's one-time start-up, outside the timers
numba_start = time.perf_counter() - t
clock = dict.fromkeys(%r, 0.0)
for name in clock:
    time_method(cal.CalibSample, name, clock)
from wccsim.cli import main
rc = main(sys.argv[2:])
open(sys.argv[1], "w").write(json.dumps({"rc": rc, "calib_s": sum(clock.values()), "numba_start_s": numba_start}))
""" % (str(Path(__file__).resolve().parent), TIMED)


def command_run(hw: str, trace: str) -> dict:
    """One ``wccsim run`` in a fresh process: its wall time and the calibration time inside it."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "calib.json"
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _CHILD, str(report), "run", "--hw", hw, "--trace", trace,
                               "--out", str(Path(tmp) / "out")], capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t
        if done.returncode != 0 or not report.is_file():
            raise RuntimeError(f"wccsim run failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        got = json.loads(report.read_text())
    return {"command_s": wall, "calib_s": got["calib_s"], "numba_start_s": got["numba_start_s"],
            "share": got["calib_s"] / wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/calib_time.py", description=__doc__.splitlines()[0])
    p.add_argument("--trace", default=str(ROOT / "traces" / "ppocrv4_det.npz"))
    p.add_argument("--hw", default=str(ROOT / "hw_configs" / "edge_npu.yaml"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    command_run(args.hw, args.trace)  # warm-up: numba's on-disk cache
    commands = [command_run(args.hw, args.trace) for _ in range(args.runs)]
    run(args.hw, args.trace, progress=False)  # warm-up: numba's first calls in this process
    clock = {name: 0.0 for name in TIMED}
    originals = {name: time_method(cal.CalibSample, name, clock) for name in clock}
    runs = []
    try:
        for _ in range(args.runs):
            before = dict(clock)
            t = time.perf_counter()
            run(args.hw, args.trace, progress=False)
            wall = time.perf_counter() - t
            init, add, clip = (clock[k] - before[k] for k in ("__init__", "add", "clip"))
            add += clock["add_columns"] - before["add_columns"]
            init += clock["group"] - before["group"]  # group() calls __init__: its time is counted in both
            runs.append({"run_s": wall, "init_s": init, "add_s": add, "clip_s": clip,
                         "share": (init + add + clip) / wall})
    finally:
        for name, fn in originals.items():
            setattr(cal.CalibSample, name, fn)
    cmd = sorted(commands, key=lambda r: r["share"])[len(commands) // 2]
    median = sorted(runs, key=lambda r: r["share"])[len(runs) // 2]
    rows = [target("command", "calibration / `wccsim run` command, fresh process (median run)", cmd["share"] * 100,
                   LIMIT * 100, "%", note=f"command {cmd['command_s']:.2f} s, calibration {cmd['calib_s']:.3f} s, "
                   f"numba start-up {cmd['numba_start_s']:.3f} s (not calibration); "
                   f"shares of {args.runs} runs: " + ", ".join(f"{r['share']:.1%}" for r in commands)),
            target("in_process", "calibration / `runner.run` in one process (median run; stricter)",
                   median["share"] * 100, LIMIT * 100, "%",
                   note=f"run {median['run_s']:.2f} s, samples made {median['init_s']:.3f} s, histograms "
                   f"{median['add_s']:.3f} s, clip values {median['clip_s']:.3f} s; shares of {args.runs} runs: "
                   + ", ".join(f"{r['share']:.1%}" for r in runs))]
    table = format_table(rows)
    print(table)
    result = {"command": " ".join(["python", "bench/calib_time.py"] + (argv if argv is not None else sys.argv[1:])),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "environment": envinfo.collect(None), "trace": args.trace, "hw": args.hw,
              "median_share_command": statistics.median(r["share"] for r in commands), "commands": commands,
              "median_share": statistics.median(r["share"] for r in runs), "runs": runs, "targets": rows,
              "table_markdown": table}
    write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
