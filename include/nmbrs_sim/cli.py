"""`nmbrs-sim`: run the Nmbrs SOAP simulator or generate a world for it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nmbrs_sim import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nmbrs-sim",
        description="A local simulator of Nmbrs' SOAP API v3 (DebtorService, CompanyService).",
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
