"""Fixtures for real Airflow runs of the DAGs: the registry, the Nmbrs simulator, an SMTP server, the pool."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from l1nda_sync.registry.db import fetch_all
from nmbrs_sim.testing import RunningSim, running_simulator
from tests.conftest import DAGS_FOLDER
from tests.l1nda_sync.alerts.harness import MailServer
from tests.l1nda_sync.conftest import fernet_keys, registry_template, registry_url  # noqa: F401 - fixtures
from tests.l1nda_sync.engine.story_world import DEMO_SCENARIO, register_token, request_links

OPS = "ops@l1nda.example"


@dataclass
class DagWorld:
    """What a DAG run works on, with helpers to set it up and read it back."""

    url: str
    sim: RunningSim
    mail: MailServer
    airflow_home: Any
    ids: dict[str, int]

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return fetch_all(self.url, sql, *args)

    def add_token(self, label: str) -> int:
        self.ids[label] = register_token(self.url, label)
        return self.ids[label]

    def request(self, *company_ids: int) -> None:
        request_links(self.url, company_ids)

    def state(self, label: str) -> str:
        return self.query("SELECT state FROM tokens WHERE id = %s", self.ids[label])[0][0]


@pytest.fixture
def nmbrs_pool(airflow_db: Any) -> None:
    from airflow.models.pool import Pool

    Pool.create_or_update_pool("nmbrs_api", slots=4, description="Nmbrs API calls", include_deferred=False)


@pytest.fixture
def dag_world(registry_url: str, fernet_keys: list[str], airflow_home: Any, nmbrs_pool: None,  # noqa: F811
              monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[DagWorld]:
    mail = MailServer().start()
    with running_simulator(DEMO_SCENARIO) as sim:
        # Everything a worker would find in its environment in production (connections as AIRFLOW_CONN_*).
        monkeypatch.setenv("AIRFLOW_CONN_L1NDA_REGISTRY", registry_url)
        monkeypatch.setenv("AIRFLOW_CONN_NMBRS_SOAP", json.dumps({"conn_type": "http", "host": sim.base_url}))
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": mail.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "sync@l1nda.example"},
        }))
        monkeypatch.setenv("L1NDA_OPS_RECIPIENTS", OPS)
        monkeypatch.setenv("L1NDA_NMBRS_WSDL_CACHE_DIR", str(tmp_path / "wsdl"))
        monkeypatch.setenv("L1NDA_NMBRS_RETRY_ATTEMPTS", "1")
        monkeypatch.delenv("L1NDA_DATABASE_URL", raising=False)
        monkeypatch.delenv("L1NDA_NMBRS_BASE_URL", raising=False)
        try:
            yield DagWorld(registry_url, sim, mail, airflow_home, {})
        finally:
            mail.stop()


def load_dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)
