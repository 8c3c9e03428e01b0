"""The token-health app against a real registry (embedded PostgreSQL), Airflow's SimpleAuthManager for logins,
and a small real HTTP server standing in for Airflow's public API (it records the Bearer and the body)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg2
import pytest

# The API server's JWT key, before anything asks Airflow for it (Airflow reads its config from the environment).
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET",
                      "l1nda-ui-tests-jwt-secret-0123456789abcdef-0123456789abcdef-0123456789")
os.environ.setdefault("AIRFLOW__API__SECRET_KEY", "l1nda-ui-tests-api-secret-0123456789abcdef")
os.environ.setdefault("AIRFLOW__CORE__AUTH_MANAGER",
                      "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager")

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)

# Plaintexts the pages must never show (tokens seeded with them).
SECRETS = {
    "anker": "ankerSECRETtoken0001abcdEF9a",
    "vandijk": "vandijkSECRETtoken0002ghijK4f5",
    "horeca": "horecaSECRETtoken0003mnopQb8a9",
}


@dataclass
class FakeAirflow:
    """A real HTTP server on 127.0.0.1 answering POST /api/v2/dags/<dag>/dagRuns like Airflow's API."""

    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeAirflow:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                fake.requests.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                                      "body": body})
                if fake.status == 200:
                    answer: dict[str, Any] = {"dag_run_id": f"manual__2026-05-04T12:00:0{len(fake.requests)}+00:00",
                                              "state": "queued", "conf": body.get("conf")}
                else:
                    answer = {"detail": "Forbidden" if fake.status == 403 else "The Dag was not found"}
                data = json.dumps(answer).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def fake_airflow() -> Iterator[FakeAirflow]:
    fake = FakeAirflow().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def auth_manager(airflow_db: Path) -> Any:
    """Airflow's SimpleAuthManager, initialised as the API server does (its revoked-token check reads the
    metadata database, migrated once per session)."""
    from airflow.api_fastapi.app import init_auth_manager

    return init_auth_manager()


def _jwt(auth_manager: Any, username: str, role: str) -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(auth_manager.generate_jwt(SimpleAuthManagerUser(username=username, role=role)))


@pytest.fixture(scope="session")
def admin_jwt(auth_manager: Any) -> str:
    return _jwt(auth_manager, "admin", "admin")


@pytest.fixture(scope="session")
def viewer_jwt(auth_manager: Any) -> str:
    return _jwt(auth_manager, "viewer", "viewer")


@dataclass
class Seeded:
    """Ids of what `seeded` put in the registry."""

    tokens: dict[str, int]
    links: dict[str, int]
    problems: dict[str, int]
    mails: dict[str, int]


def seed(url: str) -> Seeded:
    """A small world: three SOAP tokens (known plaintexts), reach with names and tags, links in every state
    (one suspended behind a lost tag), an open problem with its mails, a stuck mail and a parked webhook event."""
    from l1nda_sync.registry.tokens import NewToken, TokenStore
    from l1nda_sync.settings import Settings

    store = TokenStore.from_settings(Settings.load(use_airflow=False))
    conn = psycopg2.connect(url, options="-c timezone=UTC")
    try:
        with conn:
            ids = {}
            for key, label, level, contact in (
                ("anker", "Brasserie Het Anker", "debtor", "boekhouding@hetanker.example"),
                ("vandijk", "Modehuis Van Dijk", "debtor", "payroll@modehuis-vandijk.example"),
                ("horeca", "Horeca office", "accountant", "office@horeca.example"),
            ):
                new = NewToken.validate(label=label, level=level, username=f"{key}@demo.example",
                                        token=SECRETS[key], contacts=[contact])
                ids[key] = store.add(conn, new, actor="test").id
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE tokens SET state = 'active', last_checked_at = %s, last_outcome = 'ok' "
                        "WHERE id IN (%s, %s)", (NOW - timedelta(minutes=7), ids["anker"], ids["horeca"]))
            cur.execute("UPDATE tokens SET state = 'revoked', last_checked_at = %s, last_outcome = 'invalid' "
                        "WHERE id = %s", (NOW - timedelta(hours=2), ids["vandijk"]))
            h = ids["horeca"]
            cur.execute("""INSERT INTO reach_debtors (token_id, debtor_id, number, name, tags) VALUES
                           (%s, 501, 'D501', 'Brasserie Het Anker BV', '["L1NDA"]'),
                           (%s, 502, 'D502', 'Cafe De Zwaan BV', '[]')""", (h, h))
            cur.execute("""INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name) VALUES
                           (%s, 50101, 501, 1, 'Het Anker Keuken')""", (h,))
            cur.execute("""INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name, lost_at)
                           VALUES (%s, 50201, 502, 1, 'De Zwaan Bar', %s)""", (h, NOW - timedelta(hours=1)))
            links = {}
            for key, ref, company, debtor, state, token, reason in (
                ("active", "CUST-ANKER", 50101, 501, "active", h, "failover"),
                ("suspended", "CUST-ZWAAN", 50201, 502, "suspended", h, "tag_or_filter"),
                ("pending", "CUST-NIEUW", 77001, None, "pending", None, "requested"),
                ("revoked", "CUST-VANDIJK", 60101, None, "suspended", ids["vandijk"], "revoked"),
            ):
                cur.execute("""INSERT INTO links (customer_ref, company_id, debtor_id, state, token_id, reason)
                               VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
                            (ref, company, debtor, state, token, reason))
                links[key] = cur.fetchone()[0]
                cur.execute("""INSERT INTO link_events (link_id, actor, from_state, to_state, to_token_id, reason)
                               VALUES (%s, 'sync', 'active', %s, %s, %s)""", (links[key], state, token, reason))
            cur.execute("""INSERT INTO problems (token_id, kind, opened_at, last_seen_at) VALUES (%s, 'revoked', %s, %s)
                           RETURNING id""", (ids["vandijk"], NOW - timedelta(hours=2), NOW - timedelta(minutes=10)))
            problem = cur.fetchone()[0]
            mails = {}
            for key, state in (("sent", "sent"), ("uncertain", "uncertain")):
                cur.execute("""INSERT INTO outbox (problem_id, event, recipients, subject, body_text, message_id,
                                                   state, audience, sent_at)
                               VALUES (%s, 'opened', %s, %s, 'body', %s, %s, 'customer', %s) RETURNING id""",
                            (problem, ["payroll@modehuis-vandijk.example"],
                             "[L1NDA] Nmbrs token revoked: Modehuis Van Dijk (…K4f5)", f"<{key}@l1nda.test>", state,
                             NOW - timedelta(hours=1) if state == "sent" else None))
                mails[key] = cur.fetchone()[0]
            cur.execute("""INSERT INTO webhook_outbox (event, payload, state, attempts, last_error)
                           VALUES ('token.state_changed', '{"id": 2}', 'failed', 3, 'HTTP 400') RETURNING id""")
            mails["webhook"] = cur.fetchone()[0]
            cur.execute("""INSERT INTO runs (dag_run_id, started_at, finished_at, state, summary)
                           VALUES ('scheduled__2026-05-04T11:50:00+00:00', %s, %s, 'success',
                                   '{"tokens_checked": 3, "links_suspended": 1}')""",
                        (NOW - timedelta(minutes=10), NOW - timedelta(minutes=9)))
    finally:
        conn.close()
    return Seeded(ids, links, {"revoked": problem}, mails)


@pytest.fixture
def seeded(registry_url: str, fernet_keys: list[str]) -> Seeded:
    return seed(registry_url)


@pytest.fixture
def app(registry_url: str, fernet_keys: list[str], fake_airflow: FakeAirflow, auth_manager: Any) -> Any:
    from l1nda_sync.settings import Settings
    from l1nda_sync.ui.app import create_app

    settings = Settings.load(env={"L1NDA_DATABASE_URL": registry_url, "L1NDA_FERNET_KEYS": fernet_keys[0]},
                             use_airflow=False)
    return create_app(settings, clock=lambda: NOW, api_url=fake_airflow.url)


@pytest.fixture
def client(app: Any) -> Any:
    from fastapi.testclient import TestClient

    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client
