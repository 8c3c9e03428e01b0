"""Settings resolve from the environment, validate with a message naming the variable, and hide secrets."""

from __future__ import annotations

import pytest

from l1nda_sync.settings import SETTINGS, Settings, SettingsError, settings_markdown


def test_defaults_without_environment() -> None:
    s = Settings.load({}, use_airflow=False)
    assert s.nmbrs_base_url == "https://api.nmbrs.nl/soap/v3/"
    assert s.check_interval_healthy == 3600.0
    assert s.revoke_confirmations == 2
    assert s.database_url is None


def test_environment_overrides_and_parses() -> None:
    s = Settings.load(
        {"L1NDA_BATCH_SIZE": "25", "L1NDA_OPS_RECIPIENTS": "a@x.nl, b@x.nl", "L1NDA_BREAKER_SHARE": "0.3"},
        use_airflow=False,
    )
    assert s.batch_size == 25
    assert s.ops_recipients == ("a@x.nl", "b@x.nl")
    assert s.breaker_share == 0.3


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("L1NDA_BATCH_SIZE", "0", "greater than 0"),
        ("L1NDA_BATCH_SIZE", "many", "not a whole number"),
        ("L1NDA_BREAKER_SHARE", "2", "between 0 and 1"),
        ("L1NDA_DEFAULT_LANGUAGE", "de", "'en' or 'nl'"),
        ("L1NDA_SCHEDULE", "nonsense", "not a cron expression"),
        ("L1NDA_OPS_RECIPIENTS", "support@l1nda.example, notmail", "not an e-mail address: notmail"),
        ("L1NDA_NMBRS_BASE_URL", "ftp://x", "not an http(s) URL"),
        ("L1NDA_BATCH_SIZE", "abc", "not a whole number: 'abc'"),
        ("L1NDA_BREAKER_SHARE", "half", "not a number: 'half'"),
        ("L1NDA_DATABASE_URL", "mysql://u:secretpw@h/db", "not a PostgreSQL URL"),
    ],
)
def test_bad_value_names_the_variable(var: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.load({var: value}, use_airflow=False)
    assert str(err.value).startswith(var)
    assert fragment in str(err.value)
    assert "secretpw" not in str(err.value)


def test_secret_never_in_repr_or_error() -> None:
    key = "c2VjcmV0LWtleS1tYXRlcmlhbC1mb3ItdGVzdHMtb25seS0xMjM0NTY="
    s = Settings.load({"L1NDA_FERNET_KEYS": key}, use_airflow=False)
    assert s.fernet_keys == (key,)
    assert key not in repr(s)


def test_missing_database_url_says_how_to_set_it() -> None:
    with pytest.raises(SettingsError, match="L1NDA_DATABASE_URL"):
        Settings.load({}, use_airflow=False).require_database_url()


def test_markdown_lists_every_setting() -> None:
    table = settings_markdown()
    for s in SETTINGS:
        assert f"`{s.env_var}`" in table


@pytest.mark.parametrize(
    ("conn", "url"),
    [
        ("https://api.nmbrs.nl/soap/v3/", "https://api.nmbrs.nl/soap/v3/"),
        ("http://nmbrs-sim:8080/soap/v3/", "http://nmbrs-sim:8080/soap/v3/"),
        ('{"conn_type": "http", "host": "https://api.nmbrs.nl/soap/v3/"}', "https://api.nmbrs.nl/soap/v3/"),
        ('{"conn_type": "http", "host": "api.nmbrs.nl", "schema": "https"}', "https://api.nmbrs.nl/soap/v3/"),
        ('{"conn_type": "http", "host": "localhost", "port": 8080, "schema": "http"}',
         "http://localhost:8080/soap/v3/"),
        # the project's own connection type (NmbrsSoapHook), as JSON and as the URI Airflow writes for it
        ('{"conn_type": "nmbrs_soap", "host": "https://api.nmbrs.nl/soap/v3"}', "https://api.nmbrs.nl/soap/v3/"),
        ("nmbrs-soap://http://nmbrs-sim%3A8080%2Fsoap%2Fv3%2F/?test_token=0123456789abcdef",
         "http://nmbrs-sim:8080/soap/v3/"),
    ],
)
def test_nmbrs_base_url_from_the_airflow_connection(monkeypatch: pytest.MonkeyPatch, conn: str, url: str) -> None:
    """URI and JSON forms of AIRFLOW_CONN_NMBRS_SOAP give the same base URL (read through NmbrsSoapHook)."""
    monkeypatch.delenv("L1NDA_NMBRS_BASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_NMBRS_SOAP", conn)
    assert Settings.load().nmbrs_base_url == url


def test_sqlalchemy_spellings_of_the_database_url_are_accepted() -> None:
    for given in ("postgresql+psycopg2://u:p@h:5432/db", "postgres://u:p@h:5432/db"):
        assert Settings.load({"L1NDA_DATABASE_URL": given}, use_airflow=False).database_url == "postgresql://u:p@h:5432/db"
    assert Settings.load({"L1NDA_SCHEDULE": "@hourly"}, use_airflow=False).schedule == "@hourly"


def test_an_unreadable_connection_falls_back_to_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("L1NDA_NMBRS_BASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_NMBRS_SOAP", "{not json")
    assert Settings.load().nmbrs_base_url == "https://api.nmbrs.nl/soap/v3/"


def test_rest_authorization_ttl_defaults_to_a_day_and_reaches_the_connection_store() -> None:
    from l1nda_sync.registry.connections import ConnectionStore
    from l1nda_sync.registry.crypto import generate_key

    key = generate_key()
    assert Settings.load({}, use_airflow=False).rest_authorization_ttl == 86400.0
    s = Settings.load({"L1NDA_REST_AUTHORIZATION_TTL": "900", "L1NDA_FERNET_KEYS": key}, use_airflow=False)
    assert s.rest_authorization_ttl == 900.0
    assert ConnectionStore.from_settings(s).authorization_ttl == 900.0


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_rest_authorization_ttl_must_be_positive(value: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.load({"L1NDA_REST_AUTHORIZATION_TTL": value}, use_airflow=False)
    assert str(err.value).startswith("L1NDA_REST_AUTHORIZATION_TTL")
