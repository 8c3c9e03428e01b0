"""A plain-HTTP OAuth2 + REST client for the tests: the authorize page's form, the token endpoint, the API,
written from the facts sheet (no code shared with the simulator's server side), and schema checks."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import jsonschema
import requests

from nmbrs_sim import openapi
from nmbrs_sim.testing import RunningSim

APP = "PartnerApp_L1NDA_demo"
APP_SECRET = "Lx*7$demo-Secret$q9*"
APP_KEY = "30d05593229f49c18856be06ebc47b24"
APP_KEY_2 = "7c1e4a2b9d8f46e0a5b3c2d1e0f9a8b7"
CALLBACK = "http://127.0.0.1:8090/nmbrs/callback"
NARROW = "PartnerApp_Narrow_test"
NARROW_SECRET = "narrow*Secret$2027"
NARROW_CALLBACK = "http://127.0.0.1:8090/narrow/callback"
SCOPES = "offline_access company.info.read user.info.read"
BUSINESS_LOGIN, BUSINESS_PASSWORD = "salaris@bakkerij-degraaf.example", "degraaf-demo-pw"
VANDIJK_LOGIN, VANDIJK_PASSWORD = "payroll@modehuis-vandijk.example", "vandijk-demo-pw"
MASTER_LOGIN, MASTER_PASSWORD = "master-all@demo-accountants.example", "demo-master-pw"


def basic(client_id: str, secret: str, *, encode: bool = True) -> str:
    """RFC 6749 2.3.1: percent-encode id and secret, join with ':', base64."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}" if encode else f"{client_id}:{secret}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def pkce(method: str = "S256") -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    if method == "plain":
        return verifier, verifier
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def check(operation_id: str, body: Any) -> None:
    """The answer matches the OpenAPI document's 200 schema of the operation."""
    jsonschema.validate(body, openapi.response_schema(operation_id), cls=jsonschema.Draft202012Validator)


def check_error(response: requests.Response, status: int, code: int) -> dict[str, Any]:
    """An API error: the status, the facts sheet's body shape (validated) and the code."""
    assert response.status_code == status, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    jsonschema.validate(body, openapi.schema("Error"), cls=jsonschema.Draft202012Validator)
    assert (body["httpStatus"], body["code"]) == (status, code), body
    return body


def oauth_error(response: requests.Response, status: int, error: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    jsonschema.validate(body, openapi.schema("OAuthError"), cls=jsonschema.Draft202012Validator)
    assert body["error"] == error, body


@dataclass
class Flow:
    """One REST client application against the simulator, over plain HTTP."""

    sim: RunningSim
    client_id: str = APP
    secret: str = APP_SECRET
    redirect_uri: str = CALLBACK
    key: str = APP_KEY
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def root(self) -> str:
        return self.sim.root_url

    def authorize_params(self, scope: str = SCOPES, state: str = "st-123", **extra: str) -> dict[str, str]:
        return {"client_id": self.client_id, "redirect_uri": self.redirect_uri, "response_type": "code",
                "scope": scope, "state": state, **extra}

    def consent(self, username: str, password: str, *, scope: str = SCOPES, state: str = "st-123",
                action: str = "allow", **extra: str) -> requests.Response:
        """GET the page, then POST its form (hidden fields as the page wrote them) with the credentials."""
        params = self.authorize_params(scope, state, **extra)
        page = self.session.get(f"{self.root}/connect/authorize", params=params, timeout=10)
        assert page.status_code == 200, page.text
        form = dict(_hidden_fields(page.text))
        form.update({"username": username, "password": password, "action": action})
        return self.session.post(f"{self.root}/connect/authorize", data=form, allow_redirects=False, timeout=10)

    def code(self, username: str, password: str, **kwargs: Any) -> str:
        response = self.consent(username, password, **kwargs)
        assert response.status_code == 302, response.text
        return query_of(response.headers["Location"])["code"]

    def token(self, data: dict[str, str], *, auth: str | None = "basic") -> requests.Response:
        headers = {"Accept": "application/json"}
        if auth == "basic":
            headers["Authorization"] = basic(self.client_id, self.secret)
        elif auth == "form":
            data = {**data, "client_id": self.client_id, "client_secret": self.secret}
        return self.session.post(f"{self.root}/connect/token", data=data, headers=headers, timeout=10)

    def exchange(self, code: str, **extra: str) -> requests.Response:
        return self.token({"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                           **extra})

    def refresh(self, refresh_token: str) -> requests.Response:
        return self.token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def tokens(self, username: str, password: str, **kwargs: Any) -> dict[str, Any]:
        response = self.exchange(self.code(username, password, **kwargs))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def api(self, path: str, access_token: str | None, *, key: str | None = "default", **params: Any
            ) -> requests.Response:
        headers = {"Accept": "application/json"}
        if access_token is not None:
            headers["Authorization"] = f"Bearer {access_token}"
        if key is not None:
            headers["X-Subscription-Key"] = self.key if key == "default" else key
        return self.session.get(f"{self.root}{path}", headers=headers, params=params, timeout=10)

    def all_pages(self, path: str, access_token: str, operation_id: str, page_size: int = 20
                  ) -> list[dict[str, Any]]:
        """Follow nextPage to the end, checking every page against the schema."""
        rows: list[dict[str, Any]] = []
        url: str | None = f"{self.root}{path}?pageSize={page_size}"
        while url:
            response = self.session.get(url, headers={"Authorization": f"Bearer {access_token}",
                                                      "X-Subscription-Key": self.key}, timeout=10)
            assert response.status_code == 200, response.text
            body = response.json()
            check(operation_id, body)
            rows.extend(body["data"])
            url = body["pagination"]["nextPage"] or None
        return rows


def _hidden_fields(page: str) -> list[tuple[str, str]]:
    import html
    import re

    return [(name, html.unescape(value)) for name, value in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)]
