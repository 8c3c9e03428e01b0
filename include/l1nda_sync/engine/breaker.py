"""The circuit breaker: when a large share of one run's checks fail with 1001 or transient faults, the fault
is Nmbrs' (an outage, a broken auth backend), not the customers'. Then no token moves toward revoked or
unreachable, no link is suspended, and one provider incident is raised instead of hundreds of alarms.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from l1nda_sync.engine.token_state import BREAKER_OUTCOMES, Outcome


@dataclass(frozen=True, slots=True)
class BreakerVerdict:
    checked: int
    failing: int
    tripped: bool

    @property
    def share(self) -> float:
        return self.failing / self.checked if self.checked else 0.0


def judge(outcomes: Iterable[Outcome], *, share: float = 0.5, min_tokens: int = 5) -> BreakerVerdict:
    """Trips when strictly more than `share` of at least `min_tokens` checks failed with 1001 or transient."""
    seen = list(outcomes)
    failing = sum(1 for o in seen if o in BREAKER_OUTCOMES)
    tripped = len(seen) >= min_tokens and failing > share * len(seen)
    return BreakerVerdict(len(seen), failing, tripped)
