"""Sweep hardware configs x coefficient designs x rates x bit widths over a trace; resumable, parallel,
deterministic.

A sweep is the cartesian product hw x coef x rate x act_bits x weight_bits (coef: the coefficient quantizer
designs of ``--coef``, each applied to every hw config; default each YAML's own); its work unit is one
*point* (hw with its design, rate, act_bits, weight_bits, layer), so ``--jobs 2`` keeps two processes busy
even for one config.
Each finished point is appended to ``DIR/journal.jsonl`` as one JSON line, flushed and fsync'd, before the
next is recorded. A rerun (after completion, a crash or SIGKILL at any moment) reads the journal, drops a
torn last line, and computes only the missing points; nothing is lost or duplicated. At the end the journal
is rewritten in sorted order and the tables are written atomically:

- ``DIR/layers.csv``: one row per (hw, cfg_coef, rate, act_bits, weight_bits, layer, scheme), columns as
  ``wccsim run``;
- ``DIR/totals.csv``: network totals per (config, scheme);
- ``DIR/sweep.json``: version, trace sha256, hardware specs and hashes, the grid and the schemes (no timestamps,
  no --jobs).

With a network (``onnx`` and ``images``), the grid also has one *network point* per (hw, rate, act_bits,
weight_bits, scheme) for the WCC and uniform schemes plus a float and an int8 reference point per hw
(`wccsim.network.grid`); they go through the same journal and their rows to ``DIR/network.csv``. Without a
network nothing changes. The same command with any ``--jobs`` gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pandas as pd
from filelock import FileLock, Timeout
from threadpoolctl import threadpool_info, threadpool_limits

from wccsim import __version__
from wccsim.atomic import check_output_dir, ensure_dir, write_errors, write_text
from wccsim.cluster import connect, parse_scheduler, run_points
from wccsim.errors import InputError
from wccsim.hw import spec_hash, spec_to_dict
from wccsim.network.grid import network_rows, prepare_network
from wccsim.options import (
    apply_coef, check_jobs, configure_datapath, make_options, parse_coef, progress_bar, resolve_hw, resolve_trace, select_layers,
)
from wccsim.results import NETWORK_COLUMNS, SCHEMES, hw_coef_design, rows_to_frame, totals
from wccsim.runner import layer_rows

__all__ = ["Point", "NetworkPoint", "JOURNAL", "plan_points", "plan_network_points", "read_journal", "Journal",
           "compute_point", "sweep"]

JOURNAL = "journal.jsonl"
_OUTPUTS = ("layers.csv", "totals.csv", "sweep.json", "network.csv", JOURNAL)


@dataclass(frozen=True)
class Point:
    """One work unit: a layer of the trace under one hardware config and one (rate, bits) setting."""
    hw_index: int
    rate: float
    act_bits: int
    weight_bits: int
    layer_index: int
    layer: str


@dataclass(frozen=True)
class NetworkPoint:
    """One network-level work unit: the whole network on every image under one hw, setting and scheme
    (`wccsim.network.grid.NETWORK_SCHEMES`; float and int8 run once per hw, at rate 1.0, 8, 8)."""
    hw_index: int
    rate: float
    act_bits: int
    weight_bits: int
    scheme: str


@dataclass(frozen=True)
class _Context:
    """What every worker needs besides the point (picklable; sent to processes and dask workers). ``hws``:
    one spec per (hw config, coefficient design), hw-major; a point's ``hw_index`` indexes it."""
    hws: tuple
    hw_hashes: tuple
    trace_path: str
    trace_sha256: str
    calib: object
    network: object = None  # wccsim.network.grid.NetworkSetup or None
    layer_work: tuple = ()  # estimated cost of each trace layer (`_layer_work`), for largest-first scheduling

    def design_free(self, hw_index: int) -> int:
        """The first spec of the same hardware config as spec ``hw_index``: the one whose network points of
        the schemes without coefficients (`_COEF_FREE`) stand for every coefficient design of that config."""
        name = self.hws[hw_index].name
        return next(i for i, h in enumerate(self.hws) if h.name == name)

    def input_files(self) -> tuple[str, ...]:
        """The files the points read (trace; with a network its model and image files), for shipping."""
        if self.network is None:
            return (self.trace_path,)
        images = tuple(i for i in (*self.network.images, *self.network.calib_images) if Path(i).is_file())
        return (self.trace_path, self.network.model_path, *dict.fromkeys(images))

    def with_files(self, local: dict[str, str]) -> "_Context":
        """This context reading `local[path]` instead of each path of `input_files` (on a dask worker)."""
        network = None if self.network is None else dataclasses.replace(
            self.network, model_path=local[self.network.model_path],
            images=tuple(local.get(i, i) for i in self.network.images),
            calib_images=tuple(local.get(i, i) for i in self.network.calib_images))
        return dataclasses.replace(self, trace_path=local[self.trace_path], network=network)


# --------------------------------------------------------------------------------------------- stages

def plan_points(n_hw: int, rates, act_bits, weight_bits, layers: Sequence[tuple[int, str]]) -> list[Point]:
    """The grid as a sorted list of points (each once; duplicated grid values are dropped)."""
    grid = itertools.product(range(n_hw), sorted(set(rates), reverse=True), sorted(set(act_bits), reverse=True),
                             sorted(set(weight_bits), reverse=True), layers)
    return [Point(h, float(r), int(a), int(w), i, name) for h, r, a, w, (i, name) in grid]


def plan_network_points(n_hw: int, rates, act_bits, weight_bits) -> list[NetworkPoint]:
    """Network points in row order: per hw the float and int8 references, then each setting's wcc and
    uniform_nbit (duplicated grid values dropped)."""
    points = []
    for h in range(n_hw):
        points += [NetworkPoint(h, 1.0, 8, 8, s) for s in ("float", "int8")]
        for r, a, w in itertools.product(sorted(set(rates), reverse=True), sorted(set(act_bits), reverse=True),
                                         sorted(set(weight_bits), reverse=True)):
            points += [NetworkPoint(h, float(r), int(a), int(w), s) for s in ("wcc", "uniform_nbit")]
    return points


_COEF_FREE = ("float", "int8", "uniform_nbit")  # network schemes that never read the coefficient design


def point_key(ctx: _Context, p: Point | NetworkPoint) -> str:
    """Journal key: identifies a point across runs (wccsim version, trace, calibration, hw spec hash, setting,
    layer; for a network point the model, images, size, preset, threshold and scheme instead of the trace and
    layer), so a changed input, YAML or release recomputes instead of reusing stale rows. A network point of
    a scheme in `_COEF_FREE` has the key of its hardware config's first coefficient design: computed once,
    its rows serve every design (`_network_rows`)."""
    hw = ctx.hws[p.hw_index]
    calib = None if ctx.calib is None else ctx.calib.value
    if isinstance(p, NetworkPoint):
        index = ctx.design_free(p.hw_index) if p.scheme in _COEF_FREE else p.hw_index
        return json.dumps(["network", __version__, *ctx.network.key(), calib, ctx.hw_hashes[index], hw.name,
                           hw_coef_design(ctx.hws[index]), p.scheme, p.rate, p.act_bits, p.weight_bits])
    return json.dumps([__version__, ctx.trace_sha256, calib, ctx.hw_hashes[p.hw_index], hw.name, hw_coef_design(hw),
                       p.rate, p.act_bits, p.weight_bits, p.layer])


def read_journal(path: Path) -> dict[str, list[dict]]:
    """Finished points from a journal: {key: rows}. A torn (unterminated or unparsable) last line is cut off
    the file, so later appends start on a fresh line; the first record of a key wins."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    done: dict[str, list[dict]] = {}
    for line in data[:end].splitlines():
        try:
            rec = json.loads(line)
            done.setdefault(rec["key"], rec["rows"])
        except (ValueError, KeyError, TypeError):
            continue  # a line damaged by a crash of a foreign writer; its point is recomputed
    if end < len(data):
        with write_errors(path), open(path, "rb+") as f:
            f.truncate(end)
            os.fsync(f.fileno())
    return done


class Journal:
    """Append-only JSON-lines journal; `append` returns after the line is on disk (flush + fsync).
    The file is opened (created) at the first append, so a sweep that computes nothing writes nothing.
    An `OSError` (disk full, ...) is a one-line `InputError` naming the journal; the lines already on disk
    stay, and a torn last line is dropped by the next `read_journal`."""

    def __init__(self, path: Path):
        self.path, self._f = path, None

    def append(self, key: str, rows: list[dict]) -> None:
        line = json.dumps({"key": key, "rows": rows}, sort_keys=True) + "\n"
        with write_errors(self.path):
            if self._f is None:
                new = not self.path.exists()
                self._f = open(self.path, "ab")
                if new:
                    _fsync_dir(self.path.parent)
            self._f.write(line.encode("utf-8"))
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):  # a failed flush here was already reported by `append`
                self._f.close()


def compute_point(ctx: _Context, p: Point | NetworkPoint) -> tuple[str, list[dict]]:
    """Simulate one point (runs in a worker process or on a dask worker); returns (key, rows)."""
    hw = ctx.hws[p.hw_index]
    opts = make_options(hw, p.rate, p.act_bits, p.weight_bits, None, ctx.calib)
    if isinstance(p, NetworkPoint):
        rows = network_rows(ctx.network, configure_datapath(hw, opts), opts, p.scheme)
        return point_key(ctx, p), rows
    trace = _cached_trace(ctx.trace_path)
    info = trace.layers[p.layer_index]
    return point_key(ctx, p), layer_rows(trace, p.layer_index, info, configure_datapath(hw, opts), opts)


@contextlib.contextmanager
def execute(ctx: _Context, points: list, jobs: int, client=None) -> Iterator[Iterator[tuple[str, list]]]:
    """Context giving an iterator of (key, rows), one per point as it finishes: in process, on a process
    pool, or on the dask cluster of `client` (`wccsim.cluster`). Pool and cluster get the points largest
    first (`_largest_first`). A pool's workers start on entry, before the caller starts anything else (a
    progress bar's thread)."""
    if client is not None:
        yield run_points(client, compute_point, ctx, _largest_first(ctx, points), functools.partial(_point_work, ctx))
    elif jobs <= 1 or len(points) <= 1:
        yield (compute_point(ctx, p) for p in points)
    else:
        with _execute_pool(ctx, _largest_first(ctx, points), jobs) as results:
            yield results


def write_outputs(out: Path, df: pd.DataFrame, meta: dict, done: dict[str, list], journal: Path,
                  network: pd.DataFrame | None = None) -> None:
    """Compact the journal (sorted) and write the tables and sweep.json, each atomically."""
    write_text(journal, "".join(json.dumps({"key": k, "rows": done[k]}, sort_keys=True) + "\n"
                                for k in sorted(done)))
    if network is not None:
        write_text(out / "network.csv", network.to_csv(index=False))
    write_text(out / "layers.csv", df.to_csv(index=False))
    write_text(out / "totals.csv", totals(df).to_csv(index=False))
    write_text(out / "sweep.json", json.dumps(meta, indent=2, sort_keys=True, allow_nan=False) + "\n")


# ------------------------------------------------------------------------------------------ top level

def sweep(hws, trace, out, *, rates: Iterable[float] = (1.0, 0.5, 0.25, 0.125),
          act_bits: Iterable[int] = (8,), weight_bits: Iterable[int] = (8,), coef: Iterable[str] | None = None,
          layers: str | None = None, calib=None, jobs: int = 1, scheduler: str | None = None,
          progress: bool | None = None,
          onnx=None, images: Sequence[str] = (), size: tuple[int, int] | None = None, preprocess: str | None = None,
          threshold: float | None = None, calib_images: Sequence[str] | None = None,
          calibrate_on_eval: bool = False, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
          channel_order: str | None = None, output: str | None = None, output_kind: str | None = None
          ) -> pd.DataFrame:
    """Run the cartesian product of hardware configs, rates and bit widths over a trace, resumably.

    Parameters
    ----------
    hws : HwSpec, path, or a sequence of them
    trace : Trace or path to a ``.npz`` trace (on a cluster its bytes are sent to every worker)
    out : directory for journal.jsonl, layers.csv, totals.csv, sweep.json and, with a network, network.csv
        (created if missing)
    rates, act_bits, weight_bits : grid values (rates in (0, 1], bits in 2..16)
    coef : coefficient quantizer designs ``granularity[:scale]`` (`wccsim.options.parse_coef`), each applied
        to every hw config (scale omitted: the YAML's); None = each YAML's own design
    layers : glob over layer names; calib : calibration override (see `wccsim.runner.run`)
    jobs : worker processes on this machine (1 = in process)
    scheduler : dask.distributed scheduler address (`wccsim.cluster.parse_scheduler`); when given, points
        run on that cluster, which must answer before anything is created in `out`
    progress : progress bar over points; default only when stderr is a TTY
    onnx, images, size, preprocess, threshold : optional network-level points, as ``wccsim network``
        (model path, image files or ``skimage:NAME``, (H, W) pixels, preset, IoU threshold; defaults
        preset ``auto``, threshold 0.3); rows go to ``network.csv`` (`wccsim.network.grid`)
    calib_images, calibrate_on_eval : the network points' calibration images (default: a set disjoint from
        `images`) and the permission to calibrate on evaluated images (`wccsim.network.calibration`)
    mean, std, channel_order, output, output_kind : as ``wccsim network``: the preset's normalization
        overridden, and one measured graph output (``output``; ``output_kind`` alone measures the first) of
        the given kind; default: every graph output, kinds detected

    Returns
    -------
    pandas.DataFrame -- the rows of layers.csv (every point of the grid).
    """
    if scheduler is not None and jobs != 1:
        raise InputError("options", "jobs", "1 (the default) with --scheduler: points run on the cluster", jobs)
    address = None if scheduler is None else parse_scheduler(scheduler)
    network = _network_options(onnx, images, size, preprocess, threshold, calib_images, calibrate_on_eval,
                               mean, std, channel_order, output, output_kind)
    ctx, points, meta = prepare(hws, trace, rates, act_bits, weight_bits, layers, calib, jobs, network,  # 1.
                                coef)
    check_output_dir(out)
    with contextlib.nullcontext() if address is None else connect(address) as client, \
            _exclusive(ensure_dir(out)) as out:                               # 2. cluster, then the lock
        _remove_stale_temporaries(out)
        journal_path = out / JOURNAL
        done = read_journal(journal_path)                                    # 3. finished points
        grid = meta["grid"]
        net_points = plan_network_points(len(ctx.hws), grid["rates"], grid["act_bits"], grid["weight_bits"]) \
            if ctx.network else []
        every = net_points + points                                          # long network points first
        pending = _to_compute(ctx, every, done)
        journal = Journal(journal_path)
        try:                                                                 # 4. compute the rest
            with execute(ctx, pending, jobs, client) as results:
                bar = progress_bar(results, "points", progress, len(every))
                bar.update(len(every) - len(pending))
                for key, rows in bar:
                    journal.append(key, rows)                                # 5. one fsync'd line each
                    done[key] = rows
        finally:
            journal.close()
        df = rows_to_frame(r for p in points for r in done[point_key(ctx, p)])  # 6. sorted table
        net = _network_frame(_network_rows(ctx, net_points, done)) if ctx.network else None
        write_outputs(out, df, meta, done, journal_path, net)               # 7. atomic outputs
    return df


def prepare(hws, trace, rates, act_bits, weight_bits, layers, calib, jobs, network=None, coef=None):
    """Validate everything before any file is touched; returns (context, points, sweep.json dict).
    `network`: None or the keyword arguments of `wccsim.network.grid.prepare_network`; `coef`: None or the
    coefficient designs (`_with_designs`)."""
    yamls = tuple(resolve_hw(h) for h in _as_list(hws))
    names = [h.name for h in yamls]
    if not yamls or len(set(names)) != len(names):
        raise InputError("options", "hw", "one or more hardware specs with distinct names", names)
    specs = _with_designs(yamls, coef)
    rates, act_bits, weight_bits = (_as_list(v) for v in (rates, act_bits, weight_bits))
    for name, values in (("rates", rates), ("act_bits", act_bits), ("weight_bits", weight_bits)):
        if not values:
            raise InputError("options", name, "at least one value", "none")
    opts = [make_options(h, r, a, w, layers, calib)
            for h, r, a, w in itertools.product(specs, rates, act_bits, weight_bits)]
    check_jobs(jobs)
    trace = resolve_trace(trace)
    chosen = select_layers(trace, layers)
    index = {info.name: i for i, info in enumerate(trace.layers)}
    hashes = tuple(spec_hash(h) for h in specs)
    if network is not None:
        network = prepare_network(**network)
    ctx = _Context(specs, hashes, str(Path(trace.path).resolve()), trace.sha256, opts[0].calib, network,
                   tuple(_layer_work(info, getattr(trace, "n", 1)) for info in trace.layers))
    points = plan_points(len(specs), rates, act_bits, weight_bits, [(index[i.name], i.name) for i in chosen])
    meta = {
        "wccsim_version": __version__,
        "trace": {"file": Path(trace.path).name, "sha256": trace.sha256,
                  "network": trace.meta.get("network")},
        "hw": [{"name": h.name, "hash": spec_hash(h), "spec": spec_to_dict(h),  # coef: its cfg_coef values
                "coef": [hw_coef_design(d) for d in specs if d.name == h.name]} for h in yamls],
        "grid": {"rates": sorted({p.rate for p in points}, reverse=True),
                 "act_bits": sorted({p.act_bits for p in points}, reverse=True),
                 "weight_bits": sorted({p.weight_bits for p in points}, reverse=True),
                 "layers": [name for _, name in sorted({(p.layer_index, p.layer) for p in points})],
                 "calib": None if ctx.calib is None else ctx.calib.value,
                 "coef": None if coef is None else [str(c).strip() for c in _as_list(coef)]},
        "points": len(points),
        "schemes": list(SCHEMES),  # with the grid: the rows layers.csv must hold (wccsim report checks)
    }
    if network is not None:
        meta["network"] = network.meta()
    return ctx, points, meta


# -------------------------------------------------------------------------------------------- helpers

_TRACES: dict = {}


def _cached_trace(path: str):
    """One open `Trace` per path per process (opening validates every member header)."""
    if path not in _TRACES:
        _TRACES[path] = resolve_trace(path)
    return _TRACES[path]


def _with_designs(yamls: tuple, coef) -> tuple:
    """One spec per (hw config, design), hw-major: each design of `coef` applied to every config
    (`wccsim.options.apply_coef`); None = the configs as their YAMLs give them. No design, or two that
    are the same on one config, is a one-line `InputError`."""
    if coef is None:
        return yamls
    designs = [parse_coef(c) for c in _as_list(coef)]
    if not designs:
        raise InputError("options", "coef", "at least one design", "none")
    specs = []
    for h in yamls:
        mine = [apply_coef(h, d) for d in designs]
        labels = [hw_coef_design(s) for s in mine]
        if len(set(labels)) != len(labels):
            raise InputError("options", "coef", f"distinct designs on hw {h.name}", ", ".join(labels))
        specs += mine
    return tuple(specs)


def _network_options(onnx, images, size, preprocess, threshold, calib_images=None, calibrate_on_eval=False,
                     mean=None, std=None, channel_order=None, output=None, output_kind=None) -> dict | None:
    """The network options as `prepare_network` keywords, or None; network options without a model (or a
    model without images) are one-line `InputError`s."""
    options = {"images": _as_list(images) if images is not None else [], "size": size, "preprocess": preprocess,
               "threshold": threshold, "calib_images": _as_list(calib_images) if calib_images is not None else None,
               "calibrate_on_eval": calibrate_on_eval, "mean": mean, "std": std, "channel_order": channel_order,
               "output": output, "output_kind": output_kind}
    if onnx is None:
        given = [n for n, v in options.items() if v is not None and v is not False and not _empty_list(v)]
        if given:  # named as the flag: --image, --calib-image
            raise InputError("options", _FLAG_NAMES.get(given[0], given[0]), "--onnx MODEL with the network options",
                             "no --onnx")
        return None
    return {"onnx": onnx, **options, "preprocess": "auto" if preprocess is None else preprocess,
            "threshold": 0.3 if threshold is None else threshold}


_FLAG_NAMES = {"images": "image", "calib_images": "calib_image"}


def _empty_list(v) -> bool:
    return isinstance(v, list) and not v


def _to_compute(ctx: _Context, points: list, done: dict) -> list:
    """The points whose key is neither finished nor already taken by an earlier point, in order."""
    seen, out = set(done), []
    for p in points:
        key = point_key(ctx, p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _network_rows(ctx: _Context, net_points: list, done: dict) -> Iterator[dict]:
    """The rows of every network point, labelled with its own coefficient design (a `_COEF_FREE` point's
    rows were computed under its config's first design)."""
    for p in net_points:
        design = hw_coef_design(ctx.hws[p.hw_index])
        yield from ({**r, "cfg_coef": design} for r in done[point_key(ctx, p)])


def _network_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(NETWORK_COLUMNS))


def _as_list(v) -> list:
    if isinstance(v, (str, os.PathLike)) or not isinstance(v, Iterable):
        return [v]
    return list(v)


def _layer_work(info, n: int) -> int:
    """Rough cost of one layer point: the datapath makes several passes over the input and more over the
    output (requantization, reference, error statistics) and some GEMMs; only the order matters."""
    return int(n) * (info.cin * info.h * info.w + 2 * info.cout * info.ho * info.wo + info.macs // 64)


def _point_work(ctx: _Context, p: Point | NetworkPoint) -> float:
    """Estimated work of a point (`_layer_work`); infinite for a network point (it runs a whole network)."""
    if isinstance(p, NetworkPoint) or not ctx.layer_work:
        return float("inf")
    return ctx.layer_work[p.layer_index]


def _largest_first(ctx: _Context, points: list) -> list:
    """Network points first, then layer points by decreasing estimated work (ties in grid order), so no
    large point is left to run alone at the end."""
    return sorted(points, key=functools.partial(_point_work, ctx), reverse=True)  # stable: ties keep grid order


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Start worker processes with one BLAS/numba thread each (jobs processes, not jobs x cores threads)."""
    saved = {v: os.environ.get(v) for v in _THREAD_VARS}
    os.environ.update({v: "1" for v in _THREAD_VARS})
    try:
        yield
    finally:
        for v, old in saved.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old


@contextlib.contextmanager
def _execute_pool(ctx: _Context, points: list, jobs: int) -> Iterator[Iterator[tuple[str, list]]]:
    """Points on `jobs` worker processes, submitted in the given order; the iterator yields each as it
    finishes. The workers start on entry; on exit, points not started are cancelled and the pool shut down.

    Workers are forked from this process where that is safe (`_start_method`): they start in milliseconds
    with numpy, pandas and wccsim already imported, instead of fresh interpreters importing everything again
    (about a second of serial start-up, comparable to a small sweep's compute). The context goes to each
    worker once (initializer), not with every point. A forked worker does not keep the directory lock:
    filelock closes its descriptor in the child."""
    import multiprocessing

    method = _start_method(ctx)
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(points)), mp_context=multiprocessing.get_context(method),
                               initializer=_init_worker, initargs=(ctx, os.getpid()))
    with pool:
        futures = []
        try:
            with _single_threaded_children():  # workers start at the first submit (spawn: in this environment)
                futures = [pool.submit(_compute_in_worker, p) for p in points]
            yield (fut.result() for fut in as_completed(futures))
        finally:
            for fut in futures:
                fut.cancel()


def _start_method(ctx: _Context) -> str:
    """"fork" on Linux when nothing in this process makes it unsafe: no other Python thread (a lock held at
    the fork would stay locked in the child), no network points (onnxruntime thread pools), and only
    OpenBLAS among the thread pools threadpoolctl finds (the child limits it to one thread; OpenMP, MKL and
    BLIS runtimes are not known to survive a fork); "spawn" otherwise (fresh interpreters, started with the
    single-thread environment)."""
    import multiprocessing

    if (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and ctx.network is None and threading.active_count() == 1
            and all(pool["internal_api"] == "openblas" for pool in threadpool_info())):
        return "fork"
    return "spawn"


_WORKER: dict = {}


def _init_worker(ctx: _Context, parent_pid: int) -> None:
    """Worker initializer: keep the context, one BLAS thread, exit with the sweep process."""
    _WORKER["ctx"] = ctx
    os.environ.update({v: "1" for v in _THREAD_VARS})  # for whatever this worker loads later
    threadpool_limits(1)
    _exit_with_parent(parent_pid)


def _compute_in_worker(p: Point | NetworkPoint) -> tuple[str, list[dict]]:
    return compute_point(_WORKER["ctx"], p)


def _exit_with_parent(parent_pid: int) -> None:
    """Exit when the sweep process is gone (SIGKILL leaves pool workers orphaned)."""
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="wccsim-parent-watch", daemon=True).start()


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[Path]:
    """Hold an exclusive, non-blocking `filelock.FileLock` on DIR/.lock (an flock: released by the kernel
    even on SIGKILL) and yield `out`; a directory another sweep holds is a one-line `InputError`."""
    lock = FileLock(str(out / ".lock"), blocking=False)
    with write_errors(out / ".lock"):
        try:
            lock.acquire()
        except Timeout:  # an OSError too: refused here, before `write_errors` sees it
            raise InputError(str(out), "", "a sweep directory no other sweep is writing", "locked") from None
    try:
        yield out
    finally:
        lock.release()


def _remove_stale_temporaries(out: Path) -> None:
    """Temporaries of our atomic writes left by a killed run (`wccsim.atomic` names them .<name>.*.tmp)."""
    for name in _OUTPUTS:
        for tmp in out.glob(f".{name}.*.tmp"):
            with write_errors(tmp):
                tmp.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

