"""`in_order`: ask a list of questions a few at a time and get what asking them one after another would give.

At most `limit` questions are in flight; the caller's thread is one of the askers, so `limit - 1` threads are
started, only for this call, and all of them have ended when it returns (no pool outlives it, none is shared:
a caller that is itself a worker of a pool can never wait on work queued behind it). Questions are started in
list order; after the first failure none is started and the ones in flight are waited for. The outcome is the
sequential one for any order the answers arrive in: the answers before the first failing question *in list
order* and that question's error (a failure further down the list that happened to come back first is
discarded when an earlier question fails too).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from l1nda_sync.settings import PER_LOGIN_CONCURRENCY_MAX, SettingsError

I = TypeVar("I")  # noqa: E741 - the item type
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Partial(Generic[T]):
    """`answers` of the first `len(answers)` questions; `error` of the next one, or None when all answered."""

    answers: list[T]
    error: Exception | None


def per_login_limit(value: object) -> int:
    """`nmbrs_per_login_concurrency` checked (a Settings built in code is not parsed like a loaded one)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= PER_LOGIN_CONCURRENCY_MAX:
        raise SettingsError(
            f"nmbrs_per_login_concurrency = {value!r}: must be a whole number from 1 to {PER_LOGIN_CONCURRENCY_MAX} "
            f"(1 asks one debtor at a time); set L1NDA_NMBRS_PER_LOGIN_CONCURRENCY, e.g. to 4")
    return value


def in_order(items: Sequence[I], ask: Callable[[I], T], limit: int, *, name: str = "fanout") -> Partial[T]:
    """`ask(item)` for each item, at most `limit` at once; see the module docstring for the outcome."""
    if limit <= 1 or len(items) <= 1:
        answers: list[T] = []
        for item in items:
            try:
                answers.append(ask(item))
            except Exception as error:
                return Partial(answers, error)
        return Partial(answers, None)
    return _Askers(items, ask).run(min(limit, len(items)), name)


class _Askers(Generic[I, T]):
    """The shared state of one `in_order` call: the next question to start, the outcomes, the stop flag."""

    def __init__(self, items: Sequence[I], ask: Callable[[I], T]) -> None:
        self.items, self.ask = items, ask
        self.lock = threading.Lock()
        self.next = 0
        self.stopped = False
        self.outcomes: list[tuple[T | None, Exception | None] | None] = [None] * len(items)

    def run(self, askers: int, name: str) -> Partial[T]:
        prefix = f"{threading.current_thread().name}-{name}"
        helpers = [threading.Thread(target=self._work, name=f"{prefix}-{n}", daemon=True) for n in range(1, askers)]
        try:
            for helper in helpers:
                try:
                    helper.start()
                except RuntimeError:  # no thread to be had (a process at its limit): ask with fewer
                    break
            self._work()
        finally:
            with self.lock:  # an interrupted caller stops the helpers before it waits for them
                self.stopped = True
            for helper in helpers:
                if helper.ident is not None:
                    helper.join()
        return self._outcome()

    def _work(self) -> None:
        while True:
            with self.lock:
                if self.stopped or self.next >= len(self.items):
                    return
                index = self.next
                self.next += 1
            try:
                self.outcomes[index] = (self.ask(self.items[index]), None)
            except Exception as error:
                self.outcomes[index] = (None, error)
                with self.lock:
                    self.stopped = True

    def _outcome(self) -> Partial[T]:
        answers: list[T] = []
        for outcome in self.outcomes:
            # Questions start in order and every started one has ended, so the first gap follows a failure.
            assert outcome is not None, "a question was skipped before any failed"
            answer, error = outcome
            if error is not None:
                return Partial(answers, error)
            answers.append(cast(T, answer))
        return Partial(answers, None)
