"""`probe`: validate a token and list what it reaches, with as few Nmbrs calls as the previous probe allows.

A `Company` carries no debtor id in Nmbrs: the company-to-debtor mapping costs one `List_GetByDebtor` per debtor,
and the debtors' tags one `Tags_Get` each. Both are kept in the stored probe and rebuilt only when needed:

* the two `List_GetAll` (debtors, companies) run on every probe: they are the validation and the reach;
* the mapping and the tags are reused as they are when the previous probe has the same debtor id set and the
  same company id set, was made for the same domain, and its full refresh is younger than
  `mapping_full_refresh` (default a day);
* when the sets differ, only the new debtors are asked (tags and companies); kept debtors keep their tags and
  their companies keep their debtor; if a listed company still has no debtor (a new company of a kept
  debtor), the kept debtors' companies are asked as well;
* everything is asked again (a full refresh) on the first probe, when the interval has passed, or when the
  domain changed.
Tags can change without changing the debtor set; such a change does not change the reach either (a master's tag
filter that stops matching drops the debtor from `List_GetAll`), and the tags of a lost debtor, which explain the
loss, are in the previous probe. So tags follow the mapping's schedule.

Calls per token (N = debtors reached, N_new = debtors not in the previous probe; `Environment_Get` is needed
only when the domain or the environment is unknown, i.e. on a first probe):

| case | calls |
|---|---|
| first probe (no previous) | 2N + 3 (`Environment_Get`, 2 x `List_GetAll`, N x `Tags_Get`, N x `List_GetByDebtor`) |
| unchanged (same sets, refresh not due) | 2 |
| debtor set changed | 2 + 2 x N_new; + (N - N_new) when a company cannot be placed that way |
| only companies changed | 2 when companies only disappeared; 2 + N when a company was added |
| full refresh (interval passed) | 2N + 2 |
| debtor-level login, DebtorService.List_GetAll answers its own debtor(s) | as above with N = 1 (5 first, 2 after) |
| debtor-level login, DebtorService.List_GetAll off (1002) | 4 first (+`Debtor_IsOwner`), 2 after |
| a 1001 with a remembered domain | + 2 (`Environment_Get` and the repeated call) |
Every retry of a transient fault is one more call; `Probe.calls` counts every request sent.

The per-debtor calls (`Tags_Get`, then `List_GetByDebtor`) run up to `nmbrs_per_login_concurrency` (K, default 4)
at a time, each through the process-wide CallGate like every call: a first probe or a full refresh of N debtors
waits about 2N/K round trips instead of 2N. The probe's thread is one of the K askers; the K-1 others are
threads of this probe alone, all ended when it returns (see `fanout`, `per_login`). K=1 is the sequential probe,
and every K gives its result: debtors are started in order, and after a failure none is started, the ones in
flight are waited for, and the first failure in debtor order decides, as the loop would have. Only the count can
be higher after a failure, by the calls that were in flight (at most K-1; the table counts K=1). A 1002 on
`Tags_Get` keeps the tags of the debtors before it in debtor order and drops every answer after it (for a login
whose template has `Tags_Get` off, the first one fails: no tags, as before). A 1001 with a remembered domain
still costs one rediscovery per probe: the probe's conversation makes it and asks again from that debtor on.

Debtor-level logins: when `DebtorService.List_GetAll` is switched off (1002) the probe asks `Debtor_IsOwner`. A
login that is not the owner (a customer login) is then probed without debtors: its companies come from
`CompanyService.List_GetAll` with `debtor_id` None, and `is_owner` False is remembered so later probes skip the
question. An owner (accountant) login, or one that may not ask `Debtor_IsOwner` either, gets the 1002 for
`DebtorService.List_GetAll`: the mapping needs it, so the customer must switch it on. A 1002 on `Tags_Get`
leaves the tags empty (they only explain changes); a 1002 on `List_GetByDebtor` is raised (no mapping without it).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from l1nda_sync.nmbrs.errors import NmbrsError, OperationNotAllowed
from l1nda_sync.nmbrs.per_login import PerDebtorCalls
from l1nda_sync.nmbrs.records import Company, Credentials, Debtor, DebtorTag, Probe

if TYPE_CHECKING:  # client.py imports this module when a probe runs
    from l1nda_sync.nmbrs.client import Conversation, Listed, NmbrsClient

log = logging.getLogger(__name__)

DEBTORS, COMPANIES = "debtors", "companies"  # the keys of `Probe.answer_digests`


def run_probe(client: NmbrsClient, credentials: Credentials, previous: Probe | None = None) -> Probe:
    """Probe one token. A failure raises the NmbrsError with `.calls` set to the requests this probe sent; so does
    the ValueError of a stored probe whose records cannot be read (`StoredRecords`: read only when needed)."""
    remembered = credentials.domain or (previous.domain if previous is not None and previous.domain else None)
    talk = client.conversation(credentials, remembered)
    per_debtor = PerDebtorCalls(talk, client.settings.nmbrs_per_login_concurrency)
    try:
        return _probe(client, talk, per_debtor, credentials, previous, remembered)
    except NmbrsError as error:
        error.calls = talk.calls + per_debtor.calls
        raise
    except ValueError as unreadable:
        unreadable.calls = talk.calls + per_debtor.calls  # type: ignore[attr-defined]
        raise


def _probe(client: NmbrsClient, talk: Conversation, per_debtor: PerDebtorCalls, credentials: Credentials,
           previous: Probe | None, remembered: str | None) -> Probe:
    now = client.wall_clock()
    if (previous is not None and previous.environment is not None and remembered
            and previous.environment.sub_domain.lower() == remembered.lower()):
        talk.environment = previous.environment
    else:
        talk.discover()

    known = previous.answer_digests if previous is not None else {}
    listed_debtors, is_owner = _debtors_or_none(talk, previous, known.get(DEBTORS))
    listed_companies = talk.list_companies(known.get(COMPANIES))
    environment = talk.environment
    assert environment is not None  # discovered above or reused; a rediscovery replaces it
    domain = talk.domain or environment.sub_domain  # set with the environment, found or remembered
    digests = {key: listed.digest for key, listed in ((DEBTORS, listed_debtors), (COMPANIES, listed_companies))
               if listed is not None and listed.digest is not None}

    # The previous probe whose mapping may be reused, or None when a full refresh is due.
    kept = previous if previous is not None and not _refresh_due(client, domain, previous, now) else None
    if (kept is not None and listed_debtors is not None and listed_debtors.records is None
            and listed_companies.records is None):
        # Both answers are the ones `kept` was read from: the same sets, so its records are what the reuse below
        # would rebuild, value for value.
        return Probe(environment, domain, kept.debtors, kept.companies, talk.calls, kept.mapping_refreshed_at,
                     True, is_owner, digests)
    debtors = None if listed_debtors is None else _debtor_listing(listed_debtors, previous)
    companies = _company_listing(listed_companies, previous)

    if debtors is None:  # a customer login without DebtorService.List_GetAll: no mapping can be made
        same = previous is not None and not previous.debtors and previous.company_ids == {c.id for c in companies}
        return Probe(environment, domain, (), companies, talk.calls,
                     previous.mapping_refreshed_at if previous is not None and same else now, same, is_owner, digests)

    debtor_ids = {d.id for d in debtors}
    company_ids = {c.id for c in companies}
    if kept is not None and kept.debtor_ids == debtor_ids and kept.company_ids == company_ids:
        old_tags = {d.id: d.tags for d in kept.debtors}
        same_owner = {c.id: c.debtor_id for c in kept.companies}
        return Probe(environment, domain,
                     tuple(_with_tags(d, old_tags.get(d.id, ())) for d in debtors),
                     tuple(_with_debtor(c, same_owner.get(c.id)) for c in companies),
                     talk.calls, kept.mapping_refreshed_at, True, is_owner, digests)

    old_owner: dict[int, int] = {}
    if kept is None:
        ask = [d.id for d in debtors]
        old_tags = {}
    else:
        ask = sorted(debtor_ids - kept.debtor_ids)
        old_tags = {d.id: d.tags for d in kept.debtors if d.id in debtor_ids}
        old_owner = {c.id: c.debtor_id for c in kept.companies
                     if c.debtor_id is not None and c.debtor_id in debtor_ids}

    tags = dict(old_tags)
    tags.update(_tags_of(per_debtor, ask))
    owner = _owners_of(per_debtor, ask, company_ids)
    for company_id, debtor_id in old_owner.items():
        owner.setdefault(company_id, debtor_id)
    unplaced = company_ids - owner.keys()
    if unplaced and kept is not None:
        others = sorted(debtor_ids - set(ask))
        log.debug("%s: %d companies without a debtor; asking the %d kept debtors too", credentials.username,
                  len(unplaced), len(others))
        owner.update(_owners_of(per_debtor, others, company_ids))
    return Probe(environment, domain,
                 tuple(_with_tags(d, tags.get(d.id, ())) for d in debtors),
                 tuple(_with_debtor(c, owner.get(c.id)) for c in companies),
                 talk.calls + per_debtor.calls, now if kept is None else kept.mapping_refreshed_at, False, is_owner,
                 digests)


def _refresh_due(client: NmbrsClient, domain: str, previous: Probe, now: datetime) -> bool:
    """Whether the mapping and the tags are asked again in full: another domain, or the interval passed."""
    return (previous.domain.lower() != domain.lower()
            or now - previous.mapping_refreshed_at >= timedelta(seconds=client.settings.mapping_full_refresh))


def _debtor_listing(listed: Listed[Debtor], previous: Probe | None) -> tuple[Debtor, ...]:
    """The debtors as `List_GetAll` lists them (no tags); an unread answer's are the previous probe's."""
    if listed.records is not None:
        return listed.records
    assert previous is not None  # only a previous probe's digest can be matched
    return tuple(_with_tags(d, ()) for d in previous.debtors)


def _company_listing(listed: Listed[Company], previous: Probe | None) -> tuple[Company, ...]:
    """The companies as `List_GetAll` lists them (no debtor); an unread answer's are the previous probe's."""
    if listed.records is not None:
        return listed.records
    assert previous is not None  # only a previous probe's digest can be matched
    return tuple(_with_debtor(c, None) for c in previous.companies)


def _debtors_or_none(talk: Conversation, previous: Probe | None, known: str | None
                     ) -> tuple[Listed[Debtor] | None, bool | None]:
    """The debtors' listing, or None for a customer login that may not list them (see the module docstring)."""
    try:
        return talk.list_debtors(known), None
    except OperationNotAllowed as refused:
        if previous is not None and previous.is_owner is False and not previous.debtors:
            return None, False
        try:
            owner = talk.is_owner()
        except OperationNotAllowed:
            raise refused from None
        if owner:
            raise
        return None, False


def _tags_of(per_debtor: PerDebtorCalls, debtor_ids: list[int]) -> dict[int, tuple[DebtorTag, ...]]:
    """Each debtor's `Tags_Get`; a 1002 keeps the tags of the debtors before it in `debtor_ids` (see above)."""
    asked = per_debtor.ask(debtor_ids, lambda child, debtor_id: child.debtor_tags(debtor_id))
    if isinstance(asked.error, OperationNotAllowed):
        log.info("%s: Tags_Get is switched off; debtors are listed without tags",
                 per_debtor.talk.credentials.username)
    elif asked.error is not None:
        raise asked.error
    return dict(zip(debtor_ids, asked.answers, strict=False))


def _owners_of(per_debtor: PerDebtorCalls, debtor_ids: list[int], listed: set[int]) -> dict[int, int]:
    """company id -> debtor id for the companies `List_GetAll` listed, from each debtor's `List_GetByDebtor`."""
    asked = per_debtor.ask(debtor_ids, lambda child, debtor_id: child.companies_by_debtor(debtor_id))
    if asked.error is not None:
        raise asked.error
    owner: dict[int, int] = {}
    for debtor_id, companies in zip(debtor_ids, asked.answers, strict=True):
        for company in companies:
            if company.id in listed:
                owner[company.id] = debtor_id
    return owner


def _with_tags(debtor: Debtor, tags: tuple[DebtorTag, ...]) -> Debtor:
    return Debtor(debtor.id, debtor.number, debtor.name, tuple(tags))


def _with_debtor(company: Company, debtor_id: int | None) -> Company:
    return Company(company.id, company.number, company.name, company.period, company.kvk, debtor_id)
