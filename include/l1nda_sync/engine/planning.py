"""Which tokens a run checks, claimed so that two runs never probe the same token at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# A claimed token's next_check_at is pushed this far ahead; the apply step sets the real next time. If the run
# dies, the claim simply expires and the token is due again: nothing to clean up.
CLAIM_LEASE = timedelta(minutes=30)
CHECKABLE_STATES = ("new", "active", "invalid", "revoked", "rights_missing", "no_subscription", "unreachable")


class PlanError(ValueError):
    """A run was asked for something impossible; the message names the parameter and the fix."""


@dataclass(frozen=True, slots=True)
class Plan:
    run_id: int | None
    token_ids: tuple[int, ...]
    batches: tuple[tuple[int, ...], ...]


def batched(ids: Sequence[int], size: int) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(ids[i : i + size]) for i in range(0, len(ids), size))


def validate_token_ids(cur: Any, token_ids: Sequence[int]) -> None:
    """Every requested id must be a registered, checkable token."""
    if not token_ids:
        return
    bad = [t for t in token_ids if not isinstance(t, int) or isinstance(t, bool) or t <= 0]
    if bad:
        raise PlanError(f"token_ids: {bad!r} are not token ids (positive whole numbers); see `l1nda-sync tokens list`")
    cur.execute("SELECT id, state FROM tokens WHERE id = ANY(%s)", (list(token_ids),))
    found = dict(cur.fetchall())
    unknown = sorted(set(token_ids) - found.keys())
    if unknown:
        raise PlanError(f"token_ids: no token with id {', '.join(map(str, unknown))}; see `l1nda-sync tokens list`")
    blocked = sorted(t for t, state in found.items() if state not in CHECKABLE_STATES)
    if blocked:
        raise PlanError(
            f"token_ids: token {', '.join(map(str, blocked))} is disabled or removed; "
            "enable it first with `l1nda-sync tokens enable ID`"
        )


def _due_condition(token_ids: Sequence[int], force: bool) -> str:
    """The WHERE clause of "check now" (parameters: states, ids, now), shared by the claim and the dry run."""
    conditions = ["state = ANY(%(states)s)"]
    if token_ids:
        conditions.append("id = ANY(%(ids)s)")
    if not force:
        conditions.append("next_check_at <= %(now)s")
    return " AND ".join(conditions)


def due_tokens(cur: Any, now: datetime, *, token_ids: Sequence[int] = (), force: bool = False) -> list[int]:
    """The ids `claim_tokens` would claim, without claiming them (a dry run writes nothing)."""
    cur.execute(
        f"SELECT id FROM tokens WHERE {_due_condition(token_ids, force)} ORDER BY id",
        {"states": list(CHECKABLE_STATES), "ids": list(token_ids), "now": now},
    )
    return [row[0] for row in cur.fetchall()]


def claim_tokens(
    cur: Any,
    now: datetime,
    *,
    token_ids: Sequence[int] = (),
    force: bool = False,
    limit: int | None = None,
    lease: timedelta = CLAIM_LEASE,
) -> list[int]:
    """Claim the tokens to check now: the due ones (or exactly `token_ids`), skipping any another run holds.

    Due means next_check_at <= now; `force` ignores that. Rows locked by a concurrent run are skipped
    (SKIP LOCKED), and claimed rows get next_check_at = now + lease, so a second run does not pick them up.
    """
    cur.execute(
        f"""
        WITH due AS (
            SELECT id FROM tokens
            WHERE {_due_condition(token_ids, force)}
            ORDER BY next_check_at, id
            {"LIMIT %(limit)s" if limit else ""}
            FOR UPDATE SKIP LOCKED
        )
        UPDATE tokens t SET next_check_at = %(until)s
        FROM due WHERE t.id = due.id
        RETURNING t.id
        """,
        {"states": list(CHECKABLE_STATES), "ids": list(token_ids), "now": now, "until": now + lease, "limit": limit},
    )
    return sorted(row[0] for row in cur.fetchall())
