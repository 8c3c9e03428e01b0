"""Reading an answer costs more CPU than anything else in a call; an unchanged token's two `List_GetAll` answers
are byte for byte the ones its stored probe was read from. A probe passes each answer's earlier digest down
(`AnswerMemo`); when the new answer's bytes have that digest, it is not parsed, and the probe reuses the records it
stored. Reading is a pure function of the bytes and the service's WSDL, so equal bytes read by the same WSDL give
equal records; the WSDL's fingerprint and `READER_VERSION` are part of the digest, so that a new WSDL (Nmbrs adding
a field) or a change to how answers are read (a new field, a fixed reader) makes every stored digest miss once.
Only a 200 answer that was read without error gets a digest; a fault, an HTTP error or an unreadable answer never
matches one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

READER_VERSION = b"records-1"  # change it whenever reading an answer into records changes


def schema_fingerprint(documents: Iterable[bytes]) -> bytes:
    """The 16 bytes that name the documents (the WSDL and what it imports) a service reads answers by."""
    digest = hashlib.blake2b(digest_size=16)
    for document in documents:
        digest.update(len(document).to_bytes(8, "big"))
        digest.update(document)
    return digest.digest()


def answer_digest(content: bytes, schema: bytes = b"") -> str:
    """A 128-bit BLAKE2b of the answer's bytes, keyed by the reader's version and salted with the schema's
    fingerprint (the same bytes read by another WSDL can give other records: a field it does not declare is
    dropped). Not a secret: answers carry none."""
    return hashlib.blake2b(content, digest_size=16, key=READER_VERSION, salt=schema[:16]).hexdigest()


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
