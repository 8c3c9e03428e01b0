"""`l1nda-sync`: the operator's command line (registry, tokens, links, problems)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from l1nda_sync import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l1nda-sync",
        description="Keep L1NDA's Nmbrs links alive: manage API tokens, links and alert problems.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
