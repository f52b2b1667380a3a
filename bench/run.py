"""wccsim performance benchmark (issue #6): every target measured side by side, printed, saved as JSON.

Usage::

    python bench/run.py            # full run on the bundled trace, both rates (minutes)
    python bench/run.py --quick    # smoke run: 3 layers, one rate, few repeats (CI)

Targets are ratios against baselines timed in the same loop (the machine is noisy); see
docs/performance.md for what each one means and the latest table. Output: a markdown table on stdout and
``bench/results.json`` (machine, versions, BLAS and numba threads, every figure with min and median).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import envinfo  # noqa: E402
import floors  # noqa: E402
import system  # noqa: E402
import targets  # noqa: E402
from layers import layer_source  # noqa: E402
from report import ERROR, format_layers, format_profiles, format_table, target  # noqa: E402

from wccsim.atomic import write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results.json"
LEVELS = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 3 layers, rate 0.5, few repeats")
    p.add_argument("--trace", type=Path, default=None, help="trace .npz (default traces/ppocrv4_det.npz)")
    p.add_argument("--repeats", type=int, default=None, help="repeats per figure (default 7, quick 3)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results JSON path")
    p.add_argument("--only", default=None, help="comma-separated target ids to run (e.g. 1,2,3)")
    return p.parse_args(argv)


def _setup_threads(torch) -> int:
    """Same thread count everywhere: torch follows numba (BLAS uses all cores by default)."""
    n = envinfo.thread_count()
    if torch is not None:
        torch.set_num_threads(n)
    return n


def _wanted(only: str | None, tid: str) -> bool:
    return only is None or tid.rstrip("ab") in only.split(",")


def run_targets(args, src: dict, torch, rates: list[float], repeats: int, bandwidth: dict) -> tuple[list, dict]:
    """1. datapath vs torch; 2. MAC vs sgemm; 3. Haar, top-k vs copy; 4. cost; 5-7. system-level."""
    plan = [("1", "whole_layer", ["1"], lambda: targets.whole_layer(src, rates, LEVELS, repeats, torch)),
            ("2", "mac", ["2"], lambda: targets.mac_stage(src, rates, LEVELS, repeats)),
            ("3", "haar_topk", ["3a", "3b"], lambda: targets.haar_topk(src, rates, repeats, bandwidth)),
            ("4", "cost", ["4"], lambda: targets.cost_model(src, rates, repeats)),
            ("5", "scaling", ["5a", "5b", "5c", "5d"], lambda: system.scaling(src, args.quick, repeats)),
            ("6", "memory", ["6"], lambda: system.memory(src, args.quick, repeats)),
            ("7", "cold_warm", ["7"], lambda: system.cold_warm(src, args.quick, repeats))]
    # Target 1 runs torch, whose OpenMP worker threads then slow other measurements of this process on a
    # 2-core machine (target 2 read 1.35x alone, 1.7x after target 1): run it after the in-process targets
    # 2-4 and before the subprocess ones (5-7); the table keeps the id order.
    order = ["2", "3", "4", "1", "5", "6", "7"]
    plan.sort(key=lambda step: order.index(step[0]))
    rows, details = [], {}
    for tid, key, ids, fn in plan:
        if not _wanted(args.only, tid):
            continue
        try:
            out, details[key] = fn()
        except Exception as e:  # noqa: BLE001 - one broken target must not hide the others
            out, details[key] = [target(i, key, None, 0.0, "", status=ERROR, note=f"{type(e).__name__}: {e}")
                                 for i in ids], traceback.format_exc()
            print(details[key], file=sys.stderr)
        rows.extend(out if isinstance(out, list) else [out])
    rows.sort(key=lambda r: r["id"])  # table in id order (single-digit ids: string order)
    return rows, details


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    torch = envinfo.torch_module()
    threads = _setup_threads(torch)
    repeats = args.repeats or (3 if args.quick else 7)
    rates = [0.5] if args.quick else [0.5, 0.25]
    src = layer_source(args.trace, args.quick)
    bandwidth = floors.memory_bandwidth((16 if args.quick else 128) << 20, repeats)
    print(f"layers: {src['source']} ({len(src['names'])}); rates {rates}; {LEVELS} levels; int8; "
          f"{threads} threads (numba, torch, BLAS default); repeats {repeats}")
    print(f"memory bandwidth (np.copyto, {bandwidth['buffer_bytes'] >> 20} MiB, read+write): "
          f"{bandwidth['gb_per_s_best']:.1f} GB/s best, {bandwidth['gb_per_s_median']:.1f} GB/s median")
    if torch is None:
        print("torch is NOT installed: the PyTorch float WCC comparison (target 1) is skipped")
    rows, details = run_targets(args, src, torch, rates, repeats, bandwidth)
    table = format_table(rows)
    profiles = format_profiles(details)
    print(table)
    layers_table = format_layers(details.get("whole_layer", []) if isinstance(details.get("whole_layer"), list) else [])
    if layers_table:
        print("\nTarget 1 per layer (best of the repeats):\n" + layers_table)
    if profiles:
        print("\nProfiles of misses (best of 3, integer stages of the worst layer):\n" + profiles)
    result = {"command": " ".join(["python", "bench/run.py"] + (argv if argv is not None else sys.argv[1:])),
              "quick": args.quick, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "wall_s": time.perf_counter() - t_start, "environment": envinfo.collect(torch),
              "threads": threads, "layers": {"source": src["source"], "path": src["path"], "names": src["names"]},
              "rates": rates, "levels": LEVELS, "repeats": repeats, "memory_bandwidth": bandwidth,
              "targets": rows, "table_markdown": table, "layers_markdown": layers_table, "profiles": profiles, "details": details}
    write_text(args.out, json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {args.out} ({time.perf_counter() - t_start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
