"""Driving the customer page and the simulator's consent page over real HTTP (httpx), as a browser would."""

from __future__ import annotations

import html
import io
import json
import re
import sys
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg2

from l1nda_sync.cli import main
from tests.l1nda_sync.web.conftest import PASSWORDS, WebStack


def browser() -> httpx.Client:
    return httpx.Client(follow_redirects=False, timeout=30.0)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return html.unescape(found.group(1))


def error_code(response: httpx.Response) -> str | None:
    found = re.search(r'<main id="error" data-error="([a-z_]+)"', response.text)
    return found.group(1) if found else None


def items(page: str, list_id: str) -> list[str]:
    block = re.search(rf'<ul id="{list_id}">(.*?)</ul>', page, re.S)
    assert block, f"no <ul id={list_id}>"
    return [html.unescape(re.sub(r"<[^>]+>", "", li)).strip() for li in re.findall(r"<li[^>]*>(.*?)</li>",
                                                                                   block.group(1), re.S)]


def start_consent(client: httpx.Client, url: str) -> httpx.Response:
    """Open the invitation and press "Connect with Nmbrs": the answer (a 303 to Nmbrs when all is well)."""
    page = client.get(url)
    assert page.status_code == 200, page.text[:300]
    return client.post(url + "/connect", data={"csrf": csrf_of(page.text)})


def consent_at_nmbrs(client: httpx.Client, authorize_url: str, username: str, *, action: str = "allow",
                     password: str | None = None) -> str:
    """Sign in on the simulator's consent page and allow (or deny): the callback URL Nmbrs sends the browser to."""
    page = client.get(authorize_url)
    assert page.status_code == 200, page.text[:300]
    form = {name: html.unescape(value) for name, value in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text)}
    form.update({"username": username, "password": password or PASSWORDS[username], "action": action})
    answer = client.post(urlsplit(authorize_url)._replace(path="/connect/authorize", query="").geturl(), data=form)
    assert answer.status_code in (302, 303), answer.text[:300]
    return answer.headers["location"]


def consent(stack: WebStack, url: str, username: str, client: httpx.Client | None = None) -> httpx.Response:
    """The whole consent: invitation page, Connect, Nmbrs' page, the callback: the page it ends on."""
    client = client or browser()
    started = start_consent(client, url)
    assert started.status_code == 303, started.text[:300]
    callback = consent_at_nmbrs(client, started.headers["location"], username)
    assert callback.startswith(stack.callback_url)
    return client.get(callback)


def cli(*argv: str, stdin: str = "") -> tuple[int, str]:
    """`l1nda-sync ...` in-process (settings from the environment web_stack set)."""
    old_stdin, old_stdout = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = io.StringIO(stdin), io.StringIO()
    try:
        code = main(list(argv))
        return code, sys.stdout.getvalue()
    finally:
        sys.stdin, sys.stdout = old_stdin, old_stdout


def rows(stack: WebStack, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(stack.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def counts(stack: WebStack) -> dict[str, int]:
    """Rows of what a consent or hand-over writes, to show a failure wrote nothing."""
    tables = ("tokens", "rest_connections", "checks", "token_events", "link_events")
    found = {t: rows(stack, f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    found["used"] = rows(stack, "SELECT count(*) FROM invitations WHERE state = 'used'")[0][0]
    return found


def register_soap_token(stack: WebStack, username: str = "salaris@bakkerij-degraaf.example",
                        contact: str = "jan@bakkerij-degraaf.example", label: str = "Bakkerij De Graaf") -> int:
    """`tokens add` of a scenario login's SOAP token (checked at the simulator, so its reach is known): its id."""
    code, out = cli("tokens", "add", "--label", label, "--level", "debtor", "--username", username, "--contact",
                    contact, "--json", stdin=stack.token_of(username))
    assert code == 0, out
    return int(json.loads(out)["token"]["id"])
