"""`l1nda-sync connections ...` and `companies ...` against PostgreSQL and the simulator over HTTP.

The customer's consent is made through the simulator's admin API (`POST /_sim/rest/authorize`), which answers
the callback location a browser would be sent to, for the URL `connections start` printed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

import nmbrs_sim
from l1nda_sync.registry import db
from l1nda_sync.registry.crypto import TokenCipher
from nmbrs_sim.testing import RunningSim, running_simulator
from tests.l1nda_sync.cli.conftest import Cli

DEMO = Path(nmbrs_sim.__file__).parent / "scenarios" / "demo.yaml"
APP_ID = "PartnerApp_L1NDA_demo"
CALLBACK = "http://127.0.0.1:8090/nmbrs/callback"
BUSINESS = "salaris@bakkerij-degraaf.example"
VANDIJK = "payroll@modehuis-vandijk.example"
REST_TABLES = ("tokens", "token_events", "checks", "rest_connections", "rest_authorizations")


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSim]:
    with running_simulator(DEMO) as running:
        yield running


@pytest.fixture
def rest(cli: Cli, sim: RunningSim, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`cli` with L1NDA's demo app on the simulator (the L1NDA_NMBRS_REST_* settings)."""
    sim.admin.clear_faults()
    for name, value in {"API_BASE_URL": sim.root_url, "IDENTITY_BASE_URL": sim.root_url, "CLIENT_ID": APP_ID,
                        "CLIENT_SECRET": "Lx*7$demo-Secret$q9*", "SUBSCRIPTION_KEY": "30d05593229f49c18856be06ebc47b24",
                        "REDIRECT_URI": CALLBACK}.items():
        monkeypatch.setenv(f"L1NDA_NMBRS_REST_{name}", value)
    return cli


@pytest.fixture
def rows(registry_url: str) -> Callable[[], dict[str, int]]:
    def snapshot() -> dict[str, int]:
        conn = db.connect(registry_url)
        try:
            with db.reading(conn) as cur:
                found = {}
                for table in REST_TABLES:
                    cur.execute(f"SELECT count(*) FROM {table}")
                    found[table] = int(cur.fetchone()[0])
                cur.execute("SELECT count(*) FROM rest_authorizations WHERE used_at IS NOT NULL")
                found["used"] = int(cur.fetchone()[0])
                return found
        finally:
            conn.close()

    return snapshot


def start(cli: Cli, *extra: str, customer: str = "cust-graaf") -> dict:
    result = cli("connections", "start", "--customer", customer, "--contact", "jan@bakkerij-degraaf.example",
                 "--language", "nl", *extra, "--json")
    assert result.code == 0, result.err
    return result.json


def consent(sim: RunningSim, url: str, username: str = BUSINESS) -> str:
    """What the customer's browser is sent to after consenting on the page `url` leads to."""
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q["code_challenge_method"] == "S256"
    return sim.admin.authorize(username, q["client_id"], q["redirect_uri"], q["scope"], q["state"],
                               code_challenge=q["code_challenge"], code_challenge_method="S256")


def finish(cli: Cli, callback: str, *extra: str):
    return cli("connections", "finish", "--callback-url", callback, *extra)


def test_start_authorize_finish_stores_one_connection_with_its_secrets_encrypted(
        rest: Cli, sim: RunningSim, registry_url: str, fernet_keys: list[str]) -> None:
    started = start(rest)
    assert started["url"].startswith(f"{sim.root_url}/connect/authorize?")
    assert started["customer"] == "CUST-GRAAF"
    state = parse_qs(urlsplit(started["url"]).query)["state"][0]
    callback = consent(sim, started["url"])
    done = finish(rest, callback)
    assert done.code == 0, done.err
    assert "stored connection 1 'CUST-GRAAF'" in done.out
    assert "B001" in done.out  # the debtor and its companies, with numbers
    assert "Bakkerij De Graaf B.V." in done.out
    listed = rest("connections", "list", "--json").json
    assert len(listed) == 1
    c = listed[0]
    assert (c["customer_ref"], c["user_email"], c["token"]["kind"], c["token"]["state"]) == (
        "CUST-GRAAF", BUSINESS, "rest_connection", "new")
    assert "company.info.read" in c["scopes"]
    table = rest("connections", "list").out
    assert "CUST-GRAAF" in table
    assert BUSINESS in table
    assert "rest" in rest("tokens", "list").out.splitlines()[2]

    conn = db.connect(registry_url)
    try:
        with db.reading(conn) as cur:
            cur.execute("SELECT refresh_ciphertext, access_ciphertext FROM rest_connections")
            refresh_c, access_c = cur.fetchone()
            cipher = TokenCipher(fernet_keys)
            plain = [cipher.decrypt(refresh_c).reveal(), cipher.decrypt(access_c).reveal()]
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            dump = []
            for (name,) in cur.fetchall():
                cur.execute(f"SELECT t::text FROM {name} t")
                dump += [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
    text = "\n".join(dump)
    for secret in (*plain, state):
        assert secret not in text
        assert secret[-16:] not in text
    shown = rest("connections", "show", "1")
    assert shown.code == 0
    assert "consented by" in shown.out
    for secret in plain:
        assert secret[-8:] not in shown.out
        assert secret[-8:] not in rest("connections", "show", "1", "--json").out


def test_a_reused_callback_exits_2_and_writes_nothing(rest: Cli, sim: RunningSim, rows) -> None:
    callback = consent(sim, start(rest)["url"])
    assert finish(rest, callback).code == 0
    before = rows()
    again = finish(rest, callback, "--json")
    assert again.code == 2
    assert again.json["error"]["field"] == "--callback-url"
    assert "finished already" in again.err
    assert rows() == before


def test_a_spent_code_exits_2_and_the_consent_stays_unused(rest: Cli, sim: RunningSim, registry_url: str,
                                                            rows) -> None:
    """The code was exchanged once already (by someone else, or a finish whose probe failed): Nmbrs refuses it."""
    callback = consent(sim, start(rest)["url"])
    conn = db.connect(registry_url)
    try:
        with db.transaction(conn) as cur:  # spend the code with the stored verifier, as a first finish would
            from l1nda_sync.cli import consenting
            from l1nda_sync.registry.connections import ConnectionStore
            from l1nda_sync.settings import Settings

            settings = Settings.load(use_airflow=False)
            store = ConnectionStore.from_settings(settings)
            auth = store.take_authorization(conn, parse_qs(urlsplit(callback).query)["state"][0])
            consenting.exchange(settings.rest_app(), parse_qs(urlsplit(callback).query)["code"][0], auth.code_verifier)
            cur.connection.rollback()
    finally:
        conn.close()
    before = rows()
    spent = finish(rest, callback)
    assert spent.code == 2
    assert "used already or is older than 5 minutes" in spent.err
    assert rows() == before
    assert before["used"] == 0


def test_a_denied_consent_exits_2(rest: Cli, sim: RunningSim, rows) -> None:
    state = parse_qs(urlsplit(start(rest)["url"]).query)["state"][0]
    before = rows()
    denied = finish(rest, CALLBACK + "?" + urlencode({"error": "access_denied", "error_description": "The user "
                                                      "denied", "state": state}))
    assert denied.code == 2
    assert "denied the consent" in denied.err
    assert rows() == before


def test_a_wrong_state_or_a_bad_url_exits_2(rest: Cli, sim: RunningSim, rows) -> None:
    url = start(rest)["url"]
    callback = consent(sim, url)
    before = rows()
    forged = callback.replace("state=", "state=x")
    wrong = finish(rest, forged)
    assert wrong.code == 2
    assert "matches no consent" in wrong.err
    assert finish(rest, "not a url").code == 2
    assert finish(rest, CALLBACK + "?state=abc").code == 2  # neither code nor error
    assert rows() == before


def test_an_expired_consent_exits_2(rest: Cli, sim: RunningSim, registry_url: str, rows) -> None:
    callback = consent(sim, start(rest)["url"])
    db.fetch_all(registry_url, "UPDATE rest_authorizations SET created_at = now() - interval '2 days', "
                               "expires_at = now() - interval '1 day'")
    before = rows()
    expired = finish(rest, callback)
    assert expired.code == 2
    assert "expired" in expired.err
    assert "connections start" in expired.err
    assert rows() == before


def test_the_same_user_consenting_again_replaces_the_connection(rest: Cli, sim: RunningSim) -> None:
    assert finish(rest, consent(sim, start(rest)["url"])).code == 0
    again = finish(rest, consent(sim, start(rest, "--label", "Graaf REST")["url"]), "--json")
    assert again.code == 0, again.err
    assert again.json["replaced"] is True
    assert again.json["connection"]["token"]["id"] == 1
    assert again.json["connection"]["token"]["label"] == "Graaf REST"
    assert [c["token"]["id"] for c in rest("connections", "list", "--json").json] == [1]
    other = finish(rest, consent(sim, start(rest, customer="cust-vandijk")["url"], VANDIJK), "--json")
    assert other.code == 0, other.err
    assert other.json["replaced"] is False
    assert len(rest("connections", "list", "--json").json) == 2


def test_remove_retires_the_connection_and_erases_its_secrets(rest: Cli, sim: RunningSim,
                                                              registry_url: str) -> None:
    assert finish(rest, consent(sim, start(rest)["url"])).code == 0
    removed = rest("connections", "remove", "1", "--reason", "customer left")
    assert removed.code == 0, removed.err
    assert "secrets are erased" in removed.out
    assert db.fetch_all(registry_url, "SELECT refresh_ciphertext, access_ciphertext FROM rest_connections") == [
        (None, None)]
    assert rest("connections", "list", "--json").json == []
    assert rest("connections", "list", "--all", "--json").json[0]["token"]["state"] == "removed"
    assert rest("connections", "remove", "1").code == 0  # already removed: nothing to do
    assert rest("connections", "remove", "9").code == 2


def test_start_validates_before_writing(rest: Cli, rows) -> None:
    before = rows()
    bad = rest("connections", "start", "--customer", "CUST 1", "--contact", "a@b.nl", "--json")
    assert bad.code == 2
    assert bad.json["error"]["field"] == "--customer"
    bad = rest("connections", "start", "--customer", "CUST", "--contact", "nobody", "--json")
    assert bad.json["error"]["field"] == "--contact"
    assert rows() == before


def test_without_a_rest_app_start_says_what_to_configure(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLIENT_ID", "CLIENT_SECRET", "SUBSCRIPTION_KEY", "REDIRECT_URI"):
        monkeypatch.delenv(f"L1NDA_NMBRS_REST_{name}", raising=False)
    result = cli("connections", "start", "--customer", "CUST", "--contact", "a@b.nl")
    assert result.code == 1
    assert "nmbrs_rest" in result.err


def test_companies_unmatched_and_match(rest: Cli, registry_url: str) -> None:
    rest_uuid, debtor = str(uuid.uuid4()), str(uuid.uuid4())
    db.fetch_all(registry_url, """
        WITH s AS (INSERT INTO tokens (label, level, username, token_ciphertext, fingerprint)
                   VALUES ('soap', 'debtor', 'u@x.nl', 'c', 'f1') RETURNING id)
        INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name)
        SELECT id, c, 2001, 101, 'Anker ' || c FROM s, (VALUES (50101), (50102)) v(c)""")
    db.fetch_all(registry_url, """
        INSERT INTO rest_entities (uuid, entity, key, customer_ref, number, debtor_uuid, debtor_number, name, match,
                                   candidates)
        VALUES (%s, 'company', -nextval('rest_unmatched_keys'), 'CUST', '101', %s, 'D001', 'Anker', 'ambiguous',
                '{50101,50102}')""", rest_uuid, debtor)
    listed = rest("companies", "unmatched")
    assert listed.code == 0
    assert rest_uuid in listed.out
    assert "50101" in listed.out
    assert "ambiguous" in listed.out
    assert rest("companies", "unmatched", "--json").json[0]["entity"]["uuid"] == rest_uuid
    assert rest("companies", "match", rest_uuid).code == 2  # neither --company nor --new
    assert rest("companies", "match", rest_uuid, "--company", "777").code == 2  # unknown SOAP company
    matched = rest("companies", "match", rest_uuid, "--company", "50102", "--json")
    assert matched.code == 0, matched.err
    assert matched.json["entity"]["key"] == 50102
    assert "no unmatched" in rest("companies", "unmatched").out


def test_tokens_list_kind_shows_soap_tokens_or_rest_connections(rest: Cli, sim: RunningSim) -> None:
    added = rest("tokens", "add", "--no-check", "--label", "Acme master", "--level", "accountant", "--username",
                 "payroll@acme.nl", "--contact", "it@acme.nl", stdin="9f86d081884c7d659a2feaa0c55ad015")
    assert added.code == 0, added.err
    empty = rest("tokens", "list", "--kind", "rest")
    assert empty.code == 0
    assert "no REST connections; start one with `l1nda-sync connections start`" in empty.out
    assert finish(rest, consent(sim, start(rest)["url"])).code == 0
    assert [(t["id"], t["kind"]) for t in rest("tokens", "list", "--json").json] == [
        (1, "soap_token"), (2, "rest_connection")]
    assert [t["id"] for t in rest("tokens", "list", "--kind", "soap", "--json").json] == [1]
    assert [t["id"] for t in rest("tokens", "list", "--kind", "rest", "--json").json] == [2]
    lines = rest("tokens", "list", "--kind", "rest").out.splitlines()
    assert len(lines) == 3  # header, rule, the connection
    assert lines[2].split()[:2] == ["2", "rest"]
    bad = rest("tokens", "list", "--kind", "rest_connection")
    assert bad.code == 2
    assert "--kind" in bad.err


def test_a_finish_failing_after_the_exchange_revokes_the_grant_and_asks_for_a_new_consent(
        rest: Cli, sim: RunningSim, rows) -> None:
    """The code is spent once exchanged: a later failure (here the probe) must not leave a live grant behind, nor
    an operator trying `finish` again; it says plainly that a new consent link is needed (exit 2, nothing written)."""
    def live() -> int:
        return sum(c["live_refresh_tokens"] for c in sim.admin.consents()
                   if c["username"] == BUSINESS and c["client_id"] == APP_ID)

    callback = consent(sim, start(rest)["url"])
    before, live_before = rows(), live()
    sim.admin.inject_fault("http_503", path="/api/debtors")
    try:
        failed = finish(rest, callback)
    finally:
        sim.admin.clear_faults()
    assert failed.code == 2, failed.err
    assert "used up" in failed.err
    assert "its grant was revoked at Nmbrs" in failed.err
    assert ("l1nda-sync connections start --customer CUST-GRAAF --contact jan@bakkerij-degraaf.example "
            "--language nl") in failed.err
    assert rows() == before
    assert live() == live_before  # the refresh token the exchange gave is dead again
    assert sim.admin.call_count(service="Identity", operation="revocation") >= 1


def test_show_labels_the_hint_as_the_consents_first_token_not_the_refresh_token(rest: Cli, sim: RunningSim) -> None:
    """The hint is the end of the first refresh token: stale after the first rotation, so never 'refresh token'."""
    assert finish(rest, consent(sim, start(rest)["url"])).code == 0
    listed = rest("connections", "list", "--json").json
    shown = rest("connections", "show", str(listed[-1]["token"]["id"])).out
    assert "consent's first token" in shown
    assert "refresh token" not in shown
