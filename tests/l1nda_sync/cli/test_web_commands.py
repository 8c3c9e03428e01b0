"""`l1nda-sync invite` and `l1nda-sync web`: the invitation is mailed (real SMTP sink) and its link printed once;
bad input or a missing setting is refused with nothing written."""

from __future__ import annotations

import re
from typing import Any

import pytest

from l1nda_sync.registry import db
from tests.l1nda_sync.alerts.harness import MailServer
from tests.l1nda_sync.cli.conftest import Cli

BASE = "https://connect.l1nda.example"
SECRET = "cli-test-web-secret-0123456789abcdefghij"


@pytest.fixture
def web_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L1NDA_WEB_BASE_URL", BASE)
    monkeypatch.setenv("L1NDA_WEB_SECRET", SECRET)


def _invitations(registry_url: str) -> int:
    return int(db.fetch_all(registry_url, "SELECT count(*) FROM invitations")[0][0])


def test_invite_mails_the_link_in_the_contacts_language_and_prints_it_once(
        cli: Cli, smtp: MailServer, web_env: None, registry_url: str) -> None:
    result = cli("invite", "--customer", "cust-graaf", "--contact", "jan@bakkerij-degraaf.example", "--purpose",
                 "rest", "--language", "nl", "--ttl-days", "3")
    assert result.code == 0, result.err
    urls = re.findall(re.escape(BASE) + r"/invite/[A-Za-z0-9_-]{43}", result.out)
    assert len(urls) == 1
    assert "mail sent" in result.out
    (mail,) = smtp.messages("jan@bakkerij-degraaf.example")
    assert str(mail["Subject"]) == "Koppel L1NDA aan Nmbrs (CUST-GRAAF)"
    assert urls[0] in mail.get_body(("plain",)).get_content()
    assert urls[0].rsplit("/", 1)[1] not in result.err
    (state, days), = db.fetch_all(registry_url, "SELECT state, round(extract(epoch FROM expires_at - created_at) "
                                                "/ 86400) FROM invitations")
    assert (state, int(days)) == ("sent", 3)


def test_invite_json_holds_the_link_for_scripts(cli: Cli, smtp: MailServer, web_env: None) -> None:
    result = cli("invite", "--customer", "CUST-A", "--contact", "a@example.com", "--purpose", "rest", "--json",
                 "--no-send")
    assert result.code == 0, result.err
    data: dict[str, Any] = result.json
    assert data["url"].startswith(BASE + "/invite/")
    assert data["invitation"]["purpose"] == "rest"
    assert "queued" in data["mail"]
    assert smtp.messages() == []


@pytest.mark.parametrize(("argv", "field"), [
    (("--purpose", "token"), "--token-id"),
    (("--purpose", "token", "--token-id", "42"), "--token-id"),
    (("--purpose", "rest", "--token-id", "1"), "--token-id"),
    (("--purpose", "rest", "--contact", "nobody"), "--contact"),
])
def test_invite_refuses_bad_input_and_writes_nothing(cli: Cli, smtp: MailServer, web_env: None, registry_url: str,
                                                    argv: tuple[str, ...], field: str) -> None:
    contact = () if "--contact" in argv else ("--contact", "a@example.com")
    result = cli("invite", "--customer", "CUST-A", *contact, *argv, "--json")
    assert result.code == 2
    assert result.json["error"]["field"] == field
    assert _invitations(registry_url) == 0
    assert smtp.messages() == []


def test_invite_without_the_page_configured_says_which_setting(cli: Cli, smtp: MailServer,
                                                               registry_url: str) -> None:
    result = cli("invite", "--customer", "CUST-A", "--contact", "a@example.com", "--purpose", "rest")
    assert result.code == 1
    assert "L1NDA_WEB_BASE_URL" in result.err
    assert _invitations(registry_url) == 0


def test_web_serves_the_app_with_uvicorn(cli: Cli, web_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    result = cli("web", "--host", "0.0.0.0", "--port", "8123", "--proxy-headers")  # noqa: S104 - not bound here
    assert result.code == 0, result.err
    assert (served["host"], served["port"], served["proxy_headers"]) == ("0.0.0.0", 8123, True)  # noqa: S104
    assert {r.path for r in served["app"].routes} >= {"/invite/{value}", "/invite/{value}/connect",
                                                      "/invite/{value}/token", "/nmbrs/callback"}


def test_web_without_a_secret_refuses_to_start(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("must not serve"))
    result = cli("web")
    assert result.code == 1
    assert "L1NDA_WEB_SECRET" in result.err
    short = cli("web", "--port", "70000")
    assert short.code == 2
