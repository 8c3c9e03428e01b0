"""The call log: per service, operation and username, how many calls, faults (SOAP faults and injected
failures) and seconds spent."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class CallStats:
    """Counts and time of one (service, operation, username)."""

    count: int = 0
    faults: int = 0
    total_seconds: float = 0.0
    last_at: float = 0.0


class CallLog:
    """Per service, operation and username: calls, faults and seconds; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str, str], CallStats] = {}

    def start(self, service: str, operation: str, username: str) -> tuple[str, str, str]:
        """Count a call when it arrives (so a hanging call is counted at once); `finish` adds its time."""
        key = (service, operation, username)
        with self._lock:
            stats = self._rows.get(key)
            if stats is None:
                stats = self._rows[key] = CallStats()
            stats.count += 1
            stats.last_at = time.time()
        return key

    def finish(self, key: tuple[str, str, str], seconds: float, *, fault: bool = False) -> None:
        with self._lock:
            stats = self._rows.get(key)
            if stats is None:  # cleared while the call ran
                return
            stats.faults += fault
            stats.total_seconds += seconds

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            items = sorted(self._rows.items())
        return [{"service": s, "operation": o, "username": u, "count": st.count, "faults": st.faults,
                 "total_seconds": round(st.total_seconds, 6), "last_at": st.last_at}
                for (s, o, u), st in items]

    def count(self, *, service: str | None = None, operation: str | None = None, username: str | None = None
              ) -> int:
        with self._lock:
            return sum(st.count for (s, o, u), st in self._rows.items()
                       if (service is None or s == service) and (operation is None or o == operation)
                       and (username is None or u.lower() == username.lower()))

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
