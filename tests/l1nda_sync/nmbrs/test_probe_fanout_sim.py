"""An accountant token's per-debtor calls run a few at a time (`nmbrs_per_login_concurrency`, K): the probe is
the one asking one debtor after another (K=1) gives, for every world and K; a failure ends it the same way with
an exact call count; at most K calls of one token are in flight; no thread outlives a probe. All against the
simulator over HTTP; `client.call` is only wrapped to watch the calls of each login in flight."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l1nda_sync.nmbrs import CredentialInvalid, NmbrsClient, OperationNotAllowed, TransientError
from l1nda_sync.nmbrs.fanout import in_order
from l1nda_sync.nmbrs.limits import CallGate
from l1nda_sync.nmbrs.records import Credentials
from l1nda_sync.settings import Settings, SettingsError

from .conftest import WallClock

DAY = 86400.0
OFFICE = "fanout-office"
TAGS = ("Horeca", "Retail", "Zorg")
KS = (1, 2, 4, 16)


def token_of(n: int) -> str:
    return f"{n:032x}"


def master(n: int) -> str:
    return f"master{n}@{OFFICE}.example"


def office(debtors: dict[int, tuple[tuple[str, ...], int]], masters: int = 1) -> dict[str, Any]:
    """One office: debtor id -> (tag names, companies); master 0 sees all, master n>0 the debtors tagged TAGS[n-1]."""
    return {
        "settings": {"seed": 1},
        "environments": [{
            "sub_domain": OFFICE, "product": "accountant",
            "tags": [{"number": i + 1, "name": name} for i, name in enumerate(TAGS)],
            "debtors": [
                {"id": d, "number": f"D{d}", "name": f"Debtor {d}", "tags": list(tags),
                 "companies": [{"id": d * 100 + c, "number": d * 100 + c, "name": f"Company {d}.{c}",
                                "period": "Month"} for c in range(companies)]}
                for d, (tags, companies) in sorted(debtors.items())
            ],
            "logins": [{"username": master(n), "level": "accountant", "token": token_of(n),
                        "tag_filter": "all" if n == 0 else [TAGS[(n - 1) % len(TAGS)]]} for n in range(masters)],
        }],
    }


def creds(n: int = 0, domain: str | None = None) -> Credentials:
    return Credentials(master(n), token_of(n), domain)


def plain(count: int, companies: int = 2) -> dict[int, tuple[tuple[str, ...], int]]:
    return {1000 + d: ((TAGS[d % len(TAGS)],), companies) for d in range(count)}


def sent(sim, n: int = 0) -> int:
    return int(sim.admin.call_count(username=master(n)))


def op_count(sim, operation: str, n: int = 0) -> int:
    return int(sim.admin.call_count(username=master(n), operation=operation))


@pytest.fixture
def clients(make_client) -> dict[int, NmbrsClient]:
    return {k: make_client(nmbrs_per_login_concurrency=k) for k in KS}


class InFlight:
    """Per login: the calls in `client.call` right now and the most there ever were (retry waits included)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.peak_threads = 0

    def watch(self, client: NmbrsClient, after: Callable[[str], None] | None = None,
              before: Callable[[str], None] | None = None) -> None:
        inner = client.call

        def call(credentials: Credentials, *args: Any, **kwargs: Any) -> Any:
            user = credentials.username
            if before is not None:
                before(args[2])  # the operation
            with self.lock:
                self.now[user] = self.now.get(user, 0) + 1
                self.peak[user] = max(self.peak.get(user, 0), self.now[user])
                self.peak_threads = max(self.peak_threads, threading.active_count())
            try:
                return inner(credentials, *args, **kwargs)
            finally:
                with self.lock:
                    self.now[user] -= 1
                if after is not None:
                    after(args[2])  # the operation

        client.call = call  # type: ignore[method-assign]


@contextmanager
def no_thread_outlives() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    assert [t.name for t in threading.enumerate() if t.ident not in before] == []


# -- the same probe for every K --------------------------------------------------------------------------------
def test_first_probe_refresh_and_changed_sets_equal_the_sequential_probe(sim, clients, wall: WallClock) -> None:
    sim.admin.load_world(office(plain(23), masters=3))
    for n in (0, 2):
        with no_thread_outlives():
            first = {k: c.probe(creds(n)) for k, c in clients.items()}
        assert all(p == first[1] for p in first.values())
        assert len(first[1].debtors) > 1
        assert all(c.debtor_id is not None for c in first[1].companies)
        assert all(d.tags for d in first[1].debtors)

        sim.admin.add_debtor(OFFICE, id=5000 + n, number="DN", name="New", tags=[TAGS[1]])
        sim.admin.add_company(5000 + n, id=500_000 + n, number=500_000 + n, name="New B.V.")
        sim.admin.add_company(1001, id=600_000 + n, number=600_000 + n, name="New of a kept debtor")
        changed = {k: c.probe(creds(n, OFFICE), first[1]) for k, c in clients.items()}
        assert all(p == changed[1] for p in changed.values())
        assert changed[1].calls > 2 + 2  # the new debtor's calls and the kept debtors' List_GetByDebtor

        wall.advance(DAY)
        refreshed = {k: c.probe(creds(n, OFFICE), changed[1]) for k, c in clients.items()}
        assert all(p == refreshed[1] for p in refreshed.values())
        assert refreshed[1].calls == 2 * len(refreshed[1].debtors) + 2


worlds = st.dictionaries(st.integers(1000, 1040), st.tuples(st.sets(st.sampled_from(TAGS)).map(tuple),
                                                            st.integers(0, 3)), max_size=14)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=worlds, after=worlds, k=st.integers(2, 8), n=st.integers(0, 3), refresh=st.booleans())
def test_any_world_and_k_give_the_sequential_probe(sim, make_client, wall: WallClock, before, after, k: int,
                                                   n: int, refresh: bool) -> None:
    sequential, fanned = make_client(nmbrs_per_login_concurrency=1), make_client(nmbrs_per_login_concurrency=k)
    sim.admin.load_world(office(before, masters=4))
    first = sequential.probe(creds(n))
    assert fanned.probe(creds(n)) == first
    sim.admin.load_world(office(after, masters=4))
    if refresh:
        wall.advance(DAY)
    assert fanned.probe(creds(n, OFFICE), first) == sequential.probe(creds(n, OFFICE), first)


# -- faults: the sequential outcome, an exact count ----------------------------------------------------------------
def test_a_transient_fault_is_retried_and_gives_the_same_probe(sim, clients) -> None:
    sim.admin.load_world(office(plain(9)))
    clean = clients[1].probe(creds())
    for client in clients.values():
        sim.admin.clear_calls()
        sim.admin.inject_fault("fault_1006", username=master(0), operation="Tags_Get", count=2)
        probe = client.probe(creds())
        assert dataclasses.replace(probe, calls=clean.calls) == clean
        assert probe.calls == clean.calls + 2 == sent(sim)


def test_a_transient_fault_that_outlasts_the_retries_fails_the_probe_with_an_exact_count(sim, clients) -> None:
    sim.admin.load_world(office(plain(9)))
    sim.admin.inject_fault("fault_1006", username=master(0), operation="List_GetByDebtor")
    for k, client in clients.items():
        sim.admin.clear_calls()
        with no_thread_outlives(), pytest.raises(TransientError) as caught:
            client.probe(creds())
        assert caught.value.calls == sent(sim)
        assert 3 <= op_count(sim, "List_GetByDebtor") <= 3 * min(k, 9)  # 3 attempts for each one in flight
        assert op_count(sim, "Tags_Get") == 9  # the tags were all asked before


def test_a_1001_with_the_remembered_domain_is_rediscovered_once_and_the_probe_goes_on(sim, clients, wall) -> None:
    sim.admin.load_world(office(plain(9)))
    first = clients[1].probe(creds())
    wall.advance(DAY)  # a full refresh: the per-debtor calls run on the remembered domain
    clean = clients[1].probe(creds(n=0, domain=OFFICE), first)
    for client in clients.values():
        sim.admin.clear_calls()
        sim.admin.inject_fault("code_no_wrapper", code=1001, username=master(0), operation="Tags_Get", count=1)
        probe = client.probe(creds(n=0, domain=OFFICE), first)
        assert dataclasses.replace(probe, calls=clean.calls) == clean
        assert op_count(sim, "Environment_Get") == 1
        assert probe.calls == sent(sim) >= clean.calls + 2  # the 1001, Environment_Get (+ answers asked again)


def test_a_token_revoked_mid_fan_out_fails_after_one_rediscovery(sim, make_client, wall) -> None:
    sim.admin.load_world(office(plain(12)))
    first = make_client().probe(creds())
    wall.advance(DAY)
    outcomes = []
    for k in KS:
        sim.admin.load_world(office(plain(12)))  # the token again
        client = make_client(nmbrs_per_login_concurrency=k)
        revocation = Revocation(sim, answers=3)
        InFlight().watch(client, after=revocation.after, before=revocation.before)
        sim.admin.clear_calls()
        with no_thread_outlives(), pytest.raises(CredentialInvalid) as caught:
            client.probe(creds(n=0, domain=OFFICE), first)
        assert caught.value.calls == sent(sim)
        assert op_count(sim, "Environment_Get") == 1  # once per probe, however many calls got the 1001
        assert op_count(sim, "List_GetByDebtor") == 0
        outcomes.append(type(caught.value))
    assert outcomes == [CredentialInvalid] * len(KS)


class Revocation:
    """Reset master 0's token (a real revocation) once `answers` Tags_Get calls have come back. The Tags_Get calls
    sent after those wait for the reset, so some of the fan-out meets the revoked token whatever the timing (the
    faster the client, the likelier all of them had been answered before a reset that did not hold them)."""

    def __init__(self, sim, answers: int) -> None:
        self.sim, self.answers = sim, answers
        self.lock = threading.Lock()
        self.sent = self.answered = 0
        self.revoked = threading.Event()

    def before(self, operation: str) -> None:
        if operation != "Tags_Get":
            return
        with self.lock:
            self.sent += 1
            hold = self.sent > self.answers
        if hold:
            assert self.revoked.wait(30)

    def after(self, operation: str) -> None:
        if operation != "Tags_Get":
            return
        with self.lock:
            self.answered += 1
            revoke = self.answered == self.answers
        if revoke:
            self.sim.admin.reset_token(master(0))
            self.revoked.set()


def test_a_1001_on_a_domain_found_in_this_probe_is_final(sim, clients) -> None:
    sim.admin.load_world(office(plain(9)))
    sim.admin.inject_fault("code_no_wrapper", code=1001, username=master(0), operation="List_GetByDebtor")
    for client in clients.values():
        sim.admin.clear_calls()
        with pytest.raises(CredentialInvalid) as caught:
            client.probe(creds())
        assert caught.value.calls == sent(sim)
        assert op_count(sim, "Environment_Get") == 1  # the discovery; no rediscovery


def test_tags_get_switched_off_lists_the_debtors_without_tags(sim, clients) -> None:
    sim.admin.load_world(office(plain(9)))
    sim.admin.set_operation_allowed(master(0), "DebtorService", "Tags_Get", False)
    probes = {}
    for k, client in clients.items():
        sim.admin.clear_calls()
        probes[k] = client.probe(creds())
        assert probes[k].calls == sent(sim)
        assert 1 <= op_count(sim, "Tags_Get") <= min(k, 9)  # the 1002 and the ones already in flight
        assert op_count(sim, "List_GetByDebtor") == 9
    assert all(dataclasses.replace(p, calls=0) == dataclasses.replace(probes[1], calls=0) for p in probes.values())
    assert all(d.tags == () for d in probes[1].debtors)
    assert len(probes[1].debtors) == 9
    assert all(c.debtor_id is not None for c in probes[1].companies)


def test_list_getbydebtor_switched_off_fails_the_probe_with_its_1002(sim, clients) -> None:
    sim.admin.load_world(office(plain(9)))
    sim.admin.set_operation_allowed(master(0), "CompanyService", "List_GetByDebtor", False)
    for k, client in clients.items():
        sim.admin.clear_calls()
        with pytest.raises(OperationNotAllowed) as caught:
            client.probe(creds())
        assert caught.value.operation == "List_GetByDebtor"
        assert caught.value.calls == sent(sim)
        assert 1 <= op_count(sim, "List_GetByDebtor") <= min(k, 9)  # none started after the 1002


# -- bounds ----------------------------------------------------------------------------------------------------
def test_at_most_k_calls_of_a_token_are_in_flight(sim, make_client) -> None:
    sim.admin.load_world(office(plain(12)))
    sim.admin.set_latency(20)
    for k in (1, 3):
        gate = CallGate(10_000, 32)
        client = make_client(nmbrs_per_login_concurrency=k, gate=gate)
        watch = InFlight()
        watch.watch(client)
        client.probe(creds())
        assert watch.peak[master(0)] == gate.peak_in_flight == k  # 12 debtors at 20 ms: K are reached


def test_many_fanned_out_tokens_through_a_narrow_gate_finish_with_the_sequential_probes(sim, make_client) -> None:
    """Probe threads wait on their askers holding no gate slot, so a gate narrower than the askers cannot
    deadlock; each login stays within K."""
    masters = 9
    sim.admin.load_world(office(plain(30, companies=1), masters=masters))
    sim.admin.set_latency(5)
    expected = {n: make_client(nmbrs_per_login_concurrency=1).probe(creds(n)) for n in range(masters)}
    k = 4
    client = make_client(nmbrs_per_login_concurrency=k, gate=CallGate(10_000, 2))
    watch = InFlight()
    watch.watch(client)
    base = threading.active_count()
    with no_thread_outlives(), ThreadPoolExecutor(max_workers=masters) as pool:
        futures = {n: pool.submit(client.probe, creds(n)) for n in range(masters)}
        got = {n: f.result(timeout=120) for n, f in futures.items()}
    assert {n: dataclasses.replace(p, calls=0) for n, p in got.items()} == {
        n: dataclasses.replace(p, calls=0) for n, p in expected.items()}
    assert all(got[n].calls == expected[n].calls for n in got)
    assert max(watch.peak.values()) <= k
    assert client.gate.peak_in_flight <= 2
    assert watch.peak_threads <= base + masters * k  # each probe thread plus its K-1 askers


# -- the setting --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["0", "-1", "17", "four", "2.5"])
def test_a_bad_per_login_concurrency_names_the_setting_and_the_fix(raw: str) -> None:
    with pytest.raises(SettingsError, match=r"L1NDA_NMBRS_PER_LOGIN_CONCURRENCY.*1 to 16"):
        Settings.load({"L1NDA_NMBRS_PER_LOGIN_CONCURRENCY": raw}, use_airflow=False)


def test_the_default_is_four_and_a_settings_object_built_in_code_is_checked_at_the_probe(make_client) -> None:
    assert Settings.load({}, use_airflow=False).nmbrs_per_login_concurrency == 4
    assert Settings.load({"L1NDA_NMBRS_PER_LOGIN_CONCURRENCY": "1"}, use_airflow=False).nmbrs_per_login_concurrency == 1
    with pytest.raises(SettingsError, match=r"nmbrs_per_login_concurrency = 0.*L1NDA_NMBRS_PER_LOGIN_CONCURRENCY"):
        make_client(nmbrs_per_login_concurrency=0).probe(creds())


# -- in_order alone: the sequential outcome whatever order answers arrive in -------------------------------------
class Failed(Exception):
    pass


@settings(max_examples=150, deadline=None)
@given(outcomes=st.lists(st.tuples(st.sampled_from(["ok", "ok", "ok", "a", "b"]), st.integers(0, 3)), max_size=12),
       k=st.integers(1, 6))
def test_in_order_gives_the_loop_outcome_for_any_answer_order(outcomes: list[tuple[str, int]], k: int) -> None:
    """Each question takes 0-3 ms, so answers come back in varied orders; the outcome must not depend on it."""
    events: list[tuple[str, int]] = []
    lock = threading.Lock()
    in_flight = [0, 0]  # now, peak

    def ask(i: int) -> int:
        outcome, ms = outcomes[i]
        with lock:
            events.append(("start", i))
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
        time.sleep(ms / 1000)
        with lock:
            in_flight[0] -= 1
            events.append(("end" if outcome == "ok" else "failed", i))
        if outcome != "ok":
            raise Failed(outcome)
        return i

    with no_thread_outlives():
        part = in_order(list(range(len(outcomes))), ask, k)
    failing = next((i for i, (outcome, _) in enumerate(outcomes) if outcome != "ok"), len(outcomes))
    assert part.answers == list(range(failing))
    assert (None if part.error is None else str(part.error)) == (outcomes[failing][0] if part.error else None)
    assert (part.error is None) == (failing == len(outcomes))
    starts = [i for what, i in events if what == "start"]
    assert starts == sorted(starts)  # started in list order
    assert in_flight[1] <= k
    if "failed" in (what for what, _ in events):  # after the first failure, at most the other askers' one each
        first = next(n for n, (what, _) in enumerate(events) if what == "failed")
        assert sum(what == "start" for what, _ in events[first:]) <= k - 1
