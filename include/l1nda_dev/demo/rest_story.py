"""The demo's REST chapter: two customers consent to L1NDA's Nmbrs app, their links move to the connections, one
customer withdraws the consent in Nmbrs' App Manager, and its link fails over to the accountant's SOAP token.

Two connections, not one: the circuit breaker judges REST connections apart from SOAP tokens, and with a single
connection its refusal is every REST connection failing (a provider incident, never one customer's withdrawal).

The consent needs no browser: `connections start` prints the authorize URL, the simulator's admin API
(`POST /_sim/rest/authorize`) consents as the customer's login would on that page and answers the location the
browser would be sent to, and `connections finish --callback-url` takes it, as an operator would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from l1nda_dev.demo.stack import OPS, REST_APP_ID, DemoError, DemoStack
from l1nda_sync.masking import mask

CUSTOMER = "CUST-ANKER"
ENVIRONMENT = "demo-accountants"
DEBTOR = 2001  # Brasserie Het Anker, tag Horeca: the Horeca office's accountant token reaches it too
LOGIN = "salaris@brasserie-hetanker.example"  # the customer's own Nmbrs login, made in this chapter
LOGIN_NAME = "Sanne Anker"
LOGIN_PASSWORD = "anker-demo-pw"  # noqa: S105 - a login of the local simulator only
COMPANIES = (50101, 50102)  # the debtor's companies, both visible to its login
LINKED = 50101  # Brasserie Het Anker B.V.: requested for CUST-ANKER, served by the Horeca office until now
ACCOUNTANT = "Horeca office"
# The second customer that consents: Bakkerij De Graaf's own login (the scenario lets it consent).
OTHER_CUSTOMER, OTHER_LOGIN, OTHER_LINKED = "CUST-DEGRAAF", "salaris@bakkerij-degraaf.example", 60101

REASONS = {
    "moved_to_rest": "moved to the customer's REST connection",
    "failover": "taken over by another credential",
    "revoked": "the credential was revoked",
}


@dataclass
class Chapter:
    """What the chapter saw: the connection, the links at three moments, the problems, the mails it caused."""

    connection_id: int = 0  # the connection whose consent is withdrawn (CUSTOMER's)
    connections: list[dict[str, Any]] = field(default_factory=list)  # `connections list` at the end
    labels: dict[int, str] = field(default_factory=dict)
    links: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # moment -> company -> link
    problems: list[dict[str, Any]] = field(default_factory=list)
    mails: list[Any] = field(default_factory=list)


def consent(stack: DemoStack, url: str, username: str) -> str:
    """What the customer's browser is sent to after consenting on the page `url` leads to (PKCE as asked)."""
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    return str(stack.sim.admin.authorize(username, q["client_id"], q["redirect_uri"], q["scope"], q["state"],
                                         code_challenge=q.get("code_challenge"),
                                         code_challenge_method=q.get("code_challenge_method")))


def _shown_url(url: str) -> str:
    """A URL with its secrets (code, state, PKCE challenge) masked, as the demo shows it."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    shown = "&".join(f"{k}={mask(v[0]) if k in ('code', 'state', 'code_challenge') else v[0]}"
                     for k, v in query.items())
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{shown}"


def _links(stack: DemoStack) -> dict[int, dict[str, Any]]:
    from l1nda_dev.demo.story import _rows

    return {lk["company_id"]: lk for lk in _rows(stack.cli_json("links", "list"))}


def run_chapter(stack: DemoStack, run_dag: Callable[..., dict[str, Any]],
                wait_until_due: Callable[[DemoStack, int], None], *, links: Mapping[int, dict[str, Any]],
                labels: Mapping[int, str]) -> Chapter:
    """The chapter's steps; `run_dag` and `wait_until_due` are the story's, `links` and `labels` its last
    snapshot (links by company, token labels by id)."""
    say = stack.console.say
    admin = stack.sim.admin
    chapter = Chapter(labels=dict(labels))
    mails_before = len(stack.sink.stored)
    say("")
    say("--- REST chapter: two customers consent to L1NDA's Nmbrs app; one withdraws ---")
    say(f"L1NDA's app: {REST_APP_ID} (client id, secret, subscription key and redirect URI from the scenario, as "
        "L1NDA_NMBRS_REST_* settings)")
    admin.add_login(ENVIRONMENT, username=LOGIN, level="client", debtor=DEBTOR, company_filter=COMPANIES,
                    password=LOGIN_PASSWORD, name=LOGIN_NAME)
    say(f"Nmbrs: Brasserie Het Anker (debtor {DEBTOR}) gets a login of its own, {LOGIN}; link {LINKED} is served by "
        f"the accountant's token ({ACCOUNTANT}) so far; Bakkerij De Graaf ({OTHER_LOGIN}) connects too")
    chapter.links["before"] = dict(links)
    with ThreadPoolExecutor(max_workers=2) as pool:  # each `l1nda-sync` command starts a Python (about 2 s)
        made = list(pool.map(lambda who: connect(stack, *who), ((CUSTOMER, LOGIN, "nl"),
                                                                 (OTHER_CUSTOMER, OTHER_LOGIN, "en"))))
    for _, lines in made:
        for line in lines:
            say(line)
    chapter.connection_id = made[0][0]
    say("")
    run_dag(stack, "run 4, as scheduled (new connections are due at once)")
    chapter.links["consented"] = _links(stack)
    say("")
    withdraw(stack)
    say("")
    run_dag(stack, "run 5, for the withdrawn connection only (a healthy one is due hourly)",
            {"token_ids": [chapter.connection_id]})
    wait_until_due(stack, chapter.connection_id)
    run_dag(stack, "run 6, as scheduled (the refused connection is due again)")
    _read_the_end(stack, chapter)
    chapter.mails = list(stack.sink.stored[mails_before:])
    return chapter


def connect(stack: DemoStack, customer: str, login: str, language: str) -> tuple[int, list[str]]:
    """`connections start`, the customer's consent in Nmbrs, `connections finish`: the new connection's id and
    what to show of it."""
    started = stack.cli_json("connections", "start", "--customer", customer, "--contact", login, "--language",
                             language)
    location = consent(stack, str(started["url"]), login)
    finished = stack.cli_json("connections", "finish", "--callback-url", location)
    connection = finished.get("connection") or {}
    connection_id = int((connection.get("token") or {}).get("id") or 0)
    if not connection_id:
        raise DemoError(f"no connection id in `connections finish --json`: {str(finished)[:200]}")
    reach = finished.get("reach") or {}
    return connection_id, [
        f"$ l1nda-sync connections start --customer {customer} --contact {login} --language {language}  -> "
        f"send the customer {_shown_url(str(started['url']))}",
        f"    {login} signs in and consents (the simulator's POST /_sim/rest/authorize stands in for the "
        f"browser); Nmbrs redirects to {_shown_url(location)}",
        f"$ l1nda-sync connections finish --callback-url '<that URL>'  -> connection {connection_id}, consented "
        f"by {connection.get('user_email')}, reaching {len(reach.get('debtors') or [])} debtor(s) and "
        f"{len(reach.get('companies') or [])} companies; the next run checks it"]


def _read_the_end(stack: DemoStack, chapter: Chapter) -> None:
    """Links, the connection and the open problems, three `l1nda-sync` commands at once."""
    from l1nda_dev.demo.story import _rows

    commands = (("links", "list"), ("connections", "list"), ("problems", "list"))
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        links, connections, problems = pool.map(lambda argv: stack.cli_json(*argv), commands)
    chapter.links["withdrawn"] = {lk["company_id"]: lk for lk in _rows(links)}
    chapter.connections = list(connections) if isinstance(connections, list) else _rows(connections)
    for c in chapter.connections:
        token = c.get("token") or {}
        chapter.labels[int(token.get("id") or 0)] = str(token.get("label"))
    chapter.problems = _rows(problems)


def withdraw(stack: DemoStack) -> None:
    """The customer withdraws L1NDA's access in Nmbrs' App Manager."""
    admin = stack.sim.admin
    mine = [c for c in admin.consents() if str(c.get("username", "")).lower() == LOGIN
            and c.get("client_id") == REST_APP_ID and c.get("active", True)]
    if not mine:
        raise DemoError(f"the simulator has no consent of {LOGIN} to {REST_APP_ID}: {admin.consents()}")
    for c in mine:
        admin.withdraw_consent(str(c["id"]))
    stack.console.say(f"Nmbrs: {LOGIN} withdraws L1NDA's access in the App Manager (its tokens stop working; "
                      "one refusal is only a suspicion, a second one at least "
                      "L1NDA_REVOKE_MIN_SPACING later confirms it)")


def _link_cell(link: Mapping[str, Any] | None, labels: Mapping[int, str]) -> str:
    if not link:
        return "-"
    state = str(link.get("state"))
    reason = str(link.get("reason") or "")
    why = f" ({REASONS.get(reason, reason)})" if reason and reason != "reached" else ""
    if state == "active":
        return f"active via {labels.get(link.get('token_id') or 0, link.get('token_id'))}{why}"
    return f"{state}{why}"


def tell(chapter: Chapter) -> str:
    """The chapter's summary: the connection, the customer's links at three moments, the problems and mails."""
    from l1nda_dev.demo.story import _table, company_names, mail_lines

    names = company_names()
    out = ["", "=== The REST chapter ===", "", "The connections (`l1nda-sync connections list`):"]
    for c in chapter.connections:
        token = c.get("token") or {}
        out.append(f"  connection {token.get('id')} '{token.get('label')}' of customer {c.get('customer_ref')}, "
                   f"consented by {c.get('user_email')}; scopes {' '.join(c.get('scopes') or [])}; state "
                   f"{token.get('state')}")
    companies = sorted({cid for moment in chapter.links.values() for cid, lk in moment.items()
                        if lk.get("customer_ref") in (CUSTOMER, OTHER_CUSTOMER)})
    out += ["", f"Links of {CUSTOMER} and {OTHER_CUSTOMER}:"]
    out.append(_table(("company", "name", "before the consent", "after run 4", "at the end"), [
        (str(cid), names.get(cid, "?"),
         *(_link_cell(chapter.links.get(m, {}).get(cid), chapter.labels)
           for m in ("before", "consented", "withdrawn"))) for cid in companies]))
    ids = {int((c.get("token") or {}).get("id") or 0) for c in chapter.connections}
    mine = [p for p in chapter.problems if p.get("token_id") in ids]
    out += ["", "Open problems of the connections (`l1nda-sync problems list`):"]
    out += [f"  {p.get('kind')} - {p.get('token_label')}" for p in mine] or ["  none"]
    out += ["", f"Mails of this chapter ({len(chapter.mails)}):"]
    out += mail_lines(chapter.mails)
    return "\n".join(out)


def expectations(chapter: Chapter) -> list[str]:
    """What the chapter must show; an empty list when it did."""
    misses = []
    moved = chapter.links.get("consented", {}).get(LINKED, {})
    if moved.get("state") != "active" or moved.get("token_id") != chapter.connection_id:
        misses.append(f"after run 4 link {LINKED} is {moved.get('state')} via {moved.get('token_id')}, not active via "
                      f"connection {chapter.connection_id}")
    elif moved.get("reason") != "moved_to_rest":
        misses.append(f"after run 4 link {LINKED} has reason {moved.get('reason')}, not moved_to_rest")
    end = chapter.links.get("withdrawn", {}).get(LINKED, {})
    if end.get("token_id") == chapter.connection_id or end.get("state") not in ("active", "suspended"):
        misses.append(f"at the end link {LINKED} is {end.get('state')} via {end.get('token_id')}: it did not fail "
                      "over or suspend")
    other = chapter.links.get("withdrawn", {}).get(OTHER_LINKED, {})
    if other.get("reason") != "moved_to_rest" or other.get("state") != "active":
        misses.append(f"link {OTHER_LINKED} is {other.get('state')} ({other.get('reason')}), not active on "
                      f"{OTHER_CUSTOMER}'s connection")
    state = next(((c.get("token") or {}).get("state") for c in chapter.connections
                  if (c.get("token") or {}).get("id") == chapter.connection_id), None)
    if state not in ("revoked", "rejected"):
        misses.append(f"connection {chapter.connection_id} is {state}, not revoked")
    if not any(p.get("kind") == "consent_revoked" for p in chapter.problems):
        misses.append("no consent_revoked problem is open")
    recipients = {r for mail in chapter.mails for r in mail.recipients}
    for who in (OPS, LOGIN):
        if who not in recipients:
            misses.append(f"no mail to {who} in the REST chapter")
    return misses
