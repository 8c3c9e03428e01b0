"""What every command gets: its arguments, where to write, settings, a registry connection, the actor."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from l1nda_sync.cli import output
from l1nda_sync.registry import db, schema
from l1nda_sync.registry.errors import InvalidInput
from l1nda_sync.registry.tokens import TokenStore
from l1nda_sync.registry.validation import TOKEN_MAX_LENGTH
from l1nda_sync.settings import Settings

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection

    # What each command module's `register` adds its commands to (`parser.add_subparsers()`).
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

TOKEN_PROMPT = "Nmbrs API token (typing is hidden): "  # noqa: S105 - a prompt, not a secret


def actor() -> str:
    """Who is acting, for the audit trail: 'cli:<os user>'."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@dataclass
class Context:
    """What a command's handler gets: its arguments, settings, registry connections, output streams."""

    args: argparse.Namespace
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _settings: Settings | None = None
    _connections: list[Connection] = field(default_factory=list)

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.load()
        return self._settings

    @property
    def actor(self) -> str:
        return actor()

    def database_url(self) -> str:
        return getattr(self.args, "database_url", None) or self.settings.require_database_url()

    def connect(self, *, check_schema: bool = True) -> Connection:
        """A registry connection (closed when the command ends); by default only on a current schema."""
        conn = db.connect(self.database_url())
        self._connections.append(conn)
        if check_schema:
            schema.require_current(conn)
        return conn

    def token_store(self) -> TokenStore:
        return TokenStore.from_settings(self.settings)

    def close(self) -> None:
        while self._connections:
            self._connections.pop().close()

    # -- reading the token: never from argv --------------------------------------------------------------
    def read_token(self) -> str:
        """From stdin when it is not a terminal (a pipe or a file), else from a hidden prompt."""
        stdin = sys.stdin
        if stdin is None or stdin.closed:
            raise InvalidInput("token", "no standard input to read it from; pipe it in: `... < token.txt`")
        if stdin.isatty():
            try:
                return getpass.getpass(TOKEN_PROMPT)
            except EOFError:
                raise InvalidInput("token", "nothing was typed; paste the token at the prompt, then Enter") from None
        data = stdin.read(TOKEN_MAX_LENGTH * 4 + 1)
        if len(data) > TOKEN_MAX_LENGTH * 4:
            raise InvalidInput("token", "standard input holds far more than a token; send only the token")
        return data

    # -- writing -------------------------------------------------------------------------------------------
    def emit(self, data: object, text: str | Callable[[], str]) -> None:
        """JSON of `data` with --json, else the human text."""
        if self.json:
            print(output.dumps(data), file=self.out)
        else:
            print(text() if callable(text) else text, file=self.out)

    def note(self, message: str) -> None:
        """A remark for people (warnings, hints) on stderr, so --json output stays one document."""
        print(message, file=self.err)

