"""Machine, versions and threading facts recorded with every benchmark run."""

from __future__ import annotations

import os
import platform
import sys

import numba
import numpy as np

__all__ = ["collect", "thread_count", "torch_module"]


def torch_module():
    """The imported ``torch`` module, or None when torch (an optional extra) is absent or broken."""
    try:
        import torch
    except Exception:  # noqa: BLE001 - any import failure means "no torch comparison"
        return None
    return torch


def thread_count() -> int:
    """Threads used for every side of a comparison: numba's thread count (BLAS and torch are set to it)."""
    return int(numba.get_num_threads())


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas_info() -> dict:
    """BLAS library and thread count: threadpoolctl when installed, else numpy's build config."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        cfg = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        return {"source": "numpy.show_config (threadpoolctl not installed)", "name": cfg.get("name"),
                "version": cfg.get("version"), "config": cfg.get("openblas configuration"),
                "threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
                or "library default (all cores)"}
    pools = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer")}
             for p in threadpool_info()]
    return {"source": "threadpoolctl", "pools": pools}


def collect(torch=None) -> dict:
    """Everything needed to interpret the figures of one run: machine, versions, threads."""
    info = {
        "machine": {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(),
                    "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                    "platform": platform.platform(), "loadavg_1_5_15": list(os.getloadavg())},
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "numba": numba.__version__,
                     "torch": None if torch is None else torch.__version__},
        "blas": _blas_info(),
        "numba": {"threads": numba.get_num_threads(), "threading_layer_config": numba.config.THREADING_LAYER,
                  "cache_dir": os.environ.get("NUMBA_CACHE_DIR", "default (__pycache__ beside sources)")},
    }
    if torch is not None:
        info["torch"] = {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}
    try:
        import wccsim
        info["versions"]["wccsim"] = wccsim.__version__
    except Exception:  # noqa: BLE001
        info["versions"]["wccsim"] = None
    return info
