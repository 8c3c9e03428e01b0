"""Answers nobody foresaw, from the simulator over real HTTP: what is safely readable is read, the rest is
classified (mostly transient), and "unknown" is left for what really is unknown."""

from __future__ import annotations

import logging

import pytest

from l1nda_sync.nmbrs import (
    CredentialInvalid,
    NmbrsClient,
    NoSubscription,
    TransientError,
    UnknownNmbrsError,
)
from l1nda_sync.nmbrs.errors import MalformedAnswer
from l1nda_sync.nmbrs.retry import RetryPolicy

from .conftest import ENV, MASTER_ALL, MASTER_HORECA


def debtor_calls(sim, operation: str = "List_GetAll", service: str = "DebtorService") -> int:
    return sim.admin.call_count(service=service, operation=operation, username=MASTER_HORECA.username)


class Sleeps(list):
    """Records the client's waits instead of sleeping (the simulator does not enforce Retry-After)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def recording(make_client, sleeps):
    def make(**kwargs) -> NmbrsClient:
        client = make_client(**kwargs)
        client._sleep = sleeps
        return client
    return make


def test_unknown_elements_everywhere_are_ignored_and_the_probe_is_the_same(sim, client, caplog) -> None:
    clean = client.probe(MASTER_HORECA.creds())
    sim.admin.clear_calls()
    sim.admin.inject_fault("extra_element")  # every operation with records, until cleared
    with caplog.at_level(logging.INFO, logger="l1nda_sync.nmbrs"):
        tolerant = client.probe(MASTER_HORECA.creds())
    assert (tolerant.debtors, tolerant.companies, tolerant.environment) == \
        (clean.debtors, clean.companies, clean.environment)
    assert any(c.kvk for c in tolerant.companies)  # declared fields after an unknown one are still read
    assert client.retries == 0
    assert sim.admin.call_count(username=MASTER_HORECA.username) == clean.calls  # no call failed
    assert sim.admin.faults()[0]["fired"] == clean.calls
    assert client.answers.ignored_elements > 0
    assert "Vestigingsadres" in caplog.text  # said once, at INFO, so someone updates the WSDL knowledge


def test_unknown_elements_on_a_warm_client_with_a_cached_wsdl(sim, make_client) -> None:
    """The WSDL is cached for a day: a field Nmbrs adds today must not fail every call until tomorrow."""
    first = make_client()
    first.warm_up()
    clean = first.companies(MASTER_ALL.creds(ENV))
    second = make_client()  # same cache directory: reads the cached WSDLs
    sim.admin.inject_fault("extra_element", service="CompanyService")
    assert second.companies(MASTER_ALL.creds(ENV)) == clean
    assert len(clean) > 5
    assert (second.wsdl_cache.fetches, second.wsdl_cache.hits) == (0, 1)


def test_null_entries_are_skipped(sim, client) -> None:
    clean = client.probe(MASTER_HORECA.creds(ENV))
    sim.admin.inject_fault("null_entry")
    again = client.probe(MASTER_HORECA.creds(ENV))
    assert (again.debtors, again.companies) == (clean.debtors, clean.companies)
    assert client.answers.skipped_nulls >= 4
    assert client.retries == 0


def test_an_empty_result_is_an_empty_list(sim, client) -> None:
    sim.admin.inject_fault("empty_list", service="CompanyService", operation="List_GetAll")
    assert client.companies(MASTER_HORECA.creds(ENV)) == ()
    assert client.retries == 0


def test_a_missing_result_is_malformed_and_transient_never_an_empty_list(sim, client) -> None:
    sim.admin.inject_fault("missing_result", service="CompanyService", operation="List_GetAll")
    with pytest.raises(MalformedAnswer) as caught:
        client.companies(MASTER_HORECA.creds(ENV))
    error = caught.value
    assert (error.outcome, error.service, error.operation) == ("transient", "CompanyService", "List_GetAll")
    assert "List_GetAllResult" in str(error)
    assert sim.admin.call_count(service="CompanyService", operation="List_GetAll") == 3  # retried


def test_a_missing_result_once_is_retried_and_then_read(sim, client) -> None:
    sim.admin.inject_fault("missing_result", service="DebtorService", operation="List_GetAll", count=1)
    assert [d.id for d in client.debtors(MASTER_HORECA.creds(ENV))] == [2001, 2002, 2004]
    assert debtor_calls(sim) == 2


def test_a_missing_environment_result_is_transient(sim, client) -> None:
    sim.admin.inject_fault("missing_result", operation="Environment_Get")
    with pytest.raises(TransientError):
        client.probe(MASTER_HORECA.creds())


@pytest.mark.parametrize(("code", "cls", "outcome"), [(1001, CredentialInvalid, "invalid"),
                                                      (1004, NoSubscription, "no_subscription")])
def test_a_code_without_the_wrapper_is_read(sim, client, code, cls, outcome) -> None:
    sim.admin.inject_fault("code_no_wrapper", code=code, service="DebtorService", operation="List_GetAll")
    with pytest.raises(cls) as caught:
        client.debtors(MASTER_HORECA.creds(ENV))
    assert (caught.value.code, caught.value.outcome) == (code, outcome)


def test_a_transient_code_without_the_wrapper_is_retried(sim, client) -> None:
    sim.admin.inject_fault("code_no_wrapper", code=9999, operation="List_GetAll", count=1)
    assert len(client.debtors(MASTER_HORECA.creds(ENV))) == 3
    assert debtor_calls(sim) == 2


def test_an_unknown_code_stays_unknown_with_its_code_and_is_not_retried(sim, client) -> None:
    sim.admin.inject_fault("unknown_code", operation="List_GetAll")
    with pytest.raises(UnknownNmbrsError) as caught:
        client.debtors(MASTER_HORECA.creds(ENV))
    assert (caught.value.code, caught.value.outcome) == (1234, "unknown")
    assert debtor_calls(sim) == 1


def test_429_waits_as_long_as_retry_after_says(sim, recording, sleeps) -> None:
    client = recording()
    sim.admin.inject_fault("http_429", retry_after=2, service="DebtorService", operation="List_GetAll", count=1)
    assert len(client.debtors(MASTER_HORECA.creds(ENV))) == 3
    assert debtor_calls(sim) == 2
    assert sleeps == [2.0]  # FAST_RETRY's own backoff is at most 0.05 s: the server's wait wins


def test_429_beyond_the_call_deadline_fails_at_once_as_transient(sim, recording, sleeps) -> None:
    client = recording(retry=RetryPolicy(attempts=3, deadline=5.0, base_delay=0.01, max_delay=0.05))
    sim.admin.inject_fault("http_429", retry_after=60, service="DebtorService", operation="List_GetAll")
    with pytest.raises(TransientError) as caught:
        client.debtors(MASTER_HORECA.creds(ENV))
    assert caught.value.retry_after == 60.0
    assert "429" in str(caught.value)
    assert sleeps == []  # no wait into a call that cannot end in time
    assert debtor_calls(sim) == 1


def test_a_lasting_429_is_transient_after_the_last_attempt(sim, recording, sleeps) -> None:
    client = recording()
    sim.admin.inject_fault("http_429", retry_after=1, service="DebtorService", operation="List_GetAll")
    with pytest.raises(TransientError) as caught:
        client.debtors(MASTER_HORECA.creds(ENV))
    assert caught.value.outcome == "transient"
    assert sleeps == [1.0, 1.0]
    assert debtor_calls(sim) == 3


def test_a_waf_403_page_is_transient_and_not_hammered(sim, client) -> None:
    sim.admin.inject_fault("http_403_html", service="DebtorService", operation="List_GetAll")
    with pytest.raises(TransientError) as caught:
        client.debtors(MASTER_HORECA.creds(ENV))
    error = caught.value
    assert (error.outcome, error.retryable) == ("transient", False)
    assert "HTTP 403" in str(error)
    assert "text/html" in str(error)
    assert debtor_calls(sim) == 1


# kind (injected on every call of MASTER_HORECA) -> the error class and outcome the client raises, or None when
# the probe succeeds with the same reach as a clean one. The engine's fault matrix relies on this table.
MATRIX = [
    ("extra_element", {}, None, None),
    ("null_entry", {}, None, None),
    ("empty_list", {}, None, None),  # a valid answer: empty lists (the probe succeeds with less reach)
    ("code_no_wrapper", {}, CredentialInvalid, "invalid"),
    ("http_429", {"retry_after": 0}, TransientError, "transient"),
    ("missing_result", {}, MalformedAnswer, "transient"),
    ("http_403_html", {}, TransientError, "transient"),
    ("unknown_code", {}, UnknownNmbrsError, "unknown"),
    ("echo_token", {}, CredentialInvalid, "invalid"),
    ("echo_token", {"status": 200}, None, None),
    ("echo_token", {"status": 403}, TransientError, "transient"),
    ("echo_token", {"status": 502}, TransientError, "transient"),
]


@pytest.mark.parametrize(("kind", "params", "cls", "outcome"), MATRIX)
def test_each_injection_kind_ends_in_a_known_class(sim, client, kind, params, cls, outcome) -> None:
    clean = client.probe(MASTER_HORECA.creds())
    sim.admin.inject_fault(kind, username=MASTER_HORECA.username, **params)
    if cls is None:
        probe = client.probe(MASTER_HORECA.creds())
        if kind == "empty_list":
            assert (probe.debtors, probe.companies) == ((), ())
        else:
            assert (probe.debtors, probe.companies) == (clean.debtors, clean.companies)
        return
    with pytest.raises(cls) as caught:
        client.probe(MASTER_HORECA.creds())
    assert type(caught.value) is cls
    assert caught.value.outcome == outcome
