"""The library API: every function and type the command line uses, for notebooks and scripts as well.

>>> import numpy as np
>>> from wccsim.api import simulate_layer
>>> from wccsim.hw import DatapathSpec
>>> rng = np.random.default_rng(0)
>>> r = simulate_layer(rng.normal(size=(1, 8, 16, 16)), rng.normal(size=(4, 8)), None, DatapathSpec(), 0.25)
>>> r.k, r.positions, r.y.shape
(64, 256, (1, 4, 16, 16))

A name is loaded from its module (`_HOME`) on first use (PEP 562), so ``import wccsim.api`` (and the CLI's
start) stays cheap: ``wccsim trace info`` never loads numba, ``wccsim cost`` never loads the simulator.
"""

from __future__ import annotations

import importlib

_HOME = {
    "wccsim.simulate": ("simulate_layer", "simulate_plain", "calibrate_layer", "run_datapath", "calibrate_and_run",
                        "LayerResult", "DatapathResult", "LayerParams", "BaselineResult", "Stage"),
    "wccsim.runner": ("run",),
    "wccsim.sweeper": ("sweep",),
    "wccsim.reporting": ("report",),
    "wccsim.results": ("totals", "savings", "saving_phrase", "COLUMNS", "TOTAL_COLUMNS", "COUNTERS", "SCHEMES"),
    "wccsim.options": ("resolve_hw", "resolve_trace", "make_options"),
    "wccsim.rules": ("check_rate", "check_bits"),
    "wccsim.hw": ("load_hw", "spec_hash", "spec_to_dict"),
    "wccsim.trace": ("open_trace", "Trace"),
    "wccsim.cost": ("layer_cost", "workload_cost", "total_cost", "LayerCost", "Scheme"),
    "wccsim.cost.workload": ("load_workload", "rescale_workload", "parse_input_size"),
    "wccsim.cost.saving": ("dram_saving",),
    "wccsim.network.simulate": ("simulate_network",),
    "wccsim.network.outputs": ("write_network_outputs",),
    "wccsim.network.drift": ("OutputKind", "KIND_METRICS"),
    "wccsim.capture.images": ("parse_size", "PRESETS"),
    "wccsim.capture.onnx": ("capture_onnx_trace",),
    "wccsim.capture.torch": ("capture_factory_trace",),
    "wccsim.capture.torchscript": ("capture_torchscript_trace",),
    "wccsim.vectors": ("export_layer", "parse_tile", "read_manifest"),
    "wccsim.atomic": ("write_text", "atomic_path", "check_output_dir", "check_output_file"),
}
_MODULE = {name: module for module, names in _HOME.items() for name in names}

__all__ = sorted(_MODULE)


def __getattr__(name: str):
    if name not in _MODULE:
        raise AttributeError(f"module 'wccsim.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__
