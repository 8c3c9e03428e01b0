"""What can go wrong in the registry, as exceptions whose messages say what to do.

`InvalidInput`, `NotFound` and `Conflict` are the caller's fault (the CLI exits 2); the others are the
environment's (configuration, schema, database; the CLI exits 1). No message ever holds a token.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base of every registry error."""


class InvalidInput(RegistryError):
    """A value is unusable. `field` names it (as the CLI option, e.g. '--username'), the message says the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(InvalidInput):
    """No row with that id (or it was removed)."""


class Conflict(InvalidInput):
    """The request clashes with what is stored: a duplicate, or an action the row's state does not allow."""


class ConfigError(RegistryError):
    """The environment is missing something (a key, a database URL); the message names the variable."""


class EncryptionKeyError(ConfigError):
    """The Fernet keys are missing or unusable, or a ciphertext matches none of them."""


class RegistryUnavailable(RegistryError):
    """The database cannot be reached."""
