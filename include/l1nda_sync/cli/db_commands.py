"""`l1nda-sync db upgrade|status`: the registry's schema."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING

from l1nda_sync.cli import output
from l1nda_sync.cli.context import Context
from l1nda_sync.registry import schema

if TYPE_CHECKING:
    from l1nda_sync.cli.context import Commands


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("db", help="create or upgrade the registry's schema",
                                description="The registry's versioned schema.")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(dest="db_command", metavar="ACTION")
    upgrade = sub.add_parser("upgrade", parents=[common], help="apply every pending migration (safe to repeat)",
                             description="Apply every pending migration, each in one transaction. "
                                         "Running it again does nothing.")
    upgrade.set_defaults(handler=run_upgrade)
    status = sub.add_parser("status", parents=[common], help="show the schema version and pending migrations")
    status.set_defaults(handler=run_status)


def run_upgrade(ctx: Context) -> int:
    conn = ctx.connect(check_schema=False)
    applied = schema.upgrade(conn)
    version = schema.current_version(conn)
    data = {"applied": [m.filename for m in applied], "version": version, "head": schema.head_version()}
    if applied:
        text = f"applied {', '.join(m.filename for m in applied)}; the registry is at version {version} (current)"
    else:
        text = f"the registry is already at version {version} (current); nothing to do"
    ctx.emit(data, text)
    return 0


def run_status(ctx: Context) -> int:
    conn = ctx.connect(check_schema=False)
    st = schema.status(conn)
    rows: list[tuple[int, str, str, datetime | None]] = [
        (a.version, a.name, "applied (file changed since!)" if a.modified else "applied", a.applied_at)
        for a in st.applied
    ]
    rows += [(m.version, m.name, "pending", None) for m in st.pending]

    def text() -> str:
        if st.current > st.head:
            verdict = f"version {st.current}, newer than this l1nda-sync ({st.head}): install the newer l1nda-sync"
        elif st.pending:
            verdict = f"version {st.current} of {st.head}: {schema.UPGRADE_HINT}"
        else:
            verdict = f"version {st.current}: up to date"
        return output.table(("version", "name", "status", "applied at"), rows) + f"\n\nschema {verdict}"

    ctx.emit({"version": st.current, "head": st.head, "up_to_date": st.up_to_date,
              "migrations": [dict(zip(("version", "name", "status", "applied_at"), r, strict=True)) for r in rows]},
             text)
    return 0
