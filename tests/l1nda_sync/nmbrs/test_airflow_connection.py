"""The `nmbrs_soap` connection type: registered through the package's provider entry point, read by settings,
and a Test button that fetches the WSDL and (with a test login and token) calls Environment_Get on the simulator
over HTTP, never raising and never showing a token beyond its last 4 characters."""

from __future__ import annotations

import json
import os
import socket
from importlib.metadata import distribution
from typing import Any

import pytest

from l1nda_sync import provider_info
from l1nda_sync.nmbrs.airflow_connection import NmbrsSoapHook
from l1nda_sync.settings import Settings
from nmbrs_sim.testing import RunningSim
from tests.l1nda_sync.nmbrs.conftest import MASTER_ALL, MASTER_HORECA
from tests.l1nda_sync.nmbrs.test_secrets_sim import leaks

HOOK_CLASS = "l1nda_sync.nmbrs.airflow_connection.NmbrsSoapHook"


def set_connection(monkeypatch: pytest.MonkeyPatch, host: str, **extra: Any) -> None:
    """AIRFLOW_CONN_NMBRS_SOAP as JSON, the way a deployment sets it."""
    monkeypatch.delenv("L1NDA_NMBRS_BASE_URL", raising=False)
    body: dict[str, Any] = {"conn_type": "nmbrs_soap", "host": host}
    if extra:
        body["extra"] = extra
    monkeypatch.setenv("AIRFLOW_CONN_NMBRS_SOAP", json.dumps(body))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- registration ------------------------------------------------------------------------------------------------
def test_the_provider_entry_point_registers_the_connection_type() -> None:
    """The API server's ProvidersManager (Connections UI, Test button) and the task runtime's both list it."""
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    assert manager.providers[provider_info.PACKAGE_NAME].data["package-name"] == distribution(
        provider_info.PACKAGE_NAME).metadata["Name"]
    hook = ProvidersManagerTaskRuntime().hooks["nmbrs_soap"]
    assert hook is not None
    assert (hook.hook_class_name, hook.hook_name, hook.connection_id_attribute_name) == (
        HOOK_CLASS, "Nmbrs SOAP", "nmbrs_conn_id")
    assert hook.connection_testable
    assert manager.providers[provider_info.PACKAGE_NAME].data["connection-types"][0]["hook-class-name"] == HOOK_CLASS
    behaviour = manager.field_behaviours["nmbrs_soap"]
    assert behaviour["relabeling"] == {"host": "SOAP base URL"}
    assert set(behaviour["hidden_fields"]) == {"schema", "port", "login", "password"}
    assert behaviour["placeholders"]["host"] == "https://api.nmbrs.nl/soap/v3/"
    widgets = manager.connection_form_widgets
    assert not widgets["extra__nmbrs_soap__test_login"].is_sensitive
    assert widgets["extra__nmbrs_soap__test_token"].is_sensitive  # shown as a password field, masked


def test_the_connections_ui_gets_the_form() -> None:
    """What the API server's /ui/connections/hook_meta serves to the Connections page."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    meta = next(m for m in HookMetaService.hook_meta_data() if m.connection_type == "nmbrs_soap")
    assert meta.hook_name == "Nmbrs SOAP"
    assert meta.standard_fields is not None
    assert meta.standard_fields.host is not None
    assert meta.standard_fields.host.title == "SOAP base URL"
    assert meta.standard_fields.password is not None
    assert meta.standard_fields.password.hidden
    assert meta.extra_fields is not None
    assert meta.extra_fields["test_token"]["schema"]["format"] == "password"
    assert meta.extra_fields["test_login"]["schema"]["title"] == "Test login (e-mail)"


def test_the_hook_declares_its_form_without_deprecated_widgets() -> None:
    assert NmbrsSoapHook.get_ui_field_behaviour()["relabeling"] == {"host": "SOAP base URL"}
    assert "get_connection_form_widgets" not in NmbrsSoapHook.__dict__  # deprecated since Airflow 3.2


# -- the values settings read ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("conn", "url"),
    [
        ('{"conn_type": "nmbrs_soap", "host": "https://api.nmbrs.nl/soap/v3"}', "https://api.nmbrs.nl/soap/v3/"),
        ("nmbrs-soap://https://api.nmbrs.nl%2Fsoap%2Fv3%2F/", "https://api.nmbrs.nl/soap/v3/"),
        ("https://api-sandbox.nmbrs.nl/soap/v3/", "https://api-sandbox.nmbrs.nl/soap/v3/"),
        ('{"conn_type": "http", "host": "localhost", "port": 8080, "schema": "http"}',
         "http://localhost:8080/soap/v3/"),
    ],
)
def test_settings_read_the_base_url_through_the_hook(monkeypatch: pytest.MonkeyPatch, conn: str, url: str) -> None:
    monkeypatch.delenv("L1NDA_NMBRS_BASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_NMBRS_SOAP", conn)
    assert NmbrsSoapHook().get_connection_values().base_url == url
    assert Settings.load().nmbrs_base_url == url


def test_the_environment_variable_still_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "https://api.nmbrs.nl/soap/v3/")
    monkeypatch.setenv("L1NDA_NMBRS_BASE_URL", "http://localhost:9/soap/v3")
    assert Settings.load().nmbrs_base_url == "http://localhost:9/soap/v3/"


def test_the_values_hide_the_test_token(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "https://api.nmbrs.nl/soap/v3/", test_login=MASTER_ALL.username,
                   test_token=MASTER_ALL.token, timeout=30)
    values = NmbrsSoapHook().get_connection_values()
    assert values.test_login == MASTER_ALL.username
    assert values.test_token is not None
    assert values.test_token.reveal() == MASTER_ALL.token
    assert values.has_timeout
    assert MASTER_ALL.token not in repr(values)


def test_requests_through_the_hook_carry_neither_auth_nor_the_test_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "https://api.nmbrs.nl/soap/v3/", test_login=MASTER_ALL.username,
                   test_token=MASTER_ALL.token, **{"X-Trace": "on"})
    session = NmbrsSoapHook().get_conn()
    assert session.auth is None
    assert session.headers["X-Trace"] == "on"  # HttpHook's extra-as-header still works for other keys
    assert MASTER_ALL.token not in json.dumps(dict(session.headers))
    assert "test_login" not in session.headers


# -- the Test button ---------------------------------------------------------------------------------------------
def test_wsdl_reachable_without_a_test_token(sim: RunningSim, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, sim.base_url)
    ok, message = NmbrsSoapHook().test_connection()
    assert ok, message
    assert "reachable and parses" in message
    assert "Environment_Get was not called" in message
    assert sim.admin.call_count(operation="Environment_Get") == 0


def test_a_valid_test_token_reaches_environment_get(sim: RunningSim, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, sim.base_url, test_login=MASTER_ALL.username, test_token=MASTER_ALL.token)
    ok, message = NmbrsSoapHook().test_connection()
    assert ok, message
    assert "Environment_Get" in message
    assert "demo-accountants" in message
    assert f"…{MASTER_ALL.token[-4:]}" in message
    assert leaks(message, MASTER_ALL.token) == []
    assert sim.admin.call_count(operation="Environment_Get") == 1


def test_the_test_ignores_a_stale_wsdl_cache(sim: RunningSim, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
                                              ) -> None:
    """A cached WSDL must not make an unreachable host look fine: the Test always fetches."""
    monkeypatch.setenv("L1NDA_NMBRS_WSDL_CACHE_DIR", str(tmp_path))
    set_connection(monkeypatch, sim.base_url)
    assert NmbrsSoapHook().test_connection()[0]
    set_connection(monkeypatch, f"http://127.0.0.1:{closed_port()}/soap/v3/")
    assert not NmbrsSoapHook().test_connection()[0]


def test_an_unreachable_host_says_what_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, f"http://127.0.0.1:{closed_port()}/soap/v3/", test_login=MASTER_ALL.username,
                   test_token=MASTER_ALL.token)
    ok, message = NmbrsSoapHook().test_connection()
    assert not ok
    assert "not reachable" in message
    assert "check the host" in message
    assert leaks(message, MASTER_ALL.token) == []


def test_a_host_without_the_soap_path_says_so(sim: RunningSim, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, sim.root_url + "/nothing-here/")
    ok, message = NmbrsSoapHook().test_connection()
    assert not ok
    assert "check the host" in message
    assert "/soap/v3/" in message


def test_a_bad_token_fails_with_1001_and_stays_masked(sim: RunningSim, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "0123456789abcdef0123456789abcdef"
    set_connection(monkeypatch, sim.base_url, test_login=MASTER_ALL.username, test_token=wrong)
    ok, message = NmbrsSoapHook().test_connection()
    assert not ok
    assert "1001" in message
    assert "check test_login and test_token" in message
    assert "…cdef" in message
    assert leaks(message, wrong) == []


@pytest.mark.parametrize("status", [500, 200, 403])
def test_an_echoed_token_never_reaches_the_message(sim: RunningSim, monkeypatch: pytest.MonkeyPatch,
                                                    status: int) -> None:
    sim.admin.inject_fault("echo_token", username=MASTER_HORECA.username, status=status)
    set_connection(monkeypatch, sim.base_url, test_login=MASTER_HORECA.username, test_token=MASTER_HORECA.token)
    ok, message = NmbrsSoapHook().test_connection()
    assert ok is (status == 200), message
    assert leaks(message, MASTER_HORECA.token) == []
    if status != 200:
        assert message.count("…b8a9") > 2  # the echoes reached the message, masked
    assert sim.admin.call_count(operation="Environment_Get") >= 1  # the server did answer with the echo


def test_half_a_test_login_names_the_missing_field(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, "https://api.nmbrs.nl/soap/v3/", test_token=MASTER_ALL.token)
    ok, message = NmbrsSoapHook().test_connection()
    assert not ok
    assert "test_login" in message
    assert leaks(message, MASTER_ALL.token) == []
    set_connection(monkeypatch, "https://api.nmbrs.nl/soap/v3/", test_login=MASTER_ALL.username)
    ok, message = NmbrsSoapHook().test_connection()
    assert not ok
    assert "test_token" in message


def test_a_missing_connection_is_an_answer_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_NMBRS", raising=False)
    ok, message = NmbrsSoapHook("no_such_nmbrs").test_connection()
    assert not ok
    assert "'no_such_nmbrs' cannot be read" in message
    assert "nmbrs_soap" in message


def test_the_api_servers_test_path(sim: RunningSim, monkeypatch: pytest.MonkeyPatch) -> None:
    """What POST /api/v2/connections/test does: the connection as a URI in AIRFLOW_CONN_<random>, then
    Connection.test_connection(), which builds the hook through ProvidersManager and calls its test."""
    from airflow.models.connection import Connection

    conn = Connection(conn_id="nmbrs_ui_test", conn_type="nmbrs_soap", host=sim.base_url,
                      extra=json.dumps({"test_login": MASTER_ALL.username, "test_token": MASTER_ALL.token}))
    monkeypatch.setitem(os.environ, "AIRFLOW_CONN_NMBRS_UI_TEST", conn.get_uri())
    ok, message = conn.test_connection()
    assert ok, message
    assert "Environment_Get" in message
    assert leaks(message, MASTER_ALL.token) == []


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_the_test_button_through_the_api_server(sim: RunningSim, monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /api/v2/connections/test on a real API server app: refused until `[core] test_connection = Enabled`,
    then the hook's answer; and the Connections page's form metadata (GET /ui/connections/hook_meta)."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "test-only-jwt-secret-for-the-api-app-" + "x" * 64)
    monkeypatch.delenv("AIRFLOW__CORE__TEST_CONNECTION", raising=False)
    body = {"connection_id": "nmbrs_soap", "conn_type": "nmbrs_soap", "host": sim.base_url,
            "extra": json.dumps({"test_login": MASTER_ALL.username, "test_token": MASTER_ALL.token})}
    with TestClient(create_app()) as api:
        refused = api.post("/api/v2/connections/test", json=body)
        assert refused.status_code == 403
        monkeypatch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
        answer = api.post("/api/v2/connections/test", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] is True
        assert "Environment_Get" in answer.json()["message"]
        assert leaks(answer.text, MASTER_ALL.token) == []

        wrong = dict(body, extra=json.dumps({"test_login": MASTER_ALL.username, "test_token": "f" * 32}))
        failed = api.post("/api/v2/connections/test", json=wrong).json()
        assert failed["status"] is False
        assert "1001" in failed["message"]
        assert leaks(failed["message"], "f" * 32) == []

        meta = api.get("/ui/connections/hook_meta").json()
    form = next(m for m in meta if m["connection_type"] == "nmbrs_soap")
    assert form["standard_fields"]["host"]["title"] == "SOAP base URL"
    assert set(form["extra_fields"]) == {"test_login", "test_token"}


def test_a_password_in_the_host_never_reaches_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, f"http://ops:Hunter2Hunter2@127.0.0.1:{closed_port()}/soap/v3/")
    ok, message = NmbrsSoapHook().test_connection()
    assert not ok
    assert "Hunter2Hunter2" not in message
    assert "ops:***@127.0.0.1" in message
