"""Tokens at rest: Fernet encryption with a key list for rotation, and a keyed fingerprint for duplicates.

Keys come newest first (L1NDA_FERNET_KEYS or the Airflow Variable l1nda_fernet_keys). Encryption always uses
the newest key; decryption tries each.

The fingerprint is an HMAC-SHA256 of the normalised login and the token, so the same login + token is found
without decrypting anything. Its key does not depend on which Fernet keys are configured: it is 32 random
bytes made once per registry (`new_fingerprint_key`), stored in `registry_keys` *encrypted* under the Fernet
keys (a database dump alone confirms no guessed token), and re-encrypted, never changed, by `keys rotate`. So
dropping an old Fernet key can never hide a duplicate. Registries from before it (version < 6) had
fingerprints under a key derived (HKDF) from the newest Fernet key: `legacy_fingerprint_candidates` still
finds those until the registry's first add, replace or rotate re-fingerprints every token under the stable key
(see `registry.tokens`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from l1nda_sync.masking import Secret
from l1nda_sync.registry.errors import EncryptionKeyError
from l1nda_sync.settings import Settings

KEYS_VARIABLE = "L1NDA_FERNET_KEYS"
_FINGERPRINT_INFO = b"l1nda-sync token fingerprint v1"

NO_KEY_MESSAGE = (
    f"no encryption key configured: set {KEYS_VARIABLE} (comma separated, newest first) or, inside Airflow, "
    "the Variable l1nda_fernet_keys; make a key with `l1nda-sync keys generate`"
)
UNDECRYPTABLE_MESSAGE = (
    f"cannot be decrypted with any key in {KEYS_VARIABLE}: the key it was encrypted with is missing; "
    f"add that key back at the end of {KEYS_VARIABLE}, then run `l1nda-sync keys rotate`"
)


def generate_key() -> str:
    """A fresh Fernet key (url-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode("ascii")


def normalise_login(username: str) -> str:
    """The login as Nmbrs compares it: e-mail addresses are case-insensitive."""
    return unicodedata.normalize("NFC", username).strip().casefold()


def _fingerprint_key(fernet_key: bytes) -> bytes:
    raw = base64.urlsafe_b64decode(fernet_key)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_FINGERPRINT_INFO).derive(raw)


class TokenCipher:
    """Encrypts, decrypts and fingerprints tokens. Never shows its keys (no repr of them, no messages)."""

    def __init__(self, keys: Sequence[str]) -> None:
        keys = [k.strip() for k in keys if k and k.strip()]
        if not keys:
            raise EncryptionKeyError(NO_KEY_MESSAGE)
        fernets: list[Fernet] = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise EncryptionKeyError(
                    f"{KEYS_VARIABLE}: key {position} of {len(keys)} is not a Fernet key (32 url-safe base64-encoded "
                    "bytes); make one with `l1nda-sync keys generate`"
                ) from None
        self._fernets = fernets
        self._multi = MultiFernet(fernets)
        self._fingerprint_keys = [_fingerprint_key(k.encode("ascii")) for k in keys]

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> TokenCipher:
        settings = settings or Settings.load()
        return cls(settings.fernet_keys or ())

    def __repr__(self) -> str:
        return f"TokenCipher({len(self._fernets)} key(s))"

    @property
    def key_count(self) -> int:
        return len(self._fernets)

    def encrypt(self, token: str) -> str:
        """Ciphertext under the newest key."""
        plain = token.reveal() if isinstance(token, Secret) else token
        return self._fernets[0].encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> Secret:
        """The token, wrapped so that it never prints; raises EncryptionKeyError when no key fits."""
        try:
            return Secret(self._multi.decrypt(ciphertext.encode("ascii")).decode("utf-8"))
        except (InvalidToken, UnicodeError):
            raise EncryptionKeyError(f"a stored token {UNDECRYPTABLE_MESSAGE}") from None

    def key_index(self, ciphertext: str) -> int | None:
        """0 when the newest key decrypts it, 1 for the next, ...; None when none does."""
        for index, fernet in enumerate(self._fernets):
            try:
                fernet.decrypt(ciphertext.encode("ascii"))
            except InvalidToken:
                continue
            return index
        return None

    def rotate(self, ciphertext: str) -> str:
        """The same token re-encrypted under the newest key."""
        try:
            return self._multi.rotate(ciphertext.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise EncryptionKeyError(f"a stored token {UNDECRYPTABLE_MESSAGE}") from None

    def _fingerprint_with(self, key: bytes, username: str, token: str) -> str:
        plain = token.reveal() if isinstance(token, Secret) else token
        message = f"{normalise_login(username)}\n{plain}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def fingerprint(self, username: str, token: str, key: bytes | None = None) -> str:
        """The fingerprint under the registry's stable `key`; without one, the legacy key of the newest Fernet key."""
        return self._fingerprint_with(key if key is not None else self._fingerprint_keys[0], username, token)

    def fingerprint_candidates(self, username: str, token: str) -> list[str]:
        """Legacy fingerprints under every configured key, newest first (registries without a stable key)."""
        return [self._fingerprint_with(k, username, token) for k in self._fingerprint_keys]

    legacy_fingerprint_candidates = fingerprint_candidates

    # -- the registry's stable fingerprint key, kept encrypted ----------------------------------------------
    def seal_key(self, key: bytes) -> str:
        """A fingerprint key encrypted under the newest Fernet key, for `registry_keys`."""
        return self._fernets[0].encrypt(base64.urlsafe_b64encode(key)).decode("ascii")

    def open_key(self, sealed: str) -> bytes | None:
        """The fingerprint key from its stored form; None when no configured key opens it."""
        try:
            return base64.urlsafe_b64decode(self._multi.decrypt(sealed.encode("ascii")))
        except (InvalidToken, ValueError):
            return None

    def reseal_key(self, sealed: str) -> str:
        """The stored fingerprint key re-encrypted under the newest Fernet key (the key itself unchanged)."""
        try:
            return self._multi.rotate(sealed.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise EncryptionKeyError(f"the registry's fingerprint key {UNDECRYPTABLE_MESSAGE}") from None

    def readers(self, ciphertext: str) -> list[int]:
        """Positions (0 = newest) of every configured key that decrypts `ciphertext`."""
        found = []
        for index, fernet in enumerate(self._fernets):
            try:
                fernet.decrypt(ciphertext.encode("ascii"))
            except InvalidToken:
                continue
            found.append(index)
        return found


def new_fingerprint_key() -> bytes:
    """A registry's stable fingerprint key: 32 random bytes, made once."""
    return secrets.token_bytes(32)
