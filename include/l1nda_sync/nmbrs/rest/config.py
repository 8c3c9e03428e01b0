"""`RestApp`: L1NDA's own Nmbrs REST application (client id and secret, subscription keys, redirect URI, scopes).

Read by `Settings.rest_app()` from the Airflow connection `nmbrs_rest` or the `L1NDA_NMBRS_REST_*` settings; no
app configured at all is None (SOAP-only deployments), a half-configured one a SettingsError naming what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from l1nda_sync.masking import Secret
from l1nda_sync.settings import DEFAULT_REST_SCOPES, REST_CONN_ID, SettingsError

if TYPE_CHECKING:
    from l1nda_sync.settings import Settings

AUTHORIZE_PATH = "/connect/authorize"
TOKEN_PATH = "/connect/token"  # noqa: S105 - a path, not a password
REVOCATION_PATH = "/connect/revocation"


@dataclass(frozen=True, slots=True)
class RestApp:
    """One registered Nmbrs REST client application; its secrets are `Secret`s (repr shows the last 4 only)."""

    api_base: str  # https://api.nmbrsapp.com (no trailing slash)
    identity_base: str  # https://identityservice.nmbrs.com
    client_id: str
    client_secret: Secret = field(repr=False)
    subscription_key: Secret = field(repr=False)
    secondary_key: Secret | None = field(default=None, repr=False)
    redirect_uri: str = ""
    scopes: tuple[str, ...] = DEFAULT_REST_SCOPES

    def __post_init__(self) -> None:
        for name in ("client_secret", "subscription_key", "secondary_key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Secret):
                object.__setattr__(self, name, Secret(value))
        object.__setattr__(self, "api_base", self.api_base.rstrip("/"))
        object.__setattr__(self, "identity_base", self.identity_base.rstrip("/"))
        if not self.client_id:
            raise ValueError("RestApp.client_id is empty")

    @property
    def authorize_url(self) -> str:
        return self.identity_base + AUTHORIZE_PATH

    @property
    def token_url(self) -> str:
        return self.identity_base + TOKEN_PATH

    @property
    def revocation_url(self) -> str:
        return self.identity_base + REVOCATION_PATH

    def __repr__(self) -> str:
        return (f"RestApp(api_base={self.api_base!r}, identity_base={self.identity_base!r}, "
                f"client_id={self.client_id!r}, client_secret={self.client_secret!r}, "
                f"subscription_key={self.subscription_key!r}, redirect_uri={self.redirect_uri!r}, "
                f"scopes={self.scopes!r})")


# What a usable app needs, by Settings field (the variable and the connection field named in the error).
_REQUIRED = (
    ("nmbrs_rest_client_id", "login"),
    ("nmbrs_rest_client_secret", "password"),
    ("nmbrs_rest_subscription_key", "extra subscription_key"),
    ("nmbrs_rest_redirect_uri", "extra redirect_uri"),
)


def rest_app_from_settings(settings: Settings) -> RestApp | None:
    """The app the settings describe; None when none of its required fields is set."""
    given = {name: getattr(settings, name) for name, _ in _REQUIRED}
    missing = [(name, where) for name, where in _REQUIRED if not given[name]]
    if len(missing) == len(_REQUIRED) and not settings.nmbrs_rest_secondary_key:
        return None
    if missing:
        named = ", ".join(f"L1NDA_{name.upper()} (connection {REST_CONN_ID}: {where})" for name, where in missing)
        raise SettingsError(f"the Nmbrs REST app is half configured: missing {named}")
    return RestApp(
        api_base=settings.nmbrs_rest_api_base_url,
        identity_base=settings.nmbrs_rest_identity_base_url,
        client_id=str(given["nmbrs_rest_client_id"]),
        client_secret=given["nmbrs_rest_client_secret"],  # Secrets already (wrapping one again would mask it)
        subscription_key=given["nmbrs_rest_subscription_key"],
        secondary_key=settings.nmbrs_rest_secondary_key,
        redirect_uri=str(given["nmbrs_rest_redirect_uri"]),
        scopes=settings.nmbrs_rest_scopes,
    )
