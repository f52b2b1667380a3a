"""``wccsim sweep``: hw x coef x rate x act_bits x weight_bits over a trace; resumable, parallel, deterministic."""

from __future__ import annotations

import argparse
from pathlib import Path

from wccsim import api
from wccsim.commands._args import model_io_args
from wccsim.errors import InputError

__all__ = ["format_totals", "register", "parse_list"]


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="sweep rates and bit widths (resumable; --jobs, --scheduler)",
                              description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("--hw", required=True, action="append", help="hardware YAML (repeat for several)")
    p.add_argument("--trace", required=True, help="trace .npz")
    p.add_argument("--rates", default="1,0.5,0.25,0.125", help="comma-separated rates in (0, 1]")
    p.add_argument("--act-bits", default="8", help="comma-separated activation bits (2..16)")
    p.add_argument("--weight-bits", default="8", help="comma-separated weight bits (2..16)")
    p.add_argument("--coef", default=None, metavar="DESIGN[,DESIGN...]",
                   help="coefficient quantizer designs granularity[:scale] (granularity per_tensor, per_level or "
                        "per_band; scale float, pow2 or fixed_point, default the YAML's), each applied to every "
                        "--hw (default: each YAML's own coef:)")
    p.add_argument("--layers", default=None, metavar="GLOB", help="only layers whose name matches GLOB")
    p.add_argument("--calib", default=None, help="calibration: max, percentile or mse (default: YAML)")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep directory (journal + tables)")
    p.add_argument("--jobs", default="1", help="worker processes on this machine (default 1)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask.distributed scheduler address (runs points on that cluster)")
    net = p.add_argument_group("network-level points (as wccsim network; rows to DIR/network.csv)")
    net.add_argument("--onnx", default=None, metavar="MODEL", help="ONNX model with one image input")
    net.add_argument("--image", action="append", default=None, metavar="IMG",
                     help="image file or skimage:NAME (repeatable; needs --onnx)")
    net.add_argument("--size", default=None, metavar="HxW", help="network input size in pixels")
    net.add_argument("--preprocess", default=None, help="auto (default), ppocr_det, ppocr_cls or ppocr_rec")
    net.add_argument("--threshold", default=None, help="probability-map threshold for the IoU (default 0.3)")
    model_io_args(net)  # default here: every graph output measured; --output or --output-kind: one (the first)
    net.add_argument("--calib-image", action="append", default=None, metavar="IMG",
                     help="calibration image (repeatable; default: skimage photographs apart from --image)")
    net.add_argument("--calibrate-on-eval", action="store_true",
                     help="allow calibrating on evaluated images (optimistic)")
    p.set_defaults(func=main)


def parse_list(field: str, text: str, kind) -> list:
    """'1,0.5' -> [1.0, 0.5]; a malformed item is a one-line InputError naming the flag."""
    items = [t.strip() for t in text.split(",")]
    try:
        return [kind(t) for t in items]
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise InputError("options", field, f"comma-separated {what}", text) from None


def main(args: argparse.Namespace) -> int:
    import pandas as pd

    jobs = parse_list("jobs", args.jobs, int)[0]
    threshold = None if args.threshold is None else parse_list("threshold", args.threshold, float)[0]
    df = api.sweep(args.hw, args.trace, args.out, rates=parse_list("rates", args.rates, float),
               act_bits=parse_list("act_bits", args.act_bits, int),
               weight_bits=parse_list("weight_bits", args.weight_bits, int),
               coef=None if args.coef is None else parse_list("coef", args.coef, str), layers=args.layers,
               calib=args.calib, jobs=jobs, scheduler=args.scheduler, onnx=args.onnx, images=args.image,
               size=api.parse_size(args.size) if args.size else None, preprocess=args.preprocess,
               threshold=threshold, calib_images=args.calib_image, calibrate_on_eval=args.calibrate_on_eval,
               mean=args.mean, std=args.std, channel_order=args.channel_order, output=args.output,
               output_kind=args.output_kind)
    print(format_totals(api.savings(api.totals(df))))
    if args.onnx is None:
        print(f"\nwrote {args.out}/layers.csv, totals.csv, sweep.json ({len(df)} rows)")
        return 0
    net = pd.read_csv(Path(args.out) / "network.csv")
    print("\n" + net[["hw", "cfg_coef", "cfg_rate", "cfg_act_bits", "scheme", "eff_bits_per_act", "output", "bops",
                      "sqnr_db", "sqnr_db_worst", "iou", "iou_worst", "top1_agree", "empty_images", "calibration"]
                     ].to_string(index=False))
    print(f"\nwrote {args.out}/layers.csv, totals.csv, network.csv, sweep.json ({len(df)} rows, "
          f"{len(net)} network rows)")
    return 0


def format_totals(s) -> str:
    """Network totals per configuration and scheme in reading units, with the savings vs int8 (same hw); DRAM
    and energy include the producers' traffic for the layers' inputs (`wccsim.results.savings`)."""
    import pandas as pd

    table = pd.DataFrame({
        "hw": s.hw, "coef": s.cfg_coef, "rate": s.cfg_rate, "act_bits": s.cfg_act_bits,
        "weight_bits": s.cfg_weight_bits,
        "scheme": s.scheme, "bits/act": s.eff_bits_per_act.round(3), "GBOPs": (s.bops / 1e9).round(3),
        "DRAM_MB": (s.dram_bytes / 1e6).round(3), "Mcycles": (s.cycles / 1e6).round(3),
        "energy_uJ": (s.energy_total_pj / 1e6).round(2), "SQNR_dB": s.sqnr_total_db.round(2),
        "DRAM_saved_%": s.dram_saving_pct.round(1), "energy_saved_%": s.energy_saving_pct.round(1),
    })
    return table.to_string(index=False)
