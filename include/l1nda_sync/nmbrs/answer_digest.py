"""Reading an answer costs more CPU than anything else in a call; an unchanged token's two `List_GetAll` answers
are byte for byte the ones its stored probe was read from. A probe passes each answer's earlier digest down
(`AnswerMemo`); when the new answer's bytes have that digest, it is not parsed, and the probe reuses the records it
stored. Reading is a pure function of the bytes, so equal bytes give equal records; `READER_VERSION` is part of the
digest, so that a change to how answers are read (a new field, a fixed reader) makes every stored digest miss once.
Only a 200 answer that was read without error gets a digest; a fault, an HTTP error or an unreadable answer never
matches one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

READER_VERSION = b"records-1"  # change it whenever reading an answer into records changes


def answer_digest(content: bytes) -> str:
    """A 128-bit BLAKE2b of the answer's bytes, keyed by the reader's version (not a secret: answers carry none)."""
    return hashlib.blake2b(content, digest_size=16, key=READER_VERSION).hexdigest()


@dataclass(slots=True)
class AnswerMemo:
    """One call's answer digest: `known` is the caller's (or None); after the call, `digest` is this answer's
    (None when it got none) and `same` says the answer was `known` and was therefore not read."""

    known: str | None = None
    digest: str | None = None
    same: bool = False

    def start(self) -> None:
        """Before an answer is looked at: nothing from an earlier attempt's answer survives a retry."""
        self.digest, self.same = None, False
