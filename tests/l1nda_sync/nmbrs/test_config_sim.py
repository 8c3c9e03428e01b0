"""Where the client points (environment variable, Airflow connection), the shared client, the WSDL cache in use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from l1nda_sync.nmbrs import NmbrsClient, get_client
from l1nda_sync.nmbrs.client import normalize_base_url
from l1nda_sync.settings import Settings, SettingsError

from .conftest import MASTER_HORECA

SHOW_BASE_URL = "from l1nda_sync.nmbrs import NmbrsClient; c = NmbrsClient(); print(c.base_url); c.close()"


def run_python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("L1NDA_", "AIRFLOW_CONN_"))}
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_default_is_production() -> None:
    assert run_python(SHOW_BASE_URL) == "https://api.nmbrs.nl/soap/v3/"


def test_the_environment_variable_wins() -> None:
    assert run_python(SHOW_BASE_URL, L1NDA_NMBRS_BASE_URL="https://api-sandbox.nmbrs.nl/soap/v3",
                      AIRFLOW_CONN_NMBRS_SOAP=json.dumps({"conn_type": "http", "host": "http://elsewhere/"})) \
        == "https://api-sandbox.nmbrs.nl/soap/v3/"


def test_the_airflow_connection_nmbrs_soap_is_used_inside_airflow() -> None:
    conn = json.dumps({"conn_type": "http", "host": "api-sandbox.nmbrs.nl", "schema": "https"})
    assert run_python(SHOW_BASE_URL, AIRFLOW_CONN_NMBRS_SOAP=conn) == "https://api-sandbox.nmbrs.nl/soap/v3/"


@pytest.mark.parametrize("url", ["api.nmbrs.nl/soap/v3/", "ftp://api.nmbrs.nl/", "https://", ""])
def test_a_base_url_that_is_not_http_names_the_setting(url: str) -> None:
    with pytest.raises(SettingsError, match="L1NDA_NMBRS_BASE_URL"):
        normalize_base_url(url)
    with pytest.raises(SettingsError, match="nmbrs_soap"):
        NmbrsClient(url or "x", settings=Settings())


def test_the_process_shares_one_client_per_settings(tmp_path: Path) -> None:
    settings = Settings(nmbrs_base_url="http://127.0.0.1:9/soap/v3/", nmbrs_wsdl_cache_dir=str(tmp_path))
    first = get_client(settings)
    try:
        assert get_client(settings) is first
        other = get_client(Settings(nmbrs_base_url="http://127.0.0.1:10/soap/v3/", nmbrs_wsdl_cache_dir=str(tmp_path)))
        assert other is not first
        other.close()
        assert first.session.adapters["http://"]._pool_maxsize >= settings.nmbrs_max_concurrency
    finally:
        first.close()
    assert get_client(settings) is not first
    get_client(settings).close()


def test_a_second_worker_parses_the_cached_wsdls_without_fetching(sim, make_client) -> None:
    first = make_client()
    timings = first.warm_up()
    assert set(timings) == {"DebtorService", "CompanyService"}
    assert all(0 < t < 5 for t in timings.values())
    assert first.wsdl_cache.fetches == 2
    second = make_client()
    assert second.probe(MASTER_HORECA.creds()).debtor_ids == {2001, 2002, 2004}
    assert (second.wsdl_cache.fetches, second.wsdl_cache.hits) == (0, 2)


def test_calls_go_to_the_base_url_whatever_the_wsdl_address_says(sim, make_client) -> None:
    make_client().warm_up()
    cache_dir = make_client().wsdl_cache.directory
    for path in cache_dir.glob("*.wsdl"):
        text = path.read_text()
        assert sim.root_url in text
        path.write_text(text.replace(sim.root_url, "http://192.0.2.1:9"))  # TEST-NET: nothing answers there
    client = make_client()
    assert client.probe(MASTER_HORECA.creds()).debtor_ids == {2001, 2002, 2004}
    assert client.wsdl_cache.hits == 2
