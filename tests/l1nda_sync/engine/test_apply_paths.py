"""The bulk and the single apply path are one write path: the same pending checks give the same rows.

Hypothesis builds a registry (tokens in any state with any streaks, stored reach, wanted links, open problems of
any stage, cleared or not, announced or not, muted or not) and pending checks
(any outcome, probes equal to or different from the stored reach, 0 to 3 checks per token, times spread over 40
minutes), writes it into two fresh registries, and applies the checks with the real alert hooks, then reconciles
the links:
- registry A through `apply_pending` as it is: a token's single check goes the bulk way (its reach written with
  the chunk's other tokens' in one statement per table, its alert hook called for the chunk at once, which skips
  the tokens with no open problem and no cause), a token with several checks the single way;
- registry B with the bulk way failing, so that `apply_pending` applies every check the single way (a batch of
  one each), as it does after a failed bulk chunk, and with alert hooks that look up each token on its own, as
  their rules say it (`OneTokenAtATime`), where registry A's look up the open problems of a chunk, and the
  tokens a reconcile moved links from or to, at once.
Every row of tokens, token_events, checks, reach, links, link_events, problems and outbox must be the same, and
so must the summaries. Only what cannot be equal is left out: the serial ids of rows inserted in a different
order (events, problems, mails: a problem is named by its token and kind, also where a mail's footer quotes its
id) and a mail's random Message-ID.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from l1nda_sync.alerts import hooks as alert_hooks
from l1nda_sync.alerts.hooks import AlertHooks
from l1nda_sync.alerts.problems import TOKEN_KINDS, Kind, Stage
from l1nda_sync.engine import applying
from l1nda_sync.engine.applying import ApplySummary, apply_pending, unit_of_work
from l1nda_sync.engine.reconciling import reconcile_all
from l1nda_sync.engine.token_state import Outcome, StatePolicy, TokenState
from l1nda_sync.registry import db
from l1nda_sync.settings import Settings

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1)
MIN = timedelta(minutes=1)
POLICY = StatePolicy(revoke_confirmations=2, revoke_min_spacing=10 * MIN, unreachable_after=30 * MIN)
SETTINGS = Settings(ops_recipients=("ops@l1nda.example",), mail_from="L1NDA <no-reply@l1nda.example>",
                    default_language="en", problem_quiet_period=3600.0, reminder_interval=86400.0,
                    revoke_min_spacing=600.0)
DATA_TABLES = ("tokens", "runs", "checks", "reach_debtors", "reach_companies", "reach_events", "links",
               "link_events", "problems", "outbox", "token_events", "webhook_outbox", "registry_keys")


def _reach(debtors: dict[int, str], companies: list[tuple[int, int]], domain: str = "demo") -> dict[str, Any]:
    return {
        "domain": domain,
        "debtors": [{"id": d, "number": f"D{d}", "name": n, "tags": []} for d, n in sorted(debtors.items())],
        "companies": [{"id": c, "debtor_id": d, "number": 1000 + c, "name": f"Company {c}"} for c, d in companies],
    }


# Stored reaches and probes: the same, grown, shrunk a little, dropped sharply, moved, renamed, empty.
REACHES: list[dict[str, Any] | None] = [
    None,
    _reach({1: "Jansen"}, [(11, 1), (12, 1), (13, 1), (14, 1)]),
    _reach({1: "Jansen"}, [(11, 1), (12, 1), (13, 1)]),
    _reach({1: "Jansen"}, [(11, 1)]),
    _reach({1: "Jansen", 2: "De Vries"}, [(11, 1), (12, 1), (13, 1), (14, 1), (15, 2)], domain="other"),
    _reach({1: "Jansen BV"}, [(11, 1), (12, 1), (13, 2), (14, 1)]),
    _reach({}, []),
]
COMPANIES = (11, 12, 13, 14, 15)
MISSING = "DebtorService.List_GetAll"


@dataclass(frozen=True)
class TokenSpec:
    state: TokenState
    level: str
    cache: int  # index into REACHES
    refusal: Outcome | None
    invalid_count: int
    invalid_since: int | None  # minutes before T0
    transient_count: int
    transient_since: int | None
    drop_since: int | None
    last_valid: int | None
    last_checked: int | None
    replaced: int | None
    missing: bool


@dataclass(frozen=True)
class CheckSpec:
    token: int  # index into the tokens
    outcome: Outcome
    minutes: int  # before T0
    probe: int  # index into REACHES
    unchanged: bool
    missing: bool
    in_run: bool


@dataclass(frozen=True)
class LinkSpec:
    company_id: int
    state: str
    token: int | None
    reason: str = "requested"


@dataclass(frozen=True)
class ProblemSpec:
    token: int
    kind: Kind
    stage: Stage
    cleared: int | None  # minutes before T0 its cause cleared
    notified: bool
    muted: bool


@dataclass(frozen=True)
class WorldSpec:
    tokens: list[TokenSpec]
    checks: list[CheckSpec]
    links: list[LinkSpec]
    share: float
    problems: tuple[ProblemSpec, ...] = ()


minutes_before = st.integers(min_value=0, max_value=40)
maybe_minutes = st.none() | minutes_before

token_specs = st.builds(
    TokenSpec,
    state=st.sampled_from(TokenState),
    level=st.sampled_from(["debtor", "accountant"]),
    cache=st.integers(0, len(REACHES) - 1),
    refusal=st.none() | st.sampled_from([Outcome.INVALID, Outcome.RIGHTS_MISSING, Outcome.NO_SUBSCRIPTION]),
    invalid_count=st.integers(0, 2),
    invalid_since=maybe_minutes,
    transient_count=st.integers(0, 3),
    transient_since=maybe_minutes,
    drop_since=maybe_minutes,
    last_valid=st.none() | st.integers(0, 120),
    last_checked=st.none() | st.integers(0, 60),
    replaced=st.none() | st.integers(0, 90),
    missing=st.booleans(),
)


@st.composite
def worlds(draw: st.DrawFn) -> WorldSpec:
    tokens = draw(st.lists(token_specs, min_size=1, max_size=5))
    checks = []
    for n in range(len(tokens)):
        for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
            checks.append(CheckSpec(
                token=n,
                outcome=draw(st.sampled_from(Outcome)),
                minutes=draw(minutes_before),
                probe=draw(st.integers(0, len(REACHES) - 1)),
                unchanged=draw(st.booleans()),
                missing=draw(st.booleans()),
                in_run=draw(st.booleans()),
            ))
    order = draw(st.permutations(range(len(checks))))  # insertion order: check ids need not follow the tokens
    links = []
    for company_id in draw(st.lists(st.sampled_from(COMPANIES), unique=True, max_size=len(COMPANIES))):
        state = draw(st.sampled_from(["pending", "active", "suspended"]))
        token = draw(st.none() | st.integers(0, len(tokens) - 1))
        if state == "active" and token is None:
            token = 0
        reason = draw(st.sampled_from(["not_reached", "company_ended", "revoked"])) if state == "suspended" \
            else "requested"
        links.append(LinkSpec(company_id, state, token, reason))
    share = draw(st.sampled_from([0.5, 1.0]))  # 1.0: the breaker never trips
    problems = []
    for n in range(len(tokens)):  # open problems: the token kinds, and access_lost (which links decide)
        for kind in draw(st.lists(st.sampled_from([*TOKEN_KINDS, Kind.ACCESS_LOST]), unique=True, max_size=2)):
            problems.append(ProblemSpec(n, kind, draw(st.sampled_from(Stage)), draw(st.none() | st.integers(0, 120)),
                                        draw(st.booleans()), draw(st.booleans())))
    return WorldSpec(tokens, [checks[i] for i in order], links, share, tuple(problems))


def _at(minutes: int | None) -> datetime | None:
    return None if minutes is None else T0 - minutes * MIN


def _insert_token(cur: Any, n: int, spec: TokenSpec) -> None:
    cache = REACHES[spec.cache]
    removed = spec.state is TokenState.REMOVED
    cur.execute(
        """INSERT INTO tokens (label, level, username, token_ciphertext, token_hint, fingerprint, domain,
                               contact_emails, state, state_since, missing_operation, consecutive_invalid,
                               first_invalid_at, consecutive_transient, first_transient_at, last_checked_at,
                               last_valid_at, next_check_at, probe_cache, created_at, updated_at, replaced_at,
                               removed_at, refusal, drop_since)
           VALUES (%s, %s, %s, 'ciphertext', '…a7c3', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                   %s::jsonb, %s, %s, %s, %s, %s, %s)""",
        (f"token {n}", spec.level, f"api{n}@klant.example", f"fingerprint {n}", cache["domain"] if cache else None,
         [f"contact{n}@klant.example"], spec.state.value, T0 - timedelta(days=1),
         MISSING if spec.missing else None, spec.invalid_count, _at(spec.invalid_since), spec.transient_count,
         _at(spec.transient_since), _at(spec.last_checked), _at(spec.last_valid), T0,
         json.dumps(cache) if cache is not None else None, T0 - timedelta(days=2), T0 - timedelta(days=1),
         _at(spec.replaced), T0 - timedelta(days=1) if removed else None,
         spec.refusal.value if spec.refusal else None, _at(spec.drop_since)),
    )
    for debtor in (cache or {}).get("debtors", []):
        cur.execute("""INSERT INTO reach_debtors (token_id, debtor_id, number, name, tags, first_seen, last_seen)
                       VALUES (%s, %s, %s, %s, '[]', %s, %s)""",
                    (n + 1, debtor["id"], debtor["number"], debtor["name"], T0 - timedelta(days=2), T0 - MIN * 90))
    for company in (cache or {}).get("companies", []):
        cur.execute("""INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name, first_seen,
                                                    last_seen)
                       VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                    (n + 1, company["id"], company["debtor_id"], company["number"], company["name"],
                     T0 - timedelta(days=2), T0 - MIN * 90))


def build(conn: Any, world: WorldSpec) -> None:
    """Empty the registry (ids restart) and write the world into it."""
    with conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE")
        cur.execute("INSERT INTO runs (started_at, state) VALUES (%s, 'running')", (T0 - 45 * MIN,))
        for n, spec in enumerate(world.tokens):
            _insert_token(cur, n, spec)
        for link in world.links:
            token_id = None if link.token is None else link.token + 1
            cur.execute(
                """INSERT INTO links (customer_ref, company_id, state, token_id, reason, requested_at, activated_at,
                                      suspended_at, updated_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (f"CUST-{link.company_id}", link.company_id, link.state, token_id, link.reason,
                 T0 - timedelta(days=3), T0 - timedelta(days=2) if link.state == "active" else None,
                 T0 - timedelta(days=1) if link.state == "suspended" else None, T0 - timedelta(days=1)),
            )
        for problem in world.problems:
            cur.execute(
                """INSERT INTO problems (token_id, kind, state, stage, opened_at, last_seen_at, cause_cleared_at,
                                         last_notified_at, muted)
                   VALUES (%s, %s, 'open', %s, %s, %s, %s, %s, %s)""",
                (problem.token + 1, problem.kind.value, problem.stage.value, T0 - 180 * MIN, T0 - 150 * MIN,
                 _at(problem.cleared), T0 - 170 * MIN if problem.notified else None, problem.muted),
            )
        for check in world.checks:
            probe = REACHES[check.probe]
            cur.execute(
                """INSERT INTO checks (token_id, run_id, checked_at, outcome, missing_operation, unchanged, probe)
                   VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)""",
                (check.token + 1, 1 if check.in_run else None, T0 - check.minutes * MIN, check.outcome.value,
                 MISSING if check.missing and check.outcome is Outcome.RIGHTS_MISSING else None, check.unchanged,
                 json.dumps(probe) if probe is not None else None),
            )


class OneTokenAtATime(AlertHooks):
    """The alert hooks with every token looked up on its own: `track` for each applied check, and for each token
    a link moved from or to, on its own look-ups (what the batched hooks must do with fewer)."""

    def tokens_applied(self, cur: Any, applied: Any, *, now: Any) -> None:
        for check, run_id in applied:
            self.token_applied(cur, check, run_id=run_id, now=now())

    def links_changed(self, cur: Any, changes: list[Any], *, run_id: int | None, now: datetime) -> None:
        for token_id in sorted({t for c in changes for t in (c.from_token, c.to_token) if t is not None}):
            alert_hooks.track(cur, token_id, {Kind.ACCESS_LOST: alert_hooks.access_cause(cur, token_id)}, now=now,
                              settings=self.settings)


def run(conn: Any, world: WorldSpec, hooks: AlertHooks | None = None, for_run: int | None = None) -> ApplySummary:
    """Apply every pending check with the alert hooks, then reconcile the links, as `finish` does (`for_run`: the
    apply step of that run)."""
    hooks = hooks or AlertHooks(SETTINGS)
    summary = apply_pending(conn, policy=POLICY, now=lambda: NOW, breaker_share=world.share, hooks=hooks,
                            for_run=for_run)
    with unit_of_work(conn, dry_run=False) as cur:
        reconcile_all(cur, now=lambda: NOW, breaker_open=summary.breaker_open, hooks=hooks)
    return summary


def rows(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the apply and the reconcile write, without serial ids of rows inserted in path order."""
    queries = {
        "tokens": "SELECT * FROM tokens ORDER BY id",
        "checks": "SELECT * FROM checks ORDER BY id",
        "token_events": "SELECT token_id, at, actor, action, from_state, to_state, detail::text FROM token_events",
        "reach_debtors": "SELECT * FROM reach_debtors ORDER BY token_id, debtor_id",
        "reach_companies": "SELECT * FROM reach_companies ORDER BY token_id, company_id",
        "reach_events": "SELECT token_id, run_id, at, change, entity, entity_id, debtor_id, detail::text"
                        " FROM reach_events",
        "links": "SELECT * FROM links ORDER BY id",
        "link_events": "SELECT link_id, run_id, at, actor, from_state, to_state, from_token_id, to_token_id, reason"
                       " FROM link_events",
        "problems": "SELECT token_id, kind, state, stage, opened_at, last_seen_at, cause_cleared_at, resolved_at,"
                    " escalated_at, last_notified_at, muted, unmuted_at, detail::text FROM problems",
        "outbox": "SELECT p.token_id, p.kind, o.event, o.audience, o.language, o.recipients, o.subject,"
                  " o.body_text, o.body_html, o.created_at, o.attempts, o.next_attempt_at, o.state"
                  " FROM outbox o LEFT JOIN problems p ON p.id = o.problem_id",
        "runs": "SELECT * FROM runs ORDER BY id",
    }
    with db.reading(conn) as cur:
        out = {}
        for table, sql in queries.items():
            cur.execute(sql)
            out[table] = sorted(cur.fetchall(), key=repr)
        cur.execute("SELECT id, token_id, kind FROM problems")
        names = {str(i): f"<{kind} of token {token_id}>" for i, token_id, kind in cur.fetchall()}
    out["outbox"] = sorted(
        (tuple(_name_problems(v, names) if isinstance(v, str) else v for v in row) for row in out["outbox"]), key=repr)
    return out


_PROBLEM_ID = re.compile(r"(Problem |Probleem |problems mute )(\d+)")


def _name_problems(text: str, names: dict[str, str]) -> str:
    """A mail's text with each quoted problem id replaced by the problem's token and kind."""
    return _PROBLEM_ID.sub(lambda m: m.group(1) + names.get(m.group(2), m.group(2)), text)


def _bulk_fails(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("the bulk way is closed in this registry")


def both_ways(registries: tuple[Any, Any], world: WorldSpec) -> tuple[int, ApplySummary, ApplySummary]:
    """Run the world through both registries; returns how many checks went the bulk way in the first."""
    bulk_conn, single_conn = registries
    build(bulk_conn, world)
    build(single_conn, world)
    real_bulk = applying.apply_checks_bulk
    bulk_applied = 0

    def counting_bulk(*args: Any, **kwargs: Any) -> Any:
        nonlocal bulk_applied
        applied, skipped = real_bulk(*args, **kwargs)
        bulk_applied += len(applied) + skipped
        return applied, skipped

    with mock.patch.object(applying, "apply_checks_bulk", counting_bulk):
        bulk_summary = run(bulk_conn, world)
    with mock.patch.object(applying, "apply_checks_bulk", _bulk_fails):
        single_summary = run(single_conn, world, OneTokenAtATime(SETTINGS))
    return bulk_applied, bulk_summary, single_summary


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(world=worlds())
def test_the_bulk_and_the_single_path_write_the_same_rows(registries: tuple[Any, Any], world: WorldSpec) -> None:
    bulk_applied, bulk_summary, single_summary = both_ways(registries, world)
    event(f"checks applied the bulk way: {'some' if bulk_applied else 'none'}")
    event(f"breaker: {'tripped' if bulk_summary.breaker_open else 'closed'}")
    assert bulk_summary == single_summary
    assert not bulk_summary.failed
    assert rows(registries[0]) == rows(registries[1])


def test_a_world_with_every_kind_of_check_goes_both_ways_alike(registries: tuple[Any, Any]) -> None:
    """A fixed world where the bulk way takes most checks: the differential test is not vacuous."""
    plain = TokenSpec(TokenState.ACTIVE, "debtor", 1, None, 0, None, 0, None, None, 60, 60, None, False)
    tokens = [
        plain,  # a valid unchanged answer: bulk
        plain,  # a suspected 1001: bulk, state changes to invalid (an event)
        TokenSpec(TokenState.INVALID, "debtor", 1, Outcome.INVALID, 1, 15, 0, None, None, 60, 15, None, False),
        TokenSpec(TokenState.ACTIVE, "debtor", 1, None, 0, None, 2, 35, None, 60, 5, None, False),  # -> unreachable
        TokenSpec(TokenState.DISABLED, "debtor", 1, None, 0, None, 0, None, None, 60, 60, None, False),  # skipped
        plain,  # a new reach: bulk, its reach written with token 11's in one statement per table
        plain,  # two checks: single
        plain, plain, plain, plain,  # valid witnesses, so that the breaker holds
        plain,  # another new reach: bulk
    ]
    checks = [
        CheckSpec(0, Outcome.VALID, 2, 1, True, False, True),
        CheckSpec(1, Outcome.INVALID, 2, 0, False, False, True),
        CheckSpec(2, Outcome.INVALID, 1, 0, False, False, True),
        CheckSpec(3, Outcome.TRANSIENT, 1, 0, False, False, True),
        CheckSpec(4, Outcome.VALID, 1, 1, True, False, True),
        CheckSpec(5, Outcome.VALID, 1, 2, False, False, True),
        CheckSpec(6, Outcome.TRANSIENT, 3, 0, False, False, False),
        CheckSpec(6, Outcome.VALID, 1, 4, False, False, False),
        *(CheckSpec(n, Outcome.VALID, 1, 1, True, False, True) for n in range(7, 11)),
        CheckSpec(11, Outcome.VALID, 1, 2, False, False, True),
    ]
    links = [LinkSpec(11, "active", 2), LinkSpec(12, "active", 3), LinkSpec(15, "pending", None)]
    world = WorldSpec(tokens, checks, links, 0.5)
    bulk_applied, bulk_summary, single_summary = both_ways(registries, world)
    assert bulk_applied == 11  # tokens 0-5, the four witnesses and token 11
    assert not bulk_summary.breaker_open
    assert bulk_summary == single_summary
    assert bulk_summary.skipped == 1
    assert not bulk_summary.failed
    bulk_rows = rows(registries[0])
    assert bulk_rows == rows(registries[1])
    assert {(t, s) for t, _, _, _, _, s, _ in bulk_rows["token_events"]} == {
        (2, "invalid"), (3, "revoked"), (4, "unreachable")}
    assert bulk_rows["reach_events"]
    assert bulk_rows["problems"]
    assert bulk_rows["link_events"]


@contextlib.contextmanager
def tracked_tokens(kind: Kind | None = None) -> Iterator[list[int | None]]:
    """The token ids the alert hooks track while it lasts (only those tracked for `kind`, when given)."""
    tracked: list[int | None] = []
    real_track = alert_hooks.track

    def counting_track(cur: Any, token_id: int | None, causes: Any, **kwargs: Any) -> Any:
        if kind is None or kind in causes:
            tracked.append(token_id)
        return real_track(cur, token_id, causes, **kwargs)

    with mock.patch.object(alert_hooks, "track", counting_track):
        yield tracked


def test_the_chunk_hook_tracks_only_the_tokens_with_an_open_problem_or_a_cause(registries: tuple[Any, Any]) -> None:
    """Unchanged tokens in one bulk chunk: the alert hook looks up their open problems once and tracks only the
    tokens that have one (cleared, resolved, or left as it is) or whose state is a cause; the rows are those of
    the single way, which tracks every token."""
    plain = TokenSpec(TokenState.ACTIVE, "debtor", 1, None, 0, None, 0, None, None, 60, 60, None, False)
    checks = [CheckSpec(n, Outcome.VALID, 1, 1, True, False, True) for n in range(8) if n != 5]
    checks.append(CheckSpec(5, Outcome.INVALID, 2, 0, False, False, True))  # a suspected 1001: a cause
    problems = (
        ProblemSpec(1, Kind.REVOKED, Stage.CONFIRMED, None, True, False),  # valid again: its cause clears
        ProblemSpec(2, Kind.RIGHTS_MISSING, Stage.CONFIRMED, 90, True, False),  # quiet for 90 min: resolves, mails
        ProblemSpec(3, Kind.NO_SUBSCRIPTION, Stage.CONFIRMED, 90, True, True),  # muted: resolves without a mail
        ProblemSpec(4, Kind.ACCESS_LOST, Stage.CONFIRMED, None, True, False),  # links decide it, not the token
    )
    world = WorldSpec([plain] * 8, checks, [], 1.0, problems)
    bulk_conn, single_conn = registries
    build(bulk_conn, world)
    build(single_conn, world)
    with tracked_tokens() as tracked:
        bulk_summary = run(bulk_conn, world)
    with mock.patch.object(applying, "apply_checks_bulk", _bulk_fails):
        single_summary = run(single_conn, world, OneTokenAtATime(SETTINGS))
    assert sorted(t for t in tracked if t is not None) == [2, 3, 4, 6]
    assert bulk_summary == single_summary
    assert len(bulk_summary.applied) == 8
    bulk_rows = rows(bulk_conn)
    assert bulk_rows == rows(single_conn)
    problems_after = {(t, kind): (state, cleared) for t, kind, state, _, _, _, cleared, *_ in bulk_rows["problems"]}
    assert problems_after == {
        (2, "revoked"): ("open", NOW), (3, "rights_missing"): ("resolved", T0 - 90 * MIN),
        (4, "no_subscription"): ("resolved", T0 - 90 * MIN), (5, "access_lost"): ("open", None),
        (6, "revoked"): ("open", None)}
    assert sorted((t, kind, event, audience) for t, kind, event, audience, *_ in bulk_rows["outbox"]) == [
        (3, "rights_missing", "resolved", "customer"), (3, "rights_missing", "resolved", "ops")]


def test_the_link_hook_tracks_only_the_tokens_losing_access_or_with_access_lost_open(
        registries: tuple[Any, Any]) -> None:
    """A reconcile that suspends one token's link, activates another's and brings back a third's: the link hook
    tracks access_lost only for the tokens with a link suspended for reach or an open access_lost, and writes
    what looking up every token on its own writes."""
    def valid(cache: int) -> TokenSpec:
        return TokenSpec(TokenState.ACTIVE, "debtor", cache, None, 0, None, 0, None, None, 60, 60, None, False)

    checks = [CheckSpec(0, Outcome.VALID, 1, 3, False, False, True),  # 11-14 -> 11: loses 14, which nobody else has
              CheckSpec(1, Outcome.VALID, 1, 2, False, False, True),  # nothing -> 11-13: takes the pending 13
              CheckSpec(2, Outcome.VALID, 1, 3, True, False, True)]  # reaches 11 again: its link comes back
    links = [LinkSpec(14, "active", 0), LinkSpec(13, "pending", None), LinkSpec(11, "suspended", 2, "not_reached")]
    problems = (ProblemSpec(2, Kind.ACCESS_LOST, Stage.CONFIRMED, None, True, False),)
    world = WorldSpec([valid(1), valid(0), valid(3)], checks, links, 1.0, problems)
    bulk_conn, single_conn = registries
    build(bulk_conn, world)
    build(single_conn, world)
    with tracked_tokens(Kind.ACCESS_LOST) as tracked:
        bulk_summary = run(bulk_conn, world)
    single_summary = run(single_conn, world, OneTokenAtATime(SETTINGS))
    assert tracked == [1, 3]
    assert bulk_summary == single_summary
    bulk_rows = rows(bulk_conn)
    assert bulk_rows == rows(single_conn)
    assert sorted((link_id, to_state, to_token) for link_id, _, _, _, _, to_state, _, to_token, _
                  in bulk_rows["link_events"]) == [(1, "suspended", 1), (2, "active", 2), (3, "active", 3)]
    problems_after = {(t, kind): (state, cleared) for t, kind, state, _, _, _, cleared, *_ in bulk_rows["problems"]}
    assert problems_after == {(1, "access_lost"): ("open", None), (3, "access_lost"): ("open", NOW)}
    assert [(t, kind, event) for t, kind, event, *_ in bulk_rows["outbox"]] == [(1, "access_lost", "opened")]
