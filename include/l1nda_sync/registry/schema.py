"""The registry's versioned schema: plain SQL files applied in order, one transaction each.

`migrations/NNNN_name.sql` are numbered from 0001 without gaps. `schema_version` holds one row per applied
file (with its checksum, so an edited file is noticed). Upgraders take a dedicated advisory lock inside each
migration's transaction and re-read the version under it, so two upgraders at once apply every file once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from l1nda_sync.registry import locks
from l1nda_sync.registry.db import fetch_one, reading
from l1nda_sync.registry.errors import RegistryError

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

UPGRADE_HINT = "run `l1nda-sync db upgrade`"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


class SchemaError(RegistryError):
    """The database's schema does not match what this code needs; the message says the command to run."""

    def __init__(self, message: str, *, current: int, expected: int) -> None:
        super().__init__(message)
        self.current = current
        self.expected = expected


@dataclass(frozen=True, slots=True)
class Migration:
    """A migration file shipped with this code."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A migration recorded in schema_version."""

    version: int
    name: str
    applied_at: datetime
    checksum: str
    modified: bool  # the file changed after it was applied


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where the registry's schema stands against this code: applied and pending migrations."""

    current: int
    head: int
    applied: tuple[AppliedMigration, ...]
    pending: tuple[Migration, ...]

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


@cache
def migrations() -> tuple[Migration, ...]:
    """Every migration shipped with this code, in order. Gaps or stray files are a programming error."""
    found: list[Migration] = []
    for entry in resources.files("l1nda_sync.registry").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE.match(entry.name)
        if match is None:
            raise RuntimeError(f"migration file {entry.name!r} is not named NNNN_lower_case_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {[m.version for m in found]}")
    return tuple(found)


def head_version() -> int:
    return migrations()[-1].version


def _current(cur: Cursor) -> int:
    cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    if not fetch_one(cur)[0]:
        return 0
    cur.execute("SELECT coalesce(max(version), 0) FROM schema_version")
    return int(fetch_one(cur)[0])


def current_version(conn: Connection) -> int:
    """The highest applied migration, 0 for an empty database."""
    with reading(conn) as cur:
        return _current(cur)


def status(conn: Connection) -> SchemaStatus:
    shipped = {m.version: m for m in migrations()}
    with reading(conn) as cur:
        current = _current(cur)
        rows: list[tuple[Any, ...]] = []
        if current:
            cur.execute("SELECT version, name, applied_at, checksum FROM schema_version ORDER BY version")
            rows = cur.fetchall()
    applied = tuple(
        AppliedMigration(v, n, at, c, modified=v in shipped and shipped[v].checksum != c) for v, n, at, c in rows
    )
    pending = tuple(m for m in migrations() if m.version > current)
    return SchemaStatus(current=current, head=head_version(), applied=applied, pending=pending)


def _ahead(current: int) -> SchemaError:
    return SchemaError(
        f"the registry schema is at version {current}, newer than this l1nda-sync knows (version {head_version()}): "
        "install the newer l1nda-sync here instead of running this one",
        current=current, expected=head_version(),
    )


def upgrade(conn: Connection, *, target: int | None = None) -> list[Migration]:
    """Apply every pending migration (up to `target`), each in its own transaction. Returns what was applied."""
    head = head_version()
    target = head if target is None else target
    if not 0 <= target <= head:
        raise SchemaError(f"target version {target} is not between 0 and {head}", current=-1, expected=head)
    applied: list[Migration] = []
    for migration in migrations():
        if migration.version > target:
            break
        with conn, conn.cursor() as cur:
            locks.lock_schema_upgrade(cur)
            cur.execute(_CREATE_VERSION_TABLE)
            current = _current(cur)
            if current > head:
                raise _ahead(current)
            if migration.version <= current:
                continue
            cur.execute(migration.sql)
            cur.execute(
                "INSERT INTO schema_version (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        applied.append(migration)
    return applied


def require_current(conn: Connection) -> int:
    """Raise SchemaError unless the database is exactly at this code's version (call at the start of a run)."""
    current = current_version(conn)
    head = head_version()
    if current < head:
        pending = ", ".join(m.filename for m in migrations() if m.version > current)
        raise SchemaError(
            f"the registry schema is at version {current}, this l1nda-sync needs version {head}: "
            f"{UPGRADE_HINT} (pending: {pending})",
            current=current, expected=head,
        )
    if current > head:
        raise _ahead(current)
    return current
