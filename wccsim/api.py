"""Public Python API of the bit-accurate datapath (one call per layer; the CLI uses the same functions).

>>> import numpy as np
>>> from wccsim.api import simulate_layer
>>> from wccsim.hw import DatapathSpec
>>> rng = np.random.default_rng(0)
>>> r = simulate_layer(rng.normal(size=(1, 8, 16, 16)), rng.normal(size=(4, 8)), None, DatapathSpec(), 0.25)
>>> r.k, r.positions, r.y.shape
(64, 256, (1, 4, 16, 16))
"""

from wccsim.simulate import (
    BaselineResult, DatapathResult, LayerParams, LayerResult, Stage, calibrate_and_run, calibrate_layer,
    run_datapath, simulate_layer, simulate_plain,
)

__all__ = ["simulate_layer", "simulate_plain", "calibrate_layer", "run_datapath", "calibrate_and_run", "LayerResult",
           "DatapathResult", "LayerParams", "BaselineResult", "Stage"]
