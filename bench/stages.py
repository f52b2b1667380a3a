"""Zero-argument callables running wccsim's stages on a benchmark layer, with their inputs prepared once.

Each ``*_call`` returns a dict with ``call`` (None when the wccsim module or function is missing), ``how``
(which functions are timed, or why nothing is) and, for memory-bound units, ``bytes`` (bytes the unit
reads plus writes, counted from the arrays as the simulator holds them).
"""

from __future__ import annotations

import importlib

import numpy as np

from wccsim.hw import DatapathSpec

__all__ = ["SPEC", "quantize_int8", "mac_call", "unit_call", "datapath_call", "stage_profile", "unit_profile", "simulate_layer_call", "cost_call"]

SPEC = DatapathSpec()


def _attr(module: str, name: str):
    """``module.name`` or None when the module or the name does not exist (yet)."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _missing(*names: str) -> dict:
    return {"call": None, "how": "MISSING " + ", ".join(names), "bytes": 0}


def quantize_int8(x: np.ndarray) -> np.ndarray:
    """Symmetric per-tensor int8 of a float array (max calibration): the tensor the previous layer wrote."""
    m = float(np.abs(x).max()) or 1.0
    return np.clip(np.rint(x * (127.0 / m)), -127, 127).astype(np.int8)


def _subsample(x: np.ndarray, stride: int) -> np.ndarray:
    return x if stride == 1 else np.ascontiguousarray(x[:, :, ::stride, ::stride])


def mac_call(cout: int, cin: int, n: int, k: int, seed: int = 0):
    """(callable, how): ``mac_array`` on int8 operands (full range, -128 included) of the given shape."""
    mac_array = _attr("wccsim.datapath.mac", "mac_array")
    if mac_array is None:
        return None, "MISSING wccsim.datapath.mac.mac_array"
    rng = np.random.default_rng(seed)
    wq = rng.integers(-128, 128, (cout, cin)).astype(np.int8)
    xq = rng.integers(-128, 128, (n, cin, k)).astype(np.int8)
    spec = SPEC.mac
    return (lambda: mac_array(wq, xq, spec)), "mac.mac_array(int8, int8)"


def _best_of(fn, repeats: int) -> float:
    import time
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def unit_profile(unit: str, layer, rate: float, repeats: int = 3) -> dict:
    """Best-of seconds of the parts of a unit on a layer: MAC (int_matmul, accumulate), Haar (forward,
    inverse) or top-k (energy, select)."""
    from wccsim.datapath import haar, mac, topk
    from wccsim.rules import kept_positions
    xq = _subsample(quantize_int8(layer.x), layer.stride)
    h, w = xq.shape[2:]
    coef = haar.forward_int(xq, SPEC.haar, SPEC.quant.act_bits).coef
    k = kept_positions(rate, coef.shape[2])
    if unit == "mac":
        rng = np.random.default_rng(0)
        wq = rng.integers(-128, 128, (layer.w.shape[0], xq.shape[1])).astype(np.int8)
        cq = rng.integers(-128, 128, (xq.shape[0], xq.shape[1], k)).astype(np.int8)
        acc = mac.int_matmul(wq, cq)
        parts = {"int_matmul": lambda: mac.int_matmul(wq, cq),
                 "accumulate": lambda: mac.accumulate(acc, SPEC.mac.acc_bits, SPEC.mac.overflow)}
    elif unit == "haar":
        parts = {"forward_int": lambda: haar.forward_int(xq, SPEC.haar, SPEC.quant.act_bits),
                 "inverse_int": lambda: haar.inverse_int(coef, h, w, SPEC.haar, SPEC.haar.width_bits)}
    else:
        e = topk.energy(coef, SPEC.topk.metric)
        parts = {"energy": lambda: topk.energy(coef, SPEC.topk.metric),
                 "select": lambda: topk.select(e, k, SPEC.topk)}
    return {name: _best_of(fn, repeats) for name, fn in parts.items()}


def _haar_call(layer, rate: float) -> dict:
    fwd = _attr("wccsim.datapath.haar", "forward_int")
    inv = _attr("wccsim.datapath.haar", "inverse_int")
    if fwd is None or inv is None:
        return _missing("wccsim.datapath.haar.forward_int/inverse_int")
    xq = _subsample(quantize_int8(layer.x), layer.stride)
    h, w = xq.shape[2:]
    spec = SPEC.haar
    coef = fwd(xq, spec, SPEC.quant.act_bits).coef
    out, _ = inv(coef, h, w, spec, spec.width_bits)
    nbytes = xq.nbytes + 2 * coef.nbytes + out.nbytes

    def call():
        c = fwd(xq, spec, SPEC.quant.act_bits).coef
        return inv(c, h, w, spec, spec.width_bits)
    return {"call": call, "bytes": nbytes,
            "how": f"haar.forward_int+inverse_int ({xq.dtype} in, {coef.dtype} coef, {out.dtype} out)"}


def _topk_call(layer, rate: float) -> dict:
    fwd = _attr("wccsim.datapath.haar", "forward_int")
    energy = _attr("wccsim.datapath.topk", "energy")
    select = _attr("wccsim.datapath.topk", "select")
    kept_positions = _attr("wccsim.rules", "kept_positions")
    if fwd is None or energy is None or select is None or kept_positions is None:
        return _missing("wccsim.datapath.topk.energy/select, wccsim.rules.kept_positions")
    xq = _subsample(quantize_int8(layer.x), layer.stride)
    coef = fwd(xq, SPEC.haar, SPEC.quant.act_bits).coef
    k = kept_positions(rate, coef.shape[2])
    spec, metric = SPEC.topk, SPEC.topk.metric

    def call():
        return select(energy(coef, metric), k, spec)
    sel = call()
    nbytes = coef.nbytes + sel.bitmap.nbytes + sel.idx.nbytes
    return {"call": call, "bytes": nbytes, "how": f"topk.energy+select ({coef.dtype} coef in, bitmap+idx out)"}


def unit_call(unit: str, layer, rate: float) -> dict:
    """Haar forward+inverse (``"haar"``) or top-k (``"topk"``) on the layer's int8 input."""
    return {"haar": _haar_call, "topk": _topk_call}[unit](layer, rate)


def _datapath(layer, rate: float):
    """`run_datapath` (keep=False) with parameters from `calibrate_layer` (offline, not timed), and the bit
    check of its output against `simulate_layer`'s (which also runs the float references and baselines)."""
    from wccsim.simulate import calibrate_layer, run_datapath, simulate_layer
    params = calibrate_layer(layer.x, layer.w, layer.b, SPEC, rate, layer.stride)
    run = lambda: run_datapath(layer.x, params, SPEC, rate, layer.stride, keep=False)  # noqa: E731
    expected = simulate_layer(layer.x, layer.w, layer.b, SPEC, rate, layer.stride).y
    return run, bool(np.array_equal(run().y, expected))


def stage_profile(layer, rate: float, repeats: int = 3) -> dict:
    """Seconds in each public wccsim function under `run_datapath` (cProfile cumulative time, best of
    ``repeats``; a function called twice, e.g. requantize, sums both), plus the total, for the profile of
    a missed target."""
    import cProfile
    import pstats
    run, _ = _datapath(layer, rate)
    best: dict = {}
    for _ in range(repeats):
        prof = cProfile.Profile()
        prof.runcall(run)
        for (path, _, func), (_, _, _, cum, _) in pstats.Stats(prof).stats.items():
            if "/wccsim/" in path and not func.startswith(("_", "<")):
                name = "total" if func == "run_datapath" else f"{path.rsplit('/', 1)[-1][:-3]}.{func}"
                best[name] = min(best.get(name, float("inf")), cum)
    return dict(sorted(best.items(), key=lambda kv: -kv[1]))


def datapath_call(layer, rate: float) -> dict:
    """The whole bit-accurate layer, datapath only: `run_datapath` (stages 1-8, output dequantized; stages
    not recorded, as in `wccsim run`) with offline parameters from `calibrate_layer`."""
    if _attr("wccsim.simulate", "run_datapath") is None:
        return _missing("wccsim.simulate.run_datapath")
    run, exact = _datapath(layer, rate)
    how = "layer.run_datapath (" + ("bit-exact vs simulate_layer" if exact else
                                    "MISMATCH vs simulate_layer output_q") + ")"
    return {"call": run, "bytes": 0, "how": how, "exact": exact}


def simulate_layer_call(layer, rate: float) -> dict:
    """`simulate_layer` as a whole (datapath + calibration + float references + baselines), for information."""
    sim = _attr("wccsim.simulate", "simulate_layer")
    if sim is None:
        return _missing("wccsim.simulate.simulate_layer")
    return {"call": lambda: sim(layer.x, layer.w, layer.b, SPEC, rate, layer.stride), "bytes": 0,
            "how": "layer.simulate_layer (everything)"}


def cost_call(layer, rate: float) -> dict:
    """``wccsim.cost.layer_cost`` (scheme wcc, int8) for the layer's shape on hw_configs/edge_npu.yaml."""
    from pathlib import Path
    layer_cost = _attr("wccsim.cost", "layer_cost")
    load_hw = _attr("wccsim.hw", "load_hw")
    yaml = Path(__file__).resolve().parent.parent / "hw_configs" / "edge_npu.yaml"
    if layer_cost is None or load_hw is None or not yaml.exists():
        return _missing("wccsim.cost.layer_cost, wccsim.hw.load_hw or hw_configs/edge_npu.yaml")
    from wccsim.shape import LayerShape
    n, cin, h, w = layer.x.shape
    shape = LayerShape.pointwise(layer.name, cin, layer.w.shape[0], h, w, layer.stride)
    hw = load_hw(yaml)
    bits = SPEC.quant.act_bits, SPEC.quant.weight_bits
    return {"call": lambda: layer_cost(shape, hw, "wcc", rate, *bits), "bytes": 0,
            "how": "cost.layer_cost(shape, edge_npu, 'wcc', rate, 8, 8)"}
