"""The circuit breaker: when many tokens fail at the same time, the fault is Nmbrs' (an outage, a broken auth
backend, a WAF answering 403 pages, empty lists for everyone), not the customers'. Then no token moves, no link
is suspended, and one provider incident is raised instead of hundreds of alarms.

It is judged over a sliding time window of checks across runs, never over the pieces of one run: each token
counts once, by its latest check inside the window, so neither run boundaries (a manual run that applies part
of a scheduled run's checks) nor the size of a batch defeat it. It trips when strictly more than `share` of the
tokens checked in the window fail, at any fleet size (so with one token, its failure; with four, three of
them): too few tokens cannot tell an outage from a customer's change, and a late alarm is better than a false
one. Every failure counts, of any class (1001, 1002, 1004, a sharp reach drop, outages, unknown answers); a
check that only repeats what its token's state already says (a revoked token's 1001) is no news and does not
count either way, so confirmed problems cannot hold the breaker open.

It is judged per credential kind (`judge_by_kind`): SOAP tokens and REST connections fail through different
machinery (SOAP's auth backend vs. Nmbrs' identity server, API gateway and quota), so a REST-wide fault (every
refresh answered `invalid_grant`, a 40102 storm, 42909 quota) trips the REST breaker however few connections there
are beside the SOAP tokens, and a REST-only fault never freezes SOAP tokens (nor the other way round). A tripped
kind freezes only its own credentials' state moves and the suspension of links they serve.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from l1nda_sync.engine.token_state import CredentialKind, Outcome

# Which credentials the breaker freezes: True (all, as before kinds were judged apart), False (none), or the set
# of kinds whose breaker tripped.
Frozen = bool | Set[CredentialKind]


def is_frozen(breaker_open: Frozen, kind: CredentialKind | None) -> bool:
    """Whether a credential of `kind` is frozen (kind None, not known: frozen while any kind is)."""
    if isinstance(breaker_open, bool):
        return breaker_open
    return bool(breaker_open) if kind is None else kind in breaker_open


# Failure classes: what "failing the same way" means. Transient-looking answers are one class (an outage
# mixes 5xx pages, resets and time-outs); unknown answers are their own, so that they are visible as such.
_CLASSES = {
    Outcome.INVALID: "invalid",
    Outcome.CONSENT_REVOKED: "consent_revoked",  # many at once: the identity server, not the customers
    Outcome.RIGHTS_MISSING: "rights_missing",
    Outcome.NO_SUBSCRIPTION: "no_subscription",
    Outcome.REACH_DROP: "reach_drop",
    Outcome.TRANSIENT: "unavailable",
    Outcome.DATA_NOT_ALLOWED: "unavailable",
    Outcome.UNKNOWN: "unknown",
}


def failure_class(outcome: Outcome) -> str | None:
    """The class a failing outcome counts in; None for a valid answer."""
    return _CLASSES.get(outcome)


# A check that repeats what the token's state already says: (state, outcome class).
_NO_NEWS = frozenset({
    ("revoked", "invalid"), ("rejected", "invalid"), ("revoked", "consent_revoked"), ("rejected", "consent_revoked"),
    ("rights_missing", "rights_missing"),
    ("no_subscription", "no_subscription"), ("unreachable", "unavailable"), ("unreachable", "unknown"),
})


def is_news(state: str, outcome: Outcome) -> bool:
    """Whether a check tells anything beyond the state its token is already in."""
    return (state, failure_class(outcome)) not in _NO_NEWS


@dataclass(frozen=True, slots=True)
class Evidence:
    """One check as the breaker sees it."""

    token_id: int
    at: datetime
    outcome: Outcome
    news: bool = True
    kind: CredentialKind = CredentialKind.SOAP_TOKEN


@dataclass(frozen=True, slots=True)
class BreakerVerdict:
    """The breaker's judgement of one window: how many tokens were checked and failed, and whether it tripped."""

    checked: int  # distinct tokens with a check in the window
    failing: int  # of those, failing the worst way
    tripped: bool
    failure: str | None = None  # the class that tripped (or the most common failing one)
    unknown: int = 0  # tokens whose latest answer in the window L1NDA could not read
    last_failure_at: datetime | None = None  # the newest failing check in the window (fresh evidence?)
    last_unknown_at: datetime | None = None
    kind: CredentialKind | None = None  # the credential kind judged (None: all of them together)

    @property
    def share(self) -> float:
        return self.failing / self.checked if self.checked else 0.0


CLEAR = BreakerVerdict(0, 0, False)


def latest_per_token(evidence: Iterable[Evidence]) -> dict[int, Evidence]:
    latest: dict[int, Evidence] = {}
    for e in evidence:
        seen = latest.get(e.token_id)
        if seen is None or e.at >= seen.at:
            latest[e.token_id] = e
    return latest


def judge_window(
    evidence: Iterable[Evidence], *, now: datetime, window: timedelta, share: float = 0.5,
) -> BreakerVerdict:
    """The verdict over the checks made in (now - window, now]."""
    start = now - window
    latest = [e for e in latest_per_token(e for e in evidence if start < e.at <= now).values() if e.news]
    if not latest:
        return CLEAR
    unknowns = [e.at for e in latest if e.outcome is Outcome.UNKNOWN]
    failures = [e for e in latest if failure_class(e.outcome) is not None]
    classes = Counter(failure_class(e.outcome) for e in failures)
    checked, failing = len(latest), len(failures)
    if not failing:
        return BreakerVerdict(checked, 0, False)
    top, top_count = classes.most_common(1)[0]
    return BreakerVerdict(
        checked, failing, failing > share * checked, top if 2 * top_count > failing else "mixed",
        len(unknowns), max(e.at for e in failures), max(unknowns, default=None),
    )


@dataclass(frozen=True, slots=True)
class Breakers:
    """The breaker judged per credential kind, with the verdict over all kinds (for unreadable answers)."""

    overall: BreakerVerdict = CLEAR
    by_kind: Mapping[CredentialKind, BreakerVerdict] = field(default_factory=dict)

    @property
    def frozen(self) -> frozenset[CredentialKind]:
        """The kinds whose breaker tripped: their credentials' states and links must not move."""
        return frozenset(k for k, v in self.by_kind.items() if v.tripped)

    @property
    def verdict(self) -> BreakerVerdict:
        """One verdict to report: the tripped kind's (both tripped: the overall one, marked tripped, no kind);
        else the overall one, never tripped (a mix of kinds trips nothing by itself)."""
        tripped = [self.by_kind[k] for k in CredentialKind if k in self.frozen]
        if len(tripped) == 1:
            return tripped[0]
        return replace(self.overall, tripped=bool(tripped), kind=None)


def judge_by_kind(
    evidence: Iterable[Evidence], *, now: datetime, window: timedelta, share: float = 0.5,
) -> Breakers:
    """`judge_window` for each credential kind apart, and over all of them. A kind with a single credential in the
    window beside the other kind's evidence cannot tell its own change from a fault of its kind: it takes the
    overall verdict (as before kinds were judged apart), unless the other kind's own fault (two or more alike)
    explains that verdict. So one customer's withdrawal can still be confirmed while a kind has one credential, a
    REST-wide fault never freezes a lone SOAP token, and two or more failing alike trip their kind whatever the
    other kind says."""
    items = list(evidence)
    overall = judge_window(items, now=now, window=window, share=share)
    own = {k: replace(judge_window([e for e in items if e.kind is k], now=now, window=window, share=share), kind=k)
           for k in CredentialKind if any(e.kind is k for e in items)}
    by_kind: dict[CredentialKind, BreakerVerdict] = {}
    for k, verdict in own.items():
        if verdict.checked == 1 and overall.checked > 1:
            explained = any(v.tripped and v.checked > 1 for other, v in own.items() if other is not k)
            verdict = replace(verdict, tripped=overall.tripped and not explained)
        by_kind[k] = verdict
    return Breakers(overall, by_kind)


def judge(outcomes: Iterable[Outcome], *, share: float = 0.5) -> BreakerVerdict:
    """The verdict over one set of simultaneous checks (one per token): `judge_window` without time."""
    at = datetime(2000, 1, 1)
    evidence = [Evidence(n, at, o) for n, o in enumerate(outcomes)]
    return judge_window(evidence, now=at, window=timedelta(days=1), share=share)
