"""Airflow's login guards every route (enumerated from the app, so a new route cannot slip out), and every
answer, errors too, carries the Content-Security-Policy."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.routing import Route

from tests.l1nda_sync.ui.conftest import Seeded


def _routes(app: Any) -> list[tuple[str, str]]:
    """(method, path with ids filled in) for every route the app has."""
    found = []
    for route in app.routes:
        if not isinstance(route, Route):
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: "mail" if m.group(1) == "kind" else
                      "mute" if m.group(1) == "action" else "1", route.path)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, path))
    return found


def test_the_app_has_the_routes_the_contract_names(app: Any) -> None:
    paths = {p for _, p in _routes(app)}
    assert {"/", "/credentials", "/credentials/1", "/links", "/outbox", "/api/overview", "/api/credentials",
            "/api/credentials/1", "/api/links", "/api/outbox", "/credentials/1/recheck",
            "/credentials/1/dry-run"} <= paths


def test_every_route_answers_401_without_a_login(client: Any, app: Any, seeded: Seeded) -> None:
    routes = _routes(app)
    assert len(routes) >= 15
    for method, path in routes:
        answer = client.request(method, path)
        assert answer.status_code == 401, (method, path, answer.status_code)
        assert "frame-ancestors 'self'" in answer.headers["content-security-policy"], (method, path)


@pytest.mark.parametrize("jwt", ["not-a-jwt", "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiJ9.c2ln"])
def test_a_forged_token_or_cookie_is_refused(client: Any, jwt: str) -> None:
    bearer = client.get("/", headers={"Authorization": f"Bearer {jwt}"})
    client.cookies.set("_token", jwt)
    try:
        cookie = client.get("/api/overview")
    finally:
        client.cookies.clear()
    for answer in (bearer, cookie):
        assert answer.status_code in (401, 403)
        assert "frame-ancestors 'self'" in answer.headers["content-security-policy"]


def test_airflows_cookie_logs_in_like_the_bearer(client: Any, admin_jwt: str, seeded: Seeded) -> None:
    client.cookies.set("_token", admin_jwt)
    try:
        assert client.get("/credentials").status_code == 200
    finally:
        client.cookies.clear()


def test_every_answer_carries_the_security_headers(client: Any, admin_jwt: str, seeded: Seeded) -> None:
    headers = {"Authorization": f"Bearer {admin_jwt}"}
    for path, status in (("/", 200), ("/credentials", 200), ("/credentials/999999", 404), ("/nope", 404),
                         ("/credentials?state=x", 400), ("/api/links", 200), ("/static/style.css", 200)):
        answer = client.get(path, headers=headers)
        assert answer.status_code == status, path
        csp = answer.headers["content-security-policy"]
        assert "frame-ancestors 'self'" in csp
        assert "default-src 'self'" in csp
        assert "script-src 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_no_page_has_a_script(client: Any, admin_jwt: str, seeded: Seeded) -> None:
    headers = {"Authorization": f"Bearer {admin_jwt}"}
    for path in ("/", "/credentials", f"/credentials/{seeded.tokens['horeca']}", "/links", "/outbox"):
        assert "<script" not in client.get(path, headers=headers).text.lower()


def test_a_failing_page_is_a_500_page_without_a_traceback(client: Any, admin_jwt: str, seeded: Seeded,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from l1nda_sync.ui import queries

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom inside with a detail nobody should see")

    monkeypatch.setattr(queries, "outbox", broken)
    answer = client.get("/outbox", headers={"Authorization": f"Bearer {admin_jwt}"})
    assert answer.status_code == 500
    assert "boom" not in answer.text
    assert "Traceback" not in answer.text
    assert "frame-ancestors 'self'" in answer.headers["content-security-policy"]


def test_an_unreachable_registry_is_a_503_naming_it_without_the_password(
        admin_jwt: str, fake_airflow: Any, auth_manager: Any) -> None:
    from fastapi.testclient import TestClient

    from l1nda_sync.settings import Settings
    from l1nda_sync.ui.app import create_app

    settings = Settings.load(env={"L1NDA_DATABASE_URL": "postgresql://l1nda:hunter2pw@127.0.0.1:1/registry"},
                             use_airflow=False)
    with TestClient(create_app(settings, api_url=fake_airflow.url)) as client:
        answer = client.get("/credentials", headers={"Authorization": f"Bearer {admin_jwt}"})
    assert answer.status_code == 503
    assert "127.0.0.1:1" in answer.text
    assert "hunter2pw" not in answer.text
