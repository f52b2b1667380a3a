"""``wccsim report``: a self-contained HTML report (plus PNGs and a CSV summary) from a run or sweep dir."""

from __future__ import annotations

import argparse
from pathlib import Path

from wccsim import api

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="HTML report from a run or sweep directory",
                              description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument("dir", help="output directory of wccsim run or wccsim sweep")
    p.add_argument("-o", "--out", default=None, help="HTML file to write (default DIR/report.html)")
    p.add_argument("--max-sqnr-drop-db", type=float, default=1.0,
                   help="quality budget: SQNR at most this many dB below int8's (the network output's, mean and "
                        "worst image, where the sweep has network rows; else the layer aggregate's) (default 1)")
    p.add_argument("--max-score-drop", type=float, default=0.02,
                   help="quality budget on a network output measured by IoU or top-1 agreement: at most this "
                        "far below int8's, mean and worst image (default 0.02)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    api.check_output_file(args.out if args.out is not None else Path(args.dir) / "report.html")
    path = api.report(args.dir, args.out, max_sqnr_drop_db=args.max_sqnr_drop_db,
                      max_score_drop=args.max_score_drop)
    print(f"wrote {path} (+ PNGs and {path.stem}_summary.csv beside it)")
    return 0
