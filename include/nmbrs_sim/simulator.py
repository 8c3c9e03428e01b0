"""One running simulator's state: the world, the REST clients, consents and simulated clock, the fault rules,
the global latency and the call log."""

from __future__ import annotations

import pickle
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmbrs_sim.calllog import CallLog
from nmbrs_sim.clock import SimClock
from nmbrs_sim.consents import ConsentBook
from nmbrs_sim.injection import FaultBook
from nmbrs_sim.operations import ResponseCache
from nmbrs_sim.rest_clients import RestConfig
from nmbrs_sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario_text, world_to_scenario
from nmbrs_sim.world import World


@dataclass(frozen=True)
class InitialScenario:
    """The scenario `reset_world` returns to, kept compact instead of as a parsed tree: a file's text
    compressed (parsed again on each load, a large JSON world one environment at a time), or a dict pickled
    (each load gets its own copy, as a deep copy would give)."""

    blob: bytes
    suffix: str | None  # the file's suffix (.json, .yaml); None: a pickled dict

    @classmethod
    def of_file(cls, path: str | Path) -> InitialScenario:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ScenarioError(str(path), "", f"cannot read the file ({exc.strerror or exc})") from None
        return cls(zlib.compress(raw, 1), path.suffix)

    @classmethod
    def of_dict(cls, scenario: dict[str, Any]) -> InitialScenario:
        return cls(pickle.dumps(scenario, protocol=pickle.HIGHEST_PROTOCOL), None)

    def load(self, source: str) -> Scenario:
        if self.suffix is None:
            return load_scenario(pickle.loads(self.blob), source=source)  # noqa: S301 (our own bytes)
        # No local holds the text: it is dropped once parsed, a JSON world's environments then decompressed anew.
        return load_scenario(parse_scenario_text(self._text(source), self.suffix, source, lazy=True,
                                                 compressed=self.blob), source=source)

    def _text(self, source: str) -> str:
        try:
            return zlib.decompress(self.blob).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScenarioError(source, "", f"cannot read the file ({exc})") from None


class Simulator:
    """Shared by the SOAP, REST and identity handlers and the admin API (and a test thread); swaps whole worlds
    atomically. A reset also forgets consents and grants and puts the clock back to real time."""

    def __init__(self, scenario: str | Path | dict[str, Any]) -> None:
        if isinstance(scenario, dict):
            self._initial = InitialScenario.of_dict(scenario)
            self.source = "<dict>"
        else:
            self._initial = InitialScenario.of_file(scenario)
            self.source = str(scenario)
        self._lock = threading.Lock()
        self.calls = CallLog()
        self.clock = SimClock()
        loaded = self._initial.load(self.source)
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
        self._install(self._initial.load(self.source))

    def load_world(self, scenario: dict[str, Any]) -> None:
        """Replace the world with another scenario (it also becomes what `reset_world` returns to)."""
        initial = InitialScenario.of_dict(scenario)
        loaded = initial.load("the loaded world")
        self._initial = initial
        self._install(loaded)

    def set_latency(self, ms: float, jitter_ms: float = 0.0) -> None:
        self.latency_ms, self.latency_jitter_ms = float(ms), float(jitter_ms)

    def snapshot(self) -> dict[str, Any]:
        return world_to_scenario(self.world, faults=self.faults.rules(), latency_ms=self.latency_ms,
                                 latency_jitter_ms=self.latency_jitter_ms, rest=self.rest)
