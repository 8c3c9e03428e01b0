"""What the client returns: small frozen records, never zeep objects. `Probe` round-trips through plain JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

from l1nda_sync.masking import Secret

# A stored probe without a refresh time is treated as refreshed at the epoch: its mapping is rebuilt.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Environment:
    """The Nmbrs environment a login belongs to (`Environment_Get`)."""

    domain: str  # the full host, e.g. 'apitesting.nmbrs.nl'
    sub_domain: str  # what the AuthHeaderWithDomain `Domain` needs, e.g. 'apitesting'


@dataclass(frozen=True, slots=True)
class DebtorTag:
    """One tag of a debtor (`Tags_Get`); tags explain why a master's filter reaches a debtor."""

    number: int
    name: str | None
    color: str | None


@dataclass(frozen=True, slots=True)
class Debtor:
    """A debtor (an accountant's customer) a token reaches, with its tags."""

    id: int
    number: str | None
    name: str | None
    tags: tuple[DebtorTag, ...] = ()


@dataclass(frozen=True, slots=True)
class Company:
    """A company a token reaches, with the debtor it belongs to when the mapping was made."""

    id: int
    number: int
    name: str | None
    period: str  # LoonaangifteTijdvak: None | Month | Week4 | Month6 | Year
    kvk: str | None
    debtor_id: int | None  # None when the company-to-debtor mapping could not be made


@dataclass(frozen=True, slots=True)
class Credentials:
    """A login's API credentials. `token` is a Secret (a plain str is wrapped); its repr shows the last 4 only."""

    username: str
    token: Secret = field(repr=True)
    domain: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.token, Secret):
            object.__setattr__(self, "token", Secret(self.token))
        if not self.username:
            raise ValueError("Credentials.username is empty: give the Nmbrs login e-mail")
        if not self.token.reveal():
            raise ValueError("Credentials.token is empty: give the login's API token")


@dataclass(frozen=True, slots=True)
class Probe:
    """What a token reaches, and what it cost to find out.

    `domain` is the sub-domain that worked (pass it back as `Credentials.domain`); `mapping_refreshed_at` is when
    the company-to-debtor mapping (and the debtors' tags) were last fully rebuilt; `mapping_reused` says this
    probe rebuilt none of it; `is_owner` is `Debtor_IsOwner` when it was asked, else None.
    """

    environment: Environment | None
    domain: str
    debtors: Sequence[Debtor]  # a tuple, or the stored records read on first use (`StoredRecords`)
    companies: Sequence[Company]
    calls: int
    mapping_refreshed_at: datetime
    mapping_reused: bool
    is_owner: bool | None
    # The digests of the two `List_GetAll` answers these records were read from ("debtors", "companies"), so that
    # the next probe reads a byte-identical answer no more (`answer_digest`). A hint, never a fact: not compared.
    answer_digests: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def debtor_ids(self) -> frozenset[int]:
        return frozenset(d.id for d in self.debtors)

    @property
    def company_ids(self) -> frozenset[int]:
        return frozenset(c.id for c in self.companies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": None if self.environment is None else
            {"domain": self.environment.domain, "sub_domain": self.environment.sub_domain},
            "domain": self.domain,
            "debtors": [
                {"id": d.id, "number": d.number, "name": d.name,
                 "tags": [{"number": t.number, "name": t.name, "color": t.color} for t in d.tags]}
                for d in self.debtors
            ],
            "companies": [
                {"id": c.id, "number": c.number, "name": c.name, "period": c.period, "kvk": c.kvk,
                 "debtor_id": c.debtor_id}
                for c in self.companies
            ],
            "calls": self.calls,
            "mapping_refreshed_at": self.mapping_refreshed_at.isoformat(),
            "mapping_reused": self.mapping_reused,
            "is_owner": self.is_owner,
            "answer_digests": dict(self.answer_digests),
        }

    def read_records(self) -> Probe:
        """This probe, its stored records read now if they were not (`StoredRecords`): what is judged against them
        must be judged against records, never against a count. Raises `from_dict`'s ValueError when they cannot be."""
        for records in (self.debtors, self.companies):
            if isinstance(records, StoredRecords):
                _ = records.records
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Probe:
        """Read a stored probe; missing optional keys get safe defaults (an unknown refresh time forces one).

        Raises ValueError naming the key when the data cannot be a probe.
        """
        data = _stored_object(data)
        return cls._with_records(data, _readable(_read_debtors, data.get("debtors")),
                                 _readable(_read_companies, data.get("companies")))

    @classmethod
    def from_stored(cls, head: Any, debtors: str | None, companies: str | None, *,
                    debtor_count: int | None = None, company_count: int | None = None) -> Probe:
        """A stored probe read in parts: `head` without its records, and each record list as the JSON text it is
        stored as (None when the key is missing), read into records on first use (`StoredRecords`). A count, when
        known, answers `len()` without reading. Reads as `from_dict` reads the whole, with its errors."""
        return cls._with_records(_stored_object(head), StoredRecords.of(debtors, _read_debtors, debtor_count),
                                 StoredRecords.of(companies, _read_companies, company_count))

    @classmethod
    def _with_records(cls, data: Mapping[str, Any], debtors: Sequence[Debtor], companies: Sequence[Company]) -> Probe:
        try:
            env = data.get("environment")
            environment = None
            if isinstance(env, Mapping) and env.get("sub_domain"):
                environment = Environment(str(env.get("domain") or ""), str(env["sub_domain"]))
            domain = data.get("domain") or (environment.sub_domain if environment else "")
            refreshed = data.get("mapping_refreshed_at")
            refreshed_at = EPOCH if not refreshed else datetime.fromisoformat(str(refreshed))
            if refreshed_at.tzinfo is None:
                refreshed_at = refreshed_at.replace(tzinfo=UTC)
            is_owner = data.get("is_owner")
            return cls(
                environment=environment, domain=str(domain), debtors=debtors, companies=companies,
                calls=int(data.get("calls") or 0), mapping_refreshed_at=refreshed_at,
                mapping_reused=bool(data.get("mapping_reused", False)),
                is_owner=None if is_owner is None else bool(is_owner),
                answer_digests=_digests(data.get("answer_digests")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _unreadable(exc) from None


R = TypeVar("R", Debtor, Company)


class StoredRecords(Sequence[R]):
    """A stored probe's record list, kept as its JSON text and read into records on first use.

    An unchanged token's answers are byte for byte the ones its stored records were read from (`answer_digest`),
    so its check needs their count and nothing else; reading an accountant's thousands of stored records cost
    more CPU than its two calls. Equal to any sequence of the same records, and to itself without being read.
    Not locked: two threads reading it at once read equal records, and either result may stay.
    """

    __slots__ = ("_count", "_read", "_records", "_text")

    def __init__(self, text: str, read: Callable[[Any], tuple[R, ...]], count: int | None = None) -> None:
        self._text = text
        self._read: Callable[[Any], tuple[R, ...]] = read
        self._count = count
        self._records: tuple[R, ...] | None = None

    @classmethod
    def of(cls, text: str | None, read: Callable[[Any], tuple[R, ...]], count: int | None) -> Sequence[R]:
        """The records of one stored list: none when the key is missing, else read on first use."""
        return () if text is None else cls(text, read, count)

    @property
    def records(self) -> tuple[R, ...]:
        records = self._records
        if records is None:
            try:
                value = json.loads(self._text)
            except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
                raise _unreadable(exc) from None
            records = self._records = _readable(self._read, value)
        return records

    def __len__(self) -> int:
        return self._count if self._count is not None and self._records is None else len(self.records)

    @overload
    def __getitem__(self, index: int) -> R: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[R, ...]: ...
    def __getitem__(self, index: int | slice) -> R | tuple[R, ...]:
        return self.records[index]

    def __iter__(self) -> Iterator[R]:
        return iter(self.records)

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if isinstance(other, (tuple, StoredRecords)):
            return self.records == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.records)

    def __repr__(self) -> str:
        return repr(self.records) if self._records is not None else f"<{len(self)} stored records, not read>"


def _read_debtors(value: Any) -> tuple[Debtor, ...]:
    return tuple(
        Debtor(int(d["id"]), _opt_str(d.get("number")), _opt_str(d.get("name")),
               tuple(DebtorTag(int(t.get("number") or 0), _opt_str(t.get("name")), _opt_str(t.get("color")))
                     for t in d.get("tags") or ()))
        for d in value or ()
    )


def _read_companies(value: Any) -> tuple[Company, ...]:
    return tuple(
        Company(int(c["id"]), int(c.get("number") or 0), _opt_str(c.get("name")), str(c.get("period") or "None"),
                _opt_str(c.get("kvk")), None if c.get("debtor_id") is None else int(c["debtor_id"]))
        for c in value or ()
    )


def _stored_object(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"a stored probe must be a JSON object, got {type(value).__name__}")
    return value


def _readable(read: Callable[[Any], tuple[R, ...]], value: Any) -> tuple[R, ...]:
    try:
        return read(value)
    except (KeyError, TypeError, ValueError) as exc:
        raise _unreadable(exc) from None


def _unreadable(exc: Exception) -> ValueError:
    return ValueError(f"a stored probe is not readable ({type(exc).__name__}: {exc}); "
                      "drop it and the next probe rebuilds it")


def _digests(value: Any) -> dict[str, str]:
    """Stored answer digests; anything else (none stored, an older or damaged cache) is none: answers are read."""
    if not isinstance(value, Mapping):
        return {}
    return {key: digest for key, digest in value.items() if isinstance(key, str) and isinstance(digest, str)}


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
