"""The ``molgen`` command line: ``molgen COMMAND [options]``.

To add a command, write ``add_<name>_parser(subparsers)`` (create the subparser, call
``shared.cli_common.add_common_options`` if it needs --device/--seed/--data-dir, and
``set_defaults(handler=...)`` with a handler ``fn(args) -> int | None``), then append it to ``SUBCOMMANDS``.
Handlers import heavy or optional libraries lazily so that ``molgen --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from molgen import __version__
from shared.cli_common import add_version_parser as _add_version_parser
from shared.cli_common import build_parser, run_cli

PROG = "molgen"
DESCRIPTION = "Score-based and flow-matching generative models for molecules."


def add_version_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return _add_version_parser(subparsers, PROG, __version__)


SUBCOMMANDS = [add_version_parser]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``molgen`` console script; returns the exit code."""
    return run_cli(build_parser(PROG, DESCRIPTION, SUBCOMMANDS), argv)


if __name__ == "__main__":
    sys.exit(main())
