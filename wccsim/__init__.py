"""wccsim: bit-accurate integer simulator and cost model for Wavelet Compressed Convolution hardware.

The library API is `wccsim.api`; its names are also reachable here (``wccsim.run``, ``wccsim.simulate_layer``)
and load on first use, so ``import wccsim`` stays cheap. No module of the package is named after one of them.
"""

import importlib

__version__ = "0.1.0"


def __getattr__(name: str):
    api = importlib.import_module("wccsim.api")
    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'wccsim' has no attribute {name!r}")
