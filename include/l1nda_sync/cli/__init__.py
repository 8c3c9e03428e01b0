"""`l1nda-sync`: the operator's command line (registry schema, keys, tokens, REST connections and companies, links,
problems, settings).

Exit codes: 0 done (also "nothing to do"), 2 bad input (an option, the token, an id, a duplicate; nothing was
written), 1 any other failure (configuration, database, Nmbrs unreachable). Tables for people, `--json` for
scripts (one JSON document on stdout; remarks go to stderr). Each command validates everything before it
writes, and writes in one transaction.

Command groups live in their own modules, each with `register(subparsers, common)`; add a group by listing
its module in COMMAND_MODULES.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence

import psycopg2

from l1nda_sync import __version__
from l1nda_sync.cli import (
    company_commands,
    connection_commands,
    db_commands,
    key_commands,
    link_commands,
    migration_commands,
    outbox_commands,
    problem_commands,
    settings_commands,
    sync_commands,
    token_commands,
    web_commands,
)
from l1nda_sync.cli.context import Context
from l1nda_sync.masking import redact_url
from l1nda_sync.registry.errors import InvalidInput, RegistryError
from l1nda_sync.settings import SettingsError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

COMMAND_MODULES = (
    db_commands, key_commands, token_commands, connection_commands, company_commands, link_commands, sync_commands,
    problem_commands, outbox_commands, settings_commands, web_commands, migration_commands,
)


def _common_options() -> argparse.ArgumentParser:
    """--json and --database-url, accepted before the command and after it (`tokens list --json`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print one JSON document for scripts instead of tables")
    common.add_argument("--database-url", metavar="URL", default=argparse.SUPPRESS,
                        help="registry database (default: L1NDA_DATABASE_URL or the Airflow connection "
                             "l1nda_registry)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l1nda-sync",
        description="Keep L1NDA's Nmbrs links alive: manage the registry, API tokens and links.",
        epilog="Exit codes: 0 ok, 2 bad input (nothing written), 1 other failure.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--json", action="store_true", default=False,
                        help="print one JSON document for scripts instead of tables")
    parser.add_argument("--database-url", metavar="URL", default=None,
                        help="registry database (default: L1NDA_DATABASE_URL or the Airflow connection "
                             "l1nda_registry)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _common_options()
    for module in COMMAND_MODULES:
        module.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a bad option (2, message already printed)
        return int(exc.code or 0)
    if extras:
        # argparse would echo them; one of them may be a token pasted on the command line.
        options = [e.split("=", 1)[0] for e in extras if e.startswith("-")]
        hidden = len(extras) - len(options)
        shown = f"unrecognised option(s) {' '.join(options)}" if options else "unexpected argument(s)"
        print(f"l1nda-sync: error: {shown}" + (f" ({hidden} value(s) not shown: a token is never taken from the "
                                               "command line)" if hidden else "") + "; see `l1nda-sync --help`",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    handler = getattr(args, "handler", None)
    if handler is None:
        chosen = getattr(args, "group_parser", None) or parser
        chosen.print_help()
        return EXIT_OK
    ctx = Context(args)  # binds the real stdout: the command's output (one JSON document with --json)
    try:
        # Anything else that writes to stdout while the command runs (a library's log line, Airflow's structlog
        # set up on import) goes to stderr, so `--json` output stays parseable.
        with contextlib.redirect_stdout(sys.stderr):
            return int(handler(ctx) or EXIT_OK)
    except InvalidInput as exc:
        return _fail(ctx, exc, EXIT_BAD_INPUT, field=exc.field)
    except (RegistryError, SettingsError) as exc:
        return _fail(ctx, exc, EXIT_FAILURE)
    except psycopg2.Error as exc:
        first = redact_url((str(exc).strip().splitlines() or [type(exc).__name__])[0])
        return _fail(ctx, RuntimeError(f"database error: {first}; nothing was written"), EXIT_FAILURE)
    except KeyboardInterrupt as exc:  # a command that wrote something says so in the interrupt's message
        return _fail(ctx, RuntimeError(f"interrupted: {exc}" if str(exc) else "interrupted; nothing was written"), 130)
    finally:
        ctx.close()


def _fail(ctx: Context, exc: BaseException, code: int, *, field: str | None = None) -> int:
    print(f"l1nda-sync: error: {exc}", file=ctx.err)
    if ctx.json:
        print(
            json.dumps({"error": {"message": str(exc), "field": field, "exit_code": code}}),
            file=ctx.out,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
