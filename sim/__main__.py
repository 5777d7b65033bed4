"""``python -m sim`` (console script ``raftkv-sim``): the simulator's command line.

Subcommands live next to the code they drive and are listed in
:data:`SUBCOMMANDS`, one line each, as ``"module:function"``. The function
takes argparse's subparsers object, adds its parser with ``add_parser`` and
sets ``run`` (``Namespace -> int``, the exit status) with ``set_defaults``.
Modules are imported only to register, so keep heavy imports (simpy,
matplotlib) inside ``run``.

Usage errors exit with status 3 (bad input), so that status 2 keeps meaning
"unknown" for the checkers.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

SUBCOMMANDS: tuple[str, ...] = (
    "sim.check.cli:add_check",
    "sim.check.cli:add_check_bench",
    "sim.cli:add_run",
    "sim.cli:add_sweep",
    "sim.cli:add_replay",
    "sim.cli:add_bench",
    "sim.figure16_cli:add_figure16",
)

USAGE_ERROR = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m sim", description="raftkv simulator, checkers and tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in SUBCOMMANDS:
        module, _, function = entry.partition(":")
        getattr(importlib.import_module(module), function)(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (3)
        return e.code if isinstance(e.code, int) else USAGE_ERROR
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return USAGE_ERROR
    status: int = run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
