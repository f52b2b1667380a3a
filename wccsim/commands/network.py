"""``wccsim network``: run a whole ONNX network on images with its 1x1 convolutions on the WCC datapath."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from wccsim import api
from wccsim.commands._args import bits, colours, number, rate


__all__ = ["register", "format_summary"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "network", help="whole network on images: float vs WCC vs uniform-quantized drift",
        description="Run a whole ONNX network on images with its 1x1 convolutions on the WCC datapath.")
    p.add_argument("--onnx", required=True, metavar="MODEL", help="ONNX model with one image input")
    p.add_argument("--image", required=True, action="append", metavar="IMG",
                   help="image file or skimage:NAME (repeatable)")
    p.add_argument("--hw", required=True, help="hardware YAML (e.g. hw_configs/edge_npu.yaml)")
    p.add_argument("--rate", required=True, type=rate, help="fraction of Haar positions kept, (0, 1]")
    p.add_argument("--act-bits", type=bits, default=None, help="activation bits 2..16 (default: YAML)")
    p.add_argument("--calib", default=None, help="calibration: max, percentile or mse (default: YAML)")
    p.add_argument("--threshold", type=number(float), default=0.3,
                   help="probability-map binarization threshold for the IoU (DB default 0.3)")
    p.add_argument("--size", default=None, metavar="HxW",
                   help="network input size in pixels (default: the preset's, PP-OCR det short side 736)")
    p.add_argument("--preprocess", default="auto",
                   help=f"auto or one of {', '.join(api.PRESETS)} (auto: PP-OCR det or cls from the model's "
                        "output rank)")
    p.add_argument("--mean", type=colours, default=None, metavar="R,G,B",
                   help="per-colour mean subtracted from v/255 (default: the preset's)")
    p.add_argument("--std", type=colours, default=None, metavar="R,G,B",
                   help="per-colour std dividing v/255 - mean (default: the preset's)")
    p.add_argument("--channel-order", default=None,
                   help="rgb or bgr, the channel order the model takes (default: the preset's)")
    p.add_argument("--output", default=None, metavar="NAME",
                   help="graph output to measure (default: the first)")
    p.add_argument("--output-kind", default=None,
                   help="prob_map, seg_logits, alpha, logits or class (default: detected from the float output)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default: runs/network_<model>)")
    p.set_defaults(func=main)


def _fmt(v, spec: str = ".4g") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def format_summary(summary: dict) -> str:
    """Human-readable lines: configuration, splicing check, mean drift per output and mode."""
    lines = [f"model {Path(summary['model']['path']).name}: {len(summary['spliced_layers'])} 1x1 layers on "
             f"the datapath, {len(summary['unhandled'])} 1x1 convs left in float",
             *(f"  float: {u['node']} ({u['reason']})" for u in summary["unhandled"]),
             f"splicing check (float hooks vs onnxruntime): max |err| / max(1, max |ref|) = "
             f"{_fmt(summary['reproduction_max_err'], '.2e')}",
             f"rate {summary['rate']:g}, WCC {summary['act_bits']}-bit vs uniform {summary['uniform_bits']}-bit, "
             f"mean over {len(summary['images'])} image(s):"]
    for name in summary["model"]["outputs"]:
        for mode in ("wcc", "uniform"):
            d = summary["mean"][mode][name]
            extra = "".join(f", {k} {_fmt(d[k])}" for k in api.KIND_METRICS[api.OutputKind(
                summary["model"]["kinds"][name])])
            lines.append(f"  {name} {mode:8s} SQNR {_fmt(d['sqnr_db'], '.2f')} dB, MSE {_fmt(d['mse'])}{extra}")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    size = api.parse_size(args.size) if args.size else None
    out = api.check_output_dir(Path(args.out) if args.out else Path("runs") / f"network_{Path(args.onnx).stem}")
    result = api.simulate_network(args.onnx, args.image, args.hw, rate=args.rate, act_bits=args.act_bits,
                              threshold=args.threshold, size=size, preprocess=args.preprocess,
                              calib=args.calib, mean=args.mean, std=args.std,
                              channel_order=args.channel_order, output=args.output,
                              output_kind=args.output_kind)
    written = api.write_network_outputs(result, out)
    print(format_summary(result.summary), end="")
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
