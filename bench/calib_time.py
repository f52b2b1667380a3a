"""Calibration's share of `wccsim run` (issue 18, acceptance 5: at most 10 %).

Usage::

    python bench/calib_time.py [--trace traces/ppocrv4_det.npz] [--hw hw_configs/edge_npu.yaml] [--runs 3]

In one process: a warm-up run (numba's first calls), then ``--runs`` runs of `wccsim.runner.run` on the
whole trace (the work of ``wccsim run`` without writing its files), each with `CalibSample`'s construction
(its bin records: ``__init__`` and ``group``; the samples ``group`` makes count twice, which errs high),
``add`` and ``add_columns`` (histogram filling; the coefficients' conversion to real units and split into
scale groups happen inside ``add_columns``) and ``clip`` (clip values) timed by wrapping them. Share =
(construction + filling + clip) / run, per run; the reported figure is the median run's. Not counted as calibration: the float convolution
that produces the outputs to calibrate on (`simulate_layer` needs it for its error figures anyway).
Output: a table on stdout and ``bench/calib_time_results.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import envinfo  # noqa: E402
from report import format_table, target  # noqa: E402

import wccsim.calibrate as cal  # noqa: E402
from wccsim.atomic import write_text  # noqa: E402
from wccsim.runner import run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "calib_time_results.json"
LIMIT = 0.10


def timed(cls, name: str, clock: dict):
    """Wrap method ``name`` of ``cls`` so that its wall time adds up in ``clock[name]``; returns the original
    attribute as the class holds it (a static or class method stays one)."""
    held = cls.__dict__[name]
    kind = type(held) if isinstance(held, (staticmethod, classmethod)) else None
    original = held.__func__ if kind else held

    def wrapper(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            clock[name] += time.perf_counter() - t

    setattr(cls, name, kind(wrapper) if kind else wrapper)
    return held


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/calib_time.py", description=__doc__.splitlines()[0])
    p.add_argument("--trace", default=str(ROOT / "traces" / "ppocrv4_det.npz"))
    p.add_argument("--hw", default=str(ROOT / "hw_configs" / "edge_npu.yaml"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    run(args.hw, args.trace, progress=False)  # warm-up: numba's first calls
    clock = {"__init__": 0.0, "group": 0.0, "add": 0.0, "add_columns": 0.0, "clip": 0.0}
    originals = {name: timed(cal.CalibSample, name, clock) for name in clock}
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
    median = sorted(runs, key=lambda r: r["share"])[len(runs) // 2]
    note = (f"run {median['run_s']:.2f} s, samples made {median['init_s']:.3f} s, histograms {median['add_s']:.3f} s, "
            f"clip values {median['clip_s']:.3f} s; "
            f"shares of {args.runs} runs: " + ", ".join(f"{r['share']:.1%}" for r in runs))
    row = target("calib", "calibration / wccsim run (median run)", median["share"] * 100, LIMIT * 100, "%",
                 note=note)
    table = format_table([row])
    print(table)
    result = {"command": " ".join(["python", "bench/calib_time.py"] + (argv if argv is not None else sys.argv[1:])),
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "environment": envinfo.collect(None), "trace": args.trace, "hw": args.hw,
              "median_share": statistics.median(r["share"] for r in runs), "runs": runs, "targets": [row],
              "table_markdown": table}
    write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
