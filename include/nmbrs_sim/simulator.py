"""One running simulator's state: the world, the REST clients, consents and simulated clock, the fault rules,
the global latency and the call log."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

from nmbrs_sim.calllog import CallLog
from nmbrs_sim.clock import SimClock
from nmbrs_sim.consents import ConsentBook
from nmbrs_sim.injection import FaultBook
from nmbrs_sim.operations import ResponseCache
from nmbrs_sim.rest_clients import RestConfig
from nmbrs_sim.scenario import Scenario, load_scenario, read_scenario_file, world_to_scenario
from nmbrs_sim.world import World


class Simulator:
    """Shared by the SOAP, REST and identity handlers and the admin API (and a test thread); swaps whole worlds
    atomically. A reset also forgets consents and grants and puts the clock back to real time."""

    def __init__(self, scenario: str | Path | dict[str, Any]) -> None:
        if isinstance(scenario, dict):
            self._initial: dict[str, Any] = copy.deepcopy(scenario)
            self.source = "<dict>"
        else:
            self._initial = read_scenario_file(scenario)
            self.source = str(scenario)
        self._lock = threading.Lock()
        self.calls = CallLog()
        self.clock = SimClock()
        loaded = load_scenario(copy.deepcopy(self._initial), source=self.source)
        self.max_body_bytes = loaded.max_body_bytes
        self._install(loaded)

    def _install(self, scenario: Scenario) -> None:
        with self._lock:
            self.world: World = scenario.world
            self.faults = FaultBook(seed=scenario.seed)
            for rule in scenario.faults:
                self.faults.add(rule)
            self.latency_ms = scenario.latency_ms
            self.latency_jitter_ms = scenario.latency_jitter_ms
            self.cache = ResponseCache()
            self.rest_cache = ResponseCache()  # REST answers (JSON text) per login and URL, per world version
            self.rest: RestConfig = scenario.rest
            self.consents = ConsentBook(settings=scenario.rest.settings)
            self.clock.reset()

    def reset_world(self) -> None:
        """Back to the scenario the simulator started with: world, faults and latency (the call log stays)."""
        self._install(load_scenario(copy.deepcopy(self._initial), source=self.source))

    def load_world(self, scenario: dict[str, Any]) -> None:
        """Replace the world with another scenario (it also becomes what `reset_world` returns to)."""
        loaded = load_scenario(copy.deepcopy(scenario), source="the loaded world")
        self._initial = copy.deepcopy(scenario)
        self._install(loaded)

    def set_latency(self, ms: float, jitter_ms: float = 0.0) -> None:
        self.latency_ms, self.latency_jitter_ms = float(ms), float(jitter_ms)

    def snapshot(self) -> dict[str, Any]:
        return world_to_scenario(self.world, faults=self.faults.rules(), latency_ms=self.latency_ms,
                                 latency_jitter_ms=self.latency_jitter_ms, rest=self.rest)
