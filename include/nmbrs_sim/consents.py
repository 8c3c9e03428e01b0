"""Consents and the grants that hang off them: authorization codes (5 minutes, single use) and refresh tokens
(only with `offline_access`; single use and rotating; expire after `refresh_idle_days` unused).

Pure bookkeeping with the time handed in; the identity server's HTTP side is `identity.py`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from nmbrs_sim.rest_clients import RestClient, RestSettings

DAY = 86_400.0


class OAuthError(Exception):
    """An RFC 6749 error answer of the token or revocation endpoint."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass(slots=True)
class Consent:
    """One login's consent to one client (what the customer sees in Nmbrs' App Manager)."""

    id: str
    client_id: str
    username: str
    scopes: list[str]
    created_at: float
    updated_at: float
    withdrawn_at: float | None = None

    @property
    def active(self) -> bool:
        return self.withdrawn_at is None


@dataclass(slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    consent_id: str
    scopes: list[str]
    issued_at: float
    challenge: str | None
    method: str | None
    used: bool = False


@dataclass(slots=True)
class _Refresh:
    consent_id: str
    client_id: str
    scopes: list[str]
    issued_at: float
    family_started_at: float
    used_at: float | None = None
    expired: bool = False
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class Grant:
    """What a successful code exchange or refresh hands to the token writer."""

    consent: Consent
    scopes: list[str]
    refresh_token: str | None


@dataclass
class ConsentBook:
    """All consents, codes and refresh tokens of one simulator; thread-safe."""

    settings: RestSettings = field(default_factory=RestSettings)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _consents: dict[str, Consent] = field(default_factory=dict, repr=False)
    _codes: dict[str, _Code] = field(default_factory=dict, repr=False)
    _refresh: dict[str, _Refresh] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ consent (authorize)
    def grant(self, client: RestClient, username: str, scopes: list[str], redirect_uri: str, now: float, *,
              challenge: str | None = None, method: str | None = None) -> str:
        """Record (or renew) the login's consent to the client and return a fresh authorization code."""
        with self._lock:
            consent = next((c for c in self._consents.values() if c.active and c.client_id == client.client_id
                            and c.username.lower() == username.lower()), None)
            if consent is None:
                consent = Consent(str(uuid.uuid4()), client.client_id, username, list(scopes), now, now)
                self._consents[consent.id] = consent
            else:
                consent.scopes = sorted(set(consent.scopes) | set(scopes))
                consent.updated_at = now
            code = secrets.token_hex(32).upper()
            self._codes[code] = _Code(client.client_id, redirect_uri, consent.id, list(scopes), now, challenge,
                                      method)
            return code

    # ------------------------------------------------------------------ token endpoint
    def exchange_code(self, client: RestClient, code: str, redirect_uri: str | None, verifier: str | None,
                      now: float) -> Grant:
        with self._lock:
            record = self._codes.get(code)
            if record is None or record.client_id != client.client_id:
                raise OAuthError("invalid_grant", "The authorization code is invalid.", self._status)
            if record.used:
                raise OAuthError("invalid_grant", "The authorization code was used already.", self._status)
            record.used = True
            if now - record.issued_at > self.settings.code_seconds:
                raise OAuthError("invalid_grant", "The authorization code has expired.", self._status)
            if redirect_uri != record.redirect_uri:
                raise OAuthError("invalid_grant", "The redirect_uri does not match the authorize request.",
                                 self._status)
            if record.challenge is not None and not _pkce_ok(record.challenge, record.method, verifier):
                raise OAuthError("invalid_grant", "The code_verifier does not match the code_challenge.",
                                 self._status)
            consent = self._live_consent(record.consent_id)
            return Grant(consent, record.scopes, self._new_refresh(consent, record.scopes, now, now))

    def refresh(self, client: RestClient, token: str, now: float) -> Grant:
        """Use a refresh token once: answer a new one and kill the old (a second use is invalid_grant)."""
        with self._lock:
            record = self._refresh.get(token)
            if record is None or record.client_id != client.client_id or record.revoked:
                raise OAuthError("invalid_grant", "The refresh token is invalid.", self._status)
            grace = self.settings.refresh_reuse_grace_seconds
            if record.used_at is not None and now - record.used_at >= grace:
                raise OAuthError("invalid_grant", "The refresh token was used already.", self._status)
            if self._refresh_expired(record, now):
                raise OAuthError("invalid_grant", "The refresh token has expired.", self._status)
            consent = self._live_consent(record.consent_id)
            record.used_at = now if record.used_at is None else record.used_at
            return Grant(consent, record.scopes,
                         self._new_refresh(consent, record.scopes, now, record.family_started_at))

    def revoke(self, client: RestClient, token: str) -> bool:
        """RFC 7009: a refresh token of this client dies; anything else is ignored (still a 200)."""
        with self._lock:
            record = self._refresh.get(token)
            if record is None or record.client_id != client.client_id:
                return False
            record.revoked = True
            return True

    @property
    def _status(self) -> int:
        return self.settings.token_error_status

    def _live_consent(self, consent_id: str) -> Consent:
        consent = self._consents[consent_id]
        if not consent.active:
            raise OAuthError("invalid_grant", "The consent was withdrawn.", self._status)
        return consent

    def _refresh_expired(self, record: _Refresh, now: float) -> bool:
        absolute = self.settings.refresh_absolute_days
        return (record.expired or now - record.issued_at > self.settings.refresh_idle_days * DAY
                or (absolute is not None and now - record.family_started_at > absolute * DAY))

    def _new_refresh(self, consent: Consent, scopes: list[str], now: float, family_started_at: float) -> str | None:
        if "offline_access" not in scopes:
            return None
        token = secrets.token_hex(32).upper()
        self._refresh[token] = _Refresh(consent.id, consent.client_id, list(scopes), now, family_started_at)
        return token

    # ------------------------------------------------------------------ App Manager and admin
    def consent(self, consent_id: str) -> Consent | None:
        return self._consents.get(consent_id)

    def withdraw(self, consent_id: str, now: float) -> Consent | None:
        with self._lock:
            consent = self._consents.get(consent_id)
            if consent is not None and consent.active:
                consent.withdrawn_at = now
            return consent

    def expire_refresh_tokens(self, consent_id: str | None = None) -> int:
        """Let the live refresh tokens (of one consent, or all) expire now; how many did."""
        with self._lock:
            count = 0
            for record in self._refresh.values():
                if record.used_at is None and not record.expired and not record.revoked and (
                        consent_id is None or record.consent_id == consent_id):
                    record.expired = True
                    count += 1
            return count

    def rows(self, now: float) -> list[dict[str, Any]]:
        """The consents without any secret; `live_refresh_tokens` counts the usable ones."""
        with self._lock:
            live: dict[str, int] = {}
            for record in self._refresh.values():
                if record.used_at is None and not record.revoked and not self._refresh_expired(record, now):
                    live[record.consent_id] = live.get(record.consent_id, 0) + 1
            return [{"id": c.id, "client_id": c.client_id, "username": c.username, "scopes": list(c.scopes),
                     "created_at": c.created_at, "updated_at": c.updated_at, "active": c.active,
                     "withdrawn_at": c.withdrawn_at, "live_refresh_tokens": live.get(c.id, 0)}
                    for c in self._consents.values()]

    def username_for(self, token: str) -> str:
        """The login behind a code or refresh token (for the call log and fault targeting), or ''."""
        record: _Code | _Refresh | None = self._codes.get(token) or self._refresh.get(token)
        consent = self._consents.get(record.consent_id) if record is not None else None
        return consent.username if consent is not None else ""


def _pkce_ok(challenge: str, method: str | None, verifier: str | None) -> bool:
    if not verifier:
        return False
    if (method or "plain") == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        expected = base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
    else:
        expected = verifier
    return hmac.compare_digest(expected.encode(), challenge.encode())
