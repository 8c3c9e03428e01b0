"""REST ids (debtorId, companyId, userId) of the world's objects, and the reverse lookup, in little memory.

An object the scenario gives no uuid gets `derived_uuid(kind, soap_id)`, computed when asked rather than stored.
`RestIdIndex` answers "which SOAP id has this uuid": derived uuids through arrays of their first 64 bits (16 bytes
an object instead of a 36-character string plus a dict entry), given uuids through a plain dict.
"""

from __future__ import annotations

import hashlib
import uuid
from array import array

# Ids not given in a scenario are derived from the SOAP ids with uuid5 in this namespace, so the same scenario
# always gives the same UUIDs.
UUID_NAMESPACE = uuid.UUID("6f1d6c36-5d0a-4c43-9a57-3c1d2f6e8b10")
_NAMESPACE_SHA1 = hashlib.sha1(UUID_NAMESPACE.bytes, usedforsecurity=False)  # copied, then fed the name
_BUCKET_BITS = 12


def derived_uuid(kind: str, key: object) -> str:
    """The stable REST UUID of a debtor, company or login that the scenario gives none for: `uuid.uuid5` in
    UUID_NAMESPACE, computed without its UUID object (REST answers derive one per debtor and company)."""
    sha1 = _NAMESPACE_SHA1.copy()
    sha1.update(f"{kind}:{key}".encode())
    raw = bytearray(sha1.digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _derived_prefix(kind: str, key: object) -> int:
    """The first 64 bits of `derived_uuid(kind, key)`, without building the UUID (uuid5: SHA-1, version 5)."""
    sha1 = _NAMESPACE_SHA1.copy()
    sha1.update(f"{kind}:{key}".encode())
    return (int.from_bytes(sha1.digest()[:8], "big") & ~0xF000) | 0x5000


def _prefix(rest_id: str) -> int:
    return int(rest_id[:8] + rest_id[9:13] + rest_id[14:18], 16)


class RestIdIndex:
    """REST uuid (canonical lowercase) -> SOAP id for one kind of object ("debtor", "company").

    Derived uuids go by their first 64 bits into one of 4,096 buckets (by the top 12 bits), each two arrays
    (prefixes, SOAP ids) searched in C; adding one is an append, so a load needs no sort and no temporary list."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.given: dict[str, int] = {}  # uuids the scenario or the admin API chose
        self._buckets: list[tuple[array[int], array[int]] | None] = [None] * (1 << _BUCKET_BITS)
        self._derived = 0

    def __len__(self) -> int:
        return len(self.given) + self._derived

    def add(self, soap_id: int, given: str | None) -> None:
        """Index `soap_id`; `given` None (or equal to the derived one) means its uuid is the derived one."""
        if given is not None and given != derived_uuid(self.kind, soap_id):
            self.given[given] = soap_id
            return
        prefix = _derived_prefix(self.kind, soap_id)
        slot = prefix >> (64 - _BUCKET_BITS)
        bucket = self._buckets[slot]
        if bucket is None:
            bucket = self._buckets[slot] = (array("Q"), array("q"))
        bucket[0].append(prefix)
        bucket[1].append(soap_id)
        self._derived += 1

    def get(self, rest_id: str) -> int | None:
        """The SOAP id whose uuid is `rest_id` (canonical lowercase form), or None."""
        found = self.given.get(rest_id)
        if found is not None:
            return found
        try:
            prefix = _prefix(rest_id)
        except ValueError:
            return None
        bucket = self._buckets[prefix >> (64 - _BUCKET_BITS)]
        if bucket is None:
            return None
        prefixes, ids = bucket
        at = 0
        while True:  # more than one match only on a 64-bit clash
            try:
                at = prefixes.index(prefix, at)
            except ValueError:
                return None
            if derived_uuid(self.kind, ids[at]) == rest_id:
                return ids[at]
            at += 1
