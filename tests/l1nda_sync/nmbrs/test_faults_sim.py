"""Every fault class through the simulator's fault injection; retries counted in its call log."""

from __future__ import annotations

import time

import pytest

from l1nda_sync.nmbrs import (
    CredentialInvalid,
    DataNotAllowed,
    NmbrsClient,
    NoSubscription,
    OperationNotAllowed,
    TransientError,
    UnknownNmbrsError,
)
from l1nda_sync.nmbrs.retry import RetryPolicy

from .conftest import ENV, MASTER_HORECA

TRANSIENT_KINDS = ["fault_1006", "fault_9999", "http_500", "http_502", "http_503", "reset", "malformed",
                   "truncated"]
CODES = {"fault_1006": 1006, "fault_9999": 9999}


def list_debtors(client: NmbrsClient):
    return client.debtors(MASTER_HORECA.creds(ENV))


def debtor_calls(sim) -> int:
    return sim.admin.call_count(service="DebtorService", operation="List_GetAll", username=MASTER_HORECA.username)


@pytest.mark.parametrize("kind", TRANSIENT_KINDS)
def test_a_transient_fault_is_retried_and_then_answers(sim, client: NmbrsClient, kind: str) -> None:
    sim.admin.inject_fault(kind, service="DebtorService", operation="List_GetAll", count=1)
    assert [d.id for d in list_debtors(client)] == [2001, 2002, 2004]
    assert debtor_calls(sim) == 2
    assert (client.calls_made, client.retries) == (2, 1)


@pytest.mark.parametrize("kind", TRANSIENT_KINDS)
def test_a_lasting_transient_fault_is_transient_after_the_last_attempt(sim, client: NmbrsClient, kind: str) -> None:
    sim.admin.inject_fault(kind, service="DebtorService", operation="List_GetAll")
    with pytest.raises(TransientError) as caught:
        list_debtors(client)
    error = caught.value
    assert (error.outcome, error.retryable) == ("transient", True)
    assert (error.service, error.operation) == ("DebtorService", "List_GetAll")
    assert error.code == CODES.get(kind)
    assert debtor_calls(sim) == 3  # FAST_RETRY: 3 attempts


def test_a_hanging_server_times_out_as_transient(sim, make_client) -> None:
    client = make_client(nmbrs_read_timeout=0.3, retry=RetryPolicy(attempts=2, deadline=20, base_delay=0.01))
    client.warm_up()
    sim.admin.inject_fault("hang", service="DebtorService", operation="List_GetAll")
    started = time.monotonic()
    with pytest.raises(TransientError, match="Timeout"):
        list_debtors(client)
    elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 3.0  # two 0.3 s time-outs; the upper bound only says no third wait (load-safe)
    assert debtor_calls(sim) == 2


def test_the_call_deadline_bounds_all_attempts(sim, make_client) -> None:
    client = make_client(nmbrs_read_timeout=5.0, retry=RetryPolicy(attempts=50, deadline=1.0, base_delay=0.01,
                                                                   max_delay=0.02))
    client.warm_up()
    sim.admin.inject_fault("hang", service="DebtorService", operation="List_GetAll")
    started = time.monotonic()
    with pytest.raises(TransientError):
        list_debtors(client)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3.0  # the read time-out (5 s) was cut to what was left of the deadline
    assert 1 <= debtor_calls(sim) <= 2


def test_latency_alone_is_no_fault(sim, client: NmbrsClient) -> None:
    sim.admin.inject_fault("latency", service="DebtorService", operation="List_GetAll", ms=150)
    started = time.monotonic()
    assert len(list_debtors(client)) == 3
    assert time.monotonic() - started >= 0.15
    assert debtor_calls(sim) == 1


def test_1001_after_a_token_reset_is_credential_invalid_and_not_retried(sim, client: NmbrsClient) -> None:
    sim.admin.reset_token(MASTER_HORECA.username)
    with pytest.raises(CredentialInvalid) as caught:
        client.debtors(MASTER_HORECA.creds())  # no domain: Environment_Get with AuthHeader answers 1001
    assert (caught.value.code, caught.value.outcome) == (1001, "invalid")
    assert sim.admin.call_count(username=MASTER_HORECA.username) == 1


def test_1001_for_a_deleted_user(sim, client: NmbrsClient) -> None:
    sim.admin.delete_login(MASTER_HORECA.username)
    with pytest.raises(CredentialInvalid):
        client.environment(MASTER_HORECA.creds())


def test_1002_names_service_and_operation_and_is_not_retried(sim, client: NmbrsClient) -> None:
    sim.admin.set_operation_allowed(MASTER_HORECA.username, "CompanyService", "List_GetAll", False)
    with pytest.raises(OperationNotAllowed) as caught:
        client.companies(MASTER_HORECA.creds(ENV))
    error = caught.value
    assert (error.code, error.service, error.operation, error.outcome) == (1002, "CompanyService", "List_GetAll",
                                                                           "rights_missing")
    assert sim.admin.call_count(operation="List_GetAll", service="CompanyService") == 1


def test_1003_names_the_debtor(sim, client: NmbrsClient) -> None:
    with pytest.raises(DataNotAllowed) as caught:
        client.debtor_tags(MASTER_HORECA.creds(ENV), 424242)
    assert (caught.value.code, caught.value.data_id) == (1003, 424242)
    assert sim.admin.call_count(operation="Tags_Get") == 1


def test_1004_no_subscription_is_not_retried(sim, client: NmbrsClient) -> None:
    sim.admin.set_subscription(ENV, False)
    with pytest.raises(NoSubscription) as caught:
        client.probe(MASTER_HORECA.creds(ENV))
    assert (caught.value.code, caught.value.outcome) == (1004, "no_subscription")
    assert sim.admin.call_count(username=MASTER_HORECA.username) == 1  # Environment_Get: 1004 at once


def test_a_wrong_base_url_is_unknown_and_says_what_to_fix(sim, make_client) -> None:
    client = make_client(nmbrs_base_url=sim.root_url + "/not-soap/")
    with pytest.raises(UnknownNmbrsError, match="L1NDA_NMBRS_BASE_URL") as caught:
        client.probe(MASTER_HORECA.creds())
    assert caught.value.outcome == "unknown"
    assert caught.value.retryable is False


def test_an_unreachable_nmbrs_is_transient(make_client) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(nmbrs_base_url=f"http://127.0.0.1:{port}/soap/v3/")
    with pytest.raises(TransientError, match="WSDL"):
        client.probe(MASTER_HORECA.creds())
