"""The pages and their JSON twins with a valid Airflow login, over a seeded registry."""

from __future__ import annotations

import re
from typing import Any

from tests.l1nda_sync.ui.conftest import Seeded


def _auth(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


def test_overview_shows_states_problems_countdown_and_runs(client: Any, admin_jwt: str, seeded: Seeded) -> None:
    page = client.get("/", headers=_auth(admin_jwt))
    assert page.status_code == 200, page.text
    html = page.text
    for section in ("credentials-by-state", "open-problems", "migration-countdown", "last-runs"):
        assert f'id="{section}"' in html
    assert re.search(r'<tr data-state="active"><td>.*?</td>\s*<td>2</td>', html, re.S)
    assert "Modehuis Van Dijk" in html  # the open problem names its credential
    assert "left</strong>" in html  # the countdown
    assert "scheduled__2026-05-04T11:50:00+00:00" in html
    assert "CEST" in html
    assert "UTC)" in html

    data = client.get("/api/overview", headers=_auth(admin_jwt)).json()
    assert {(c["kind"], c["state"], c["count"]) for c in data["counts"]} == {
        ("soap_token", "active", 2), ("soap_token", "revoked", 1)}
    assert [p["kind"] for p in data["problems"]] == ["revoked"]
    assert data["migration"]["links"] == 4


def test_credentials_list_filters_and_pages(client: Any, admin_jwt: str, seeded: Seeded) -> None:
    page = client.get("/credentials", headers=_auth(admin_jwt))
    assert page.status_code == 200
    rows = re.findall(r'<tr data-token-id="(\d+)"', page.text)
    assert [int(r) for r in rows] == sorted(seeded.tokens.values())
    assert "…K4f5" in page.text or "…" in page.text

    revoked = client.get("/credentials?state=revoked", headers=_auth(admin_jwt))
    assert re.findall(r'<tr data-token-id="(\d+)"', revoked.text) == [str(seeded.tokens["vandijk"])]

    by_customer = client.get("/api/credentials", params={"customer": "cust-zwaan"}, headers=_auth(admin_jwt)).json()
    assert [c["id"] for c in by_customer["credentials"]] == [seeded.tokens["horeca"]]
    by_name = client.get("/api/credentials", params={"customer": "anker"}, headers=_auth(admin_jwt)).json()
    assert [c["id"] for c in by_name["credentials"]] == [seeded.tokens["anker"]]
    assert by_name["page"] == {"total": 1, "offset": 0, "limit": 50, "number": 1, "pages": 1}

    empty = client.get("/api/credentials", params={"page": "2"}, headers=_auth(admin_jwt)).json()
    assert empty["credentials"] == []
    assert empty["page"]["total"] == 3


def test_bad_filters_are_refused_naming_the_field(client: Any, admin_jwt: str, seeded: Seeded) -> None:
    for url, field in (("/credentials?state=sleeping", "state"), ("/credentials?kind=ftp", "kind"),
                       ("/credentials?page=0", "page"), ("/credentials?page=abc", "page"),
                       ("/links?state=active&sort=id", "sort"), ("/links?customer=" + "x" * 101, "customer")):
        page = client.get(url, headers=_auth(admin_jwt))
        assert page.status_code == 400, url
        assert f'data-field="{field}"' in page.text, url
        api = client.get("/api" + url, headers=_auth(admin_jwt))
        assert api.status_code == 400, url
        assert api.json()["field"] == field, url


def test_credential_page_shows_reach_links_checks_mails_and_the_forms(client: Any, admin_jwt: str,
                                                                    seeded: Seeded) -> None:
    horeca = seeded.tokens["horeca"]
    page = client.get(f"/credentials/{horeca}", headers=_auth(admin_jwt))
    assert page.status_code == 200, page.text
    html = page.text
    assert "Brasserie Het Anker BV" in html
    assert '<span class="tag">L1NDA</span>' in html
    assert "Het Anker Keuken" in html
    assert "2 debtors, 1 company (no longer reached: 0 debtors, 1 company)." in html
    suspended = seeded.links["suspended"]
    row = re.search(rf'<tr data-link-id="{suspended}".*?</tr>', html, re.S)
    assert row is not None
    assert re.search(r'<td class="reason"[^>]*>[^<]*tag[^<]*filter', row.group(0))
    assert 'id="recheck-now"' in html
    assert 'id="dry-run"' in html
    assert f'action="/credentials/{horeca}/recheck"' in html

    vandijk = client.get(f"/credentials/{seeded.tokens['vandijk']}", headers=_auth(admin_jwt)).text
    assert "[L1NDA] Nmbrs token revoked: Modehuis Van Dijk" in vandijk  # mails sent
    data = client.get(f"/api/credentials/{seeded.tokens['vandijk']}", headers=_auth(admin_jwt)).json()
    assert [m["state"] for m in data["mails"]] == ["uncertain", "sent"]

    missing = client.get("/credentials/999999", headers=_auth(admin_jwt))
    assert missing.status_code == 404
    assert "999999" in missing.text
    assert client.get("/credentials/abc", headers=_auth(admin_jwt)).status_code == 404


def test_links_page_names_customers_companies_and_reasons(client: Any, admin_jwt: str, seeded: Seeded) -> None:
    page = client.get("/links", headers=_auth(admin_jwt))
    assert page.status_code == 200
    ids = [int(i) for i in re.findall(r'<tr data-link-id="(\d+)"', page.text)]
    assert ids == sorted(seeded.links.values())
    pending = re.search(rf'<tr data-link-id="{seeded.links["pending"]}".*?</tr>', page.text, re.S)
    assert pending is not None
    assert "no registered token reaches company 77001" in pending.group(0)
    zwaan = client.get("/api/links", params={"customer": "CUST-ZWAAN"}, headers=_auth(admin_jwt)).json()
    assert [(link["id"], link["company_name"], link["debtor_name"], link["reason"]) for link in zwaan["links"]] == [
        (seeded.links["suspended"], "De Zwaan Bar", "Cafe De Zwaan BV", "tag_or_filter")]  # the name last seen
    suspended = client.get("/api/links", params={"state": "suspended"}, headers=_auth(admin_jwt)).json()
    assert {link["id"] for link in suspended["links"]} == {seeded.links["suspended"], seeded.links["revoked"]}


def test_outbox_lists_uncertain_mails_and_parked_webhooks(client: Any, admin_jwt: str, seeded: Seeded) -> None:
    page = client.get("/outbox", headers=_auth(admin_jwt))
    assert page.status_code == 200
    assert f'data-outbox-id="mail:{seeded.mails["uncertain"]}"' in page.text
    assert f'data-outbox-id="mail:{seeded.mails["sent"]}"' not in page.text
    assert f'data-outbox-id="webhook:{seeded.mails["webhook"]}"' in page.text
    data = client.get("/api/outbox", headers=_auth(admin_jwt)).json()
    assert [m["id"] for m in data["mails"]] == [seeded.mails["uncertain"]]


def test_the_stylesheet_is_served(client: Any, admin_jwt: str) -> None:
    css = client.get("/static/style.css", headers=_auth(admin_jwt))
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
