"""Which tokens a run checks, claimed so that two runs never probe the same token at once.

A claim names the run and lasts a lease (`claimed_by`, `claimed_until`); the apply step ends it. A run never
probes a token another run's live claim holds, not even when an operator names the token: that token is
skipped and reported (it is being checked right now; its result shows in the other run). If a run dies, its
claims expire with the lease and the tokens are due again: nothing to clean up; `release_claims` ends them at
once when a run fails before it checked anything.

When a run rechecks tokens whose last check failed (to confirm a refusal or a reach drop), it also checks a few
healthy tokens that are not yet due, the *witnesses*: the circuit breaker then judges the failures beside fresh
answers for other tokens, so a customer's real change is told apart from an outage even in a small fleet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from l1nda_sync.engine.token_state import CHECKABLE_STATES

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

CLAIM_LEASE = timedelta(minutes=60)  # longer than the DAG run's time-out (50 min): a slow run keeps its claims
# A token due a moment after the run's tick (its next check was set from a check made seconds after a tick) is
# checked now, not one whole interval later: a confirmation takes one interval, as the README says.
DUE_GRACE = timedelta(minutes=2)


class PlanError(ValueError):
    """A run was asked for something impossible; the message names the parameter and the fix."""


@dataclass(frozen=True, slots=True)
class Plan:
    """The tokens a run checks, in batches, and those it skipped or took on as witnesses."""

    run_id: int | None
    token_ids: tuple[int, ...]
    batches: tuple[tuple[int, ...], ...]
    skipped: tuple[tuple[int, int | None], ...] = ()  # (token id, run holding its claim): asked for, not checked
    witnesses: tuple[int, ...] = ()  # healthy tokens checked early as the breaker's evidence
    rest_left_out: tuple[int, ...] = ()  # REST connections due but not checked: no REST app is configured

    def skipped_message(self) -> str | None:
        """Why asked-for tokens were not checked; None when none was skipped."""
        if not self.skipped:
            return None
        parts = [f"token {t} (run {r})" if r is not None else f"token {t}" for t, r in self.skipped]
        return (f"skipped {', '.join(parts)}: another run is checking it right now and reports it; "
                "ask again once that run finished")


@dataclass(frozen=True, slots=True)
class Workload:
    """What a token's next probe may cost, as far as the registry knows before asking Nmbrs."""

    token_id: int
    unprobed_accountant: bool  # an accountant token never checked: its debtors are unknown, and may be hundreds
    debtors: int  # debtors it reached at its last probe (a REST connection: at least those it was consented)


def heaviest_first(workloads: Iterable[Workload]) -> list[int]:
    """The token ids in the order a run should start them: unprobed accountants, then by debtors reached, most
    first (ties by id). An accountant's per-debtor calls run only a few at a time, so one started near the end
    of a run keeps it going with few calls in flight; started first, the cheap tokens fill the slots around it
    (longest processing time first)."""
    ordered = sorted(workloads, key=lambda w: (not w.unprobed_accountant, -w.debtors, w.token_id))
    return [w.token_id for w in ordered]


def workloads(cur: Cursor, token_ids: Sequence[int]) -> list[Workload]:
    """Each token's `Workload`, from its level and the debtors it reaches now (one index look-up each); an id
    without a row weighs nothing, so that every id given is planned exactly once."""
    ids = list(dict.fromkeys(token_ids))
    if not ids:
        return []
    cur.execute(
        """SELECT t.id, t.level = 'accountant' AND t.probe_cache IS NULL AND t.last_checked_at IS NULL,
                  GREATEST((SELECT count(*) FROM reach_debtors d WHERE d.token_id = t.id AND d.lost_at IS NULL),
                           COALESCE(cardinality(r.debtor_ids), 0))
           FROM tokens t LEFT JOIN rest_connections r ON r.token_id = t.id
           WHERE t.id = ANY(%s)""",
        (ids,),
    )
    found = {int(i): Workload(int(i), bool(unprobed), int(debtors)) for i, unprobed, debtors in cur.fetchall()}
    return [found.get(token_id, Workload(token_id, False, 0)) for token_id in ids]


def dealt(ordered: Sequence[int], size: int) -> tuple[tuple[int, ...], ...]:
    """`ordered` dealt round the fewest batches of at most `size`, like cards: each batch gets its share of the
    heavy tokens and starts with them, so batches take about as long as each other and none ends on a heavy one."""
    count = -(-len(ordered) // size)
    return tuple(tuple(ordered[k::count]) for k in range(count))


def plan_batches(cur: Cursor, token_ids: Sequence[int], size: int) -> tuple[tuple[int, ...], ...]:
    """`token_ids` in batches of at most `size`, heaviest first (`heaviest_first`), dealt round (`dealt`)."""
    return dealt(heaviest_first(workloads(cur, token_ids)), size)


def validate_token_ids(cur: Cursor, token_ids: Sequence[object], *, soap_ended: datetime | None = None) -> None:
    """Every requested id must be a registered, checkable token (they come from run parameters: anything); once
    SOAP ended (`soap_ended`: when), no SOAP token."""
    if not token_ids:
        return
    bad = [t for t in token_ids if not isinstance(t, int) or isinstance(t, bool) or t <= 0]
    if bad:
        raise PlanError(f"token_ids: {bad!r} are not token ids (positive whole numbers); see `l1nda-sync tokens list`")
    ids = {t for t in token_ids if isinstance(t, int)}
    cur.execute("SELECT id, state, kind FROM tokens WHERE id = ANY(%s)", (list(token_ids),))
    rows = cur.fetchall()
    found: dict[int, str] = {i: state for i, state, _ in rows}
    unknown = sorted(ids - found.keys())
    if unknown:
        raise PlanError(f"token_ids: no token with id {', '.join(map(str, unknown))}; see `l1nda-sync tokens list`")
    soap = sorted(i for i, state, kind in rows if kind == "soap_token" and (soap_ended or state == "retired"))
    if soap:
        when = f" on {soap_ended:%Y-%m-%d %H:%M %Z}" if soap_ended else ""
        raise PlanError(
            f"token_ids: token {', '.join(map(str, soap))} is a SOAP token and Nmbrs ended its SOAP API{when} "
            "(setting soap_end): no SOAP call is made any more; its links moved to REST connections or were "
            "suspended (`l1nda-sync migration status`)")
    blocked = sorted(t for t, state in found.items() if state not in CHECKABLE_STATES)
    if blocked:
        raise PlanError(
            f"token_ids: token {', '.join(map(str, blocked))} is disabled or removed; "
            "enable it first with `l1nda-sync tokens enable ID`"
        )


def _due_condition(token_ids: Sequence[int], force: bool, *, soap_only: bool = False,
                   rest_only: bool = False) -> str:
    """The WHERE clause of "check now" (parameters: states, ids, now), shared by the claim and the dry run;
    `soap_only` leaves REST connections out (no REST app is configured to check them), `rest_only` SOAP tokens
    (Nmbrs ended SOAP: setting soap_end)."""
    conditions = ["state = ANY(%(states)s)", "(claimed_until IS NULL OR claimed_until <= %(now)s)"]
    if soap_only:
        conditions.append("kind <> 'rest_connection'")
    if rest_only:
        conditions.append("kind <> 'soap_token'")
    if token_ids:
        conditions.append("id = ANY(%(ids)s)")
    if not force:
        conditions.append("next_check_at <= %(due)s")
    return " AND ".join(conditions)


def due_tokens(cur: Cursor, now: datetime, *, token_ids: Sequence[int] = (), force: bool = False,
               soap_only: bool = False, rest_only: bool = False) -> list[int]:
    """The ids `claim_tokens` would claim, without claiming them (a dry run writes nothing)."""
    cur.execute(
        f"SELECT id FROM tokens WHERE {_due_condition(token_ids, force, soap_only=soap_only, rest_only=rest_only)}"
        " ORDER BY id",
        {"states": list(CHECKABLE_STATES), "ids": list(token_ids), "now": now, "due": now + DUE_GRACE},
    )
    return [row[0] for row in cur.fetchall()]


def rest_left_out(cur: Cursor, now: datetime, *, token_ids: Sequence[int] = (), force: bool = False) -> list[int]:
    """The REST connections that would be due now: left out of a run while no REST app is configured."""
    cur.execute(
        f"SELECT id FROM tokens WHERE {_due_condition(token_ids, force)} AND kind = 'rest_connection' ORDER BY id",
        {"states": list(CHECKABLE_STATES), "ids": list(token_ids), "now": now, "due": now + DUE_GRACE},
    )
    return [row[0] for row in cur.fetchall()]


def claimed_elsewhere(cur: Cursor, now: datetime, token_ids: Sequence[int]) -> list[tuple[int, int | None]]:
    """Which of `token_ids` a live claim of another run holds, with that run."""
    if not token_ids:
        return []
    cur.execute(
        "SELECT id, claimed_by FROM tokens WHERE id = ANY(%s) AND claimed_until > %s ORDER BY id",
        (list(token_ids), now),
    )
    return [(t, r) for t, r in cur.fetchall()]


def claim_tokens(
    cur: Cursor,
    now: datetime,
    *,
    token_ids: Sequence[int] = (),
    force: bool = False,
    limit: int | None = None,
    lease: timedelta = CLAIM_LEASE,
    run_id: int | None = None,
    witnesses: int = 0,
    soap_only: bool = False,
    rest_only: bool = False,
) -> list[int]:
    """Claim the tokens to check now: the due ones (or exactly `token_ids`), skipping any another run holds.

    Due means next_check_at <= now; `force` ignores that, never a live claim. Rows locked by a concurrent
    planner are skipped (SKIP LOCKED). With `witnesses`, a run that rechecks a token whose last check failed
    also claims up to that many healthy active tokens of the same credential kind (the breaker judges each kind
    apart), least recently checked first. `soap_only` claims no REST
    connection (no REST app is configured), `rest_only` no SOAP token (SOAP ended).
    """
    params = {"states": list(CHECKABLE_STATES), "ids": list(token_ids), "now": now, "due": now + DUE_GRACE,
              "until": now + lease, "limit": limit, "run": run_id}
    cur.execute(
        f"""
        WITH due AS (
            SELECT id FROM tokens
            WHERE {_due_condition(token_ids, force, soap_only=soap_only, rest_only=rest_only)}
            ORDER BY next_check_at, id
            {"LIMIT %(limit)s" if limit else ""}
            FOR UPDATE SKIP LOCKED
        )
        UPDATE tokens t SET claimed_by = %(run)s, claimed_until = %(until)s
        FROM due WHERE t.id = due.id
        RETURNING t.id, t.state = 'active' AND t.last_outcome = 'valid', t.last_outcome <> 'valid', t.kind
        """,
        params,
    )
    rows = cur.fetchall()
    claimed = sorted(row[0] for row in rows)
    # The breaker judges each credential kind apart: a kind with a failing token gets witnesses of its own kind.
    for kind in sorted({row[3] for row in rows if row[2]}):
        want = witnesses - sum(1 for row in rows if row[1] and row[3] == kind)
        if want > 0:
            cur.execute(
                """
                WITH w AS (
                    SELECT id FROM tokens
                    WHERE state = 'active' AND last_outcome = 'valid' AND NOT (id = ANY(%(claimed)s))
                      AND kind = %(kind)s
                      AND (claimed_until IS NULL OR claimed_until <= %(now)s)
                    ORDER BY last_checked_at NULLS FIRST, id
                    LIMIT %(want)s
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE tokens t SET claimed_by = %(run)s, claimed_until = %(until)s
                FROM w WHERE t.id = w.id RETURNING t.id
                """,
                {**params, "claimed": claimed, "want": want, "kind": kind},
            )
            claimed = sorted(claimed + [row[0] for row in cur.fetchall()])
    return claimed


def release_claims(cur: Cursor, run_id: int) -> int:
    """End the claims a run holds (it failed before checking): its tokens are due again at once."""
    cur.execute(
        "UPDATE tokens SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = %s",
        (run_id,),
    )
    return int(cur.rowcount)
