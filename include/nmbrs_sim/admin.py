"""`SimAdmin`: a small requests-based client for the simulator's admin JSON API (/_sim/...)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests


class SimAdminError(RuntimeError):
    """The admin API answered with a non-2xx status; the message carries the simulator's explanation."""

    def __init__(self, method: str, url: str, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{method} {url} -> HTTP {status}: {message}")


def _q(value: object) -> str:
    return quote(str(value), safe="@")


class SimAdmin:
    """`base_url` may be the simulator's root ("http://127.0.0.1:8081") or its SOAP base (".../soap/v3/")."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, session: requests.Session | None = None) -> None:
        parts = urlsplit(base_url)
        self.root = urlunsplit((parts.scheme, parts.netloc, "", "", "")).rstrip("/")
        self.timeout = timeout
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"SimAdmin({self.root!r})"

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None,
              params: dict[str, str] | None = None) -> Any:
        url = f"{self.root}/_sim/{path}"
        response = self._session.request(method, url, json=payload, params=params, timeout=self.timeout)
        if not 200 <= response.status_code < 300:
            try:
                message = response.json().get("error") or response.text
            except ValueError:
                message = response.text[:500]
            raise SimAdminError(method, url, response.status_code, message)
        return response.json() if response.content else None

    def _object(self, method: str, path: str, payload: dict[str, Any] | None = None,
                params: dict[str, str] | None = None) -> dict[str, Any]:
        answer = self._call(method, path, payload, params)
        if not isinstance(answer, dict):
            raise SimAdminError(method, path, 200, f"expected a JSON object, got {answer!r:.200}")
        return answer

    def _rows(self, method: str, path: str) -> list[dict[str, Any]]:
        answer = self._call(method, path)
        if not isinstance(answer, list):
            raise SimAdminError(method, path, 200, f"expected a JSON list, got {answer!r:.200}")
        return answer

    # -------------------------------------------------------------- world
    def health(self) -> dict[str, Any]:
        return self._object("GET", "health")

    def world(self) -> dict[str, Any]:
        return self._object("GET", "world")

    def reset_world(self) -> None:
        self._call("POST", "world/reset")

    def load_world(self, scenario: dict[str, Any]) -> None:
        """Replace the whole world by another scenario dict (reset_world then returns to this one)."""
        self._call("PUT", "world", scenario)

    def settings(self) -> dict[str, Any]:
        return self._object("GET", "settings")

    def set_accept_missing_domain(self, accept: bool) -> None:
        self._call("PUT", "settings", {"accept_missing_domain": accept})

    # -------------------------------------------------------------- logins
    def logins(self) -> list[dict[str, Any]]:
        return self._rows("GET", "logins")

    def login(self, username: str) -> dict[str, Any]:
        return self._object("GET", f"logins/{_q(username)}")

    def add_login(self, environment: str, *, username: str, level: str, token: str | None = None,
                  tag_filter: str | list[str] | None = None, company_filter: Iterable[int] | None = None,
                  debtor: int | None = None, template: dict[str, Any] | str | None = None,
                  password: str | None = None, name: str | None = None) -> dict[str, Any]:
        """A new login; with a `password` it can consent on the identity server's page (client logins)."""
        payload: dict[str, Any] = {"environment": environment, "username": username, "level": level}
        for key, value in (("token", token), ("tag_filter", tag_filter), ("debtor", debtor), ("template", template),
                           ("password", password), ("name", name)):
            if value is not None:
                payload[key] = value
        if company_filter is not None:
            payload["company_filter"] = list(company_filter)
        return self._object("POST", "logins", payload)

    def reset_token(self, username: str) -> str:
        return str(self._object("POST", f"logins/{_q(username)}/reset-token")["token"])

    def delete_login(self, username: str) -> None:
        self._call("POST", f"logins/{_q(username)}/delete")

    def restore_login(self, username: str) -> None:
        self._call("POST", f"logins/{_q(username)}/restore")

    def update_login(self, username: str, *, tag_filter: str | Iterable[str] | None = None,
                     company_filter: Iterable[int] | None = None, template: dict[str, Any] | str | None = None,
                     debtor: int | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if tag_filter is not None:
            payload["tag_filter"] = tag_filter if isinstance(tag_filter, str) else list(tag_filter)
        if company_filter is not None:
            payload["company_filter"] = list(company_filter)
        if template is not None:
            payload["template"] = (template if isinstance(template, str)
                                   else {svc: ops if isinstance(ops, str) else list(ops)
                                         for svc, ops in template.items()})
        if debtor is not None:
            payload["debtor"] = debtor
        return self._object("PATCH", f"logins/{_q(username)}", payload)

    def set_operation_allowed(self, username: str, service: str, operation: str, allowed: bool) -> None:
        self._call("PUT", f"logins/{_q(username)}/operations/{_q(service)}/{_q(operation)}", {"allowed": allowed})

    # -------------------------------------------------------------- debtors and companies
    def add_debtor(self, environment: str, *, id: int, number: str | None = None, name: str | None = None,
                   tags: Iterable[str] = ()) -> None:
        self._call("POST", f"environments/{_q(environment)}/debtors",
                   {"id": id, "number": number, "name": name, "tags": list(tags)})

    def set_debtor_tags(self, debtor_id: int, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        answer = self._object("POST", f"debtors/{int(debtor_id)}/tags", {"add": list(add), "remove": list(remove)})
        return list(answer["tags"])

    def add_company(self, debtor_id: int, *, id: int, number: int, name: str | None = None,
                    period: str = "Month", kvk: str | None = None) -> None:
        self._call("POST", f"debtors/{int(debtor_id)}/companies",
                   {"id": id, "number": number, "name": name, "period": period, "kvk": kvk})

    def move_company(self, company_id: int, debtor_id: int) -> None:
        self._call("POST", f"companies/{int(company_id)}/move", {"debtor_id": debtor_id})

    def end_company(self, company_id: int) -> None:
        self._call("POST", f"companies/{int(company_id)}/end")

    def reopen_company(self, company_id: int) -> None:
        self._call("POST", f"companies/{int(company_id)}/reopen")

    def set_subscription(self, environment: str, valid: bool) -> None:
        self._call("PUT", f"environments/{_q(environment)}/subscription", {"valid": valid})

    # -------------------------------------------------------------- call log
    def calls(self) -> list[dict[str, Any]]:
        return self._rows("GET", "calls")

    def call_count(self, *, service: str | None = None, operation: str | None = None,
                   username: str | None = None) -> int:
        params = {k: v for k, v in (("service", service), ("operation", operation), ("username", username)) if v}
        if not params:
            return sum(row["count"] for row in self.calls())
        return int(self._object("GET", "calls", params=params)["count"])

    def clear_calls(self) -> None:
        self._call("DELETE", "calls")

    # -------------------------------------------------------------- faults and latency
    def inject_fault(self, kind: str, *, username: str | None = None, service: str | None = None,
                     operation: str | None = None, probability: float | None = None, count: int | None = None,
                     path: str | None = None, **params: float) -> str:
        """A fault rule (see the README's kinds); `path` targets REST and identity calls by path prefix."""
        payload: dict[str, Any] = {"kind": kind, **params}
        for key, value in (("username", username), ("service", service), ("operation", operation),
                           ("path", path), ("probability", probability), ("count", count)):
            if value is not None:
                payload[key] = value
        return str(self._object("POST", "faults", payload)["id"])

    def faults(self) -> list[dict[str, Any]]:
        return self._rows("GET", "faults")

    def remove_fault(self, fault_id: str) -> None:
        self._call("DELETE", f"faults/{_q(fault_id)}")

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def set_latency(self, ms: float, jitter_ms: float = 0) -> None:
        self._call("PUT", "latency", {"ms": ms, "jitter_ms": jitter_ms})

    # -------------------------------------------------------------- REST: clients, consents, clock
    def set_password(self, username: str, password: str | None) -> dict[str, Any]:
        """Let a login consent on the identity server's page (or, with None, no longer)."""
        return self._object("PATCH", f"logins/{_q(username)}", {"password": password})

    def rest_clients(self) -> list[dict[str, Any]]:
        """The registered REST clients with their secrets, redirect URIs, subscription keys and scopes."""
        return self._rows("GET", "rest/clients")

    def authorize(self, username: str, client_id: str, redirect_uri: str, scope: str, state: str = "", *,
                  code_challenge: str | None = None, code_challenge_method: str | None = None) -> str:
        """Consent as `username` would on the page (no password asked) and answer the callback location
        (`<redirect_uri>?code=...&scope=...&state=...`, or `?error=...` for a request the page sends back)."""
        payload: dict[str, Any] = {"username": username, "client_id": client_id, "redirect_uri": redirect_uri,
                                   "scope": scope, "state": state}
        if code_challenge is not None:
            payload["code_challenge"] = code_challenge
        if code_challenge_method is not None:
            payload["code_challenge_method"] = code_challenge_method
        return str(self._object("POST", "rest/authorize", payload)["location"])

    def consents(self) -> list[dict[str, Any]]:
        return self._rows("GET", "rest/consents")

    def withdraw_consent(self, consent_id: str) -> None:
        """What the customer does in Nmbrs' App Manager: the connection's tokens stop working."""
        self._call("POST", f"rest/consents/{_q(consent_id)}/withdraw")

    def expire_refresh_tokens(self, consent_id: str | None = None) -> int:
        """Let the live refresh tokens of one consent (or all) expire now; answers how many did."""
        payload = {"consent_id": consent_id} if consent_id is not None else {}
        return int(self._object("POST", "rest/refresh-tokens/expire", payload)["expired"])

    def clock(self) -> dict[str, Any]:
        """{"now": ISO 8601, "epoch": seconds, "offset_seconds": ...} of the simulated clock."""
        return self._object("GET", "clock")

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        return self._object("PUT", "clock", {"advance_seconds": seconds})

    def set_clock(self, now: str | float) -> dict[str, Any]:
        """Set the simulated time (ISO 8601 with a zone, or epoch seconds); it runs on from there."""
        return self._object("PUT", "clock", {"now": now})

    def reset_clock(self) -> dict[str, Any]:
        return self._object("PUT", "clock", {"reset": True})
