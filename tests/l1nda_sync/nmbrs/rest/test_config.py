"""L1NDA's Nmbrs REST app from the `L1NDA_NMBRS_REST_*` settings or the Airflow connection `nmbrs_rest`; secrets
hidden in repr and in `l1nda-sync settings`; a half-configured app is an error naming what is missing."""

from __future__ import annotations

import json

import pytest

from l1nda_sync import cli
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.settings import Settings, SettingsError

SECRET = "Lx*7$conf-Secret$q9*"
KEY = "30d05593229f49c18856be06ebc47b24"
KEY_2 = "7c1e4a2b9d8f46e0a5b3c2d1e0f9a8b7"
ENV = {
    "L1NDA_NMBRS_REST_CLIENT_ID": "PartnerApp_L1NDA_prod",
    "L1NDA_NMBRS_REST_CLIENT_SECRET": SECRET,
    "L1NDA_NMBRS_REST_SUBSCRIPTION_KEY": KEY,
    "L1NDA_NMBRS_REST_SECONDARY_KEY": KEY_2,
    "L1NDA_NMBRS_REST_REDIRECT_URI": "https://l1nda.example/nmbrs/callback",
}


def test_the_app_from_settings_with_defaults_for_the_rest() -> None:
    app = Settings.load(ENV, use_airflow=False).rest_app()
    assert app == RestApp("https://api.nmbrsapp.com", "https://identityservice.nmbrs.com", "PartnerApp_L1NDA_prod",
                          SECRET, KEY, KEY_2, "https://l1nda.example/nmbrs/callback",
                          ("offline_access", "company.info.read", "user.info.read"))
    assert app is not None
    assert app.client_secret.reveal() == SECRET
    assert app.secondary_key == KEY_2
    assert app.token_url == "https://identityservice.nmbrs.com/connect/token"
    shown = repr(app) + repr(Settings.load(ENV, use_airflow=False))
    assert SECRET not in shown
    assert KEY not in shown
    assert KEY_2 not in shown


def test_base_urls_and_scopes_are_read_and_normalized() -> None:
    app = Settings.load({**ENV, "L1NDA_NMBRS_REST_API_BASE_URL": "http://127.0.0.1:8081/",
                         "L1NDA_NMBRS_REST_IDENTITY_BASE_URL": "http://127.0.0.1:8081",
                         "L1NDA_NMBRS_REST_SCOPES": "offline_access, company.info.read"}, use_airflow=False).rest_app()
    assert app is not None
    assert app.api_base == "http://127.0.0.1:8081" == app.identity_base
    assert app.scopes == ("offline_access", "company.info.read")


def test_no_app_configured_is_none() -> None:
    assert Settings.load({}, use_airflow=False).rest_app() is None


def test_a_half_configured_app_names_what_is_missing() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.load({"L1NDA_NMBRS_REST_CLIENT_ID": "PartnerApp_x", "L1NDA_NMBRS_REST_CLIENT_SECRET": SECRET},
                      use_airflow=False).rest_app()
    message = str(caught.value)
    assert "L1NDA_NMBRS_REST_SUBSCRIPTION_KEY" in message
    assert "L1NDA_NMBRS_REST_REDIRECT_URI" in message
    assert "L1NDA_NMBRS_REST_CLIENT_ID" not in message
    assert SECRET not in message


@pytest.mark.parametrize(("name", "value"), [("L1NDA_NMBRS_REST_API_BASE_URL", "api.nmbrsapp.com"),
                                             ("L1NDA_NMBRS_REST_SCOPES", " , "),
                                             ("L1NDA_NMBRS_REST_CLIENT_SECRET", "  ")])
def test_bad_values_name_the_setting_and_hide_secrets(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.load({**ENV, name: value}, use_airflow=False)


def test_the_airflow_connection_nmbrs_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_NMBRS_REST", json.dumps({
        "conn_type": "http", "host": "https://api.nmbrsapp.com", "login": "PartnerApp_L1NDA_prod",
        "password": SECRET, "extra": {"subscription_key": KEY, "secondary_key": KEY_2,
                                      "identity_base_url": "https://identityservice.nmbrs.com",
                                      "redirect_uri": "https://l1nda.example/nmbrs/callback",
                                      "scopes": ["offline_access", "company.info.read"]}}))
    app = Settings.load({}).rest_app()
    assert app is not None
    assert app.client_id == "PartnerApp_L1NDA_prod"
    assert app.client_secret.reveal() == SECRET
    assert app.subscription_key == KEY
    assert app.secondary_key == KEY_2
    assert app.redirect_uri == "https://l1nda.example/nmbrs/callback"
    assert app.scopes == ("offline_access", "company.info.read")
    override = Settings.load({"L1NDA_NMBRS_REST_CLIENT_ID": "PartnerApp_other"}).rest_app()
    assert override is not None
    assert override.client_id == "PartnerApp_other"


def test_a_connection_with_the_scheme_in_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NMBRS_REST", json.dumps({
        "conn_type": "http", "host": "nmbrs-sim", "port": 8081, "schema": "http", "login": "PartnerApp_x",
        "password": SECRET, "extra": {"subscription_key": KEY, "redirect_uri": "http://localhost:8090/cb"}}))
    app = Settings.load({}).rest_app()
    assert app is not None
    assert app.api_base == "http://nmbrs-sim:8081"


def test_l1nda_sync_settings_hides_the_secrets(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                                               ) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["--json", "settings"]) == 0
    out = capsys.readouterr().out
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["nmbrs_rest_client_id"]["value"] == "PartnerApp_L1NDA_prod"
    assert rows["nmbrs_rest_client_secret"]["value"]
    assert rows["nmbrs_rest_subscription_key"]["value"]
    assert SECRET not in out
    assert KEY not in out
    assert KEY_2 not in out
