"""System-level targets: scaling of the layer time, ``sweep --jobs``, peak memory and numba cold/warm start.

Commands run as subprocesses (``python -m wccsim ...``); peak RSS comes from a small wrapper process that
runs one command and reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` (its only child), so every
figure is one command's peak.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import stages
from layers import synthetic_layer
from report import MISSING, SKIP, target
from timing import fit_exponent, time_side_by_side

__all__ = ["scaling", "memory", "cold_warm", "peak_rss_run"]

ROOT = Path(__file__).resolve().parent.parent
HW_YAML = ROOT / "hw_configs" / "edge_npu.yaml"
_WRAPPER = ("import resource, subprocess, sys, time, json; t0 = time.perf_counter(); "
            "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
            "print(json.dumps({'rc': r.returncode, 'wall_s': time.perf_counter() - t0, "
            "'maxrss_bytes': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, "
            "'stderr': r.stderr[-2000:]}))")
_IMPORT_ALL = ("import pkgutil, importlib, wccsim; "
               "[importlib.import_module(m.name) for m in pkgutil.walk_packages(wccsim.__path__, 'wccsim.') "
               "if '.commands.' not in m.name and not m.name.endswith('__main__')]")


_SIMULATE_ONE = (_IMPORT_ALL + "; from wccsim.trace import open_trace; from wccsim.hw import DatapathSpec; "
                 "from wccsim.simulate import simulate_layer; ld = open_trace({trace!r}).layer({layer!r}); "
                 "simulate_layer(ld.x, ld.w, ld.b, DatapathSpec(), 0.5, ld.stride)")


def peak_rss_run(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``; returns ``rc``, ``wall_s``, ``maxrss_bytes`` (its peak RSS) and the tail of stderr."""
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True,
                         env=env, cwd=ROOT, check=True)
    return json.loads(out.stdout)


def _wccsim(*args: str) -> list[str]:
    return [sys.executable, "-m", "wccsim", *map(str, args)]


def _scaling_series(sizes: list[tuple], repeats: int) -> list[dict]:
    """Datapath time per synthetic layer of each (cin, cout, h, w); one row per size."""
    rows = []
    for cin, cout, h, w in sizes:
        layer = synthetic_layer(cin, cout, h, w, 1, seed=cin + h)
        st = stages.datapath_call(layer, 0.5)
        if st["call"] is None:
            return []
        t = time_side_by_side({"layer": st["call"]}, repeats, min_repeat_s=0.0)["layer"]
        rows.append({"cin": cin, "cout": cout, "h": h, "w": w, "time_s": t})
    return rows


def scaling(src: dict, quick: bool, repeats: int) -> tuple[list, dict]:
    """Target 5: exponent of time vs H*W and vs Cin*Cout (4+ sizes each, <= 1.1); sweep --jobs 2 vs 1."""
    hw_sizes = [16, 24, 32, 48] if quick else [32, 64, 128, 256, 384]
    ch_sizes = [4, 8, 16, 32] if quick else [16, 32, 64, 128, 256]
    spatial = _scaling_series([(32, 32, s, s) for s in hw_sizes], repeats)
    channels = _scaling_series([(c, c, 32 if quick else 64, 32 if quick else 64) for c in ch_sizes], repeats)
    details = {"spatial": spatial, "channels": channels}
    out = []
    for tid, label, rows, size in (("5a", "scaling exponent vs H x W", spatial, lambda r: r["h"] * r["w"]),
                                   ("5b", "scaling exponent vs Cin x Cout", channels, lambda r: r["cin"] * r["cout"])):
        if not rows:
            out.append(target(tid, label, None, 1.1, "", status=MISSING, note="layer.simulate_layer missing"))
            continue
        expo = fit_exponent([size(r) for r in rows], [r["time_s"]["min_s"] for r in rows])
        pts = ", ".join(f"{size(r)}:{r['time_s']['min_s'] * 1e3:.1f}ms" for r in rows)
        out.append(target(tid, label, expo, 1.1, "", note=f"log-log fit over {len(rows)} sizes ({pts})"))
    for tid in _SWEEPS:
        row, details[f"sweep_{tid}"] = _sweep_jobs(src, quick, tid)
        out.append(row)
    return out, details


_SWEEPS = {"5c": ("sweep --jobs 2 speedup over --jobs 1", ["--rates", "0.5,0.25"], "rates 0.5,0.25"),
           "5d": ("same, 6-point grid per layer", ["--rates", "0.5,0.25,0.125", "--act-bits", "8,6"],
                  "rates 0.5,0.25,0.125 x act-bits 8,6")}


def _sweep_jobs(src: dict, quick: bool, tid: str) -> tuple[dict, dict]:
    """``wccsim sweep --jobs 2`` vs ``--jobs 1`` wall time on the bundled trace (>= 1.8x): 5c the issue's
    2-rate sweep, 5d a 6-point grid (more work per fixed start-up cost)."""
    name, grid, grid_note = _SWEEPS[tid]
    if quick:
        return target(tid, name, None, 1.8, "x", status=SKIP, higher_is_better=True, note="--quick"), {}
    if importlib.util.find_spec("wccsim.sweeper") is None or src["path"] is None or not HW_YAML.exists():
        return target(tid, name, None, 1.8, "x", status=MISSING, higher_is_better=True,
                      note="wccsim sweep, the real trace or hw_configs/edge_npu.yaml missing"), {}
    walls = {}
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, 2, 1, 2):  # alternate: noise hits both
            out = Path(tmp) / f"j{jobs}_{len(walls)}"
            r = peak_rss_run(_wccsim("sweep", "--hw", HW_YAML, "--trace", src["path"], *grid,
                                     "--out", out, "--jobs", jobs))
            if r["rc"] != 0:
                return target(tid, name, None, 1.8, "x", status=MISSING, higher_is_better=True,
                              note=f"sweep failed: {r['stderr'].strip().splitlines()[-1:]}"), r
            walls.setdefault(jobs, []).append(r["wall_s"])
            walls.setdefault(f"loadavg_after_jobs{jobs}", []).append(os.getloadavg()[0])
            shutil.rmtree(out, ignore_errors=True)
    speedup = min(walls[1]) / min(walls[2])
    return target(tid, name, speedup, 1.8, "x", higher_is_better=True,
                  note=f"jobs1 {min(walls[1]):.1f} s, jobs2 {min(walls[2]):.1f} s (best of 2, {grid_note}; "
                       f"worst of 2: {max(walls[1]) / max(walls[2]):.2f}x; 1-min load average "
                       f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; jobs 1 runs in-process with "
                       f"multithreaded BLAS, jobs 2 workers single-threaded)"), walls


def _largest_layer_bytes(trace_path: str) -> tuple[str, int]:
    """(name, bytes of x, w, b and y as float32) of the trace's largest layer."""
    from wccsim.trace import open_trace
    tr = open_trace(trace_path)
    best = ("", 0)
    for li in tr.layers:
        nbytes = 4 * sum(int(_prod(s)) for s in li.shapes(tr.n).values())
        if not li.has_y:
            nbytes += 4 * tr.n * li.cout * li.ho * li.wo
        best = max(best, (li.name, nbytes), key=lambda t: t[1])
    return best


def _prod(shape) -> int:
    p = 1
    for s in shape:
        p *= s
    return p


def memory(src: dict, quick: bool, repeats: int) -> tuple[list, dict]:
    """Target 6: peak RSS of ``wccsim run`` on the trace <= 3 x largest layer bytes + interpreter baseline."""
    name = "wccsim run peak RSS / (3 x largest layer + baseline)"
    if quick:
        return [target("6", name, None, 1.0, "x", status=SKIP, note="--quick")], {}
    if src["path"] is None or not HW_YAML.exists() or importlib.util.find_spec("wccsim.commands.run") is None:
        return [target("6", name, None, 1.0, "x", status=MISSING,
                       note="real trace, hw_configs/edge_npu.yaml or wccsim run missing")], {}
    imports = peak_rss_run([sys.executable, "-c", _IMPORT_ALL])
    with tempfile.TemporaryDirectory() as tmp:
        base = peak_rss_run(_wccsim("run", "--hw", HW_YAML, "--trace", _tiny_trace(Path(tmp)), "--out",
                                    str(Path(tmp) / "tiny"), "--format", "csv"))
        run = peak_rss_run(_wccsim("run", "--hw", HW_YAML, "--trace", src["path"], "--out", tmp, "--format", "csv"))
    for r in (base, run):
        if r["rc"] != 0:
            return [target("6", name, None, 1.0, "x", status=MISSING,
                           note=f"wccsim run failed: {r['stderr'][-300:]}")], r
    layer, nbytes = _largest_layer_bytes(src["path"])
    limit_bytes = 3 * nbytes + base["maxrss_bytes"]
    one = peak_rss_run([sys.executable, "-c", _SIMULATE_ONE.format(trace=src["path"], layer=layer)])
    d = {"run": run, "baseline_tiny_run": base, "import_all": imports, "largest_layer": layer,
         "largest_layer_bytes": nbytes, "limit_bytes": limit_bytes, "simulate_layer_largest_alone": one}
    return [target("6", name, run["maxrss_bytes"] / limit_bytes, 1.0, "x",
                   note=f"peak {run['maxrss_bytes'] / 2**20:.0f} MiB vs 3 x {nbytes / 2**20:.1f} MiB ({layer}) + "
                        f"baseline {base['maxrss_bytes'] / 2**20:.0f} MiB (the same wccsim run on a 1-layer "
                        f"1x8x16x16 trace: interpreter, imports, numba kernels loaded; importing alone "
                        f"{imports['maxrss_bytes'] / 2**20:.0f} MiB); simulate_layer({layer}, keep=True) alone "
                        f"peaks at {one['maxrss_bytes'] / 2**20:.0f} MiB", details=d)], d


def _tiny_trace(tmp: Path) -> str:
    """A 1-layer trace of a 1x8x16x16 -> 8 conv: what `wccsim run` costs when nothing scales with the layer."""
    from wccsim.trace import LayerData, write_trace
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    w = rng.standard_normal((8, 8)).astype(np.float32)
    path = tmp / "tiny.npz"
    write_trace(path, {"network": "tiny"}, [LayerData("tiny", x, w, None, None, 1)])
    return str(path)


def _cache_flags() -> dict:
    """Per numba dispatcher in wccsim: whether on-disk caching is enabled (``cache=True``)."""
    import pkgutil

    import numba
    import wccsim
    flags = {}
    for m in pkgutil.walk_packages(wccsim.__path__, "wccsim."):
        if ".commands." in m.name or m.name.endswith("__main__"):
            continue
        mod = importlib.import_module(m.name)
        for attr, obj in vars(mod).items():
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.__module__ == m.name:
                flags[f"{m.name}.{attr}"] = type(obj._cache).__name__ != "NullCache"
    return flags


def cold_warm(src: dict, quick: bool, repeats: int) -> tuple[list, dict]:
    """Target 7: ``wccsim run`` cold (fresh NUMBA_CACHE_DIR) vs warm start; every njit has cache=True."""
    flags = _cache_flags()
    uncached = sorted(k for k, v in flags.items() if not v)
    name = "numba cache: warm / cold wccsim run wall time"
    if quick or src["path"] is None or not HW_YAML.exists():
        why = "--quick" if quick else "real trace or hw_configs/edge_npu.yaml missing"
        return [target("7", name, None, 1.0, "x", status=SKIP if quick else MISSING,
                       note=f"{why}; {len(flags)} njit functions, uncached: {uncached or 'none'}")], flags
    walls = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(2):
            env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(tmp) / f"cache{i}"))
            for kind in ("cold", "warm"):
                r = peak_rss_run(_wccsim("run", "--hw", HW_YAML, "--trace", src["path"], "--layers",
                                         src["names"][0], "--out", Path(tmp) / "out", "--format", "csv"), env)
                walls[kind].append(r["wall_s"])
    cold, warm = min(walls["cold"]), min(walls["warm"])
    status = None if not uncached else "FAIL"
    return [target("7", name, warm / cold, 1.0, "x", status=status,
                   note=f"cold {cold:.2f} s, warm {warm:.2f} s (one layer, best of 2); "
                        f"{len(flags)} njit functions, uncached: {uncached or 'none'}")], {"walls": walls, "flags": flags}

