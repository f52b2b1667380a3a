"""wccsim: bit-accurate integer simulator and cost model for Wavelet Compressed Convolution hardware."""

__version__ = "0.1.0"

# Public names loaded on first use (``wccsim.simulate_layer``), so ``import wccsim`` stays cheap.
_LAZY = {"simulate_layer": "wccsim.api", "simulate_plain": "wccsim.api", "calibrate_layer": "wccsim.api",
         "run_datapath": "wccsim.api",
         "run": "wccsim.runner", "sweep": "wccsim.sweeper", "report": "wccsim.reporting"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wccsim' has no attribute {name!r}")
