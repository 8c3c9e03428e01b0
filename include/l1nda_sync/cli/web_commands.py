"""`l1nda-sync web` (serve the customer page) and `l1nda-sync invite` (mail a customer a one-time link to it).

`invite` creates the invitation, queues its mail in the outbox and sends what is due at once (the outbox's own
drain: at most once per row), then prints the link once, so an operator can also hand it over another way.
The link is printed, never logged or stored; `--json` holds it too (for scripts that deliver it themselves). The
queued mail holds a placeholder the drain fills in (`alerts.invitation_links`).
"""

from __future__ import annotations

import argparse
import ipaddress
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from l1nda_sync.cli import output
from l1nda_sync.cli.context import Context
from l1nda_sync.masking import Secret
from l1nda_sync.registry import db
from l1nda_sync.registry import invitations as inv
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.errors import InvalidInput
from l1nda_sync.settings import SettingsError

if TYPE_CHECKING:
    from l1nda_sync.cli.context import Commands

DAY = 86400.0


def _port(value: str) -> int:
    try:
        return v.whole_number(value, "--port", low=1, high=65535, example="8090")
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {value!r}") from None
    if not 0 < days <= 90:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 90 days")
    return days


def _trusted(value: str) -> str:
    """--forwarded-allow-ips: addresses or networks, comma separated; never '*' (any client could then name its
    own address in X-Forwarded-For and walk around the per-address rate limit)."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("give the proxy's address or network, e.g. 127.0.0.1 or 172.16.0.0/12")
    for item in items:
        if item == "*":
            raise argparse.ArgumentTypeError("'*' trusts every client's X-Forwarded-For (a client could fake its "
                                             "address around the rate limit); give the proxy's address or network")
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an IP address or network: {item!r} (e.g. 127.0.0.1 or "
                                             "172.16.0.0/12)") from None
    return ",".join(items)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    web = commands.add_parser("web", parents=[common], help="serve the customer page (uvicorn)",
                              description="Serve the customer page: invitations to consent to L1NDA's Nmbrs app or "
                                          "to hand over a new SOAP token. Meant behind L1NDA's TLS proxy "
                                          "(L1NDA_WEB_BASE_URL is its public address). Needs L1NDA_WEB_SECRET.")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    web.add_argument("--port", type=_port, default=8090, help="port to listen on (default 8090)")
    web.add_argument("--proxy-headers", action="store_true",
                     help="trust X-Forwarded-For/-Proto from the proxy (the rate limit then sees the customer)")
    web.add_argument("--forwarded-allow-ips", type=_trusted, default="127.0.0.1", metavar="ADDRS",
                     help="with --proxy-headers: the proxy's addresses or networks, comma separated, whose "
                          "X-Forwarded-For is believed (default 127.0.0.1); any other client's is ignored")
    web.set_defaults(handler=run_web)

    invite = commands.add_parser("invite", parents=[common], help="mail a customer a one-time link to the page",
                                 description="Create a one-time invitation (valid --ttl-days, used once), mail it to "
                                             "the contact in their language and print the link once.")
    invite.add_argument("--customer", required=True, metavar="REF", help="L1NDA's customer reference")
    invite.add_argument("--contact", required=True, metavar="EMAIL", help="who gets the link")
    invite.add_argument("--purpose", required=True, choices=inv.PURPOSES,
                        help="rest: consent to L1NDA's Nmbrs app; token: hand over a new SOAP token")
    invite.add_argument("--language", choices=v.LANGUAGES, default="en", help="language of the mail and page")
    invite.add_argument("--token-id", type=int, metavar="N", help="the token a new SOAP token replaces (--purpose "
                                                                  "token)")
    invite.add_argument("--ttl-days", type=_days, metavar="D", help="days the link works (default: the setting "
                                                                    "invitation_ttl, 14 days)")
    invite.add_argument("--no-send", dest="send", action="store_false", default=True,
                        help="queue the mail only; the outbox DAG sends it")
    invite.set_defaults(handler=run_invite)


def _require_web(ctx: Context) -> tuple[str, Secret]:
    settings = ctx.settings
    if not settings.web_base_url:
        raise SettingsError("set L1NDA_WEB_BASE_URL to the customer page's public address (e.g. "
                            "https://connect.l1nda.example) so the link points to it")
    if not settings.web_secret:
        raise SettingsError("set L1NDA_WEB_SECRET (the customer page's, 32+ random characters): invitation links "
                            "are derived from it")
    return settings.web_base_url, settings.web_secret


def run_invite(ctx: Context) -> int:
    from l1nda_sync.alerts.outbox import drain
    from l1nda_sync.web import mail

    args = ctx.args
    customer, contact = v.customer_ref(args.customer), v.email(args.contact, "--contact")
    if args.purpose == "rest" and args.token_id is not None:
        raise InvalidInput("--token-id", "goes with --purpose token only")
    base, secret = _require_web(ctx)
    ttl = args.ttl_days * DAY if args.ttl_days else ctx.settings.invitation_ttl
    conn = ctx.connect()
    now = datetime.now(UTC)
    with db.transaction(conn) as cur:
        issued = inv.create(cur, secret=secret, customer_ref=customer, contact=contact, purpose=args.purpose,
                            language=args.language, now=now, ttl=ttl, actor=ctx.actor, token_id=args.token_id)
        url = inv.link(base, issued.value)
        outbox_id = mail.queue_invitation(cur, issued.invitation, ctx.settings, now=now)  # holds no link
        inv.mark_sent(cur, issued.invitation.id, now)
    delivery = "queued (the outbox DAG sends it)"
    if args.send:
        drain(conn, datetime.now(UTC), ctx.settings)
        with db.reading(conn) as cur:
            cur.execute("SELECT state, coalesce(dropped_reason, last_error) FROM outbox WHERE id = %s",
                        (outbox_id,))
            state, error = db.fetch_one(cur)
        delivery = "sent" if state == "sent" else f"{state} ({error or 'not sent yet'})" + (
            "; the outbox DAG retries" if state == "pending" else "; see `l1nda-sync outbox list`")
    invitation = issued.invitation
    data = {"invitation": invitation.to_dict(), "url": url, "outbox": outbox_id, "mail": delivery}
    ctx.emit(data, lambda: "\n".join([
        f"invitation {invitation.id} for customer {invitation.customer_ref} ({invitation.purpose}, "
        f"{invitation.language}) to {invitation.contact}, valid until {output.cell(invitation.expires_at)} UTC, "
        f"once; mail {delivery}.",
        "The link (shown this once; L1NDA keeps only its hash):",
        f"  {url}",
    ]))
    return 0


def run_web(ctx: Context) -> int:
    import uvicorn

    from l1nda_sync.registry import schema
    from l1nda_sync.web.app import create_app

    app = create_app(ctx.settings)  # a missing setting fails here, before listening
    conn = ctx.connect(check_schema=False)
    schema.require_current(conn)
    ctx.close()
    ctx.note(f"serving the customer page on http://{ctx.args.host}:{ctx.args.port}/ "
             f"(public address {ctx.settings.web_base_url or 'not set: L1NDA_WEB_BASE_URL'})")
    uvicorn.run(app, host=ctx.args.host, port=ctx.args.port, proxy_headers=ctx.args.proxy_headers,
                forwarded_allow_ips=ctx.args.forwarded_allow_ips, log_level="info")
    return 0
