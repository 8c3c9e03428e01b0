"""The simulated clock: real time plus an offset that the admin API moves, so tests can let codes, access
tokens and refresh tokens expire without sleeping."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class SimClock:
    """`now()` is wall-clock time shifted by `offset`; moving it never goes below the real time's pace."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0

    @property
    def offset(self) -> float:
        return self._offset

    def now(self) -> float:
        """Seconds since the epoch, simulated."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset += seconds
            return self._offset

    def set_now(self, epoch_seconds: float) -> float:
        with self._lock:
            self._offset = epoch_seconds - time.time()
            return self._offset

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0

    def to_dict(self) -> dict[str, object]:
        now = self.now()
        return {"now": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
                "epoch": round(now, 3), "offset_seconds": round(self._offset, 3)}
