"""Capture a v1 trace of every 1x1 ``nn.Conv2d`` of a PyTorch model with forward hooks (torch optional).

Steps (`capture_torch`), mirroring `wccsim.capture.onnx`:

1. Hook every ``nn.Conv2d`` and ``nn.ConvTranspose2d``. A Conv2d is captured when its kernel is 1x1,
   ``groups == 1``, padding is zero, strides are equal and its input map is larger than 1x1 pixel; the
   others are listed in ``meta["skipped"]`` with the reason. A module called several times gives one
   layer per call (``name``, ``name_2``, ...).
2. Run the model once under ``torch.no_grad()`` (put it in ``eval()`` mode first: the model's state is not
   touched). Hooked shapes give the MACs of all convolutions (``meta["model_conv_macs"]``, per sample).
3. Check each layer: ``torch.nn.functional.conv2d`` with the module's weight, bias and stride on the captured
   input reproduces the hooked output (relative L2 error <= 1e-5).
4. ``y`` is torch's output for exactly the stored ``x`` (recomputed with ``conv2d`` on the float16-rounded
   ``x`` for float16 storage).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import numpy as np

from wccsim.capture.layer_check import checked_layer
from wccsim.trace import LayerData, LayerInfo, write_trace

__all__ = ["capture_torch", "capture_torch_trace"]


def capture_torch_trace(model, batch, out, *, network: str = "torch-model", input_meta: dict | None = None,
                        store_dtype: str = "float32", compress: bool = False,
                        store_y: bool = True) -> list[LayerInfo]:
    """Capture (see `capture_torch`) and write the trace to `out` atomically.

    `input_meta` (e.g. images and preprocessing) is stored as ``meta["input"]``.
    """
    meta, layers = capture_torch(model, batch, network=network, store_dtype=store_dtype)
    meta["input"] = dict(input_meta or {}, size_hw_px=list(np.shape(batch)[2:]))
    if not store_y:
        layers = [dataclasses.replace(ld, y=None) for ld in layers]
        meta["y_source"] = None
    return write_trace(out, meta, layers, store_dtype=store_dtype, compress=compress)


def capture_torch(model, batch, *, network: str = "torch-model",
                  store_dtype: str = "float32") -> tuple[dict, list[LayerData]]:
    """Run `model` on `batch` with hooks and return (meta without layers, captured layers).

    Parameters
    ----------
    model : torch.nn.Module, in the mode it should run (normally ``eval()``).
    batch : (N, C, H, W) float tensor or array, already preprocessed.
    network : name stored in ``meta["network"]``.
    store_dtype : "float32" or "float16" storage of ``x`` (``y`` follows the stored ``x``).
    """
    import torch

    records, skipped, macs = [], [], []
    handles = [m.register_forward_hook(_hook(name, m, records, skipped, macs))
               for name, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            model(torch.as_tensor(np.asarray(batch, np.float32)))
    finally:
        for h in handles:
            h.remove()
    layers = [checked_layer(r["name"], r["node"], r["w"], r["b"], r["stride"], r["x"], r["y"], _conv,
                            store_dtype) for r in _unique_names(records)]
    meta = {
        "network": network,
        "source": {"tool": f"torch {torch.__version__}", "model_file": None, "sha256": _state_sha256(model),
                   "sha256_of": "state_dict tensors, in order"},
        "model_conv_macs": int(sum(macs)),
        "skipped": skipped,
        "y_source": "torch hooked output" if store_dtype != "float16" else
                    "torch conv2d on the float16-rounded x",
    }
    return meta, layers


def _hook(name: str, module, records: list, skipped: list, macs: list):
    """Forward hook recording 1x1 layers, skip reasons and MACs per sample."""
    import torch

    def hook(mod, inputs, output):
        x = inputs[0]
        if isinstance(mod, torch.nn.ConvTranspose2d):
            macs.append(mod.weight.numel() * x.shape[2] * x.shape[3])
            skipped.append({"node": name, "reason": "ConvTranspose"})
            return
        macs.append(mod.weight.numel() * output.shape[2] * output.shape[3])
        reason = _skip_reason(mod, x)
        if reason:
            skipped.append({"node": name, "reason": reason})
            return
        records.append({"node": name, "x": x.detach().float().numpy().copy(),
                        "y": output.detach().float().numpy().copy(),
                        "w": mod.weight.detach().float().numpy()[:, :, 0, 0].copy(),
                        "b": None if mod.bias is None else mod.bias.detach().float().numpy().copy(),
                        "stride": int(mod.stride[0])})
    return hook


def _skip_reason(mod, x) -> str | None:
    """Why WCC does not apply to this Conv2d call, or None."""
    group = f", group {mod.groups}" if mod.groups != 1 else ""
    if tuple(mod.kernel_size) != (1, 1) or group:
        return f"kernel {mod.kernel_size[0]}x{mod.kernel_size[1]}{group}"
    if mod.padding != "valid" and any(mod.padding):
        return f"pads {list(mod.padding)}"
    if len(set(mod.stride)) != 1:
        return f"unequal strides {list(mod.stride)}"
    if x.shape[2] * x.shape[3] == 1:
        return "1x1 pixel input (fully connected layer)"
    return None


def _unique_names(records: list[dict]) -> list[dict]:
    """Sanitize module names to trace layer names; repeated calls get ``_2``, ``_3``, ..."""
    seen: dict[str, int] = {}
    for r in records:
        base = re.sub(r"[^A-Za-z0-9_\-]", "_", r["node"]) or "conv"
        seen[base] = seen.get(base, 0) + 1
        r["name"] = base if seen[base] == 1 else f"{base}_{seen[base]}"
    return records


def _conv(w: np.ndarray, b: np.ndarray | None, stride: int, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        y = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w[:, :, None, None]),
                                       None if b is None else torch.from_numpy(b), stride=stride)
    return y.numpy()


def _state_sha256(model) -> str:
    import torch

    h = hashlib.sha256()
    for key, t in model.state_dict().items():
        h.update(key.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
