"""Whole-network simulation: run an ONNX network with its 1x1 convolutions on the WCC datapath.

- `splice`: plan a graph into onnxruntime segments and spliced 1x1 layers; run it with a per-layer hook.
- `hooks`: the per-layer computations (float reference; WCC datapath, uniform n-bit and int8 as layer modes).
- `calibration`: every mode's scales fixed once on calibration images apart from the evaluation images.
- `costs`: cost-model totals of the spliced layers per scheme (the verdict's savings against int8).
- `drift`: output kinds (prob_map, seg_logits, alpha, logits, class) and their drift metrics vs float.
- `simulate`: `simulate_network`, the library entry point behind ``wccsim network``.
- `outputs`: network.json, network_layers.csv and the pictures.
"""

from wccsim.network.simulate import NetworkResult, simulate_network
from wccsim.network.splice import plan_graph, run_plan

__all__ = ["NetworkResult", "simulate_network", "plan_graph", "run_plan"]
