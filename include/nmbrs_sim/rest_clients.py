"""REST clients registered with the identity server, the scopes it knows, and the REST settings of a scenario
(the facts sheet's unknowns, with its defaults)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

# The scopes Nmbrs documents for the areas this project touches, plus the others a client may ask for. A write
# scope ("company.info") also satisfies reads of its area ("company.info.read").
KNOWN_SCOPES = (
    "openid", "profile", "offline_access",
    "company.info.read", "company.info", "debtor.info.read", "debtor.info", "user.info.read",
    "company.payrollsettings.read", "company.payrollsettings", "employee.info.read", "employee.info",
    "employee.employment.read", "employee.employment",
)
MAX_REDIRECT_URIS = 5
CLIENT_ID = re.compile(r"^[A-Za-z0-9_.\-]{3,200}$")


@dataclass(slots=True)
class RestClient:
    """An application registered on Nmbrs' developer portal: its credentials, callbacks, keys and scopes."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]
    subscription_keys: list[str]
    scopes: list[str]
    name: str = ""

    def __repr__(self) -> str:  # never show the secret
        return f"RestClient({self.client_id!r}, scopes={self.scopes})"

    def to_dict(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "client_secret": self.client_secret, "name": self.name,
                "redirect_uris": list(self.redirect_uris), "subscription_keys": list(self.subscription_keys),
                "scopes": list(self.scopes)}


@dataclass(slots=True)
class RestSettings:
    """Lifetimes and the choices the facts sheet lists as unknown (its defaults)."""

    access_token_seconds: int = 3600
    code_seconds: int = 300
    refresh_idle_days: int = 30
    refresh_absolute_days: int | None = None  # no absolute cap
    refresh_reuse_grace_seconds: int = 0  # no grace window for a used refresh token
    token_error_status: int = 400  # HTTP status of /connect/token errors
    subscription_key_status: int = 401  # HTTP status for a missing or wrong X-Subscription-Key
    blank_page_links: bool = False  # true: nextPage/previousPage "" at the ends instead of null (both are seen)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class RestConfig:
    """The `rest:` section of a scenario."""

    clients: dict[str, RestClient] = field(default_factory=dict)
    settings: RestSettings = field(default_factory=RestSettings)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings.to_dict(), "clients": [c.to_dict() for c in self.clients.values()]}


def scope_satisfied(granted: list[str] | set[str], needed: str) -> bool:
    """A read scope is met by itself or by the write scope of its area."""
    return needed in granted or (needed.endswith(".read") and needed[: -len(".read")] in granted)


class FieldReader(Protocol):
    """The scenario builder's typed readers (scenario._Builder), as this module uses them."""

    def fail(self, path: str, message: str) -> Exception: ...
    def mapping(self, value: Any, path: str, allowed: set[str], required: tuple[str, ...] = ()) -> dict[str, Any]: ...
    def items(self, value: Any, path: str) -> list[Any]: ...
    def integer(self, value: Any, path: str, *, minimum: int | None = None) -> int: ...
    def text(self, value: Any, path: str, *, optional: bool = True) -> str | None: ...


_SETTING_BOUNDS: dict[str, tuple[int, int | None]] = {
    "access_token_seconds": (1, None), "code_seconds": (1, None), "refresh_idle_days": (1, None),
    "refresh_absolute_days": (1, None), "refresh_reuse_grace_seconds": (0, None),
    "token_error_status": (400, 499), "subscription_key_status": (400, 499),
}


def parse_rest(reader: FieldReader, data: Any) -> RestConfig:
    """Validate the `rest:` section; errors name the path and field (rest.clients[0].redirect_uris[1])."""
    section = reader.mapping(data, "rest", {"settings", "clients"})
    config = RestConfig()
    settings = reader.mapping(section.get("settings") or {}, "rest.settings", {*_SETTING_BOUNDS, "blank_page_links"})
    for name, value in settings.items():
        if name == "blank_page_links":
            if not isinstance(value, bool):
                raise reader.fail("rest.settings.blank_page_links", f"must be true or false, got {value!r}")
            config.settings.blank_page_links = value
            continue
        if value is None and name == "refresh_absolute_days":
            continue
        low, high = _SETTING_BOUNDS[name]
        number = reader.integer(value, f"rest.settings.{name}", minimum=low)
        if high is not None and number > high:
            raise reader.fail(f"rest.settings.{name}", f"must be <= {high}, got {number}")
        setattr(config.settings, name, number)
    for i, raw in enumerate(reader.items(section.get("clients"), "rest.clients")):
        client = _client(reader, raw, f"rest.clients[{i}]")
        if client.client_id in config.clients:
            raise reader.fail(f"rest.clients[{i}].client_id", f"{client.client_id!r} is used twice")
        config.clients[client.client_id] = client
    return config


def _strings(reader: FieldReader, value: Any, path: str) -> list[str]:
    return [reader.text(v, f"{path}[{k}]", optional=False) or "" for k, v in enumerate(reader.items(value, path))]


def _client(reader: FieldReader, raw: Any, path: str) -> RestClient:
    row = reader.mapping(raw, path, {"client_id", "client_secret", "name", "redirect_uris", "subscription_keys",
                                     "scopes"}, ("client_id", "client_secret", "redirect_uris",
                                                 "subscription_keys", "scopes"))
    client_id = reader.text(row["client_id"], f"{path}.client_id", optional=False) or ""
    if not CLIENT_ID.match(client_id):
        raise reader.fail(f"{path}.client_id", f"{client_id!r} is not a client id (letters, digits, '_', '-', '.')")
    secret = reader.text(row["client_secret"], f"{path}.client_secret", optional=False) or ""
    if len(secret) < 8:
        raise reader.fail(f"{path}.client_secret", "must be at least 8 characters")
    uris = _strings(reader, row["redirect_uris"], f"{path}.redirect_uris")
    if not 1 <= len(uris) <= MAX_REDIRECT_URIS:
        raise reader.fail(f"{path}.redirect_uris", f"give 1 to {MAX_REDIRECT_URIS} redirect URIs, got {len(uris)}")
    for k, uri in enumerate(uris):
        if not re.match(r"^https?://[^\s#]+$", uri):
            raise reader.fail(f"{path}.redirect_uris[{k}]", f"{uri!r} is not an absolute http(s) URI without fragment")
    keys = _strings(reader, row["subscription_keys"], f"{path}.subscription_keys")
    if not 1 <= len(keys) <= 2:
        raise reader.fail(f"{path}.subscription_keys", "give a primary and optionally a secondary key (1 or 2)")
    scopes = _strings(reader, row["scopes"], f"{path}.scopes")
    for k, scope in enumerate(scopes):
        if scope not in KNOWN_SCOPES:
            raise reader.fail(f"{path}.scopes[{k}]", f"unknown scope {scope!r} (known: {', '.join(KNOWN_SCOPES)})")
    name = reader.text(row.get("name"), f"{path}.name") or client_id
    return RestClient(client_id, secret, uris, keys, scopes, name)
