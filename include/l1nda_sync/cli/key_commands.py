"""`l1nda-sync keys generate|rotate|check`: the Fernet keys that encrypt tokens at rest."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from l1nda_sync.cli import output
from l1nda_sync.cli.context import Context
from l1nda_sync.registry import db
from l1nda_sync.registry.crypto import KEYS_VARIABLE, generate_key
from l1nda_sync.registry.tokens import id_ranges

if TYPE_CHECKING:
    from l1nda_sync.cli.context import Commands


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
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
    check = sub.add_parser("check", parents=[common], help="which tokens each configured key can read",
                           description=f"Try every key in {KEYS_VARIABLE} on every stored token (keys are shown by "
                                       "position, never themselves). Exit 1 when some token, or the registry's "
                                       "fingerprint key, cannot be read with these keys.")
    check.set_defaults(handler=run_check)


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


def run_check(ctx: Context) -> int:
    store = ctx.token_store()
    conn = ctx.connect()
    report = store.key_report(conn)
    total = len({t for reads in report.reads for t in reads} | set(report.unreadable))

    def text() -> str:
        rows = []
        for position, reads in enumerate(report.reads, start=1):
            what = "newest: encrypts new tokens" if position == 1 else "older: decrypts only"
            rows.append((f"key {position} ({what})", len(reads), id_ranges(reads) or "-"))
        lines = [output.table(("key", "tokens", "reads token ids"), rows)]
        if report.unreadable:
            lines.append(f"\nno key reads token {id_ranges(report.unreadable)}: is {KEYS_VARIABLE} this "
                         "deployment's? Add the key they were encrypted with at the end of it, then run "
                         "`l1nda-sync keys rotate`")
        elif total:
            under_older = total - len(report.reads[0])
            lines.append(f"\nevery one of {output.count(total, 'token')} is readable"
                         + (f"; {under_older} still need an older key: run `l1nda-sync keys rotate`" if under_older
                            else "; all under the newest key"))
        else:
            lines.append("\nno tokens stored yet")
        if report.fingerprint_key_state == "unreadable":
            lines.append("the registry's fingerprint key cannot be read with these keys: duplicates cannot be "
                         f"checked; give {KEYS_VARIABLE} the key it was encrypted with")
        elif report.fingerprint_key_state == "readable":
            lines.append(f"the registry's fingerprint key is read by key {report.fingerprint_key}")
        else:
            lines.append("the registry's fingerprint key is made at the next `tokens add`, `tokens replace` or "
                         "`keys rotate`")
        return "\n".join(lines)

    ctx.emit({"keys": report.keys, "tokens": total,
              "reads": [{"key": n, "token_ids": list(r)} for n, r in enumerate(report.reads, start=1)],
              "unreadable": list(report.unreadable), "fingerprint_key": report.fingerprint_key_state,
              "fingerprint_key_read_by": report.fingerprint_key, "ok": report.ok}, text)
    return 0 if report.ok else 1
