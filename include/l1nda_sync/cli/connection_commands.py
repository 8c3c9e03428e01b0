"""`l1nda-sync connections start|finish|list|show|remove`: customers' consents to L1NDA's Nmbrs REST app.

`start` prints the authorize URL to send the customer; `finish` takes the URL Nmbrs redirected the customer's
browser to, checks its state, exchanges the code, probes the connection once and stores it (or renews the same
user's connection), all or nothing. A connection is a registry credential like a token: `tokens list` shows it
too (kind rest), and checks, links and problems work for it alike. No command ever prints a secret.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from l1nda_sync.cli import consenting, output
from l1nda_sync.cli.context import Context
from l1nda_sync.cli.token_commands import SHOW_ROWS, id_arg
from l1nda_sync.registry import connections, db, details
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.connections import ConnectionStore, RestConnection
from l1nda_sync.registry.errors import ConfigError

if TYPE_CHECKING:
    from l1nda_sync.cli.context import Commands
    from l1nda_sync.nmbrs.rest.config import RestApp

NO_APP = ("no Nmbrs REST app is configured: set the Airflow connection nmbrs_rest (or L1NDA_NMBRS_REST_CLIENT_ID, "
          "_CLIENT_SECRET, _SUBSCRIPTION_KEY and _REDIRECT_URI); `l1nda-sync settings` shows what is set")


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("connections", help="REST connections: customers' consents to L1NDA's Nmbrs app",
                                description="REST connections: a customer consents to L1NDA's Nmbrs app once; the "
                                            "connection then works like a token.")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(dest="connections_command", metavar="ACTION")

    start = sub.add_parser("start", parents=[common], help="start a consent: print the URL to send the customer",
                           description="Start a consent: prints the Nmbrs authorize URL to send the customer. After "
                                       "consenting, the customer's browser lands on L1NDA's redirect URI; give that "
                                       "whole URL to `connections finish`. The link is valid for "
                                       "rest_authorization_ttl (1 day by default) and once.")
    start.add_argument("--customer", required=True, metavar="REF", help="L1NDA's customer reference")
    start.add_argument("--contact", required=True, metavar="EMAIL", help="customer contact for alerts")
    start.add_argument("--language", choices=v.LANGUAGES, default="en", help="language of the contact's mails")
    start.add_argument("--label", help="a short name people recognise, unique (default: the customer reference)")
    start.set_defaults(handler=run_start)

    finish = sub.add_parser("finish", parents=[common], help="store the connection a customer's consent made",
                            description="Finish a consent: checks the state, exchanges the code, asks Nmbrs what the "
                                        "connection reaches and stores it; nothing is written when a step fails.")
    finish.add_argument("--callback-url", required=True, metavar="URL",
                        help="the whole address Nmbrs redirected the customer's browser to")
    finish.set_defaults(handler=run_finish)

    lst = sub.add_parser("list", parents=[common], help="list REST connections")
    lst.add_argument("--all", action="store_true", help="include removed connections")
    lst.add_argument("--customer", metavar="REF", help="only this customer's connections")
    lst.set_defaults(handler=run_list)

    show = sub.add_parser("show", parents=[common], help="a connection with its reach, checks, links and problems")
    show.add_argument("id", metavar="ID", type=id_arg)
    show.set_defaults(handler=run_show)

    remove = sub.add_parser("remove", parents=[common], help="retire a connection (its secrets are erased)",
                            description="Retire a connection for good: its refresh and access tokens are erased, "
                                        "the history kept. The customer may also withdraw it in Nmbrs.")
    remove.add_argument("id", metavar="ID", type=id_arg)
    remove.add_argument("--reason", help="why, for the audit trail (one line, at most 500 characters)")
    remove.set_defaults(handler=run_remove)


def _app(ctx: Context) -> RestApp:
    app = ctx.settings.rest_app()
    if app is None:
        raise ConfigError(NO_APP)
    return app


def _connection_text(c: RestConnection) -> str:
    return f"connection {c.id} {c.token.label!r} (customer {c.customer_ref}, consented by {c.user_email})"


# -- start / finish -------------------------------------------------------------------------------------------


def run_start(ctx: Context) -> int:
    from l1nda_sync.nmbrs.rest.oauth import start_authorization

    args = ctx.args
    customer, contact = v.customer_ref(args.customer), v.email(args.contact, "--contact")
    label = v.label(args.label) if args.label is not None else None
    app = _app(ctx)
    store = ConnectionStore.from_settings(ctx.settings)
    conn = ctx.connect()
    request = start_authorization(app)
    with db.transaction(conn):
        started = store.start(conn, customer_ref=customer, contact=contact, language=args.language, label=label,
                              state=request.state, code_verifier=request.code_verifier, actor=ctx.actor)
    data = {"authorization": started.id, "url": request.url, "customer": started.customer_ref,
            "contact": started.contact, "language": started.language, "label": started.label,
            "scopes": list(request.scopes), "expires_at": started.expires_at}
    ctx.emit(data, lambda: "\n".join([
        f"started consent {started.id} for customer {started.customer_ref} (contact {started.contact}, "
        f"{started.language}); send the customer this link (valid until {output.cell(started.expires_at)} UTC, "
        "once):", "", request.url, "",
        "After consenting, the customer's browser lands on L1NDA's redirect URI: run "
        "`l1nda-sync connections finish --callback-url '<that whole URL>'`.",
    ]))
    return 0


def run_finish(ctx: Context) -> int:
    callback = consenting.read_callback(ctx.args.callback_url)  # a denied consent: exit 2 before anything else
    app = _app(ctx)
    finished = consenting.finish(ctx.connect(), ctx.settings, app, callback, actor=ctx.actor)
    saved, reached = finished.saved, finished.reached
    c = saved.connection

    def text() -> str:
        verb = f"renewed (the same user consented again; was {saved.before})" if saved.replaced else "stored"
        lines = [f"{verb} {_connection_text(c)}; scopes {' '.join(c.scopes) or '-'}; state {c.token.state}: the "
                 "next sync run checks it",
                 f"it reaches {output.count(len(reached.debtors), 'debtor')} and "
                 f"{output.count(len(reached.companies), 'company', 'companies')}:",
                 output.table(("debtor", "number", "name"),
                              [(d.get("uuid"), d.get("number"), d.get("name")) for d in reached.debtors],
                              empty="no debtors: check the user's rights in Nmbrs")]
        debtor_numbers = {d.get("uuid"): d.get("number") for d in reached.debtors}
        shown, more = output.capped(reached.companies, SHOW_ROWS)
        lines.append(output.table(("company", "number", "name", "debtor number"),
                                  [(co.get("uuid"), co.get("number"), co.get("name"),
                                    debtor_numbers.get(co.get("debtor_uuid"))) for co in shown], empty="no companies"))
        return "\n".join(lines + ([more] if more else []))

    ctx.emit({"connection": c, "replaced": saved.replaced, "before": saved.before,
              "reach": {"debtors": reached.debtors, "companies": reached.companies}}, text)
    return 0


# -- list / show / remove -------------------------------------------------------------------------------------


def run_list(ctx: Context) -> int:
    customer = v.customer_ref(ctx.args.customer) if ctx.args.customer else None
    conn = ctx.connect()
    found = connections.list_connections(conn, include_removed=ctx.args.all, customer_ref=customer)
    rows = [(c.id, c.token.label, c.customer_ref, c.user_email, " ".join(c.scopes), c.token.state,
             c.access_expires_at, c.token.last_valid_at) for c in found]
    ctx.emit(found, lambda: output.table(
        ("id", "label", "customer", "consented by", "scopes", "state", "access until", "last valid"), rows,
        empty="no REST connections; start one with `l1nda-sync connections start`"))
    return 0


def run_show(ctx: Context) -> int:
    conn = ctx.connect()
    c = connections.get_connection(conn, ctx.args.id)
    d = details.token_detail(conn, ctx.args.id)
    ctx.emit({"connection": c, "detail": d}, lambda: _show_text(c, d))
    return 0


def _show_text(c: RestConnection, d: details.TokenDetail) -> str:
    from l1nda_sync.cli.token_commands import _show_text as token_text

    t = c.token
    head = output.fields([
        ("connection", f"{c.id} {t.label}"), ("customer", c.customer_ref),
        ("consented by", f"{c.user_email} (Nmbrs user {c.user_id})"), ("scopes", " ".join(c.scopes)),
        ("debtors", ", ".join(c.debtor_ids) or None), ("consent's first token", t.token_hint),
        ("access token until", c.access_expires_at), ("rotations", c.generation), ("refreshed", c.refreshed_at),
    ])
    return head + "\n\n" + token_text(d)


def run_remove(ctx: Context) -> int:
    reason = v.reason(ctx.args.reason)
    conn = ctx.connect()
    with db.transaction(conn) as cur:
        change = connections.remove(conn, ctx.args.id, actor=ctx.actor, reason=reason)
        c = connections.fetch_connection(cur, ctx.args.id)
    if change.changed:
        text = f"removed {_connection_text(c)}: {change.before} -> {c.token.state}; its secrets are erased"
    else:
        text = f"{_connection_text(c)} is already removed; nothing changed"
    ctx.emit({"connection": c, "before": change.before, "changed": change.changed}, text)
    return 0
