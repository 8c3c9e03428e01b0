"""Every setting of the project in one place: its default, its type and where it is read from.

Resolution order for a setting NAME (field `name` below):
1. the environment variable `L1NDA_<NAME>` (upper case), e.g. `L1NDA_CHECK_INTERVAL_HEALTHY=3600`;
2. inside Airflow, the Airflow Variable `l1nda_<name>` (lower case), e.g. `l1nda_check_interval_healthy`;
3. the default here.
Connection-backed settings (`database_url`, `nmbrs_base_url`, the `nmbrs_rest_*` of L1NDA's Nmbrs REST app) also
look at the Airflow connection named in `Setting.conn_id` when no environment variable is set. Secrets
(`fernet_keys`, the REST app's client secret and subscription keys) never appear in repr().

The README's settings table is generated from `SETTINGS` (`l1nda-sync settings --markdown`), so it cannot
drift from the code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from l1nda_sync.masking import Secret, redact_url

if TYPE_CHECKING:
    from l1nda_sync.nmbrs.rest.config import RestApp


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the setting and the fix."""


@dataclass(frozen=True)
class Setting:
    """One setting: its name, default, help text, parser, and the Airflow connection it may come from."""

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    conn_id: str | None = None
    secret: bool = False

    @property
    def env_var(self) -> str:
        return f"L1NDA_{self.name.upper()}"

    @property
    def variable(self) -> str:
        return f"l1nda_{self.name}"


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r} (use true or false)")


_Number = TypeVar("_Number", int, float)


def _number(value: str, kind: type[_Number]) -> _Number:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"not a {'whole ' if kind is int else ''}number: {value!r}") from None


def _positive_float(value: str) -> float:
    number = _number(value, float)
    if number <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    return number


def _non_negative_float(value: str) -> float:
    number = _number(value, float)
    if number < 0:
        raise ValueError(f"must be 0 or more, got {value}")
    return number


def _positive_int(value: str) -> int:
    number = _number(value, int)
    if number <= 0:
        raise ValueError(f"must be a whole number greater than 0, got {value}")
    return number


PER_LOGIN_CONCURRENCY_MAX = 16  # Nmbrs' fair use is per login (150 calls/s): a few in flight are enough


def _per_login(value: str) -> int:
    number = _number(value, int)
    if not 1 <= number <= PER_LOGIN_CONCURRENCY_MAX:
        raise ValueError(f"must be a whole number from 1 to {PER_LOGIN_CONCURRENCY_MAX} (1: one debtor at a time; "
                         f"default 4), got {value}")
    return number


def _share(value: str) -> float:
    number = _number(value, float)
    if not 0 < number <= 1:
        raise ValueError(f"must be a share between 0 and 1, got {value}")
    return number


def _database_url(value: str) -> str:
    """A PostgreSQL URL; SQLAlchemy's spellings (postgresql+psycopg2://, postgres://) are accepted too."""
    url = value.strip()
    for prefix in ("postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql://" + url[len(prefix):]
    if not url.startswith("postgresql://"):
        raise ValueError("not a PostgreSQL URL (postgresql://user:password@host:5432/database)")
    return url


def _http_url(value: str) -> str:
    url = value.strip()
    if not url.startswith(("https://", "http://")) or url[-3:] == "://":
        raise ValueError("not an http(s) URL")
    return url if url.endswith("/") else url + "/"


# One plain address (as registry.validation checks logins and contacts): one @, a dotted domain.
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                      r"[A-Za-z]{2,63}")


def _no_control(value: str) -> None:
    """A header value must be one line: a CR or LF would end the header (and break or forge the mail)."""
    if "\r" in value or "\n" in value:
        raise ValueError("contains a line break (CR/LF), which breaks every mail header; put it on one line")
    if not all(ch.isprintable() for ch in value):
        raise ValueError("contains control characters; use plain text")


def _address(value: str) -> str:
    if len(value) > 254 or ".." in value or not _ADDRESS.fullmatch(value):
        raise ValueError(f"not an e-mail address: {value} (give one like name@example.com)")
    return value


def _mailboxes(value: str) -> tuple[str, ...]:
    _no_control(value)
    return tuple(_address(b) for b in _csv(value))


def _mail_from(value: str) -> str:
    """'Name <address>' or a bare address, on one line."""
    _no_control(value)
    text = value.strip()
    match = re.fullmatch(r"(?:(?P<name>[^<>]*?)\s*<(?P<angle>[^<>]*)>|(?P<bare>[^<>]*))", text)
    if match is None or not text:
        raise ValueError("not a sender; use 'Name <address@example.com>' or address@example.com")
    name = (match.group("name") or "").strip()
    if any(ch in name for ch in '",;@'):
        raise ValueError("the display name may not hold '\"', ',', ';' or '@'; use 'Name <address@example.com>'")
    _address((match.group("angle") if match.group("angle") is not None else match.group("bare")).strip())
    return text


def _cron(value: str) -> str:
    from croniter import croniter

    if value.strip().startswith("@") or croniter.is_valid(value.strip()):
        return value.strip()
    raise ValueError("not a cron expression (five fields, e.g. */10 * * * *) or an @preset such as @hourly")


def _http_base(value: str) -> str:
    """An http(s) base URL without a trailing slash (REST paths are appended as '/api/...')."""
    return _http_url(value).rstrip("/")


def _scopes(value: str) -> tuple[str, ...]:
    """OAuth2 scopes, separated by spaces or commas."""
    scopes = tuple(part for part in re.split(r"[\s,]+", value) if part)
    if not scopes:
        raise ValueError("no scope given (e.g. 'offline_access company.info.read')")
    return scopes


def _secret(value: str) -> Secret:
    if not value.strip():
        raise ValueError("is empty")
    return Secret(value.strip())


def _http_url_exact(value: str) -> str:
    """An http(s) URL kept exactly as given (a redirect URI must match its registration character for character)."""
    _http_url(value)
    return value.strip()


def _language(value: str) -> str:
    if value not in {"en", "nl"}:
        raise ValueError(f"must be 'en' or 'nl', got {value!r}")
    return value


def _web_secret(value: str) -> Secret:
    if len(value.strip()) < 32:
        raise ValueError("is shorter than 32 characters; make one with `python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))'`")
    return Secret(value.strip())


SOAP_END_ZONE = ZoneInfo("Europe/Amsterdam")


def parse_moment(value: str) -> datetime:
    """'2027-03-01', '2027-03-01T00:00' (Amsterdam time) or with an offset ('2027-02-28T23:00+00:00'): aware."""
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date or date and time (YYYY-MM-DD or YYYY-MM-DDTHH:MM, Amsterdam time "
                         "unless an offset is given)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=SOAP_END_ZONE)


SOAP_END_DEFAULT = "2027-03-01T00:00"
REST_CONN_ID = "nmbrs_rest"
# Enough to rediscover reach (offline_access, company.info.read) plus who consented (user.info.read).
DEFAULT_REST_SCOPES = ("offline_access", "company.info.read", "user.info.read")

SETTINGS: tuple[Setting, ...] = (
    # Where things are
    Setting("database_url", None, "PostgreSQL URL of the registry", parse=_database_url, conn_id="l1nda_registry"),
    Setting("nmbrs_base_url", "https://api.nmbrs.nl/soap/v3/", "Nmbrs SOAP base URL (ends in /soap/v3/)",
            parse=_http_url, conn_id="nmbrs_soap"),
    Setting("fernet_keys", None, "Fernet keys for tokens at rest, comma separated, newest first",
            parse=_csv, secret=True),
    # Nmbrs REST API: L1NDA's own app (the Airflow connection nmbrs_rest, type http, or these variables)
    Setting("nmbrs_rest_api_base_url", "https://api.nmbrsapp.com", "Nmbrs REST API base URL (connection: host)",
            parse=_http_base, conn_id=REST_CONN_ID),
    Setting("nmbrs_rest_identity_base_url", "https://identityservice.nmbrs.com",
            "Nmbrs identity server (OAuth2) base URL (connection extra: identity_base_url)", parse=_http_base,
            conn_id=REST_CONN_ID),
    Setting("nmbrs_rest_client_id", None, "L1NDA's Nmbrs app client id (connection: login)", conn_id=REST_CONN_ID),
    Setting("nmbrs_rest_client_secret", None, "L1NDA's Nmbrs app client secret (connection: password)",
            parse=_secret, conn_id=REST_CONN_ID, secret=True),
    Setting("nmbrs_rest_subscription_key", None, "X-Subscription-Key of L1NDA's Nmbrs app (connection extra: "
            "subscription_key)", parse=_secret, conn_id=REST_CONN_ID, secret=True),
    Setting("nmbrs_rest_secondary_key", None, "the app's secondary subscription key, for rotation (connection "
            "extra: secondary_key)", parse=_secret, conn_id=REST_CONN_ID, secret=True),
    Setting("nmbrs_rest_redirect_uri", None, "the redirect URI registered for L1NDA's Nmbrs app (connection extra: "
            "redirect_uri)", parse=_http_url_exact, conn_id=REST_CONN_ID),
    Setting("nmbrs_rest_scopes", DEFAULT_REST_SCOPES, "OAuth2 scopes a consent asks for, space or comma separated "
            "(connection extra: scopes)", parse=_scopes, conn_id=REST_CONN_ID),
    Setting("rest_authorization_ttl", 86400.0, "seconds a started consent (`connections start`) stays usable; "
            "its link works once", parse=_positive_float),
    # Nmbrs client
    Setting("nmbrs_connect_timeout", 5.0, "seconds to connect to Nmbrs", parse=_positive_float),
    Setting("nmbrs_read_timeout", 60.0, "seconds to wait for one Nmbrs answer", parse=_positive_float),
    Setting("nmbrs_call_deadline", 120.0, "seconds one call may take, retries included", parse=_positive_float),
    Setting("nmbrs_retry_attempts", 4, "attempts per call for transient faults", parse=_positive_int),
    Setting("nmbrs_calls_per_second", 100.0, "process-wide rate limit on Nmbrs calls (fair use: 150/s)",
            parse=_positive_float),
    Setting("nmbrs_max_concurrency", 32, "Nmbrs calls in flight at once, per process", parse=_positive_int),
    Setting("nmbrs_per_login_concurrency", 4, "an accountant token's per-debtor calls (Tags_Get, "
            "List_GetByDebtor) in flight at once, 1 to 16; 1 asks one debtor at a time", parse=_per_login),
    Setting("nmbrs_wsdl_cache_ttl", 86400.0, "seconds a cached WSDL stays fresh", parse=_non_negative_float),
    Setting("nmbrs_wsdl_cache_dir", None, "where WSDLs are cached (default: the user cache directory)"),
    Setting("mapping_full_refresh", 86400.0,
            "seconds after which a token's company-to-debtor mapping is rebuilt even if nothing changed",
            parse=_non_negative_float),
    # Scheduling and state
    Setting("schedule", "*/10 * * * *", "cron schedule of the nmbrs_token_sync DAG", parse=_cron),
    Setting("check_retention", 30 * 86400.0, "seconds applied checks are kept (each run prunes older ones); "
            "0 keeps them forever", parse=_non_negative_float),
    Setting("batch_size", 100, "tokens per mapped check task", parse=_positive_int),
    Setting("check_interval_healthy", 3600.0, "seconds between checks of a healthy token",
            parse=_positive_float),
    Setting("check_interval_failed", 600.0, "seconds until a token that just failed is checked again",
            parse=_positive_float),
    Setting("check_interval_unreachable_max", 21600.0, "longest backoff between checks of an unreachable token",
            parse=_positive_float),
    Setting("revoke_confirmations", 2, "consecutive answers of one refusal (1001, 1002, 1004) or sharp reach drop "
            "before it counts (revoked, rights missing, no subscription, reach lost)", parse=_positive_int),
    Setting("revoke_min_spacing", 600.0, "seconds between the first and the confirming answer of a refusal or "
            "a sharp reach drop", parse=_non_negative_float),
    Setting("drop_share", 0.5, "a valid answer that loses more than this share of a token's companies (or all "
            "of them) is a suspected drop, confirmed before links move", parse=_share),
    Setting("drop_min_companies", 4, "companies a token must reach before a partial drop (drop_share) is "
            "suspect; a drop to zero always is", parse=_positive_int),
    Setting("unreachable_after", 21600.0, "seconds of nothing but transient faults before a token is unreachable",
            parse=_positive_float),
    Setting("breaker_window", 900.0, "seconds of checks (across runs, latest per token) the circuit breaker "
            "judges; keep it longer than the schedule's interval", parse=_positive_float),
    Setting("breaker_share", 0.5, "share of the tokens checked in the window that must fail (any way) for a "
            "provider incident; holds at every fleet size", parse=_share),
    Setting("breaker_min_tokens", 5, "healthy tokens a run rechecks early (witnesses) beside tokens whose last "
            "check failed, so the breaker judges a failure beside fresh answers of others", parse=_positive_int),
    Setting("unknown_share", 0.1, "share of the tokens checked in the breaker window whose answer L1NDA cannot "
            "read (outcome unknown) that opens one problem for operations", parse=_share),
    # Alerts
    Setting("ops_recipients", ("support@l1nda.example",), "operations mailbox(es), comma separated", parse=_mailboxes),
    Setting("mail_from", "L1NDA Nmbrs sync <no-reply@l1nda.example>",
            "From: of alert mails ('Name <address>' or an address, one line)", parse=_mail_from),
    Setting("default_language", "en", "language of mails when a contact has none (en or nl)", parse=_language),
    Setting("problem_quiet_period", 3600.0, "seconds a cause must stay clear before its problem resolves",
            parse=_non_negative_float),
    Setting("reminder_interval", 86400.0, "seconds between reminders of an open problem; 0 turns them off",
            parse=_non_negative_float),
    Setting("smtp_conn_id", "smtp_default", "Airflow connection used to send mail"),
    Setting("webhook_failing_after", 3600.0, "seconds webhook delivery may keep failing before operations get "
            "a webhook_failing problem", parse=_positive_float),
    Setting("link_pending_after", 86400.0, "seconds a requested link may stay pending before operations get one "
            "link_pending problem; 0 turns it off", parse=_non_negative_float),
    # The customer page (`l1nda-sync web`): invitations to consent to REST or hand over a SOAP token
    Setting("web_base_url", None, "public base URL of the customer page (behind L1NDA's TLS proxy), e.g. "
            "https://connect.l1nda.example; unset: mails ask for a reply instead of linking an invitation",
            parse=_http_base),
    Setting("web_secret", None, "key of the customer page: signs its forms (CSRF) and derives invitation links "
            "(32+ random characters; the same for the page and Airflow)", parse=_web_secret, secret=True),
    Setting("invitation_ttl", 14 * 86400.0, "seconds an invitation link stays usable (it works once)",
            parse=_positive_float),
    Setting("web_rate_limit", 10, "form posts (consent starts, token hand-overs) per invitation and per client "
            "address within web_rate_window", parse=_positive_int),
    Setting("web_rate_window", 600.0, "seconds of the customer page's rate limit window", parse=_positive_float),
    # The operators' token-health page in the Airflow UI (docs/airflow-ui.md)
    Setting("airflow_api_url", None, "Airflow's API server as the token-health page reaches it from inside the API "
            "server, for \"Recheck now\" (e.g. http://localhost:8080); unset: Airflow's [api] base_url",
            parse=_http_base),
    # The end of Nmbrs' SOAP API (docs/migration.md)
    Setting("soap_end", SOAP_END_DEFAULT, "when Nmbrs ends its SOAP API (Europe/Amsterdam unless an offset is "
            "given): from then no SOAP call is made, SOAP tokens are retired and links no REST connection reaches "
            "suspend (soap_ended)", parse=parse_moment),
    Setting("migration_campaign_start", None, "from when customers with soap_only links are invited to consent "
            "through REST, reminded and re-invited (Europe/Amsterdam unless an offset is given); unset: no campaign",
            parse=parse_moment),
    Setting("migration_reminder_interval", 7 * 86400.0, "seconds between campaign reminders until the last "
            "migration_final_window before soap_end", parse=_positive_float),
    Setting("migration_final_reminder_interval", 86400.0, "seconds between campaign reminders in the last "
            "migration_final_window before soap_end", parse=_positive_float),
    Setting("migration_final_window", 14 * 86400.0, "seconds before soap_end from which campaign reminders use "
            "migration_final_reminder_interval", parse=_non_negative_float),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def _from_airflow_variable(setting: Setting) -> str | None:
    try:
        from airflow.sdk import Variable
    except ImportError:  # pragma: no cover - outside Airflow
        return None
    try:
        value = Variable.get(setting.variable, default=None)
    except Exception:
        return None
    return None if value is None else str(value)


def _from_airflow_connection(setting: Setting, memo: dict[str, Any]) -> str | None:
    if setting.conn_id is None:
        return None
    if setting.conn_id == REST_CONN_ID:
        if REST_CONN_ID not in memo:
            memo[REST_CONN_ID] = _rest_connection_fields(REST_CONN_ID)
        fields_: dict[str, str] = memo[REST_CONN_ID]
        return fields_.get(setting.name)
    if setting.name == "nmbrs_base_url":
        return _nmbrs_base_url_from_airflow(setting.conn_id)
    try:
        from airflow.sdk import BaseHook
    except ImportError:  # pragma: no cover - outside Airflow
        return None
    try:
        conn = BaseHook.get_connection(setting.conn_id)
    except Exception:
        return None
    return conn.get_uri().replace("postgres://", "postgresql://", 1)


def _nmbrs_base_url_from_airflow(conn_id: str) -> str | None:
    """The SOAP base URL of the Airflow connection `conn_id`, as the `nmbrs_soap` connection type reads it
    (`NmbrsSoapHook.soap_base_url`: a full URL in host, or the `http` type's host/port/schema, or a URI)."""
    try:
        from l1nda_sync.nmbrs.airflow_connection import NmbrsSoapHook
    except ImportError:  # pragma: no cover - outside Airflow (no providers-http)
        return None
    try:
        return NmbrsSoapHook(conn_id).get_connection_values().base_url
    except Exception:
        return None


# The `nmbrs_rest` connection's fields and extras, by setting name.
_REST_EXTRAS = {"nmbrs_rest_subscription_key": "subscription_key", "nmbrs_rest_secondary_key": "secondary_key",
                "nmbrs_rest_identity_base_url": "identity_base_url", "nmbrs_rest_redirect_uri": "redirect_uri",
                "nmbrs_rest_scopes": "scopes"}


def _rest_connection_fields(conn_id: str) -> dict[str, str]:
    """The REST settings an Airflow connection of type http gives: host = API base (a whole URL, or host with
    the scheme in `schema` and an optional port), login = client id, password = client secret, the rest in extra.
    No connection (or no Airflow): nothing."""
    try:
        from airflow.sdk import BaseHook
    except ImportError:  # pragma: no cover - outside Airflow
        return {}
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:
        return {}
    values: dict[str, str] = {}
    host = (conn.host or "").strip()
    if host:
        if not host.startswith(("http://", "https://")):
            scheme = conn.schema if conn.schema in ("http", "https") else "https"
            host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        values["nmbrs_rest_api_base_url"] = host
    if conn.login:
        values["nmbrs_rest_client_id"] = conn.login
    if conn.password:
        values["nmbrs_rest_client_secret"] = conn.password
    extra = conn.extra_dejson
    for name, key in _REST_EXTRAS.items():
        value = extra.get(key)
        if isinstance(value, list):
            value = " ".join(str(v) for v in value)
        if value not in (None, ""):
            values[name] = str(value)
    return values


def _raw(setting: Setting, env: Mapping[str, str], use_airflow: bool, memo: dict[str, Any]) -> str | None:
    if setting.env_var in env:
        return env[setting.env_var]
    if use_airflow:
        value = _from_airflow_connection(setting, memo)
        if value is not None:
            return value
        return _from_airflow_variable(setting)
    return None


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with `Settings.load()`; override in tests with `dataclasses.replace`."""

    database_url: str | None = None
    nmbrs_base_url: str = "https://api.nmbrs.nl/soap/v3/"
    fernet_keys: tuple[str, ...] | None = field(default=None, repr=False)
    nmbrs_rest_api_base_url: str = "https://api.nmbrsapp.com"
    nmbrs_rest_identity_base_url: str = "https://identityservice.nmbrs.com"
    nmbrs_rest_client_id: str | None = None
    nmbrs_rest_client_secret: Secret | None = field(default=None, repr=False)
    nmbrs_rest_subscription_key: Secret | None = field(default=None, repr=False)
    nmbrs_rest_secondary_key: Secret | None = field(default=None, repr=False)
    nmbrs_rest_redirect_uri: str | None = None
    nmbrs_rest_scopes: tuple[str, ...] = DEFAULT_REST_SCOPES
    rest_authorization_ttl: float = 86400.0
    nmbrs_connect_timeout: float = 5.0
    nmbrs_read_timeout: float = 60.0
    nmbrs_call_deadline: float = 120.0
    nmbrs_retry_attempts: int = 4
    nmbrs_calls_per_second: float = 100.0
    nmbrs_max_concurrency: int = 32
    nmbrs_per_login_concurrency: int = 4
    nmbrs_wsdl_cache_ttl: float = 86400.0
    nmbrs_wsdl_cache_dir: str | None = None
    mapping_full_refresh: float = 86400.0
    schedule: str = "*/10 * * * *"
    batch_size: int = 100
    check_interval_healthy: float = 3600.0
    check_interval_failed: float = 600.0
    check_interval_unreachable_max: float = 21600.0
    revoke_confirmations: int = 2
    revoke_min_spacing: float = 600.0
    drop_share: float = 0.5
    drop_min_companies: int = 4
    unreachable_after: float = 21600.0
    breaker_window: float = 900.0
    breaker_share: float = 0.5
    breaker_min_tokens: int = 5
    unknown_share: float = 0.1
    ops_recipients: tuple[str, ...] = ("support@l1nda.example",)
    mail_from: str = "L1NDA Nmbrs sync <no-reply@l1nda.example>"
    default_language: str = "en"
    problem_quiet_period: float = 3600.0
    reminder_interval: float = 86400.0
    check_retention: float = 30 * 86400.0
    smtp_conn_id: str = "smtp_default"
    link_pending_after: float = 86400.0
    webhook_failing_after: float = 3600.0
    web_base_url: str | None = None
    web_secret: Secret | None = field(default=None, repr=False)
    invitation_ttl: float = 14 * 86400.0
    web_rate_limit: int = 10
    web_rate_window: float = 600.0
    airflow_api_url: str | None = None
    soap_end: datetime = field(default_factory=lambda: parse_moment(SOAP_END_DEFAULT))
    migration_campaign_start: datetime | None = None
    migration_reminder_interval: float = 7 * 86400.0
    migration_final_reminder_interval: float = 86400.0
    migration_final_window: float = 14 * 86400.0

    def soap_over(self, now: datetime) -> bool:
        """Whether Nmbrs' SOAP API has ended at `now` (`soap_end` passed): no SOAP call may be made."""
        return now >= self.soap_end

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, *, use_airflow: bool = True) -> Settings:
        """Resolve every setting; a bad value raises SettingsError naming the variable and the fix."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        memo: dict[str, Any] = {}  # one read of a connection that backs several settings
        for setting in SETTINGS:
            raw = _raw(setting, env, use_airflow, memo)
            if raw is None:
                continue
            try:
                values[setting.name] = setting.parse(raw)
            except ValueError as exc:
                shown = "***" if setting.secret else repr(redact_url(raw))
                source = f"Airflow Variable {setting.variable}" + (
                    f" or connection {setting.conn_id}" if setting.conn_id else "")
                raise SettingsError(
                    f"{setting.env_var} (or {source}) = {shown}: {exc}; "
                    f"expected: {setting.help}"
                ) from None
        return cls(**values)

    def rest_app(self) -> RestApp | None:
        """L1NDA's Nmbrs REST app, or None when none is configured; SettingsError when it is half configured."""
        from l1nda_sync.nmbrs.rest.config import rest_app_from_settings

        return rest_app_from_settings(self)

    def require_database_url(self) -> str:
        if not self.database_url:
            raise SettingsError(
                "no registry database: set L1NDA_DATABASE_URL=postgresql://user:pass@host:5432/db "
                "or, inside Airflow, the connection 'l1nda_registry'"
            )
        return self.database_url


def _check_fields_match() -> None:
    declared = {s.name for s in SETTINGS}
    held = {f.name for f in fields(Settings)}
    if declared != held:  # pragma: no cover - a programming error caught at import
        raise RuntimeError(f"SETTINGS and Settings disagree: {sorted(declared ^ held)}")


_check_fields_match()


def settings_markdown() -> str:
    """The README's settings table."""
    rows = ["| setting | environment variable | Airflow | default | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        where = f"Variable `{s.variable}`" + (f" or connection `{s.conn_id}`" if s.conn_id else "")
        default = ",".join(s.default) if isinstance(s.default, tuple) else s.default
        shown = "(none)" if default is None else f"`{default}`"
        rows.append(f"| `{s.name}` | `{s.env_var}` | {where} | {shown} | {s.help} |")
    return "\n".join(rows)
