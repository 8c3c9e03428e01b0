"""`l1nda-sync settings [--markdown]`: every setting, its source variable and its value here."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from l1nda_sync.cli import output
from l1nda_sync.cli.context import Context
from l1nda_sync.masking import redact_url
from l1nda_sync.settings import SETTINGS, settings_markdown

if TYPE_CHECKING:
    from l1nda_sync.cli.context import Commands


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("settings", parents=[common], help="show every setting and its value here",
                              description="Every setting: environment variable, Airflow Variable, default and the "
                                          "value resolved here (secrets hidden).")
    cmd.add_argument("--markdown", action="store_true", help="print the README's settings table instead")
    cmd.set_defaults(handler=run_settings)


def run_settings(ctx: Context) -> int:
    if ctx.args.markdown:
        print(settings_markdown(), file=ctx.out)
        return 0
    resolved = ctx.settings
    rows = []
    for s in SETTINGS:
        value = getattr(resolved, s.name)
        if s.secret:
            # A count of keys, never a secret's length.
            value = (f"({len(value)} set)" if isinstance(value, tuple | list) else "(set)") if value else None
        elif s.name == "database_url" and value:
            value = redact_url(value)
        rows.append({"name": s.name, "env_var": s.env_var, "value": value, "default": s.default, "help": s.help})
    ctx.emit(rows, lambda: output.table(("setting", "environment variable", "value", "meaning"),
                                        [(r["name"], r["env_var"], r["value"], r["help"]) for r in rows]))
    return 0
