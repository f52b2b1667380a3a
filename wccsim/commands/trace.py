"""``wccsim trace``: capture a trace from an ONNX, PyTorch or TorchScript model (``capture``) and
summarize one (``info``)."""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections import Counter

from wccsim import api
from wccsim.errors import InputError

__all__ = ["register", "info_table"]


def register(subparsers) -> None:
    p = subparsers.add_parser("trace", help="capture or inspect layer traces (.npz, format v1)",
                              description="capture a trace from an ONNX, PyTorch or TorchScript model (capture) "
                                          "or summarize one (info)")
    sub = p.add_subparsers(dest="trace_command", parser_class=type(p))
    cap = sub.add_parser("capture", help="run a model on images and record every 1x1 conv")
    model = cap.add_mutually_exclusive_group(required=True)
    model.add_argument("--onnx", metavar="MODEL",
                       help="ONNX file, or rapidocr:NAME for a model in the rapidocr-onnxruntime wheel")
    model.add_argument("--torch", metavar="MODULE:FACTORY",
                       help="PyTorch model factory, e.g. torchvision.models.segmentation:deeplabv3_mobilenet_v3_large "
                            "(needs --weights)")
    model.add_argument("--torchscript", metavar="FILE.pt", help="TorchScript file (torch.jit.save)")
    cap.add_argument("--weights", metavar="FILE", help="state dict for --torch (torch.save(model.state_dict()))")
    cap.add_argument("--factory-arg", action="append", default=[], type=_factory_arg, metavar="KEY=VALUE",
                     help="keyword argument for the --torch factory, VALUE as JSON or a string "
                          "(e.g. num_classes=3, aux_loss=true); repeat for more")
    cap.add_argument("--image", required=True, action="append", metavar="IMG",
                     help="image file or skimage:NAME (repeat for a batch; all resized to one size)")
    cap.add_argument("--size", metavar="HxW", help="input size in pixels (default: from the preset)")
    cap.add_argument("--preprocess", choices=sorted(api.PRESETS),
                     help="preprocessing preset (default: from the ONNX model file name; imagenet for "
                          "--torch and --torchscript)")
    cap.add_argument("--layers", action="append", metavar="GLOB",
                     help="store only the captured layers whose name matches GLOB (repeat for more)")
    cap.add_argument("--float16", action="store_true", help="store x as float16 (y recomputed on it)")
    cap.add_argument("--no-y", action="store_true", help="do not store the framework outputs y")
    cap.add_argument("--compress", action="store_true", help="deflate the members")
    cap.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    cap.set_defaults(func=_capture)
    info = sub.add_parser("info", help="per-layer table and network totals of a trace")
    info.add_argument("trace", metavar="TRACE.npz")
    info.set_defaults(func=_info)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _factory_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a Python identifier as KEY, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


_EXTRAS = {"onnx": ("onnx", "onnxruntime", "skimage"), "torch": ("torch", "skimage"),
           "torchscript": ("torch", "onnx", "onnxruntime", "skimage")}


def _capture(args: argparse.Namespace) -> int:
    kind = next(k for k in _EXTRAS if getattr(args, k))
    missing = [m for m in _EXTRAS[kind] if importlib.util.find_spec(m) is None]
    if missing:
        extra = "torch,capture" if kind != "onnx" else "capture"
        raise InputError("wccsim trace capture", "", f"the {extra} extras (pip install 'wccsim[{extra}]')",
                         f"missing {', '.join(missing)}")
    if (args.weights is not None) != (kind == "torch") or (args.factory_arg and kind != "torch"):
        raise InputError("wccsim trace capture", "--weights/--factory-arg", "--weights with --torch (and only "
                         "there), --factory-arg only with --torch", "--weights missing" if kind == "torch" else
                         f"with --{kind}")
    common = dict(size=api.parse_size(args.size) if args.size else None, compress=args.compress,
                  store_dtype="float16" if args.float16 else "float32", store_y=not args.no_y, keep=args.layers)
    if kind == "onnx":
        layers = api.capture_onnx_trace(args.onnx, args.image, args.output, preset=args.preprocess, **common)
    elif kind == "torch":
        layers = api.capture_factory_trace(args.torch, args.weights, args.image, args.output,
                                           preset=args.preprocess or "imagenet",
                                           factory_args=dict(args.factory_arg), **common)
    else:
        layers = api.capture_torchscript_trace(args.torchscript, args.image, args.output,
                                               preset=args.preprocess or "imagenet", **common)
    print(f"wrote {args.output}: {len(layers)} layers")
    return 0


def _info(args: argparse.Namespace) -> int:
    print(info_table(api.open_trace(args.trace)))
    return 0


def info_table(trace) -> str:
    """Text table: one row per layer (sizes per sample), then network totals and the 1x1 share of MACs."""
    m = trace.meta
    head = ("layer", "Cin", "Cout", "H", "W", "stride", "MACs", "bytes_int8")
    rows = [(li.name, li.cin, li.cout, li.h, li.w, li.stride, li.macs, li.bytes_int8) for li in trace.layers]
    total_macs = sum(r[6] for r in rows)
    rows.append(("total", "", "", "", "", "", total_macs, sum(r[7] for r in rows)))
    widths = [max(len(f"{r[i]:,}" if isinstance(r[i], int) else str(r[i])) for r in [head, *rows])
              for i in range(len(head))]
    fmt = lambda r: "  ".join((f"{v:,}" if isinstance(v, int) else str(v)).rjust(w) if i else str(v).ljust(w)
                              for i, (v, w) in enumerate(zip(r, widths)))
    src = m.get("source", {})
    lines = [f"{trace.path}: {m.get('network', '?')} (format v{m['version']}), {len(trace.layers)} layers, "
             f"N={trace.n}, input {m.get('input', {}).get('size_hw_px', '?')}, "
             f"source {src.get('model_file', '?')} sha256 {str(src.get('sha256', '?'))[:12]}",
             fmt(head), *map(fmt, rows[:-1]), fmt(rows[-1])]
    model_macs = m.get("model_conv_macs")
    if model_macs:
        lines.append(f"captured 1x1 convs: {total_macs:,} of {model_macs:,} conv MACs per sample "
                     f"({100.0 * total_macs / model_macs:.1f}%)")
    skipped = m.get("skipped", [])
    if skipped:
        counts = Counter(s["reason"].split(",")[0] + (" grouped" if "group" in s["reason"] else "")
                         for s in skipped)
        lines.append(f"skipped {len(skipped)} conv nodes: " + ", ".join(f"{r} ({k})" for r, k in sorted(counts.items())))
    qdq = sum(li.has_qdq for li in trace.layers)
    if qdq:
        ops = Counter(src.get("executed_as", {}).values())
        lines.append(f"quantized model's own scales and integers (--scales trace): {qdq} layers; ran as "
                     + ", ".join(f"{op} ({k})" for op, k in sorted(ops.items())))
    lines.append("sizes per sample; bytes_int8 = input + weights + output at 1 byte per value")
    return "\n".join(lines)
