"""The bench's REST part: L1NDA's app registered in the generated world, client logins that may consent, their
consents made through the simulator's admin API and stored with `ConnectionStore` (what `connections start` and
`connections finish` do), and the identity server's token calls counted from the simulator's call log."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg2

from nmbrs_sim.admin import SimAdmin

if TYPE_CHECKING:
    from l1nda_sync.settings import Settings

# L1NDA's Nmbrs app in the bench world (values of the local simulator only).
BENCH_APP: dict[str, Any] = {
    "client_id": "PartnerApp_L1NDA_bench",
    "client_secret": "bench*Secret$2027",
    "name": "L1NDA (bench)",
    "redirect_uris": ["http://127.0.0.1:8090/nmbrs/callback"],
    "subscription_keys": ["6b2f0c1d9e8a47b3a5c4d3e2f1a0b9c8"],
    "scopes": ["offline_access", "company.info.read", "debtor.info.read", "user.info.read"],
}
PASSWORD = "bench-consent-pw"  # noqa: S105 - lets a generated login consent on the local simulator
CONSENT_WORKERS = 8
IDENTITY, TOKEN = "Identity", "token"  # the call log's service and operation of /connect/token


@dataclass(frozen=True)
class RestLogin:
    """A client login that consents, and the customer its connection belongs to (that of its first company's
    link, as `request_links` names them: a connection serves its own customer's links only)."""

    username: str
    customer_ref: str


def add_rest(scenario: dict[str, Any], count: int, rng: random.Random) -> list[RestLogin]:
    """Register L1NDA's app in `scenario` and let `count` debtor-level client logins consent (a password);
    answers them in a reproducible order."""
    clients = [login for env in scenario["environments"] for login in env.get("logins") or []
               if login.get("level") == "client"]
    chosen = sorted(rng.sample(range(len(clients)), min(count, len(clients))))
    for n in chosen:
        clients[n]["password"] = PASSWORD
    scenario["rest"] = {"clients": [BENCH_APP]}
    return [RestLogin(str(clients[n]["username"]), f"bench-customer-{min(clients[n].get('company_filter') or [n])}")
            for n in chosen]


def rest_env(root_url: str) -> dict[str, str]:
    """The L1NDA_NMBRS_REST_* settings for the bench app on the simulator (API and identity server on one host)."""
    return {
        "L1NDA_NMBRS_REST_API_BASE_URL": root_url,
        "L1NDA_NMBRS_REST_IDENTITY_BASE_URL": root_url,
        "L1NDA_NMBRS_REST_CLIENT_ID": BENCH_APP["client_id"],
        "L1NDA_NMBRS_REST_CLIENT_SECRET": BENCH_APP["client_secret"],
        "L1NDA_NMBRS_REST_SUBSCRIPTION_KEY": BENCH_APP["subscription_keys"][0],
        "L1NDA_NMBRS_REST_REDIRECT_URI": BENCH_APP["redirect_uris"][0],
    }


def token_calls(admin: SimAdmin) -> int:
    """/connect/token calls so far (code exchanges and refreshes), from the simulator's call log."""
    return admin.call_count(service=IDENTITY, operation=TOKEN)


def consent_connections(database_url: str, settings: Settings, admin: SimAdmin, logins: Sequence[RestLogin],
                        *, workers: int = CONSENT_WORKERS) -> list[int]:
    """Each login consents to L1NDA's app, and the connection is stored as `connections finish` stores it
    (a started consent, the callback's code exchanged, one probe naming the user, saved); answers the ids."""
    from urllib.parse import parse_qs, urlsplit

    from l1nda_sync.nmbrs.rest.client import RestClient, probe_grant
    from l1nda_sync.nmbrs.rest.oauth import exchange_code, parse_callback, start_authorization
    from l1nda_sync.registry.connections import ConnectionStore, Consent

    app = settings.rest_app()
    if app is None:
        raise RuntimeError("the bench's REST app is not configured (L1NDA_NMBRS_REST_*)")
    store = ConnectionStore.from_settings(settings)
    client = RestClient(app, settings)
    local = threading.local()
    opened: list[Any] = []
    lock = threading.Lock()

    def one(n: int) -> int:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = psycopg2.connect(database_url, options="-c timezone=UTC")
            with lock:
                opened.append(conn)
        username = logins[n].username
        request = start_authorization(app)
        with conn:
            store.start(conn, customer_ref=logins[n].customer_ref, contact=username, language="en", label=None,
                        state=request.state, code_verifier=request.code_verifier, actor="bench")
        q = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        location = admin.authorize(username, q["client_id"], q["redirect_uri"], q["scope"], q["state"],
                                   code_challenge=q["code_challenge"], code_challenge_method="S256")
        callback = parse_callback(location)
        with conn:
            authorization = store.take_authorization(conn, callback.state)
            assert callback.code is not None
            grant = exchange_code(app, callback.code, authorization.code_verifier.reveal(), now=datetime.now(UTC))
            reach, grant = probe_grant(settings, app, grant, client=client)
            if reach.user is None:
                raise RuntimeError(f"the consent of {username} names no user (scope user.info.read)")
            consent = Consent(app.client_id, reach.user.user_id, str(reach.user.email),
                              tuple(d.uuid for d in reach.debtors), grant)
            return store.save_connection(conn, authorization, consent, actor="bench").connection.id

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, range(len(logins))))
    finally:
        client.close()
        for conn in opened:
            conn.close()
