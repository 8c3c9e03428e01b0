"""When an answer leaves: the injected latency runs from the call's arrival, not from when the answer was made.

Every call (SOAP, REST, identity) takes its arrival time first (`arrive`: a yield to the event loop, so that the
calls that arrived together all take theirs before any is worked on), has its answer made from the world as it is
then, and holds it until arrival + latency (`hold_until`). The time this one event loop spends making other answers
therefore never adds to a call's latency, as it would if a call slept first and was answered after: a wave of calls
that woke together would queue behind each other.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nmbrs_sim.injection import Plan
    from nmbrs_sim.simulator import Simulator


async def arrive() -> float:
    """The call's arrival time (`time.perf_counter`), taken before any call that arrived with it is worked on."""
    arrived = time.perf_counter()
    await asyncio.sleep(0)
    return arrived


async def hold_until(due: float) -> None:
    """Wait until `due` (`time.perf_counter`); at once when it has passed."""
    seconds = due - time.perf_counter()
    if seconds > 0:
        await asyncio.sleep(seconds)


def due(sim: Simulator, plan: Plan, arrived: float) -> float:
    """When the answer to a call that arrived at `arrived` leaves: its fault rule's delay plus the global latency
    (with its jitter)."""
    delay = plan.delay_s
    if sim.latency_ms or sim.latency_jitter_ms:
        delay += sim.faults.jitter(sim.latency_ms, sim.latency_jitter_ms)
    return arrived + delay
