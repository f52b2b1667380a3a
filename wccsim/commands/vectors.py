"""``wccsim vectors``: export one layer's datapath stages as $readmemh hex files for RTL verification."""

from __future__ import annotations

import argparse

from wccsim import api
from wccsim.commands._args import rate


__all__ = ["register", "main"]


def register(subparsers) -> None:
    p = subparsers.add_parser("vectors", help="write one layer's stage values as RTL test vectors",
                              description=__doc__.splitlines()[0])
    p.add_argument("--hw", required=True, help="hardware YAML (e.g. hw_configs/edge_npu.yaml)")
    p.add_argument("--trace", required=True, help="trace .npz (e.g. traces/ppocrv4_det.npz)")
    p.add_argument("--layer", required=True, help="layer name in the trace")
    p.add_argument("--rate", type=rate, default=0.5, help="fraction of Haar positions kept, (0, 1]")
    p.add_argument("--tile", default=None, metavar="HxW[@Y,X]",
                   help="simulate only this spatial tile of the input (top-left unless @Y,X is given)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created or replaced)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    tile = api.parse_tile(args.tile) if args.tile else None           # 1. inputs
    api.check_output_dir(args.out)
    hw = api.load_hw(args.hw)
    layer = api.open_trace(args.trace).layer(args.layer)
    out = api.export_layer(layer, hw, args.rate, args.out, tile)      # 2. simulate and write
    manifest = api.read_manifest(out)                                 # 3. summary
    for st in manifest["stages"]:
        sign = "s" if st["signed"] else "u"
        print(f"{st['stage']:<14} {st['count']:>9} x {sign}{st['width_bits']:<3} {st['shape']}")
    print(f"wrote {len(manifest['stages'])} stage files and manifest.json to {out}")
    return 0
