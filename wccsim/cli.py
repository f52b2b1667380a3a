"""Command-line entry point: parse, call the library, print. Thin by design.

Each subcommand lives in its own module under ``wccsim.commands`` exposing
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
Exit status: 0 success, 2 invalid input (`InputError`, one line on stderr), 1 internal error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from wccsim import __version__
from wccsim.errors import InputError, UsageError

__all__ = ["main"]

# Subcommand modules, in the order shown by --help.
_COMMANDS = (
    "trace",
    "run",
    "sweep",
    "report",
    "network",
    "vectors",
    "cost",
)


class _Parser(argparse.ArgumentParser):
    """argparse with exit status 2 and a one-line message on bad arguments."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(self.prog, f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wccsim", description="Bit-accurate simulator and cost model of Wavelet Compressed "
                     "Convolution (WCC) hardware. Exit status: 0 ok, 2 invalid input, 1 internal error.")
    parser.add_argument("--version", action="version", version=f"wccsim {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name in _COMMANDS:
        importlib.import_module(f"wccsim.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except InputError as e:
        if debug:
            traceback.print_exc()
        print(f"wccsim: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout closed early (e.g. piped into `head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("wccsim: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # internal error: a bug, not bad input
        if debug:
            traceback.print_exc()
        print(f"wccsim: internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
