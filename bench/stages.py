"""Zero-argument callables running wccsim's stages on a benchmark layer, with their inputs prepared once.

Each ``*_call`` returns a dict with ``call`` (None when the wccsim module or function is missing), ``how``
(which functions are timed, or why nothing is) and, for memory-bound units, ``bytes`` (bytes the unit
reads plus writes, counted from the arrays as the simulator holds them).
"""

from __future__ import annotations

import importlib

import numpy as np

from wccsim.hw import DatapathSpec

__all__ = ["SPEC", "quantize_int8", "mac_call", "unit_call", "datapath_call", "cost_call"]

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


def datapath_call(layer, rate: float) -> dict:
    """The whole bit-accurate layer, datapath only (quantize ... requant), as layer.py exposes it."""
    sim = _attr("wccsim.datapath.layer", "simulate_layer")
    if sim is None:
        return _missing("wccsim.datapath.layer.simulate_layer")
    return {"call": lambda: sim(layer.x, layer.w, layer.b, SPEC, rate, layer.stride), "bytes": 0,
            "how": "layer.simulate_layer"}


def cost_call(layer, rate: float) -> dict:
    """``wccsim.cost.layer_cost`` for the layer's shape."""
    layer_cost = _attr("wccsim.cost", "layer_cost")
    if layer_cost is None:
        return _missing("wccsim.cost.layer_cost")
    return {"call": lambda: layer_cost(layer, rate), "bytes": 0, "how": "cost.layer_cost"}
