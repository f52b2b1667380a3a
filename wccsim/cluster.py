"""Sweep points on a dask.distributed cluster: address check, bounded connect, input shipping, worker set-up.

1. `parse_scheduler` checks the address before anything is created (``tcp://HOST:PORT``, ``tls://HOST:PORT``,
   ``HOST:PORT`` for tcp, or ``inproc://...`` in this process).
2. `connect` opens a TCP connection (refused at once when nobody listens), asks the server who it is over
   dask's protocol and only then starts a `Client`; every step is bounded by `CONNECT_TIMEOUT_S`, so a
   server that accepts and never answers, or answers something that is not dask, is a one-line
   `InputError` within that time.
3. `run_points` sends the context once per worker (scattered) and the bytes of every input file the points
   read (trace, ONNX model, image files), so workers need not see the client's paths: each worker writes
   them once, content-addressed, under its local directory and runs the points on those copies.
4. On each worker process, before its first point (`_set_up`), the allocator is set back to glibc's
   defaults-like thresholds (`_tune_allocator`): the dask Nanny starts workers with
   ``MALLOC_TRIM_THRESHOLD_=65536``, which also freezes glibc's mmap threshold at 128 KiB, so every large
   numpy temporary is mmap'd, faulted in and unmapped again; measured, that tripled a sweep's time, mostly
   in the kernel. And dask's statistical profiler, which walks every thread's stack every 10 ms while
   holding the GIL, is stopped (`_stop_profiler`; measured in docs/cluster.md).

``distributed`` is an optional extra: it is imported only inside these functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import math
import re
import socket
from pathlib import Path
from typing import Callable, Iterator

from wccsim.atomic import write_bytes
from wccsim.errors import InputError
# Not used here: imported so that a worker preloading this module (`dask_setup`) loads numpy, numba, pandas and
# the datapath when it starts, as every point needs them.
from wccsim import options as _options, simulate as _simulate  # noqa: F401

__all__ = ["CONNECT_TIMEOUT_S", "BATCHES_PER_WORKER", "parse_scheduler", "connect", "run_points", "batches",
           "dask_setup"]

CONNECT_TIMEOUT_S = 10.0  # s, bound on each of: TCP connect, dask handshake + identity reply, Client start
BATCHES_PER_WORKER = 4  # guided self-scheduling: each batch ~1/(4 x workers) of the work left (`batches`)

_FIELD = ("options", "scheduler")
_ADDRESS = re.compile(r"(?:(?P<scheme>tcp|tls)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d+)")
_EXPECTED = "tcp://HOST:PORT, tls://HOST:PORT, HOST:PORT or inproc://ADDRESS (a dask.distributed scheduler)"

# glibc mallopt parameters (malloc.h) and the values glibc's dynamic mmap threshold grows to on 64-bit
# (DEFAULT_MMAP_THRESHOLD_MAX = 32 MiB; the trim threshold then follows at twice it).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES = 32 << 20
_TRIM_THRESHOLD_BYTES = 2 * _MMAP_THRESHOLD_BYTES


def parse_scheduler(address: str) -> str:
    """The scheduler address, checked; a bad one is a one-line `InputError` (nothing is contacted)."""
    if not isinstance(address, str) or not address.strip():
        raise InputError(*_FIELD, _EXPECTED, repr(address))
    if address.startswith("inproc://") and len(address) > len("inproc://"):
        return address
    m = _ADDRESS.fullmatch(address)
    if m is None or not 1 <= int(m["port"]) <= 65535:
        raise InputError(*_FIELD, _EXPECTED, address)
    return address if m["scheme"] else f"tcp://{address}"


@contextlib.contextmanager
def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Iterator[object]:
    """A `distributed.Client` on `address` (from `parse_scheduler`), closed on exit; an absent dask extra,
    a refused or hanging connection, or a server that is not a dask scheduler is a one-line `InputError`."""
    try:
        import distributed
    except ImportError:
        raise InputError(*_FIELD, "the dask extra installed (pip install 'wccsim[dask]')",
                         "distributed not importable") from None
    if not address.startswith("inproc://"):
        _check_tcp(address, timeout_s)
        _check_identity(address, timeout_s)
    try:
        client = distributed.Client(address, timeout=timeout_s)
    except (OSError, asyncio.TimeoutError) as e:
        raise InputError(*_FIELD, "a reachable dask.distributed scheduler", f"{address} ({e})") from None
    with client:
        yield client


def run_points(client, compute: Callable, ctx, points: list, work: Callable) -> Iterator[tuple[str, list]]:
    """Run ``compute(ctx, p)`` for each point on the cluster, in batches (`batches`, by ``work(p)``, the
    estimated cost of a point) submitted in the given order; yields each point's result as its batch
    finishes. `ctx` must offer ``input_files()`` (paths the points read) and ``with_files(mapping)`` (the
    same context reading the mapped local copies instead)."""
    from distributed import as_completed

    shipped = {}
    for path in ctx.input_files():
        data = Path(path).read_bytes()
        shipped[path] = (hashlib.sha256(data).hexdigest(), client.scatter(data, broadcast=True, hash=False))
    ctx_future = client.scatter(ctx, broadcast=True, hash=False)
    workers = max(1, sum(client.nthreads().values()))
    futures = [client.submit(_on_worker, compute, ctx_future, shipped, batch, pure=False)
               for batch in batches(points, [work(p) for p in points], workers)]
    for fut in as_completed(futures):
        yield from fut.result()


def batches(points: list, work: list[float], workers: int) -> list[list]:
    """Consecutive runs of `points` (guided self-scheduling): each batch takes points until its estimated
    work reaches 1/(`BATCHES_PER_WORKER` x `workers`) of the work not yet batched, at least one point; a
    point of unknown (infinite) work is a batch of its own. With the points largest first, batches shrink
    towards the end, so the last ones finish close together; each costs dask one task instead of one per
    point (a few ms of scheduler, worker and client CPU each, measured in docs/cluster.md)."""
    out, i = [], 0
    while i < len(points):
        finite = [w for w in work[i:] if math.isfinite(w)]
        target = sum(finite) / (BATCHES_PER_WORKER * workers)
        j, done = i + 1, work[i]
        while j < len(points) and math.isfinite(done) and math.isfinite(work[j]) and done < target:
            done += work[j]
            j += 1
        out.append(points[i:j])
        i = j
    return out


def dask_setup(worker) -> None:
    """Dask preload (``dask worker --preload wccsim.cluster``): set the worker up and import the simulator
    when the worker starts, not during the first sweep (about 1 s of CPU per worker process)."""
    _set_up(worker)  # the simulator itself came with this module's imports (`wccsim.options`, `wccsim.simulate`)


# ------------------------------------------------------------------------------------------- helpers

def _check_tcp(address: str, timeout_s: float) -> None:
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise InputError(*_FIELD, "a reachable dask.distributed scheduler",
                         f"{address} ({e.strerror or type(e).__name__})") from None


def _check_identity(address: str, timeout_s: float) -> None:
    """Ask the server for its identity over dask's protocol; anything but a scheduler's reply in time is
    refused (the dask handshake alone waits forever on a server that accepts and never answers)."""
    try:
        reply = asyncio.run(asyncio.wait_for(_identity(address, timeout_s), timeout_s))
    except asyncio.TimeoutError:
        found = f"no dask reply within {timeout_s:g} s"
    except Exception as e:  # noqa: BLE001 - whatever a foreign server's bytes make the protocol raise
        found = f"not the dask protocol ({type(e).__name__})"
    else:
        if isinstance(reply, dict) and reply.get("type") == "Scheduler":
            return
        found = f"a dask {reply.get('type')} instead" if isinstance(reply, dict) else "an unexpected reply"
    raise InputError(*_FIELD, "a dask.distributed scheduler", f"{address}: {found}")


async def _identity(address: str, timeout_s: float):
    from distributed.core import rpc
    from distributed.security import Security

    args = Security().get_connection_args("client")
    async with rpc(address, timeout=timeout_s, connection_args=args) as scheduler:
        return await scheduler.identity()


_LOCAL_FILES: dict[str, Path] = {}


def _on_worker(compute: Callable, ctx, shipped: dict, batch: list) -> list:
    """Task body on a worker: worker set up once, inputs as local copies, then ``compute(ctx, p)`` for each
    point of the batch."""
    from distributed import get_worker

    _set_up(get_worker())
    local = ctx.with_files({path: _local_copy(sha, Path(path).name, data) for path, (sha, data) in shipped.items()})
    return [compute(local, p) for p in batch]


def _local_copy(sha256: str, name: str, data: bytes) -> str:
    """This worker's copy of a shipped file, written once under its local directory (named by content)."""
    if sha256 not in _LOCAL_FILES:
        from distributed import get_worker

        path = Path(get_worker().local_directory) / "wccsim-inputs" / sha256 / name
        if not path.is_file():
            write_bytes(path, data)
        _LOCAL_FILES[sha256] = path
    return str(_LOCAL_FILES[sha256])


@functools.cache
def _set_up(worker) -> None:
    """Once per worker: the allocator (`_tune_allocator`) and no dask profiler (`_stop_profiler`)."""
    _tune_allocator()
    _stop_profiler(worker)


def _stop_profiler(worker) -> None:
    """Stop dask's statistical profiler on `worker` (its periodic callbacks ``profile`` and ``profile-cycle``,
    present when ``distributed.worker.profile.enabled``): every 10 ms it walks every thread's stack under the
    GIL, which the simulator's tasks pay for and never read. Removed before the worker starts them (preload)
    or stopped on the worker's event loop (first task)."""
    for name in ("profile", "profile-cycle"):
        callback = worker.periodic_callbacks.pop(name, None)
        if callback is not None:
            worker.loop.add_callback(callback.stop)


def _tune_allocator() -> None:
    """Set glibc's trim and mmap thresholds to the values its dynamic rule reaches (see module doc); on a C
    library without `mallopt` (musl, macOS) there is no such setting: nothing is done."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt"):
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
