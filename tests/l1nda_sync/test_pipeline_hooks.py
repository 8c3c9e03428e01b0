"""The pipeline's CombinedHooks hands a bulk chunk to each hook whole when the hook takes chunks, and token by token
(in order) when it does not: the alert hook's chunk-wide look-up also runs in production, not only in the bench."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from l1nda_sync.engine.applying import AppliedCheck, ChunkHooks
from l1nda_sync.pipeline import CombinedHooks

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


class PerToken:
    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log

    def token_applied(self, cur: Any, applied: Any, *, run_id: int | None, now: datetime) -> None:
        self.log.append(("token", applied, run_id, now))

    def breaker_judged(self, cur: Any, verdict: Any, *, run_id: int | None, now: datetime) -> None:
        return None

    def links_changed(self, cur: Any, changes: Any, *, run_id: int | None, now: datetime) -> None:
        return None


class PerChunk(PerToken):
    def tokens_applied(self, cur: Any, applied: Sequence[tuple[AppliedCheck, int | None]], *,
                       now: Callable[[], datetime]) -> None:
        self.log.append(("chunk", list(applied), now()))


def test_each_hook_gets_the_chunk_its_own_way_in_order() -> None:
    chunk: list[tuple[Any, int | None]] = [("check-1", 7), ("check-2", 7), ("check-3", None)]
    chunk_log: list[tuple[str, Any]] = []
    token_log: list[tuple[str, Any]] = []
    combined = CombinedHooks(PerChunk(chunk_log), PerToken(token_log), None)
    assert isinstance(combined, ChunkHooks)  # so the engine's bulk apply hands it whole chunks
    combined.tokens_applied(None, chunk, now=lambda: NOW)  # type: ignore[arg-type]
    assert chunk_log == [("chunk", chunk, NOW)]  # one call for the whole chunk
    assert token_log == [("token", check, run_id, NOW) for check, run_id in chunk]  # one per token, in order
