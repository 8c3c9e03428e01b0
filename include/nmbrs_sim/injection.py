"""Fault injection: rules that pick SOAP, REST and identity calls (by login, service, operation, path; by
probability or count) and delay them, make them fail the way networks, proxies and Nmbrs do, or answer in
ways nobody foresaw (an element the WSDL does not declare, a null list entry, a response without its result,
a token echoed back)."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from nmbrs_sim.catalog import SERVICES
from nmbrs_sim.errors import FAULT_TEXTS
from nmbrs_sim.rest_catalog import HTTP_SERVICES

DELAYS = ("latency", "fair_use")
FAILURES = ("http_500", "http_502", "http_503", "reset", "hang", "malformed", "truncated", "fault_1006", "fault_9999",
            "extra_element", "code_no_wrapper", "null_entry", "http_429", "missing_result", "empty_list",
            "http_403_html", "unknown_code", "echo_token", "too_many_calls", "quota_exceeded")
FAULT_KINDS = DELAYS + FAILURES
PARAMS: dict[str, dict[str, float]] = {  # kind -> allowed parameters and their defaults
    "latency": {"ms": 0.0, "jitter_ms": 0.0},
    "fair_use": {"calls_per_second": 150.0, "delay_ms": 500.0},
    "code_no_wrapper": {"code": 1001.0},
    "unknown_code": {"code": 1234.0},
    "http_429": {"retry_after": 1.0},
    "echo_token": {"status": 500.0, "code": 1001.0},
    "too_many_calls": {"retry_after": 0.0},  # Retry-After only when the rule gives retry_after
}
FAIR_USE_DELAY_S = 0.5  # "past that a delay of half a second occurs" (Nmbrs' fair-use statement)

ALL_OPERATIONS = frozenset((svc, op) for svc, ops in SERVICES.items() for op in ops)
HTTP_OPERATIONS = frozenset((svc, op) for svc, ops in HTTP_SERVICES.items() for op in ops)
KNOWN_SERVICES: dict[str, tuple[str, ...]] = {**{svc: tuple(ops) for svc, ops in SERVICES.items()}, **HTTP_SERVICES}
# Kinds that only make sense for one protocol: SOAP answers changed or faults written, or REST's JSON 429s.
SOAP_ONLY = frozenset({"malformed", "truncated", "fault_1006", "fault_9999", "extra_element", "code_no_wrapper",
                       "null_entry", "missing_result", "empty_list", "unknown_code", "echo_token"})
REST_ONLY = frozenset({"too_many_calls", "quota_exceeded"})
LIST_OPERATIONS = frozenset({("DebtorService", "List_GetAll"), ("DebtorService", "Tags_Get"),
                             ("CompanyService", "List_GetAll"), ("CompanyService", "List_GetByDebtor")})
RECORD_OPERATIONS = ALL_OPERATIONS - {("DebtorService", "Debtor_IsOwner")}  # answers made of records
# Kinds that change an answer's content fire only on the operations whose answer they can change; a rule for
# any operation skips the others (and keeps its count for them).
APPLIES_TO: dict[str, frozenset[tuple[str, str]]] = {
    "extra_element": RECORD_OPERATIONS,
    "null_entry": LIST_OPERATIONS,
    "empty_list": LIST_OPERATIONS,
    **{kind: ALL_OPERATIONS for kind in SOAP_ONLY - {"extra_element", "null_entry", "empty_list"}},
    **{kind: HTTP_OPERATIONS for kind in REST_ONLY},
}
# Kinds whose call still answers HTTP 200 with the operation's data (the call log does not count a fault).
ANSWERING_KINDS = frozenset({"extra_element", "null_entry", "empty_list"})


def param(kind: str, params: dict[str, float], name: str) -> float:
    """A rule's parameter or its default."""
    return params.get(name, PARAMS[kind][name])


@dataclass
class FaultRule:
    """One fault rule: what it does (kind, params), which calls it picks, how often."""

    id: str
    kind: str
    username: str | None = None
    service: str | None = None
    operation: str | None = None
    probability: float | None = None
    count: int | None = None  # calls left to hit; None = unlimited
    params: dict[str, float] = field(default_factory=dict)
    path: str | None = None  # a prefix of the request path (/api/debtors, /connect/token, /soap/v3/...)
    fired: int = 0
    _windows: dict[str, deque[float]] = field(default_factory=dict, repr=False)

    def matches(self, service: str, operation: str, username: str, path: str = "") -> bool:
        applies = APPLIES_TO.get(self.kind)
        if applies is not None and (service, operation) not in applies:
            return False
        return ((self.service is None or self.service == service)
                and (self.path is None or path.startswith(self.path))
                and (self.operation is None or self.operation == operation)
                and (self.username is None or self.username.lower() == username.lower()))

    def to_dict(self, *, include_id: bool = True) -> dict[str, Any]:
        row: dict[str, Any] = {"id": self.id, "kind": self.kind} if include_id else {"kind": self.kind}
        for key in ("username", "service", "operation", "path", "probability", "count"):
            if getattr(self, key) is not None:
                row[key] = getattr(self, key)
        row.update(self.params)
        if include_id:
            row["fired"] = self.fired
        return row


def rule_from_dict(data: dict[str, Any], *, rule_id: str) -> FaultRule:
    """Validate one rule; ValueError messages start with the offending field's name."""
    kind = data.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(FAULT_KINDS)}")
    service, operation, path = data.get("service"), data.get("operation"), data.get("path")
    _check_target(service, operation, path)
    probability, count = data.get("probability"), data.get("count")
    _check_limits(probability, count)
    params = _params(kind, data)
    if kind == "latency" and "ms" not in params:
        raise ValueError("ms is required for a latency fault (milliseconds to wait)")
    if kind == "fair_use" and params.get("calls_per_second", 1.0) <= 0:
        raise ValueError("calls_per_second must be > 0")
    _check_kind_params(kind, params)
    applies = APPLIES_TO.get(kind)
    if applies is not None:
        reachable = {(svc, op) for svc, op in ALL_OPERATIONS | HTTP_OPERATIONS
                     if (service is None or svc == service) and (operation is None or op == operation)}
        if not reachable & applies:
            names = ", ".join(sorted(f"{svc}.{op}" for svc, op in applies))
            raise ValueError(f"operation {operation!r} has no answer a {kind} fault can change (it applies to "
                             f"{names})")
    username = data.get("username")
    return FaultRule(rule_id, kind, str(username) if username is not None else None, service, operation,
                     float(probability) if probability is not None else None, count, params, path=path)


def _check_target(service: Any, operation: Any, path: Any) -> None:
    if service is not None and service not in KNOWN_SERVICES:
        raise ValueError(f"service {service!r} is not one of {', '.join(KNOWN_SERVICES)}")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        raise ValueError(f"path must be a path prefix starting with '/', got {path!r}")
    if operation is not None:
        known = set(KNOWN_SERVICES[service]) if service else {op for ops in KNOWN_SERVICES.values() for op in ops}
        if operation not in known:
            raise ValueError(f"operation {operation!r} is not one of {', '.join(sorted(known))}")


def _check_limits(probability: Any, count: Any) -> None:
    if probability is not None and (isinstance(probability, bool) or not isinstance(probability, int | float)
                                    or not 0 <= probability <= 1):
        raise ValueError(f"probability must be a number from 0 to 1, got {probability!r}")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"count must be a whole number >= 1, got {count!r}")


def _params(kind: str, data: dict[str, Any]) -> dict[str, float]:
    """The kind's parameters of a rule (numbers >= 0); anything else that is not a targeting field is refused."""
    base = {"kind", "username", "service", "operation", "path", "probability", "count", "id", "fired"}
    allowed = PARAMS.get(kind, {})
    params: dict[str, float] = {}
    for key, value in data.items():
        if key in base or value is None:
            continue
        if key not in allowed:
            hint = f"allowed: {', '.join(allowed)}" if allowed else "this kind takes no parameters"
            raise ValueError(f"{key} is not a parameter of {kind} faults ({hint})")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{key} must be a number >= 0, got {value!r}")
        params[key] = float(value)
    return params


def _check_kind_params(kind: str, params: dict[str, float]) -> None:
    code = params.get("code")
    if code is not None:
        if code != int(code) or not 1000 <= code <= 9999:
            raise ValueError(f"code must be a 4-digit Nmbrs error number, got {code:g}")
        if kind in ("code_no_wrapper", "echo_token") and int(code) not in FAULT_TEXTS:
            raise ValueError(f"code {int(code)} is not a known Nmbrs code ({', '.join(map(str, FAULT_TEXTS))}); "
                             "use unknown_code for others")
        if kind == "unknown_code" and int(code) in FAULT_TEXTS:
            raise ValueError(f"code {int(code)} is a known Nmbrs code; unknown_code needs another one")
    status = params.get("status")
    if status is not None and (status != int(status) or not 200 <= status <= 599):
        raise ValueError(f"status must be an HTTP status from 200 to 599, got {status:g}")
    retry_after = params.get("retry_after")
    if retry_after is not None and retry_after != int(retry_after):
        raise ValueError(f"retry_after must be whole seconds, got {retry_after:g}")


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do to one call: wait `delay_s`, then fail as `failure` (None: answer normally) with the
    failing rule's `params`."""

    delay_s: float = 0.0
    failure: str | None = None
    rule_ids: tuple[str, ...] = ()
    params: dict[str, float] = field(default_factory=dict)


NO_PLAN = Plan()


class FaultBook:
    """The active rules. `plan()` is called once per SOAP call, from the server's event loop."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._next_id = 1
        self._rng = random.Random(seed)

    def add(self, rule: FaultRule) -> str:
        with self._lock:
            if not rule.id:
                rule.id = f"f{self._next_id}"
                self._next_id += 1
            self._rules.append(rule)
            return rule.id

    def add_dict(self, data: dict[str, Any]) -> str:
        return self.add(rule_from_dict(data, rule_id=""))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def remove(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def jitter(self, ms: float, jitter_ms: float) -> float:
        """Seconds to wait for `ms` +/- a uniform `jitter_ms`, never negative."""
        with self._lock:
            spread = self._rng.uniform(-jitter_ms, jitter_ms) if jitter_ms else 0.0
        return max(0.0, ms + spread) / 1000.0

    def plan(self, service: str, operation: str, username: str, now: float | None = None, path: str = "") -> Plan:
        if not self._rules:
            return NO_PLAN
        now = time.monotonic() if now is None else now
        delay, failure, fired, params = 0.0, None, [], {}
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(service, operation, username, path):
                    continue
                if rule.kind in FAILURES and failure is not None:
                    continue  # one failure per call; later rules keep their count
                if rule.probability is not None and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                fired.append(rule.id)
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                if rule.kind == "latency":
                    spread = rule.params.get("jitter_ms", 0.0)
                    spread = self._rng.uniform(-spread, spread) if spread else 0.0
                    delay += max(0.0, rule.params["ms"] + spread) / 1000.0
                elif rule.kind == "fair_use":
                    delay += self._fair_use_delay(rule, username, now)
                else:
                    failure, params = rule.kind, dict(rule.params)
        return Plan(delay, failure, tuple(fired), params) if fired else NO_PLAN

    @staticmethod
    def _fair_use_delay(rule: FaultRule, username: str, now: float) -> float:
        """Per login: calls beyond `calls_per_second` within the last second wait half a second."""
        window = rule._windows.setdefault(username.lower(), deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        window.append(now)
        limit = rule.params.get("calls_per_second", 150.0)
        if len(window) > limit:
            return rule.params.get("delay_ms", FAIR_USE_DELAY_S * 1000) / 1000.0
        return 0.0
