"""`PerDebtorCalls`: one probe's per-debtor questions (`Tags_Get`, `List_GetByDebtor`), a few at a time.

Each question runs in its own child conversation (a `Conversation` is not thread-safe) on the probe's current
domain; the children's requests are summed into `calls`, failed ones included, so the probe's count stays
exact. A child never rediscovers the domain itself: a 1001 ends its question, and the probe's conversation
makes the one rediscovery a conversation allows (when its domain was remembered, not found in this probe),
then asks again from the question that got the 1001, as the sequential loop would have repeated that call
and gone on. The outcome is the one of asking one debtor after another (`fanout.in_order`); only the count
may be higher after a failure, by the questions that were already in flight (at most `limit - 1`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from l1nda_sync.nmbrs.errors import CredentialInvalid
from l1nda_sync.nmbrs.fanout import Partial, in_order, per_login_limit

if TYPE_CHECKING:
    from l1nda_sync.nmbrs.client import Conversation

log = logging.getLogger(__name__)

T = TypeVar("T")


class PerDebtorCalls:
    """The per-debtor calls of the probe that `talk` carries, at most `limit` of them in flight."""

    def __init__(self, talk: Conversation, limit: object) -> None:
        self.talk = talk
        self.limit = per_login_limit(limit)
        self._lock = threading.Lock()
        self._calls = 0

    @property
    def calls(self) -> int:
        """Requests the child conversations sent (the probe's own conversation counts the rest)."""
        with self._lock:
            return self._calls

    def ask(self, debtor_ids: Sequence[int], question: Callable[[Conversation, int], T]) -> Partial[T]:
        """`question(child, debtor_id)` for each debtor; the sequential outcome (see the module docstring)."""
        answers: list[T] = []
        while True:
            rest = debtor_ids[len(answers):]
            part = in_order(rest, self._asker(question), self.limit, name="debtors")
            answers.extend(part.answers)
            talk = self.talk
            if not (isinstance(part.error, CredentialInvalid) and talk.remembered and not talk.rediscovered):
                return Partial(answers, part.error)
            talk.rediscovered = True
            log.info("%s: 1001 with the remembered domain; asking Nmbrs for the domain once more",
                     talk.credentials.username)
            talk.discover()  # a 1001 here is final and raised, as in Conversation.call

    def _asker(self, question: Callable[[Conversation, int], T]) -> Callable[[int], T]:
        talk = self.talk
        domain = talk.domain

        def one(debtor_id: int) -> T:
            child = talk.client.conversation(talk.credentials, domain, remembered=False)
            try:
                return question(child, debtor_id)
            finally:
                with self._lock:
                    self._calls += child.calls

        return one
