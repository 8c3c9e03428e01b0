"""Invitation links in queued mails: a placeholder at rest, the customer's link only in the mail that leaves.

A queued mail (an `outbox` row) never holds a link's value. Where the link goes, the body holds
`[[l1nda-invitation:ID:link]]`, and `[[l1nda-invitation:ID:until]]` where its expiry goes; the outbox drain fills
both in memory right before it builds the message (`fill`), re-deriving the value from the invitation's nonce
and the web secret (`registry.invitations.derive_value`). So PostgreSQL holds the link nowhere (the invitation row
keeps only its hash and nonce), a resend of an 'uncertain' or 'failed' row makes the same link again, and
every mail is checked against the invitation when it leaves, not when it was queued:
- used already (the customer acted, e.g. on a link an operator handed over): the mail is not sent, the row is
  'dropped' with the reason (nothing to ask any more);
- expired, or made under a web secret that was rotated since (its link can no longer be derived): it is
  replaced (`invitations.renew`: the problem's open invitation, or a new one bound alike and valid as long) and
  the row is rewritten to name the new invitation, so no dead link is sent and a resend sends the new one;
  when none can be made (its token was removed) the row is 'dropped' with the reason;
- the web secret or base URL missing where the drain runs, an unknown invitation, or one not bound to this mail
  (another contact or problem: a placeholder typed into a company name cannot fetch someone else's link): the
  row 'failed' with a message that says what to fix (operations get the `outbox_stuck` problem; `outbox
  resend` after the fix).
Only customer mails are filled; the operations copy never names more than the invitation's id.

Why not encrypt the bodies with the registry's TokenCipher instead: the mail would still be checked only when it
was queued (a used or expired link, or one of a rotated secret, would go out as is), every reader of the outbox
(`outbox list`, the demo, tests) would need the Fernet keys, and `keys rotate` would have to re-encrypt mails.
The placeholder needs nothing but the web secret the link is made from anyway.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from l1nda_sync.alerts.rendering import when
from l1nda_sync.registry import invitations as inv
from l1nda_sync.registry.errors import NotFound, RegistryError

if TYPE_CHECKING:
    from datetime import datetime

    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.alerts.outbox import OutboxRow
    from l1nda_sync.masking import Secret
    from l1nda_sync.settings import Settings

log = logging.getLogger(__name__)

PLACEHOLDER = re.compile(r"\[\[l1nda-invitation:(\d+):(link|until)\]\]")
ACTOR = "outbox"


def link_placeholder(invitation_id: int) -> str:
    """What a queued mail holds where the invitation's link goes."""
    return f"[[l1nda-invitation:{invitation_id}:link]]"


def until_placeholder(invitation_id: int) -> str:
    """What a queued mail holds where the invitation's expiry goes (filled in the mail's language)."""
    return f"[[l1nda-invitation:{invitation_id}:until]]"


class Unsendable(Exception):
    """The mail names an invitation whose link cannot be filled in; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Dropped:
    """The mail is not to be sent: `reason` (kept on the row)."""

    reason: str


def named(row: OutboxRow) -> set[int]:
    """The invitations a queued mail names."""
    bodies = (row.subject, row.body_text, row.body_html or "")
    return {int(m.group(1)) for body in bodies for m in PLACEHOLDER.finditer(body)}


def fill(conn: Connection, row: OutboxRow, settings: Settings, now: datetime) -> OutboxRow | Dropped:
    """The row with its invitation's link and expiry filled in (in memory only), or why it is not sent.

    Runs in its own transaction (committed before the hand-over). Raises Unsendable."""
    ids = named(row)
    if not ids or row.audience != "customer":
        return row
    if len(ids) > 1:
        raise Unsendable(f"the mail names invitations {sorted(ids)}; a mail carries one link")
    if not settings.web_base_url or not settings.web_secret:
        raise Unsendable("the mail carries an invitation link: set L1NDA_WEB_BASE_URL and L1NDA_WEB_SECRET (the "
                         "customer page's) where the outbox drains, then `l1nda-sync outbox resend "
                         f"{row.id}`")
    invitation_id = ids.pop()
    try:
        with conn, conn.cursor() as cur:
            current = _current(cur, row, invitation_id, settings.web_secret, now)
    except RegistryError as exc:  # renewing failed (e.g. its token was removed): nothing was written
        return Dropped(f"invitation {invitation_id} can no longer be used and no new one can be made "
                       f"({exc}); not sent")
    if isinstance(current, Dropped):
        return current
    invitation, value = current
    url = inv.link(settings.web_base_url, value)
    until = when(invitation.expires_at, row.language)
    old = invitation_id

    def text(body: str, escape: bool) -> str:
        def one(match: re.Match[str]) -> str:
            if int(match.group(1)) not in (old, invitation.id):
                return match.group(0)
            filled = url if match.group(2) == "link" else until
            return html.escape(filled) if escape else filled
        return PLACEHOLDER.sub(one, body)

    return dataclasses.replace(row, subject=text(row.subject, False), body_text=text(row.body_text, False),
                               body_html=text(row.body_html, True) if row.body_html is not None else None)


def _current(cur: Cursor, row: OutboxRow, invitation_id: int, secret: Secret,
             now: datetime) -> tuple[inv.Invitation, Secret] | Dropped:
    """The invitation whose link the mail gets and its value (renewed when needed), or Dropped."""
    try:
        invitation = inv.get(cur, invitation_id, for_update=True)
    except NotFound:
        raise Unsendable(f"invitation {invitation_id} the mail names does not exist") from None
    if invitation.contact.casefold() not in {r.casefold() for r in row.recipients} \
            or invitation.problem_id != row.problem_id:
        raise Unsendable(f"invitation {invitation_id} is not this mail's (another contact or problem); not filled "
                         "in")
    if invitation.state == "used":
        return Dropped(f"invitation {invitation_id} was used on {invitation.used_at:%Y-%m-%d %H:%M} UTC before "
                       "this mail left: nothing to ask any more; not sent")
    value = inv.derive_value(secret, invitation.nonce)
    if not invitation.expired(now) and inv.value_hash(value) == invitation.value_hash:
        return invitation, value
    why = "expired" if invitation.expired(now) else "was made under another web secret"
    issued = inv.renew(cur, invitation, secret=secret, now=now, actor=ACTOR)
    new = issued.invitation
    inv.mark_sent(cur, new.id, now)
    cur.execute(
        """UPDATE outbox SET subject = %s, body_text = %s, body_html = %s WHERE id = %s AND state = 'sending'""",
        (_rename(row.subject, invitation_id, new.id), _rename(row.body_text, invitation_id, new.id),
         _rename(row.body_html, invitation_id, new.id) if row.body_html is not None else None, row.id))
    log.info("outbox %s: invitation %s %s; the mail carries invitation %s instead", row.id, invitation_id, why,
             new.id)
    return new, issued.value


def _rename(body: str, old: int, new: int) -> str:
    return PLACEHOLDER.sub(lambda m: f"[[l1nda-invitation:{new}:{m.group(2)}]]" if int(m.group(1)) == old
                           else m.group(0), body)
