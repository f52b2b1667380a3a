"""One layer simulated: calibrate -> quantize -> datapath -> dequantize -> references -> metrics -> baselines.

`wcc` (the WCC datapath with its references), `plain` (the int8 and uniform n-bit baselines), `params`
(offline float parameters), `layer` (a validated layer walked image by image, block by block) and `record`
(stages, error sums) sit above `wccsim.datapath`, `wccsim.reference`, `wccsim.calibrate` and
`wccsim.metrics`, and below the orchestration (`wccsim.runner`, `wccsim.sweeper`, `wccsim.network`).
"""

from wccsim.simulate.params import FixedScales, LayerParams, fixed_scales
from wccsim.simulate.plain import BaselineResult, calibrate_plain, run_plain, simulate_plain
from wccsim.simulate.record import Stage
from wccsim.simulate.wcc import DatapathResult, LayerResult, calibrate_and_run, calibrate_layer, run_datapath, \
    simulate_layer

__all__ = ["simulate_layer", "simulate_plain", "calibrate_plain", "run_plain", "calibrate_layer", "run_datapath",
           "calibrate_and_run", "LayerResult", "DatapathResult", "LayerParams", "FixedScales", "fixed_scales",
           "BaselineResult", "Stage"]
