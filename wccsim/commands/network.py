"""``wccsim network``: run a whole ONNX network on images with its 1x1 convolutions on the WCC datapath."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from wccsim import api
from wccsim.commands._args import bits, model_io_args, number, rate


__all__ = ["register", "format_summary", "verdict"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "network", help="whole network on images: float vs WCC vs uniform-quantized drift",
        description="Run a whole ONNX network on images with its 1x1 convolutions on the WCC datapath.")
    p.add_argument("--onnx", required=True, metavar="MODEL", help="ONNX model with one image input")
    _calibration_args(p)
    p.add_argument("--hw", required=True, help="hardware YAML (e.g. hw_configs/edge_npu.yaml)")
    p.add_argument("--rate", required=True, type=rate, help="fraction of Haar positions kept, (0, 1]")
    p.add_argument("--act-bits", type=bits, default=None, help="activation bits 2..16 (default: YAML)")
    p.add_argument("--calib", default=None, help="calibration: max, percentile or mse (default: YAML)")
    p.add_argument("--coef", default=None, metavar="DESIGN",
                   help="coefficient quantizer design granularity[:scale] (per_tensor, per_level or per_band; "
                        "float, pow2 or fixed_point) in place of the YAML's coef: (as wccsim sweep --coef)")
    p.add_argument("--threshold", type=number(float), default=0.3,
                   help="probability-map binarization threshold for the IoU (DB default 0.3)")
    p.add_argument("--size", default=None, metavar="HxW",
                   help="network input size in pixels (default: the preset's, PP-OCR det short side 736)")
    p.add_argument("--preprocess", default="auto",
                   help=f"auto or one of {', '.join(api.PRESETS)} (auto: PP-OCR det or cls from the model's "
                        "output rank)")
    model_io_args(p)
    p.add_argument("--jobs", type=number(int), default=None, metavar="N",
                   help="evaluation images simulated at once, one thread each (default: the usable CPUs)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default: runs/network_<model>)")
    p.set_defaults(func=main)


def _calibration_args(p) -> None:
    """--image, --calib-image, --calibrate-on-eval: evaluation and calibration sets
    (`wccsim.network.calibration`)."""
    p.add_argument("--image", action="append", metavar="IMG",
                   help="evaluation image, file or skimage:NAME (repeatable; default: 8 skimage photographs, "
                        "docs/network.md)")
    p.add_argument("--calib-image", action="append", metavar="IMG",
                   help="calibration image: every layer's scales are fixed on these once (repeatable; default: "
                        "4 skimage photographs apart from the evaluation ones)")
    p.add_argument("--calibrate-on-eval", action="store_true",
                   help="allow calibrating on evaluation images (optimistic; without --calib-image: the "
                        "evaluation images)")


def _fmt(v, spec: str = ".4g") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def format_summary(summary: dict) -> str:
    """Human-readable lines: configuration, calibration, splicing check, mean and worst drift per output
    and mode, empty outputs."""
    cal = summary["calibration"]
    lines = [f"model {Path(summary['model']['path']).name}: {len(summary['spliced_layers'])} 1x1 layers on "
             f"the datapath, {len(summary['unhandled'])} 1x1 convs left in float",
             *(f"  float: {u['node']} ({u['reason']})" for u in summary["unhandled"]),
             f"splicing check (float hooks vs onnxruntime): max |err| / max(1, max |ref|) = "
             f"{_fmt(summary['reproduction_max_err'], '.2e')}",
             f"calibration: {cal['note']} ({len(cal['images'])} image(s): "
             f"{', '.join(_short(i) for i in cal['images'])})" + ("  ** OPTIMISTIC **" if cal["optimistic"] else ""),
             f"rate {summary['rate']:g}, WCC {summary['act_bits']}-bit vs uniform {summary['uniform_bits']}-bit vs "
             f"int8, mean (worst) over {len(summary['images'])} evaluation image(s):"]
    for name in summary["model"]["outputs"]:
        empty = summary["empty_images"][name]
        if empty:
            lines.append(f"  {name}: {len(empty)} image(s) with an empty float output, left out of the IoU and SQNR: "
                         f"{', '.join(empty)}")
        kind_metrics = api.KIND_METRICS[api.OutputKind(summary["model"]["kinds"][name])]
        for mode in ("wcc", "uniform", "int8"):
            d, w = summary["mean"][mode][name], summary["worst"][mode][name]
            extra = "".join(f", {k} {_fmt(d[k])} ({_fmt(w[k])})" for k in kind_metrics if k in d)
            lines.append(f"  {name} {mode:8s} SQNR {_fmt(d['sqnr_db'], '.2f')} ({_fmt(w['sqnr_db'], '.2f')}) dB, "
                         f"MSE {_fmt(d['mse'])} ({_fmt(w['mse'])}){extra}")
    return "\n".join(lines) + "\n"


def _short(spec: str) -> str:
    return spec.split(":", 1)[1] if spec.startswith("skimage:") else Path(spec).name


def verdict(summary: dict) -> str:
    """The block a team lead pastes: WCC's savings against int8 on the spliced 1x1 layers (the
    ``summary['cost']`` rows: `wccsim.results.savings`), the quality cost on the network output (mean and
    worst image against int8 and float), and uniform n-bit at the same stored bits."""
    cost = {r["scheme"]: r for r in summary["cost"]}
    saves = api.saving_phrase
    w, u, i8 = cost["wcc"], cost["uniform_nbit"], cost["int8"]
    cal = summary["calibration"]
    n_img = len(summary["images"])
    lines = [f"verdict ({summary['hw']}, coef {summary['coef']}, the {int(w['layers'])} spliced 1x1 layers of "
             f"{Path(summary['model']['path']).name} summed, mean over the evaluation images; every other layer "
             f"runs in float and is not costed; savings = 100 x (1 - scheme / int8) on the same hardware; DRAM and "
             f"energy = the layers' own plus their inputs' writes by the producers; quality = network output vs "
             f"the float network, mean (worst) over {n_img} evaluation images, "
             + ("calibrated on evaluation images: OPTIMISTIC" if cal["optimistic"]
                else f"scales fixed on {len(cal['images'])} other images") + "):",
             f"  WCC at rate {summary['rate']:g}, {summary['act_bits']}-bit: {saves(w['dram_saving_pct'])} DRAM "
             f"({i8['dram_bytes'] / 1e6:.2f} -> {w['dram_bytes'] / 1e6:.2f} MB), {saves(w['energy_saving_pct'])} "
             f"energy, {saves(w['cycle_saving_pct'])} cycles, {saves(w['bops_saving_pct'])} BOPs"]
    for name in summary["model"]["outputs"]:
        lines.append(f"  {name}: " + _quality(summary, name, "wcc") + "; int8 " + _quality(summary, name, "int8")
                     + "; WCC - int8: " + _delta(summary, name, "wcc", "int8"))
    lines.append(f"  uniform {int(u['act_bits'])}-bit (the same {u['eff_bits_per_act']:g} stored bits per "
                 f"activation): {saves(u['dram_saving_pct'])} DRAM, {saves(u['energy_saving_pct'])} energy; WCC has "
                 f"{(w['dram_bytes'] - u['dram_bytes']) / 1e6:+.2f} MB DRAM against it")
    for name in summary["model"]["outputs"]:
        lines.append(f"  {name}: uniform " + _quality(summary, name, "uniform") + "; WCC - uniform: "
                     + _delta(summary, name, "wcc", "uniform"))
    if summary["empty_images"] and any(summary["empty_images"].values()):
        lines.append("  " + "; ".join(f"{name}: {len(e)} image(s) with an empty float output not in the IoU and SQNR"
                                       for name, e in summary["empty_images"].items() if e))
    return "\n".join(lines) + "\n"


# The kind metrics the verdict states (those an output has), before SQNR.
_LABELS = (("iou", "IoU"), ("miou", "mIoU"), ("argmax_agree", "arg-max agreement"), ("mae", "MAE"),
           ("sad", "SAD"), ("top1_agree", "top-1 agreement"))


def _quality(summary: dict, name: str, mode: str) -> str:
    """'IoU 0.83 (worst 0.61), SQNR 8.1 (worst 5.2) dB' of one mode on one output (SQNR vs float)."""
    d, w = summary["mean"][mode][name], summary["worst"][mode][name]
    parts = [f"{label} {_fmt(d[k], '.3f')} (worst {_fmt(w[k], '.3f')})"
             for k, label in _LABELS if k in d]
    parts.append(f"SQNR {_fmt(d['sqnr_db'], '.2f')} (worst {_fmt(w['sqnr_db'], '.2f')}) dB")
    return ", ".join(parts)


def _delta(summary: dict, name: str, a: str, b: str) -> str:
    """'IoU -0.040 (worst -0.061), SQNR -1.20 (worst -0.90) dB': mode a minus mode b, mean and worst image."""
    parts = []
    for k, label, unit in (*((k, label, "") for k, label in _LABELS), ("sqnr_db", "SQNR", " dB")):
        if k not in summary["mean"][a][name]:
            continue
        d = [None if s[a][name][k] is None or s[b][name][k] is None else s[a][name][k] - s[b][name][k]
             for s in (summary["mean"], summary["worst"])]
        parts.append(f"{label} {_fmt(d[0], '+.3f')} (worst {_fmt(d[1], '+.3f')}){unit}")
    return ", ".join(parts)


def main(args: argparse.Namespace) -> int:
    size = api.parse_size(args.size) if args.size else None
    out = api.check_output_dir(Path(args.out) if args.out else Path("runs") / f"network_{Path(args.onnx).stem}")
    hw = api.resolve_hw(args.hw, args.coef)
    result = api.simulate_network(args.onnx, args.image, hw, rate=args.rate, act_bits=args.act_bits,
                                  threshold=args.threshold, size=size, preprocess=args.preprocess,
                                  calib=args.calib, mean=args.mean, std=args.std,
                                  channel_order=args.channel_order, output=args.output,
                                  output_kind=args.output_kind, calib_images=args.calib_image,
                                  calibrate_on_eval=args.calibrate_on_eval, jobs=args.jobs)
    written = api.write_network_outputs(result, out)
    print(format_summary(result.summary), end="")
    print(f"\n{verdict(result.summary)}", end="")
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
