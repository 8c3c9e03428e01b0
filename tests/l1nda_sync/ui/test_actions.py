"""The actions: a sync run through Airflow's API as the logged-in user (a real local HTTP server stands in for
Airflow and records what it got), CSRF, and mute / resend / invite through the registry's own cores."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg2
import pytest

from tests.l1nda_sync.ui.conftest import FakeAirflow, Seeded


def _auth(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


def _form(client: Any, jwt: str, page: str, action: str) -> dict[str, str]:
    """The hidden fields of the form posting to `action` on `page`, as the browser would send them."""
    html = client.get(page, headers=_auth(jwt)).text
    form = re.search(rf'<form method="post" action="{re.escape(action)}"[^>]*>(.*?)</form>', html, re.S)
    assert form is not None, f"no form to {action} on {page}"
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(1)))


def _follow(client: Any, jwt: str, answer: Any) -> str:
    assert answer.status_code == 303, answer.text
    return str(client.get(answer.headers["location"], headers=_auth(jwt)).text)


def _flash(html: str) -> str:
    found = re.search(r'<p id="flash" class="flash (\w+)"[^>]*>(.*?)</p>', html, re.S)
    assert found is not None, "no #flash on the page"
    return f"{found.group(1)}: {found.group(2)}"


@pytest.mark.parametrize("dry_run", [False, True])
def test_recheck_starts_a_run_as_the_user(client: Any, admin_jwt: str, seeded: Seeded, fake_airflow: FakeAirflow,
                                          dry_run: bool) -> None:
    token = seeded.tokens["horeca"]
    action = f"/credentials/{token}/{'dry-run' if dry_run else 'recheck'}"
    answer = client.post(action, data=_form(client, admin_jwt, f"/credentials/{token}", action),
                         headers=_auth(admin_jwt))
    assert answer.status_code == 303
    assert urlsplit(answer.headers["location"]).path == f"/credentials/{token}"
    [sent] = fake_airflow.requests
    assert sent["path"] == "/api/v2/dags/nmbrs_token_sync/dagRuns"
    assert sent["authorization"] == f"Bearer {admin_jwt}"  # the user's own JWT: the run is theirs
    expected = {"token_ids": [token], **({"dry_run": True} if dry_run else {})}
    assert sent["body"]["conf"] == expected
    assert sent["body"]["logical_date"] is None
    assert "Horeca office" in sent["body"]["note"]
    html = _follow(client, admin_jwt, answer)
    flash = _flash(html)
    assert flash.startswith("ok: ")
    assert "manual__2026-05-04T12:00:01+00:00" in flash
    assert 'href="/dags/nmbrs_token_sync/runs/manual__2026-05-04T12%3A00%3A01%2B00%3A00"' in html


def test_the_cookie_login_is_forwarded_as_the_bearer(client: Any, admin_jwt: str, seeded: Seeded,
                                                     fake_airflow: FakeAirflow) -> None:
    token = seeded.tokens["anker"]
    client.cookies.set("_token", admin_jwt)
    try:
        html = client.get(f"/credentials/{token}").text
        fields = dict(re.findall(r'name="(csrf)" value="([^"]*)"', html)[:1])
        assert client.post(f"/credentials/{token}/recheck", data=fields).status_code == 303
    finally:
        client.cookies.clear()
    assert fake_airflow.requests[0]["authorization"] == f"Bearer {admin_jwt}"


@pytest.mark.parametrize(("status", "words"), [
    (403, "you may not run the DAG nmbrs_token_sync"), (404, "Airflow does not know the DAG nmbrs_token_sync")])
def test_airflows_refusal_is_a_clear_flash(client: Any, admin_jwt: str, seeded: Seeded, fake_airflow: FakeAirflow,
                                           status: int, words: str) -> None:
    fake_airflow.status = status
    token = seeded.tokens["horeca"]
    action = f"/credentials/{token}/recheck"
    answer = client.post(action, data=_form(client, admin_jwt, f"/credentials/{token}", action),
                         headers=_auth(admin_jwt))
    flash = _flash(_follow(client, admin_jwt, answer))
    assert flash.startswith("error: no run started")
    assert words in flash


def test_an_unreachable_airflow_api_is_a_clear_flash(client: Any, admin_jwt: str, seeded: Seeded,
                                                     fake_airflow: FakeAirflow) -> None:
    token = seeded.tokens["horeca"]
    action = f"/credentials/{token}/recheck"
    fields = _form(client, admin_jwt, f"/credentials/{token}", action)
    fake_airflow.stop()
    answer = client.post(action, data=fields, headers=_auth(admin_jwt))
    flash = _flash(_follow(client, admin_jwt, answer))
    assert "did not answer" in flash
    assert admin_jwt not in flash


def test_a_post_without_a_good_csrf_token_is_refused(client: Any, admin_jwt: str, viewer_jwt: str, seeded: Seeded,
                                                     fake_airflow: FakeAirflow) -> None:
    token = seeded.tokens["horeca"]
    other = seeded.tokens["anker"]
    good = _form(client, admin_jwt, f"/credentials/{token}", f"/credentials/{token}/recheck")
    for data, url, jwt in (({}, f"/credentials/{token}/recheck", admin_jwt),
                           ({"csrf": "forged"}, f"/credentials/{token}/recheck", admin_jwt),
                           (good, f"/credentials/{other}/recheck", admin_jwt),  # another credential's form
                           (good, f"/credentials/{token}/dry-run", admin_jwt),  # another form
                           (good, f"/credentials/{token}/recheck", viewer_jwt)):  # another user's form
        answer = client.post(url, data=data, headers=_auth(jwt))
        assert answer.status_code == 403, (url, data)
        assert "CSRF" in answer.text
        assert "frame-ancestors 'self'" in answer.headers["content-security-policy"]
    assert fake_airflow.requests == []


def _problem(registry_url: str, problem_id: int) -> tuple[bool, Any]:
    conn = psycopg2.connect(registry_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT muted, unmuted_at FROM problems WHERE id = %s", (problem_id,))
            return cur.fetchone()
    finally:
        conn.close()


def test_mute_and_unmute_a_problem(client: Any, admin_jwt: str, seeded: Seeded, registry_url: str) -> None:
    token, problem = seeded.tokens["vandijk"], seeded.problems["revoked"]
    page = f"/credentials/{token}"
    answer = client.post(f"/problems/{problem}/mute", data=_form(client, admin_jwt, page, f"/problems/{problem}/mute"),
                         headers=_auth(admin_jwt))
    assert "muted: it stays open" in _flash(_follow(client, admin_jwt, answer))
    assert _problem(registry_url, problem)[0] is True
    answer = client.post(f"/problems/{problem}/unmute",
                         data=_form(client, admin_jwt, page, f"/problems/{problem}/unmute"), headers=_auth(admin_jwt))
    assert "unmuted" in _flash(_follow(client, admin_jwt, answer))
    muted, unmuted_at = _problem(registry_url, problem)
    assert muted is False
    assert unmuted_at is not None


def test_a_viewer_sees_no_write_forms_and_cannot_mute(client: Any, admin_jwt: str, viewer_jwt: str,
                                                      seeded: Seeded, registry_url: str) -> None:
    token, problem = seeded.tokens["vandijk"], seeded.problems["revoked"]
    html = client.get(f"/credentials/{token}", headers=_auth(viewer_jwt)).text
    assert 'id="recheck-now"' in html  # Airflow decides on the run itself
    assert f"/problems/{problem}/mute" not in html
    assert 'id="send-invitation"' not in html
    from l1nda_sync.ui import csrf

    answer = client.post(f"/problems/{problem}/mute", data={"csrf": csrf.token("mute", str(problem), "viewer")},
                         headers=_auth(viewer_jwt))
    assert answer.status_code == 403
    assert "Op or Admin" in answer.text
    assert _problem(registry_url, problem)[0] is False


def test_resend_an_uncertain_mail(client: Any, admin_jwt: str, seeded: Seeded, registry_url: str) -> None:
    mail = seeded.mails["uncertain"]
    action = f"/outbox/mail/{mail}/resend"
    answer = client.post(action, data=_form(client, admin_jwt, "/outbox", action), headers=_auth(admin_jwt))
    assert "was uncertain; it is pending again" in _flash(_follow(client, admin_jwt, answer))
    conn = psycopg2.connect(registry_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT state FROM outbox WHERE id = %s", (mail,))
            assert cur.fetchone() == ("pending",)
    finally:
        conn.close()
    # again (a form made before the resend): the row is pending now, the core refuses and the page says why
    from l1nda_sync.ui import csrf

    again = client.post(action, data={"csrf": csrf.token("resend", f"mail:{mail}", "admin")}, headers=_auth(admin_jwt))
    assert "is pending; only uncertain, failed, dropped rows can be sent again" in _flash(
        _follow(client, admin_jwt, again))


def test_invite_queues_the_mail_without_showing_the_link(client: Any, admin_jwt: str, seeded: Seeded,
                                                         registry_url: str, app: Any) -> None:
    from dataclasses import replace

    from l1nda_sync.masking import Secret

    config = app.state.config
    config._settings = replace(config.settings, web_base_url="https://connect.l1nda.example",
                               web_secret=Secret("w" * 40))
    token = seeded.tokens["vandijk"]
    page = f"/credentials/{token}"
    fields = _form(client, admin_jwt, page, f"{page}/invite")
    answer = client.post(f"{page}/invite", headers=_auth(admin_jwt),
                         data={**fields, "customer": "cust-vandijk", "contact": "payroll@modehuis-vandijk.example",
                               "purpose": "token", "language": "nl"})
    html = _follow(client, admin_jwt, answer)
    flash = _flash(html)
    assert flash.startswith("ok: invitation")
    assert "CUST-VANDIJK" in flash
    assert "connect.l1nda.example/invite/" not in html
    conn = psycopg2.connect(registry_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT customer_ref, purpose, language, token_id, created_by FROM invitations")
            assert cur.fetchall() == [("CUST-VANDIJK", "token", "nl", token, "airflow:admin")]
            cur.execute("SELECT recipients, state FROM outbox WHERE event = 'invitation'")
            assert cur.fetchall() == [(["payroll@modehuis-vandijk.example"], "pending")]
    finally:
        conn.close()
    bad = client.post(f"{page}/invite", headers=_auth(admin_jwt),
                      data={**fields, "customer": "CUST-VANDIJK", "contact": "not-an-address", "purpose": "rest"})
    assert "no invitation: contact" in _flash(_follow(client, admin_jwt, bad))


def test_invite_without_the_customer_page_settings_says_which(client: Any, admin_jwt: str, seeded: Seeded) -> None:
    token = seeded.tokens["vandijk"]
    page = f"/credentials/{token}"
    answer = client.post(f"{page}/invite", headers=_auth(admin_jwt),
                         data={**_form(client, admin_jwt, page, f"{page}/invite"), "customer": "CUST-VANDIJK",
                               "contact": "payroll@modehuis-vandijk.example", "purpose": "rest"})
    assert "L1NDA_WEB_SECRET" in _flash(_follow(client, admin_jwt, answer))
    assert parse_qs(urlsplit(answer.headers["location"]).query)["flash"]


def test_the_run_is_posted_to_airflow_api_url_and_linked_at_the_public_address(
        registry_url: str, fernet_keys: list[str], fake_airflow: FakeAirflow, auth_manager: Any, admin_jwt: str,
        seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a proxy the API server posts to itself (airflow_api_url), and links point at the public base URL."""
    from fastapi.testclient import TestClient

    from l1nda_sync.settings import Settings
    from l1nda_sync.ui.app import create_app

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://ops.l1nda.example/airflow")
    settings = Settings.load(env={"L1NDA_DATABASE_URL": registry_url, "L1NDA_FERNET_KEYS": fernet_keys[0],
                                  "L1NDA_AIRFLOW_API_URL": fake_airflow.url}, use_airflow=False)
    token = seeded.tokens["horeca"]
    with TestClient(create_app(settings), follow_redirects=False) as client:
        action = f"/credentials/{token}/recheck"
        answer = client.post(action, data=_form(client, admin_jwt, f"/credentials/{token}", action),
                             headers=_auth(admin_jwt))
        html = _follow(client, admin_jwt, answer)
    assert [r["path"] for r in fake_airflow.requests] == ["/api/v2/dags/nmbrs_token_sync/dagRuns"]
    assert 'href="/airflow/dags/nmbrs_token_sync/runs/manual__2026-05-04T12%3A00%3A01%2B00%3A00"' in html


def test_a_bad_airflow_api_url_is_refused_naming_the_setting() -> None:
    from l1nda_sync.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="L1NDA_AIRFLOW_API_URL"):
        Settings.load(env={"L1NDA_AIRFLOW_API_URL": "localhost:8080"}, use_airflow=False)
