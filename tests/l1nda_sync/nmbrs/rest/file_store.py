"""A `GrantStore` in a JSON file with an `flock` as the row lock: lets separate processes race like workers do."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.rest.grants import StoredGrant
from l1nda_sync.nmbrs.rest.oauth import Grant


class FileGrantStore:
    """One connection per file; `locked` holds an exclusive flock on `<file>.lock` across processes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def put(self, row: StoredGrant) -> None:
        self._write(row)

    @contextmanager
    def locked(self, connection_id: int) -> Iterator[StoredGrant]:
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self.load(connection_id)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def save(self, connection_id: int, grant: Grant, generation: int) -> None:
        old = self.load(connection_id)
        self._write(StoredGrant(grant.refresh_token or old.refresh_token, grant.access_token, grant.expires_at,
                                generation))

    def begin_refresh(self, connection_id: int, generation: int) -> None:
        row = self.load(connection_id)
        if row.generation == generation:
            self._write(replace(row, refresh_in_flight=generation))

    def cancel_refresh(self, connection_id: int, generation: int) -> None:
        row = self.load(connection_id)
        if row.refresh_in_flight == generation:
            self._write(replace(row, refresh_in_flight=None))

    def load(self, connection_id: int) -> StoredGrant:
        data = json.loads(self.path.read_text())
        in_flight = data.get("in_flight")
        return StoredGrant(Secret(data["refresh"]) if data["refresh"] else None,
                           Secret(data["access"]) if data["access"] else None,
                           datetime.fromisoformat(data["expires"]) if data["expires"] else None,
                           int(data["generation"]), None if in_flight is None else int(in_flight))

    def _write(self, row: StoredGrant) -> None:
        data = {"refresh": row.refresh_token.reveal() if row.refresh_token else None,
                "access": row.access_token.reveal() if row.access_token else None,
                "expires": row.access_expires_at.isoformat() if row.access_expires_at else None,
                "generation": row.generation, "in_flight": row.refresh_in_flight}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data))
        os.replace(temporary, self.path)  # committed: a reader sees the old or the new row, never half
