"""The fault matrix: every kind of Nmbrs fault, for every duration, fleet size and run overlap, ends without a
false alarm; and real changes are still found within two check intervals.

Each row runs the real `SyncEngine` (plan -> check -> finish, exactly what the DAG's tasks call) against a real
PostgreSQL registry, with the sweep after every run, on a 10-minute schedule over a story clock. Nmbrs itself is
a *scripted client*: an object with `probe(credentials, previous)` that returns real `Probe` records or raises the
client's real error classes (built with `error_for_fault` / `error_for_http`, the functions the client uses on
real answers, and the REST client's ConsentRevoked and Throttled). The matrix has 198 rows of up to 15 hours of
10-minute runs each, which cannot run against real HTTP in time; how real HTTP answers (5xx and 403 pages, empty
lists, a missing result element, unknown codes, time-outs) map to these errors is tested against the Nmbrs
simulator in tests/l1nda_sync/nmbrs/.

Schedule of a row: register the fleet, request one link per company, one healthy run at T0 activates them all;
then 10-minute ticks from T0. The fault starts at T0 + 1 h and lasts one answer (the first probe of each token
from then on), 12 minutes or 12 hours, provider-wide (every token); the row ends 2 h after the fault ended.
Ticks where no token is due and no problem is open are skipped (nothing could happen in them).
With overlap, every tick from the fault's start until 20 minutes after its end that has due tokens runs as: the
scheduled run plans and checks, a manual `run_once(token_ids=(token,), force=True)` runs to completion, then
the scheduled run finishes.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from l1nda_sync.alerts.hooks import AlertHooks
from l1nda_sync.alerts.sweep import sweep
from l1nda_sync.engine.sync import SyncEngine
from l1nda_sync.engine.token_state import CHECKABLE_STATES
from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.errors import (
    ConsentRevoked,
    CredentialInvalid,
    MalformedAnswer,
    NmbrsError,
    NoSubscription,
    OperationNotAllowed,
    Throttled,
    TransientError,
    UnknownNmbrsError,
    error_for_fault,
    error_for_http,
)
from l1nda_sync.nmbrs.records import Company, Credentials, Debtor, Environment, Probe
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.rest.grants import InMemoryGrantStore
from l1nda_sync.nmbrs.rest.records import RestCompany, RestCredentials, RestDebtor, RestReach
from l1nda_sync.settings import Settings
from tests.l1nda_sync.engine.story_world import register_token, request_links

TICK = timedelta(minutes=10)
HOUR = timedelta(hours=1)
FAULT_AFTER = HOUR  # the fault starts one hour after T0
TAIL = 2 * HOUR  # the row runs on this long after the fault ended
ENV = Environment("fleet.nmbrs.nl", "fleet")
REFRESHED = datetime(2025, 1, 1, tzinfo=UTC)
WRAP = "Server was unable to process request. ---> "

BAD_STATES = ("revoked", "rejected", "rights_missing", "no_subscription", "unreachable")


# -- the faults, as the real client raises them --------------------------------------------------------------------
def _empty(_: str) -> str:
    return "empty"  # a valid answer with empty lists: built by the client below


FAULTS: dict[str, Callable[[str], NmbrsError | str]] = {
    "empty_lists": _empty,
    "missing_result": lambda op: MalformedAnswer(
        f"CompanyService.{op}: the answer has no {op}Result element", service="CompanyService", operation=op),
    "1001": lambda op: error_for_fault(WRAP + "1001: Invalid Authentication", service="DebtorService",
                                       operation=op),
    "1002": lambda op: error_for_fault(WRAP + "1002: Operation not allowed", service="CompanyService",
                                       operation=op),
    "1004": lambda op: error_for_fault(WRAP + "1004: No valid subscription", service="DebtorService",
                                       operation=op),
    "http_5xx": lambda op: error_for_http(503, "HTTP 503 Service Unavailable", service="CompanyService",
                                          operation=op),
    "http_403_page": lambda op: error_for_http(403, "HTTP 403 <html>Request blocked</html>",
                                               service="DebtorService", operation=op),
    "unknown_code": lambda op: error_for_fault(WRAP + "1234: Something nobody foresaw", service="DebtorService",
                                               operation=op),
    "timeout": lambda op: TransientError(f"DebtorService.{op}: no answer within the call deadline",
                                         service="DebtorService", operation=op),
    # REST answers, as the REST client raises them: an identity server that refuses every refresh (read as a
    # withdrawn consent, confirmed like a 1001) and a 42908 throttling storm (transient)
    "consent_revoked": lambda op: ConsentRevoked(f"{op}: invalid_grant that no other worker explains"),
    "42908": lambda op: Throttled(f"GET /api/debtors: 429 42908 Too_Many_Calls ({op})", code=42908),
}
DURATIONS: dict[str, timedelta | None] = {"one_answer": None, "12min": timedelta(minutes=12),
                                          "12h": timedelta(hours=12)}
FLEETS = (1, 4, 20)


def test_the_fault_classes_are_the_clients_real_ones() -> None:
    assert isinstance(FAULTS["1001"]("List_GetAll"), CredentialInvalid)
    assert isinstance(FAULTS["1002"]("List_GetAll"), OperationNotAllowed)
    assert isinstance(FAULTS["1004"]("List_GetAll"), NoSubscription)
    assert isinstance(FAULTS["unknown_code"]("List_GetAll"), UnknownNmbrsError)
    assert FAULTS["unknown_code"]("List_GetAll").code == 1234
    assert isinstance(FAULTS["consent_revoked"]("List_GetAll"), ConsentRevoked)
    for kind in ("missing_result", "http_5xx", "http_403_page", "timeout", "42908"):
        assert isinstance(FAULTS[kind]("List_GetAll"), TransientError), kind


# -- the fleet ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FleetToken:
    index: int
    level: str
    debtors: tuple[Debtor, ...]
    companies: tuple[Company, ...]

    @property
    def label(self) -> str:
        return f"t{self.index:02d}"

    @property
    def username(self) -> str:
        return f"payroll{self.index}@fleet.example"

    @property
    def secret(self) -> str:
        return f"{self.index + 1:032x}"


def fleet_tokens(size: int) -> list[FleetToken]:
    """Even tokens: accountant level, 3 debtors with 2 companies each; odd ones: debtor level, one company."""
    out = []
    for i in range(size):
        base = 100_000 * (i + 1)
        if i % 2 == 0:
            debtors = tuple(Debtor(base + d, str(d), f"Debtor {i}.{d}") for d in range(3))
            companies = tuple(Company(base + 100 + n, n + 1, f"Company {i}.{n}", "Month", None, base + n // 2)
                              for n in range(6))
            out.append(FleetToken(i, "accountant", debtors, companies))
        else:
            out.append(FleetToken(i, "debtor", (Debtor(base, "1", f"Debtor {i}"),),
                                  (Company(base + 100, 1, f"Company {i}", "Month", None, base),)))
    return out


# What a token's Nmbrs answers at a moment: None = its normal reach, an error to raise, or (debtors, companies).
Script = Callable[[FleetToken, datetime], "NmbrsError | str | tuple[tuple[Debtor, ...], tuple[Company, ...]] | None"]


class ScriptedNmbrs:
    """Stands in for `NmbrsClient`: `probe(credentials, previous)` answers what the script says."""

    def __init__(self, tokens: list[FleetToken], clock: Callable[[], datetime], script: Script) -> None:
        self.by_user = {t.username: t for t in tokens}
        self.clock = clock
        self.script = script
        self.lock = threading.Lock()
        self.probes: Counter[str] = Counter()

    def probe(self, credentials: Credentials, previous: Probe | None) -> Probe:
        token = self.by_user[credentials.username]
        with self.lock:
            self.probes[token.label] += 1
            answer = self.script(token, self.clock())
        debtors, companies = token.debtors, token.companies
        if isinstance(answer, NmbrsError):
            answer.calls = 2
            raise answer
        if answer == "empty":
            debtors, companies = (), ()
        elif isinstance(answer, tuple):
            debtors, companies = answer
        return Probe(environment=ENV, domain=ENV.sub_domain, debtors=debtors, companies=companies,
                     calls=2 if previous is not None else 4, mapping_refreshed_at=REFRESHED,
                     mapping_reused=previous is not None, is_owner=None)


def provider_fault(kind: str, start: datetime, duration: timedelta | None) -> Script:
    """Every token: the fault from `start` for `duration` (None: each token's first answer from `start`)."""
    answered: set[str] = set()

    def script(token: FleetToken, now: datetime) -> NmbrsError | str | None:
        if now < start:
            return None
        if duration is None:
            if token.label in answered:
                return None
            answered.add(token.label)
        elif now >= start + duration:
            return None
        return FAULTS[kind]("List_GetAll")

    return script


class _Kept:
    """One engine's connection kept across its steps (`close` does nothing): a fresh backend per step costs more
    than the step itself on a small machine. Every step still commits or rolls back its own transactions."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __enter__(self) -> _Kept:
        self._conn.__enter__()
        return self

    def __exit__(self, *exc: object) -> Any:
        return self._conn.__exit__(*exc)

    def close(self) -> None:
        self._conn.rollback()


class KeptConnectionEngine(SyncEngine):
    _kept: _Kept | None = None

    def connect(self) -> Any:
        if self._kept is None:
            self._kept = _Kept(super().connect())
        return self._kept

    def really_close(self) -> None:
        if self._kept is not None:
            self._kept._conn.close()


# -- one row's world ---------------------------------------------------------------------------------------------
@dataclass
class Totals:
    rows: int = 0
    false_revocations: int = 0
    false_suspensions: int = 0
    customer_mails: int = 0
    ops_mails: int = 0
    real_changes: int = 0
    real_changes_detected: int = 0
    per_kind: Counter[str] = field(default_factory=Counter)


class Fleet:
    def __init__(self, url: str, settings: Settings, size: int, script: Script) -> None:
        self.url = url
        self.settings = settings
        self.tokens = fleet_tokens(size)
        self.now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
        self.client = ScriptedNmbrs(self.tokens, lambda: self.now, script)
        self.engine = self._engine()
        self.manual = self._engine()  # another worker: own hooks, same clock and Nmbrs
        self.ids: dict[str, int] = {}
        for t in self.tokens:
            self.ids[t.label] = register_token(url, t.label, settings=settings, username=t.username,
                                               token=t.secret, level=t.level)
        request_links(url, [c.id for t in self.tokens for c in t.companies])
        self.conn = psycopg2.connect(url, options="-c timezone=UTC")
        self.t0: datetime | None = None

    def _engine(self) -> KeptConnectionEngine:
        return KeptConnectionEngine(self.url, settings=self.settings, client=self.client,
                                    hooks=AlertHooks(self.settings), clock=lambda: self.now)

    def close(self) -> None:
        self.conn.close()
        self.engine.really_close()
        self.manual.really_close()

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.conn, self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def start(self) -> None:
        report = self.engine.run_once()
        assert report.checked == len(self.tokens)
        sweep(self.conn, self.now, self.settings)
        active = self.query("SELECT count(*) FROM links WHERE state = 'active'")[0][0]
        assert active == sum(len(t.companies) for t in self.tokens)
        self.t0 = self.now

    def tick(self, *, overlap: bool) -> None:
        if overlap:
            plan = self.engine.plan()
            for batch in plan.batches:
                self.engine.check_batch(plan.run_id, batch)
            if plan.token_ids:
                labels = {v: k for k, v in self.ids.items()}
                some = plan.token_ids[len(plan.token_ids) // 2]
                assert some in self.ids.values(), labels
                self.manual.run_once(token_ids=(some,), force=True)
            self.engine.apply_checks(plan.run_id)
        else:
            self.engine.run_once()
        sweep(self.conn, self.now, self.settings)

    def next_tick(self) -> datetime:
        """The next tick at which anything can happen: the next one while a problem is open, else the first tick
        at or after the earliest due token."""
        (open_problems,), = self.query("SELECT count(*) FROM problems WHERE state = 'open'")
        following = self.now + TICK
        if open_problems:
            return following
        (due,), = self.query("SELECT min(next_check_at) FROM tokens WHERE state = ANY(%s)", list(CHECKABLE_STATES))
        if due is None or due <= following:
            return following
        assert self.t0 is not None
        ticks = -(-(due - self.t0) // TICK)  # ceil
        return self.t0 + ticks * TICK

    def run_until(self, end: datetime, *, overlap_from: datetime | None = None,
                  overlap_until: datetime | None = None) -> None:
        while True:
            self.now = self.next_tick()
            if self.now > end:
                break
            overlap = (overlap_from is not None and overlap_until is not None
                       and overlap_from <= self.now <= overlap_until)
            self.tick(overlap=overlap)

    # -- what came out -------------------------------------------------------------------------------------------
    def bad_state_events(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.query(
            """SELECT t.label, e.to_state FROM token_events e JOIN tokens t ON t.id = e.token_id
               WHERE e.to_state = ANY(%s) ORDER BY e.id""", list(BAD_STATES))]

    def suspensions(self) -> list[tuple[int, str | None, datetime]]:
        return [(r[0], r[1], r[2]) for r in self.query(
            """SELECT l.company_id, e.reason, e.at FROM link_events e JOIN links l ON l.id = e.link_id
               WHERE e.to_state = 'suspended' ORDER BY e.id""")]

    def mails(self) -> list[tuple[str, str | None, str]]:
        return [(r[0], r[1], r[2]) for r in self.query(
            """SELECT o.audience, p.kind, o.event FROM outbox o LEFT JOIN problems p ON p.id = o.problem_id
               ORDER BY o.id""")]


@pytest.fixture
def settings(fernet_keys: list[str]) -> Settings:
    return replace(Settings.load(use_airflow=False), nmbrs_max_concurrency=4)


@pytest.fixture
def fleet_factory(registry_url: str, settings: Settings) -> Iterator[Callable[[int, Script], Fleet]]:
    made: list[Fleet] = []

    # Commits need not wait for the disk here (the registry is thrown away after the row); every statement
    # and transaction runs as in production. A database-level setting, so only this test's database has it.
    name = registry_url.rsplit("/", 1)[1].split("?")[0]
    conn = psycopg2.connect(registry_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" SET synchronous_commit TO off')
    finally:
        conn.close()

    def make(size: int, script: Script) -> Fleet:
        fleet = Fleet(registry_url, settings, size, script)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.close()


TOTALS = Totals()


# -- the matrix ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overlap", ["none", "manual_between"])
@pytest.mark.parametrize("size", list(FLEETS))
@pytest.mark.parametrize("duration", [pytest.param(d, marks=pytest.mark.slow) if d == "12h" else d
                                      for d in DURATIONS])
@pytest.mark.parametrize("kind", list(FAULTS))
def test_a_provider_fault_raises_no_false_alarm(fleet_factory: Callable[[int, Script], Fleet], kind: str,
                                                duration: str, size: int, overlap: str) -> None:
    holder: dict[str, Script] = {}
    fleet = fleet_factory(size, lambda t, now: holder["script"](t, now))
    holder["script"] = lambda t, now: None
    fleet.start()
    assert fleet.t0 is not None
    start = fleet.t0 + FAULT_AFTER
    length = DURATIONS[duration]
    holder["script"] = provider_fault(kind, start, length)
    fault_end = start + (length or timedelta(0))
    fleet.run_until(fault_end + TAIL, overlap_from=start if overlap != "none" else None,
                    overlap_until=fault_end + 2 * TICK)

    bad = fleet.bad_state_events()
    suspended = fleet.suspensions()
    mails = fleet.mails()
    customer = [m for m in mails if m[0] == "customer"]
    ops = [m for m in mails if m[0] == "ops"]
    TOTALS.rows += 1
    TOTALS.false_revocations += len(bad)
    TOTALS.false_suspensions += len(suspended)
    TOTALS.customer_mails += len(customer)
    TOTALS.ops_mails += len(ops)
    TOTALS.per_kind.update(f"{kind}/{duration}" for _ in ops)

    assert bad == [], "false revocations"
    assert suspended == [], "false suspensions"
    assert customer == [], "customer mails"
    if length is None:
        assert mails == [], "a single answer mails nobody"
    else:
        assert {m[1] for m in ops} <= {"provider_incident"}, ops
        announced = [m for m in ops if m[2] in ("opened", "escalated")]
        assert len(announced) <= 1, ops
    # Everything is back as it was.
    states = {r[0] for r in fleet.query("SELECT DISTINCT state FROM tokens")}
    assert states == {"active"}, states
    (active,), = fleet.query("SELECT count(*) FROM links WHERE state = 'active'")
    assert active == sum(len(t.companies) for t in fleet.tokens)


# -- a mixed fleet: SOAP tokens and REST connections, judged apart ------------------------------------------------
REST_APP = RestApp("http://api.invalid", "http://id.invalid", "app", Secret("s"), Secret("k"), None,
                   "http://127.0.0.1/cb", ("offline_access", "company.info.read"))


class ScriptedRest:
    """Stands in for `RestClient`: a connection reaches one debtor and company of its own (no SOAP counterpart)
    until the script says otherwise."""

    def __init__(self, clock: Callable[[], datetime], script: Script) -> None:
        self.by_id: dict[int, FleetToken] = {}
        self.clock = clock
        self.script = script
        self.lock = threading.Lock()

    def probe(self, connection: RestCredentials, /) -> RestReach:
        token = self.by_id[connection.connection_id]
        with self.lock:
            answer = self.script(token, self.clock())
        if isinstance(answer, NmbrsError):
            answer.calls = 2
            raise answer
        debtor = str(uuid.UUID(int=2 * token.index + 1))
        company = str(uuid.UUID(int=2 * token.index + 2))
        return RestReach((RestDebtor(debtor, f"R{token.index}", f"Rest debtor {token.index}"),),
                         (RestCompany(company, "1", f"Rest company {token.index}", debtor),), None, 2)


class MixedFleet(Fleet):
    """`size` tokens of which the last `rest` are REST connections (of customers of their own, with no links:
    their companies have no SOAP counterpart); links for the SOAP tokens' companies."""

    def __init__(self, url: str, settings: Settings, size: int, rest: int, script: Script) -> None:
        self.rest_client = ScriptedRest(lambda: self.now, script)
        super().__init__(url, settings, size, script)
        self.rest_tokens = self.tokens[size - rest:]
        self.soap_tokens = self.tokens[:size - rest]
        rest_companies = [c.id for t in self.rest_tokens for c in t.companies]
        with self.conn, self.conn.cursor() as cur:
            cur.execute("DELETE FROM link_events WHERE link_id IN (SELECT id FROM links WHERE company_id = ANY(%s))",
                        (rest_companies,))
            cur.execute("DELETE FROM links WHERE company_id = ANY(%s)", (rest_companies,))
            for t in self.rest_tokens:
                cur.execute("""UPDATE tokens SET kind = 'rest_connection', level = 'debtor', token_ciphertext = NULL
                               WHERE id = %s""", (self.ids[t.label],))
                cur.execute("""INSERT INTO rest_connections (token_id, customer_ref, user_id, user_email)
                               VALUES (%s, %s, gen_random_uuid(), %s)""",
                            (self.ids[t.label], f"REST-{t.index}", t.username))
                self.rest_client.by_id[self.ids[t.label]] = t

    def _engine(self) -> KeptConnectionEngine:
        return KeptConnectionEngine(self.url, settings=self.settings, client=self.client,
                                    hooks=AlertHooks(self.settings), clock=lambda: self.now, rest_app=REST_APP,
                                    rest_client=self.rest_client, grant_store=InMemoryGrantStore())

    def start(self) -> None:
        report = self.engine.run_once()
        assert report.checked == len(self.tokens)
        sweep(self.conn, self.now, self.settings)
        (active,), = self.query("SELECT count(*) FROM links WHERE state = 'active'")
        assert active == sum(len(t.companies) for t in self.soap_tokens)
        self.t0 = self.now

    def states(self, tokens: list[FleetToken]) -> dict[str, str]:
        return {r[0]: r[1] for r in self.query("SELECT label, state FROM tokens WHERE id = ANY(%s)",
                                                [self.ids[t.label] for t in tokens])}


def rest_fault(kind: str, start: datetime, duration: timedelta, *, soap_revoked: int | None = None) -> Script:
    """Every REST connection (debtor numbers 'R...') fails with `kind` from `start` for `duration`; SOAP tokens
    answer as always, but for the token `soap_revoked` (index), really revoked (1001) from `start` on."""
    def script(token: FleetToken, now: datetime) -> NmbrsError | str | None:
        if now < start:
            return None
        if token.index == soap_revoked:
            return FAULTS["1001"]("Environment_Get")
        if token.index >= REST_FROM[0] and now < start + duration:
            return FAULTS[kind]("List_GetAll")
        return None

    return script


REST_FROM = [0]  # the index of the fleet's first REST connection (set per row)


@pytest.mark.parametrize(("size", "rest"), [(8, 2), (8, 6)], ids=["soap_majority", "rest_majority"])
def test_a_rest_wide_fault_in_a_mixed_fleet_revokes_nothing_and_leaves_soap_alone(
        registry_url: str, settings: Settings, size: int, rest: int) -> None:
    """Every REST connection's refresh answered invalid_grant for 3 hours (the identity server, not the customers):
    with SOAP tokens the majority, the REST breaker still trips (REST is judged on its own), so no connection is
    confirmed consent_revoked and nobody is mailed but ops (one provider incident naming rest_connection); with REST
    the majority, SOAP is not frozen: a SOAP token that is really revoked meanwhile is found and its links move."""
    holder: dict[str, Script] = {"script": lambda t, now: None}
    REST_FROM[0] = size - rest
    fleet = MixedFleet(registry_url, settings, size, rest, lambda t, now: holder["script"](t, now))
    try:
        fleet.start()
        assert fleet.t0 is not None
        start = fleet.t0 + FAULT_AFTER
        length = 3 * HOUR
        victim = 0 if rest > size // 2 else None  # an accountant-level SOAP token, really revoked meanwhile
        holder["script"] = rest_fault("consent_revoked", start, length, soap_revoked=victim)
        fleet.run_until(start + length + TAIL)

        mails = fleet.mails()
        bad = fleet.bad_state_events()
        assert not [m for m in mails if m[0] == "customer" and m[1] != "revoked"], mails
        assert {m[1] for m in mails if m[0] == "ops"} <= {"provider_incident", "revoked", "access_lost"}, mails
        assert not [b for b in bad if b[0] in {t.label for t in fleet.rest_tokens}], "no REST revocation"
        assert set(fleet.states(fleet.rest_tokens).values()) == {"active"}
        incidents = fleet.query("SELECT detail->>'kind' FROM problems WHERE kind = 'provider_incident'")
        assert incidents, "one provider incident"
        assert {r[0] for r in incidents} == {"rest_connection"}, incidents
        soap = fleet.states(fleet.soap_tokens)
        if victim is None:
            assert bad == []
            assert set(soap.values()) == {"active"}, soap
            (active,), = fleet.query("SELECT count(*) FROM links WHERE state = 'active'")
            assert active == sum(len(t.companies) for t in fleet.soap_tokens)
            assert not [m for m in mails if m[0] == "customer"], mails
        else:
            label = fleet.soap_tokens[victim].label
            assert bad == [(label, "revoked")], "the SOAP fleet is judged on its own: a real revocation is found"
            assert {v for k, v in soap.items() if k != label} == {"active"}
            lost = [c.id for c in fleet.soap_tokens[victim].companies]
            states = fleet.query("SELECT DISTINCT state FROM links WHERE company_id = ANY(%s)", lost)
            assert states == [("suspended",)], states
    finally:
        fleet.close()


# -- real changes --------------------------------------------------------------------------------------------------
def _real_script(change: str, start: datetime, victim: FleetToken) -> Script:
    def script(token: FleetToken, now: datetime) -> Any:
        if token.index != victim.index or now < start:
            return None
        if change == "revoked":
            return FAULTS["1001"]("Environment_Get")
        if change == "lost_tag":  # two of three debtors lose the tag the login filters on: 6 -> 2 companies
            kept = token.debtors[:1]
            return kept, tuple(c for c in token.companies if c.debtor_id == kept[0].id)
        if change == "company_ended_only":  # a debtor-level token's only company ends: 1 -> 0
            return token.debtors, ()
        if change == "company_ended_one_of_6":  # not sharp: applied at once
            return token.debtors, token.companies[1:]
        raise AssertionError(change)

    return script


REAL = {
    # change: (victim index: 0 = accountant with 6 companies, 1 = debtor level with one), expected lost companies'
    # link reason, expected token state
    "revoked": (0, {"revoked"}, "revoked"),
    "lost_tag": (0, {"tag_or_filter"}, "active"),
    "company_ended_only": (1, {"filter_or_company_ended"}, "active"),
    "company_ended_one_of_6": (0, {"company_ended"}, "active"),
}


@pytest.mark.parametrize("size", [4, 20])
@pytest.mark.parametrize("change", list(REAL))
def test_a_real_change_is_found_within_two_check_intervals(fleet_factory: Callable[[int, Script], Fleet],
                                                            change: str, size: int) -> None:
    holder: dict[str, Script] = {"script": lambda t, now: None}
    fleet = fleet_factory(size, lambda t, now: holder["script"](t, now))
    fleet.start()
    assert fleet.t0 is not None
    start = fleet.t0 + FAULT_AFTER
    index, reasons, state = REAL[change]
    victim = fleet.tokens[index]
    holder["script"] = _real_script(change, start, victim)
    fleet.run_until(start + 2 * HOUR)

    TOTALS.real_changes += 1
    lost = {c.id for c in victim.companies} - {
        c.id for c in (_answer_companies(change, victim))}
    suspended = fleet.suspensions()
    assert {s[0] for s in suspended} == lost, suspended
    assert {s[1] for s in suspended} == reasons
    assert all(s[2] <= start + 2 * HOUR for s in suspended)
    (token_state,), = fleet.query("SELECT state FROM tokens WHERE id = %s", fleet.ids[victim.label])
    assert token_state == state
    bad = fleet.bad_state_events()
    mails = fleet.mails()
    if change == "revoked":
        assert bad == [(victim.label, "revoked")]
        assert {("customer", "revoked", "opened"), ("customer", "revoked", "escalated")} & set(mails), mails
    else:
        assert bad == []
        assert not [m for m in mails if m[0] == "customer"], mails
    # Nobody else moved.
    others = fleet.query("SELECT count(*) FROM tokens WHERE state <> 'active' AND id <> %s", fleet.ids[victim.label])
    assert others == [(0,)]
    TOTALS.real_changes_detected += 1


def _answer_companies(change: str, victim: FleetToken) -> tuple[Company, ...]:
    if change == "revoked":
        return ()
    answer = _real_script(change, datetime.min.replace(tzinfo=UTC), victim)(victim, datetime.max.replace(tzinfo=UTC))
    return answer[1]


def test_zz_matrix_totals(capsys: pytest.CaptureFixture[str]) -> None:
    """The totals over the rows that ran in this session (copy them into notes); runs last in this module."""
    lines = [
        f"fault matrix rows              {TOTALS.rows}",
        f"false revocations              {TOTALS.false_revocations}",
        f"false suspensions              {TOTALS.false_suspensions}",
        f"customer mails                 {TOTALS.customer_mails}",
        f"ops mails (provider_incident)  {TOTALS.ops_mails}",
        f"real changes detected          {TOTALS.real_changes_detected} of {TOTALS.real_changes}",
    ]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert TOTALS.false_revocations == TOTALS.false_suspensions == TOTALS.customer_mails == 0
