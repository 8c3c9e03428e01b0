"""Invitations to the customer page: one-time links to consent to REST or to hand over a new SOAP token.

A link's value is never stored. The registry keeps its SHA-256 (`value_hash`, to find it) and a random nonce; the
value is HMAC-SHA256(web secret, nonce), base64url (43 characters, like `secrets.token_urlsafe(32)`), so only the
holder of the web secret can make a link again (a reminder repeats the same link; a rotated secret makes a new
invitation instead). An invitation is bound to a customer, a contact, a purpose and a language (and, for a token,
the token to replace), expires (setting `invitation_ttl`, 14 days), and is used once: `mark_used` runs in the
transaction that stores what it made and succeeds for one caller only.

Times come from the caller (`now`), so tests can move the clock. Functions take a cursor and leave the
transaction to the caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from l1nda_sync.masking import Secret
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

PURPOSES = ("rest", "token")
OPEN_STATES = ("created", "sent", "opened")
VALUE_FIELD = "invitation"
_COLUMNS = ("id, customer_ref, contact, purpose, language, token_id, problem_id, state, created_at, expires_at, "
            "sent_at, opened_at, used_at, result_token_id, nonce, value_hash")


class InvitationUnusable(InvalidInput):
    """The link cannot be used: `code` is 'unknown', 'expired' or 'used' (the page's error code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(VALUE_FIELD, message)
        self.code = code


def derive_value(secret: Secret, nonce: str) -> Secret:
    """The link's value for a nonce: HMAC-SHA256 under the web secret, base64url without padding."""
    digest = hmac.new(secret.reveal().encode(), b"l1nda-invitation:" + nonce.encode(), hashlib.sha256).digest()
    return Secret(base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


def value_hash(value: str | Secret) -> str:
    plain = value.reveal() if isinstance(value, Secret) else value
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def link(base_url: str, value: Secret) -> str:
    """The address a customer opens: {base}/invite/{value}."""
    return f"{base_url.rstrip('/')}/invite/{value.reveal()}"


@dataclass(frozen=True, slots=True)
class Invitation:
    """An invitation as people see it: never its value."""

    id: int
    customer_ref: str
    contact: str
    purpose: str
    language: str
    token_id: int | None
    problem_id: int | None
    state: str
    created_at: datetime
    expires_at: datetime
    sent_at: datetime | None
    opened_at: datetime | None
    used_at: datetime | None
    result_token_id: int | None
    nonce: str = field(repr=False)
    value_hash: str = field(repr=False)

    def expired(self, now: datetime) -> bool:
        return self.state == "expired" or (self.state != "used" and self.expires_at <= now)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _COLUMNS.split(", ") if name not in ("nonce", "value_hash")}


@dataclass(frozen=True, slots=True)
class Issued:
    """An invitation with its value (to mail once), and whether an open one was reused."""

    invitation: Invitation
    value: Secret = field(repr=False)
    reused: bool = False


def _row(cur: Cursor) -> Invitation | None:
    row = cur.fetchone()
    return None if row is None else Invitation(*row)


def get(cur: Cursor, invitation_id: int, *, for_update: bool = False) -> Invitation:
    cur.execute(f"SELECT {_COLUMNS} FROM invitations WHERE id = %s" + (" FOR UPDATE" if for_update else ""),
                (invitation_id,))
    found = _row(cur)
    if found is None:
        raise NotFound("ID", f"no invitation with id {invitation_id}")
    return found


def find(cur: Cursor, value: str, *, for_update: bool = False) -> Invitation | None:
    """The invitation a link's value opens (compared by hash only), or None."""
    if not value or len(value) > 200:
        return None
    cur.execute(f"SELECT {_COLUMNS} FROM invitations WHERE value_hash = %s" + (" FOR UPDATE" if for_update else ""),
                (value_hash(value),))
    return _row(cur)


def usable(found: Invitation | None, now: datetime) -> Invitation:
    """The invitation when it can still be used; InvitationUnusable saying why not."""
    if found is None:
        raise InvitationUnusable("unknown", "this link is not known here (mistyped, or cut short by the mail "
                                            "program?); ask L1NDA support for a new one")
    if found.state == "used":
        raise InvitationUnusable("used", f"this link was used already on {found.used_at:%Y-%m-%d %H:%M} UTC; a "
                                         "link works once")
    if found.expired(now):
        raise InvitationUnusable("expired", f"this link expired on {found.expires_at:%Y-%m-%d %H:%M} UTC; ask "
                                            "L1NDA support for a new one")
    return found


def _validate(customer_ref: str, contact: str, purpose: str, language: str | None,
              token_id: int | None) -> tuple[str, str, str, str]:
    ref = v.customer_ref(customer_ref)
    address = v.email(contact, "--contact")
    if purpose not in PURPOSES:
        raise InvalidInput("--purpose", f"must be one of {', '.join(PURPOSES)}, got {purpose!r}")
    if purpose == "token" and token_id is None:
        raise InvalidInput("--token-id", "an invitation to hand over a token names the token it replaces; see "
                                         "`l1nda-sync tokens list`")
    return ref, address, purpose, v.language(language)


def create(cur: Cursor, *, secret: Secret, customer_ref: str, contact: str, purpose: str, language: str | None,
           now: datetime, ttl: float, actor: str, token_id: int | None = None,
           problem_id: int | None = None) -> Issued:
    """A new invitation, valid `ttl` seconds from `now`. A token invitation must name a live SOAP token."""
    ref, address, purpose, lang = _validate(customer_ref, contact, purpose, language, token_id)
    if ttl <= 0:
        raise InvalidInput("--ttl-days", "must be more than 0")
    if token_id is not None:
        cur.execute("SELECT kind, removed_at IS NULL FROM tokens WHERE id = %s", (token_id,))
        row = cur.fetchone()
        if row is None or not row[1]:
            raise NotFound("--token-id", f"no live token with id {token_id}; see `l1nda-sync tokens list`")
        if row[0] != "soap_token":
            raise InvalidInput("--token-id", f"{token_id} is a REST connection; invite with --purpose rest to "
                                             "consent again")
    nonce = secrets.token_hex(32)
    value = derive_value(secret, nonce)
    cur.execute(
        f"""INSERT INTO invitations (value_hash, nonce, customer_ref, contact, purpose, language, token_id,
                                     problem_id, created_by, created_at, expires_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
        (value_hash(value), nonce, ref, address, purpose, lang, token_id, problem_id, actor, now,
         now + timedelta(seconds=ttl)),
    )
    made = _row(cur)
    assert made is not None
    return Issued(made, value)


def for_problem(cur: Cursor, *, secret: Secret, problem_id: int, customer_ref: str, contact: str, purpose: str,
                language: str | None, now: datetime, ttl: float, token_id: int | None = None,
                actor: str = "alerts") -> Issued:
    """The problem's open invitation (same link: `reused`), or a new one when there is none, it expired, it is
    for another purpose, or the web secret changed (its link cannot be made again): those are marked expired."""
    cur.execute(f"""SELECT {_COLUMNS} FROM invitations WHERE problem_id = %s AND state = ANY(%s)
                    FOR UPDATE""", (problem_id, list(OPEN_STATES)))
    current = _row(cur)
    if current is not None:
        value = derive_value(secret, current.nonce)
        if (not current.expired(now) and value_hash(value) == current.value_hash and current.purpose == purpose
                and current.token_id == token_id):
            return Issued(current, value, reused=True)
        cur.execute("UPDATE invitations SET state = 'expired' WHERE id = %s", (current.id,))
    return create(cur, secret=secret, customer_ref=customer_ref, contact=contact, purpose=purpose, language=language,
                  now=now, ttl=ttl, actor=actor, token_id=token_id, problem_id=problem_id)


def renew(cur: Cursor, old: Invitation, *, secret: Secret, now: datetime, actor: str) -> Issued:
    """A working invitation in place of `old`, whose link cannot be sent (expired, or made under another web
    secret): the problem's open one when it still works (`reused`), else a new one bound like `old` and valid as
    long as `old` was; `old` is marked expired. Raises like `create` (e.g. its token was removed)."""
    ttl = (old.expires_at - old.created_at).total_seconds()
    if old.problem_id is not None:
        cur.execute("UPDATE invitations SET state = 'expired' WHERE id = %s AND state = ANY(%s) AND "
                    "(expires_at <= %s OR value_hash <> %s)",
                    (old.id, list(OPEN_STATES), now, value_hash(derive_value(secret, old.nonce))))
        return for_problem(cur, secret=secret, problem_id=old.problem_id, customer_ref=old.customer_ref,
                           contact=old.contact, purpose=old.purpose, language=old.language, now=now, ttl=ttl,
                           token_id=old.token_id, actor=actor)
    cur.execute("UPDATE invitations SET state = 'expired' WHERE id = %s AND state = ANY(%s)",
                (old.id, list(OPEN_STATES)))
    return create(cur, secret=secret, customer_ref=old.customer_ref, contact=old.contact, purpose=old.purpose,
                  language=old.language, now=now, ttl=ttl, actor=actor, token_id=old.token_id)


def mark_sent(cur: Cursor, invitation_id: int, now: datetime) -> None:
    cur.execute("UPDATE invitations SET state = 'sent', sent_at = coalesce(sent_at, %s) WHERE id = %s "
                "AND state = 'created'", (now, invitation_id))


def mark_opened(cur: Cursor, invitation_id: int, now: datetime) -> None:
    cur.execute("UPDATE invitations SET state = 'opened', opened_at = coalesce(opened_at, %s) WHERE id = %s "
                "AND state IN ('created', 'sent')", (now, invitation_id))


def mark_used(cur: Cursor, invitation_id: int, *, now: datetime, result_token_id: int | None) -> Invitation:
    """Use the invitation (in the transaction that stores what it made). Exactly one caller succeeds: a second,
    or one after expiry, gets InvitationUnusable and must roll back."""
    cur.execute(f"""UPDATE invitations SET state = 'used', used_at = %s, result_token_id = %s
                    WHERE id = %s AND state = ANY(%s) AND expires_at > %s RETURNING {_COLUMNS}""",
                (now, result_token_id, invitation_id, list(OPEN_STATES), now))
    used = _row(cur)
    if used is None:
        usable(get(cur, invitation_id), now)  # says why (used or expired)
        raise InvitationUnusable("used", "this link cannot be used any more")
    return used
