"""For one odd answer (each fault kind, on either List_GetAll), a domain change found mid-probe, a due refresh and
a stored probe from another domain: the probe made with the stored digests equals, field for field and digest for
digest, the one made without them; a failure is the same failure with the same call count."""
from __future__ import annotations

import dataclasses

import pytest

from l1nda_sync.nmbrs.records import Environment, Probe

from .conftest import CLIENT_VANDIJK, ENV, MASTER_ALL
from .test_answer_digest_sim import every_field, without_digests

ODD = ["http_500", "http_503", "reset", "malformed", "truncated", "fault_1006", "fault_9999", "extra_element",
       "code_no_wrapper", "null_entry", "http_429", "missing_result", "empty_list", "http_403_html", "unknown_code",
       "echo_token"]


def outcome(client, creds, previous):
    try:
        return ("ok", every_field(client.probe(creds, previous)))
    except Exception as exc:  # the same failure either way
        return ("error", type(exc).__name__, getattr(exc, "calls", None), getattr(exc, "code", None))


def both(sim, make_client, creds, first: Probe, arrange=lambda: None):
    """(with the digests, without them), each on a fresh client after the same arrangement."""
    got = []
    for previous in (first, without_digests(first)):
        sim.admin.clear_faults()
        arrange()
        got.append(outcome(make_client(), creds, previous))
    return got


@pytest.mark.parametrize("service", ["DebtorService", "CompanyService"])
@pytest.mark.parametrize("kind", ODD)
def test_one_odd_answer_gives_the_probe_made_without_digests(sim, make_client, kind, service) -> None:
    first = make_client().probe(MASTER_ALL.creds())
    extra = {"retry_after": 0.0} if kind == "http_429" else {}
    with_digests, without = both(sim, make_client, MASTER_ALL.creds(ENV), first, lambda: sim.admin.inject_fault(
        kind, service=service, operation="List_GetAll", count=1, **extra))
    assert with_digests == without


def test_a_domain_found_mid_probe_gives_the_probe_made_without_digests(sim, make_client) -> None:
    first = make_client().probe(MASTER_ALL.creds())
    moved = dataclasses.replace(first, domain="old-office", environment=Environment("old-office.nmbrs.nl",
                                                                                     "old-office"))
    with_digests, without = both(sim, make_client, MASTER_ALL.creds("old-office"), moved)
    assert with_digests == without
    assert with_digests[0] == "ok"


def test_a_due_refresh_gives_the_probe_made_without_digests(sim, make_client, wall) -> None:
    first = make_client().probe(MASTER_ALL.creds())
    wall.advance(2 * 86400)
    with_digests, without = both(sim, make_client, MASTER_ALL.creds(ENV), first)
    assert with_digests == without


def test_a_customer_login_gives_the_probe_made_without_digests(sim, make_client) -> None:
    sim.admin.set_operation_allowed(CLIENT_VANDIJK.username, "DebtorService", "List_GetAll", False)
    first = make_client().probe(CLIENT_VANDIJK.creds())
    with_digests, without = both(sim, make_client, CLIENT_VANDIJK.creds(ENV), first)
    assert with_digests == without
    # the owner switches List_GetAll back on
    sim.admin.set_operation_allowed(CLIENT_VANDIJK.username, "DebtorService", "List_GetAll", True)
    with_digests, without = both(sim, make_client, CLIENT_VANDIJK.creds(ENV), first)
    assert with_digests == without


@pytest.mark.parametrize("service", ["DebtorService", "CompanyService"])
@pytest.mark.parametrize("code", [1001.0, 1002.0, 1006.0])
def test_a_fault_answered_with_http_200_gives_the_probe_made_without_digests(sim, make_client, service, code
                                                                             ) -> None:
    first = make_client().probe(MASTER_ALL.creds())
    with_digests, without = both(sim, make_client, MASTER_ALL.creds(ENV), first, lambda: sim.admin.inject_fault(
        "echo_token", service=service, operation="List_GetAll", count=1, status=200.0, code=code))
    assert with_digests == without
    assert MASTER_ALL.token not in repr(with_digests)
