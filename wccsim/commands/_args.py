"""argparse value types shared by the subcommands.

They raise ``argparse.ArgumentTypeError``, whose message argparse keeps (a ``ValueError``, and so an
`InputError`, would be reworded as "invalid <type> value"); `wccsim.cli` turns it into the one-line
exit-2 error.
"""

from __future__ import annotations

import argparse
import math

from wccsim import api
from wccsim.errors import InputError

__all__ = ["number", "rate", "bits", "fraction", "colours"]


def number(kind):
    """Type converting to ``kind`` (int or float); range checks are left to the library."""
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a{'n integer' if kind is int else ' number'}, "
                                             f"got {text!r}") from None
    return parse


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def rate(text: str) -> float:
    """A WCC kept fraction, as the library's rule (`wccsim.rules.check_rate`) accepts it."""
    r = _float_or_nan(text)
    try:
        api.check_rate(r)
    except InputError as e:
        raise argparse.ArgumentTypeError(f"expected {e.expected}, got {text!r}") from None
    return r


def bits(text: str) -> int:
    """A bit width, as the library's rule (`wccsim.rules.check_bits`) accepts it."""
    try:
        return api.check_bits(int(text) if text.isdigit() else text, "options", "bits")
    except InputError as e:
        raise argparse.ArgumentTypeError(f"expected {e.expected}, got {text!r}") from None


def fraction(text: str) -> float:
    """A fraction in [0, 1]."""
    f = _float_or_nan(text)
    if not 0.0 <= f <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got {text!r}")
    return f


def colours(text: str) -> tuple[float, ...]:
    """Comma-separated numbers, one per colour (``R,G,B``); their count and range are the library's checks."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B, got {text!r}") from None


def model_io_args(p) -> None:
    """--mean, --std, --channel-order (the preset's normalization overridden), --output and --output-kind (the
    measured graph output and its kind): the same flags on ``wccsim network`` and ``wccsim sweep --onnx``."""
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
