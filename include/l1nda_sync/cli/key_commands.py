"""`l1nda-sync keys generate|rotate`: the Fernet keys that encrypt tokens at rest."""

from __future__ import annotations

import argparse
from typing import Any

from l1nda_sync.cli import output
from l1nda_sync.cli.context import Context
from l1nda_sync.registry import db
from l1nda_sync.registry.crypto import KEYS_VARIABLE, generate_key


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("keys", help="make and rotate the keys that encrypt tokens",
                                description=f"Encryption keys: {KEYS_VARIABLE} holds them, comma separated, "
                                            "newest first.")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(dest="keys_command", metavar="ACTION")
    gen = sub.add_parser("generate", parents=[common], help="print a new key",
                         description=f"Print a new Fernet key. Put it first in {KEYS_VARIABLE}, keep the old keys "
                                     "after it, then run `l1nda-sync keys rotate`.")
    gen.set_defaults(handler=run_generate)
    rotate = sub.add_parser("rotate", parents=[common], help="re-encrypt every token under the newest key",
                            description="Re-encrypt and re-fingerprint every token under the newest key, in one "
                                        "transaction. Afterwards the older keys can be dropped.")
    rotate.set_defaults(handler=run_rotate)


def run_generate(ctx: Context) -> int:
    key = generate_key()
    ctx.emit({"key": key}, key)
    if not ctx.json:
        ctx.note(f"put it first in {KEYS_VARIABLE} (newest first, comma separated), keep the older keys after it, "
                 "then run `l1nda-sync keys rotate`")
    return 0


def run_rotate(ctx: Context) -> int:
    store = ctx.token_store()
    conn = ctx.connect()
    with db.transaction(conn):
        report = store.rotate(conn, actor=ctx.actor)
    if report.keys > 1:
        after = f"every token now needs only the newest key: the older {report.keys - 1} can be dropped from " \
                f"{KEYS_VARIABLE}"
    else:
        after = "one key is configured; nothing else to drop"
    ctx.emit(report, f"re-encrypted {output.count(report.tokens, 'token')} under the newest key "
                     f"({report.under_older_key} were under an older key); {after}")
    return 0
