"""Mails of the customer page, queued in the alerts outbox (sent at most once by its drain): the invitation to a
customer, and a notice to operations when a customer finished a consent or handed over a token.

The invitation mail carries the customer's own link, and only in the mail to that customer. The queued row holds
placeholders where the link and its expiry go; the outbox drain fills them in when the mail leaves
(`alerts.invitation_links`), so no table, log or other mail holds the link.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import jinja2

from l1nda_sync.alerts import store
from l1nda_sync.alerts.invitation_links import link_placeholder, until_placeholder
from l1nda_sync.alerts.rendering import one_line, tidy_text
from l1nda_sync.alerts.tracker import new_message_id

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.registry.invitations import Invitation
    from l1nda_sync.settings import Settings

INVITATION_EVENT = "invitation"
NOTICE_EVENT = "customer_page"


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("l1nda_sync.web", "templates/mail"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )


def _render(name: str, lang: str, context: dict[str, Any]) -> tuple[str, str, str]:
    env = _environment()
    subject = env.get_template(f"{lang}/{name}_subject.txt").render(context)
    text = env.get_template(f"{lang}/{name}.txt").render(context)
    html = env.get_template(f"{lang}/{name}.html").render(context)
    return one_line(subject), tidy_text(text), html


def queue_invitation(cur: Cursor, invitation: Invitation, settings: Settings, *, now: datetime) -> int:
    """Queue the invitation mail to its contact (in the contact's language); returns the outbox row id."""
    context = {"invitation": invitation, "url": link_placeholder(invitation.id),
               "until": until_placeholder(invitation.id),
               "support": settings.ops_recipients[0] if settings.ops_recipients else ""}
    subject, text, html = _render("invitation", invitation.language, context)
    return store.insert_outbox(cur, problem_id=invitation.problem_id, event=INVITATION_EVENT, audience="customer",
                               language=invitation.language, recipients=[invitation.contact], subject=subject,
                               body_text=text, body_html=html, message_id=new_message_id(), now=now)


def queue_notice(cur: Cursor, settings: Settings, *, what: str, customer_ref: str, contact: str, via: str,
                 problem_id: int | None, credential: str, companies: int, links: list[str],
                 now: datetime) -> int | None:
    """Tell operations what a customer did on the page (never a secret or the link). `via` says how the customer
    came: 'invitation 7', or the consent an operator started with `connections start` (no invitation)."""
    if not settings.ops_recipients:
        return None
    context = {"what": what, "customer_ref": customer_ref, "contact": contact, "via": via,
               "credential": credential, "companies": companies, "links": links}
    subject, text, html = _render("notice", "en", context)
    return store.insert_outbox(cur, problem_id=problem_id, event=NOTICE_EVENT, audience="ops",
                               language="en", recipients=list(settings.ops_recipients), subject=subject,
                               body_text=text, body_html=html, message_id=new_message_id(), now=now)
