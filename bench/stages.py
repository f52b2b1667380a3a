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
    xq = _subsample(quantize_int8(layer.x), layer.stride)
    h, w = xq.shape[2:]
    coef = haar.forward_int(xq, SPEC.haar, SPEC.quant.act_bits).coef
    k = topk.num_kept(rate, coef.shape[2])
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
    num_kept = _attr("wccsim.datapath.topk", "num_kept")
    if fwd is None or energy is None or select is None or num_kept is None:
        return _missing("wccsim.datapath.topk.energy/select/num_kept")
    xq = _subsample(quantize_int8(layer.x), layer.stride)
    coef = fwd(xq, SPEC.haar, SPEC.quant.act_bits).coef
    k = num_kept(rate, coef.shape[2])
    spec, metric = SPEC.topk, SPEC.topk.metric

    def call():
        return select(energy(coef, metric), k, spec)
    sel = call()
    nbytes = coef.nbytes + sel.bitmap.nbytes + sel.idx.nbytes
    return {"call": call, "bytes": nbytes, "how": f"topk.energy+select ({coef.dtype} coef in, bitmap+idx out)"}


def unit_call(unit: str, layer, rate: float) -> dict:
    """Haar forward+inverse (``"haar"``) or top-k (``"topk"``) on the layer's int8 input."""
    return {"haar": _haar_call, "topk": _topk_call}[unit](layer, rate)


def _params_from(stage) -> "QuantParams":
    from wccsim.calibrate import QuantParams
    return QuantParams(float(np.asarray(stage.scale).reshape(-1)[0]), int(stage.zero_point), int(stage.width_bits),
                       bool(stage.signed))


def _offline(layer, rate: float) -> dict:
    """Everything fixed before the datapath runs, read off one `simulate_layer` run: calibrated scales,
    quantized weights and bias, output requant record; plus that run's ``output_q`` for the bit check."""
    from wccsim.calibrate import requant_params
    from wccsim.datapath.layer import simulate_layer
    res = simulate_layer(layer.x, layer.w, layer.b, SPEC, rate, layer.stride)
    st = res.stages
    in_qp, cqp, out_qp = _params_from(st["input_q"]), _params_from(st["coef_q"]), _params_from(st["output_q"])
    s_w = np.asarray(st["weight_q"].scale, np.float64).reshape(-1, 1)
    return {"in_qp": in_qp, "cqp": cqp, "wq": st["weight_q"].values, "bq": st["bias_q"].values,
            "out_params": requant_params(cqp.scale, out_qp, weight_scale=s_w[None, :, :, None]), "out_qp": out_qp,
            "inverse_bits": st["inverse"].width_bits, "expected": st["output_q"].values}


def _integer_steps(layer, rate: float, off: dict) -> list:
    """Stages 1-8 of DESIGN.md section 2 with offline parameters, as named steps over a state dict."""
    from wccsim.calibrate import quantize, requant_params
    from wccsim.datapath import haar, topk
    from wccsim.datapath.mac import mac_array
    from wccsim.datapath.requant import requantize
    from wccsim.hw import Normalize, RequantMode
    if SPEC.haar.normalize is not Normalize.PER_LEVEL:
        raise NotImplementedError("the bench times the default per_level Haar")
    hs, ts, in_qp, cqp = SPEC.haar, SPEC.topk, off["in_qp"], off["cqp"]
    xs = layer.x[:, :, ::layer.stride, ::layer.stride]
    n, _, h, w = xs.shape
    hp, wp = haar.pad_shape(h, w, hs.levels)
    k = topk.num_kept(rate, hp * wp)
    in_bits = SPEC.quant.act_bits + (0 if in_qp.signed else 1)
    wq, bq4 = off["wq"], off["bq"][None, :, None, None]
    coef_in_bits = min(hs.width_bits, 32)

    def zero_fill(s):
        zf = np.zeros((n, s["acc"].shape[1], hp * wp), dtype=np.int64)
        np.put_along_axis(zf, s["sel"].idx[:, None, :], s["acc"], axis=2)
        return zf

    return [
        ("1 quantize", "x_int", lambda s: quantize(xs, in_qp) - in_qp.zero_point),
        ("2 haar fwd", "coef", lambda s: haar.forward_int(s["x_int"], hs, in_bits).coef),
        ("3 top-k", "sel", lambda s: topk.select(topk.energy(s["coef"], ts.metric), k, ts)),
        ("4 gather", "kept", lambda s: np.take_along_axis(s["coef"], s["sel"].idx[:, None, :], axis=2)),
        ("4 coef requant", "cq", lambda s: requantize(s["kept"], requant_params(np.full((n, 1, k), in_qp.scale), cqp,
                                                                                in_bits=coef_in_bits),
                                                      RequantMode.FIXED_POINT)[0]),
        ("5 MAC", "acc", lambda s: mac_array(wq, s["cq"], SPEC.mac)[0]),
        ("6 zero-fill", "zf", zero_fill),
        ("7 haar inv", "spatial", lambda s: haar.inverse_int(s["zf"], h, w, hs, off["inverse_bits"])[0]),
        ("8 bias+requant", "q", lambda s: requantize(s["spatial"] + bq4, off["out_params"], SPEC.requant.mode)[0]),
    ]


def _integer_pipeline(steps: list):
    """A callable running the steps in order; returns output_q."""
    def run():
        state = {}
        for _, key, fn in steps:
            state[key] = fn(state)
        return state["q"]
    return run


def stage_profile(layer, rate: float, repeats: int = 3) -> dict:
    """Best-of-``repeats`` seconds of each integer step (for the profile of a missed target)."""
    import time
    steps = _integer_steps(layer, rate, _offline(layer, rate))
    best = {name: float("inf") for name, _, _ in steps}
    for _ in range(repeats):
        state = {}
        for name, key, fn in steps:
            t0 = time.perf_counter()
            state[key] = fn(state)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def datapath_call(layer, rate: float) -> dict:
    """The whole bit-accurate layer, datapath only: stages 1-8 called in sequence with calibrated,
    offline parameters (scales, quantized weights, bias, requant records), checked bit for bit against
    `simulate_layer`'s ``output_q`` (which also computes float references, baselines and calibration)."""
    if _attr("wccsim.datapath.layer", "simulate_layer") is None:
        return _missing("wccsim.datapath.layer.simulate_layer")
    off = _offline(layer, rate)
    run = _integer_pipeline(_integer_steps(layer, rate, off))
    exact = bool(np.array_equal(run(), off["expected"]))
    how = "integer stages 1-8 in sequence (" + ("bit-exact vs simulate_layer" if exact else
                                                 "MISMATCH vs simulate_layer output_q") + ")"
    return {"call": run, "bytes": 0, "how": how, "exact": exact}


def simulate_layer_call(layer, rate: float) -> dict:
    """`simulate_layer` as a whole (datapath + calibration + float references + baselines), for information."""
    sim = _attr("wccsim.datapath.layer", "simulate_layer")
    if sim is None:
        return _missing("wccsim.datapath.layer.simulate_layer")
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
    from wccsim.cost.workload import LayerKind, LayerShape
    n, cin, h, w = layer.x.shape
    shape = LayerShape(name=layer.name, kind=LayerKind.CONV1X1, cin=cin, cout=int(layer.w.shape[0]), kernel=1,
                       stride=layer.stride, groups=1, h=h, w=w)
    hw = load_hw(yaml)
    bits = SPEC.quant.act_bits, SPEC.quant.weight_bits
    return {"call": lambda: layer_cost(shape, hw, "wcc", rate, *bits), "bytes": 0,
            "how": "cost.layer_cost(shape, edge_npu, 'wcc', rate, 8, 8)"}
