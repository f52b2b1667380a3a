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

`capture_factory_trace` is what ``wccsim trace capture --torch MODULE:FACTORY --weights FILE`` calls: it
builds the model with the factory (parameters named ``weights*``, torchvision's pretrained-weight
arguments, are passed None so nothing is downloaded), loads the user's state dict strictly (every
parameter and buffer present, same shapes: the weights match the model), then captures as above.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
from pathlib import Path

import numpy as np

from wccsim.capture.images import image_batch
from wccsim.capture.layer_check import checked_layer, write_captured
from wccsim.capture.onnx import sha256_file
from wccsim.errors import InputError
from wccsim.trace import LayerData, LayerInfo

__all__ = ["capture_torch", "capture_torch_trace", "load_factory_model", "capture_factory_trace"]


def capture_torch_trace(model, batch, out, *, network: str = "torch-model", input_meta: dict | None = None,
                        store_dtype: str = "float32", compress: bool = False,
                        store_y: bool = True) -> list[LayerInfo]:
    """Capture (see `capture_torch`) and write the trace to `out` atomically.

    `input_meta` (e.g. images and preprocessing) is stored as ``meta["input"]``.
    """
    meta, layers = capture_torch(model, batch, network=network, store_dtype=store_dtype)
    return write_captured(out, meta, layers, batch, input_meta, store_dtype=store_dtype, compress=compress,
                          store_y=store_y)


def load_factory_model(spec: str, weights: str | Path, factory_args: dict | None = None):
    """Build ``MODULE:FACTORY`` in eval mode with the state dict in `weights` loaded strictly.

    Parameters
    ----------
    spec : ``MODULE:FACTORY``, e.g. ``torchvision.models.segmentation:deeplabv3_mobilenet_v3_large``.
    weights : file written by ``torch.save(model.state_dict(), FILE)``; read with ``weights_only=True``.
    factory_args : keyword arguments for the factory (e.g. ``{"num_classes": 3}``); the factory's
        parameters named ``weights*`` that are not given here are passed None.

    Raises
    ------
    InputError
        One line: malformed spec, module not importable, no such factory, factory failing or not returning
        an ``nn.Module``, unreadable weights, or a state dict that does not match the model.
    """
    model = _build(spec, dict(factory_args or {}))
    state = _read_state_dict(Path(weights))
    mismatch = _state_mismatch(model.state_dict(), state)
    if mismatch:
        raise InputError(str(weights), "state dict", f"the parameters and buffers of {spec}", mismatch)
    model.load_state_dict(state, strict=True)
    return model.eval()


def capture_factory_trace(spec: str, weights: str | Path, images: list[str], out: str | Path, *,
                          preset: str = "imagenet", size: tuple[int, int] | None = None,
                          factory_args: dict | None = None, store_dtype: str = "float32",
                          compress: bool = False, store_y: bool = True,
                          keep: list[str] | None = None) -> list[LayerInfo]:
    """Build the model (`load_factory_model`), preprocess `images` with `preset`, capture, write `out`.

    ``meta.source`` names the factory and the weights file (``model_file``, ``sha256`` of the file);
    ``state_sha256`` is the hash of the loaded state_dict tensors (see `capture_torch`). `keep`: as in
    `wccsim.capture.onnx.capture_onnx_trace`.
    """
    batch, input_meta = image_batch(spec, images, preset, size)
    model = load_factory_model(spec, weights, factory_args)
    meta, layers = capture_torch(model, batch, network=spec.rpartition(":")[2], store_dtype=store_dtype)
    meta["source"] = dict(meta["source"], factory=spec, factory_args=dict(factory_args or {}),
                          model_file=Path(weights).name, sha256=sha256_file(weights),
                          sha256_of="model_file", state_sha256=meta["source"]["sha256"])
    return write_captured(out, meta, layers, batch, input_meta, store_dtype=store_dtype, compress=compress,
                          store_y=store_y, keep=keep)


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
    if not isinstance(mod.padding, str) and any(mod.padding):  # "valid" and "same" pad a 1x1 kernel by 0
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


def _build(spec: str, factory_args: dict):
    """Call the factory named by ``MODULE:FACTORY``; torchvision-style ``weights*`` parameters default to None."""
    import torch

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise InputError("--torch", "", "MODULE:FACTORY, e.g. torchvision.models.segmentation:deeplabv3_"
                         "mobilenet_v3_large", repr(spec))
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # any failure importing the user's module is bad input, reported in one line
        raise InputError(spec, "MODULE", "an importable Python module", _one_line(e)) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InputError(spec, "FACTORY", f"a callable in {module_name}", f"{type(factory).__name__}")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {**{k: None for k in params if k.startswith("weights")}, **factory_args}
    try:
        model = factory(**kwargs)
    except Exception as e:  # the factory's own refusal of these arguments
        raise InputError(spec, "FACTORY", f"a model built from arguments {kwargs}", _one_line(e)) from None
    if not isinstance(model, torch.nn.Module):
        raise InputError(spec, "FACTORY", "a factory returning a torch.nn.Module", type(model).__name__)
    return model


def _read_state_dict(path: Path) -> dict:
    """The name -> tensor mapping in `path` (``torch.load(weights_only=True)``: nothing else is unpickled)."""
    import torch

    if not path.is_file():
        raise InputError(str(path), "", "a state dict file (torch.save(model.state_dict(), FILE))", "no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickled objects other than tensors, ...
        raise InputError(str(path), "", "a state dict loadable with torch.load(weights_only=True)",
                         _one_line(e)) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = list(state)[:4] if isinstance(state, dict) else type(state).__name__
        raise InputError(str(path), "", "a state dict (parameter name -> tensor)", f"{keys}")
    return state


def _state_mismatch(want: dict, got: dict) -> str | None:
    """One-line summary of missing, unexpected and mis-shaped entries of `got` against `want`, or None."""
    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    shapes = [f"{k} {tuple(got[k].shape)} vs {tuple(want[k].shape)}" for k in want
              if k in got and got[k].shape != want[k].shape]
    parts = [f"{len(v)} {what} ({', '.join(v[:3])}{', ...' if len(v) > 3 else ''})"
             for what, v in (("missing", missing), ("unexpected", unexpected), ("of other shape", shapes)) if v]
    return "; ".join(parts) or None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"
