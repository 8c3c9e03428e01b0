"""Triggering the sync DAG through Airflow's own public API, as the logged-in user.

The user's JWT goes along as the Bearer, so Airflow checks their right to run the DAG, records the run as theirs
and writes its audit log; this app never holds rights of its own. Every failure is a `TriggerError` with a
sentence for the page (403: no right; 404: no such DAG here; unreachable; anything else: the status), never the
JWT or a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

TIMEOUT = 15.0


class TriggerError(Exception):
    """The run was not created; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Triggered:
    """The run Airflow created."""

    dag_run_id: str
    state: str | None
    ui_path: str  # the run in Airflow's UI, relative to the site ('/dags/.../runs/...')


def api_base_url() -> str:
    """Airflow's `[api] base_url` (the API server's own address; behind a proxy the public one)."""
    from airflow.configuration import conf

    return (conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")


def airflow_root(base_url: str) -> str:
    """The path Airflow's UI lives under ('' at the site's root, '/airflow' behind a proxy's prefix)."""
    return urlsplit(base_url).path.rstrip("/")


def run_path(base_url: str, dag_id: str, run_id: str) -> str:
    prefix = airflow_root(base_url)
    return f"{prefix}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def _detail(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else ""


def trigger(base_url: str, jwt: str, dag_id: str, conf: dict[str, Any], *, note: str | None = None,
            ui_base: str | None = None, transport: httpx.BaseTransport | None = None) -> Triggered:
    """POST /api/v2/dags/{dag_id}/dagRuns with `conf`, `logical_date: null` (a manual run now). `ui_base`: the
    address users reach Airflow at, for the run's link (default `base_url`)."""
    url = f"{base_url.rstrip('/')}/api/v2/dags/{quote(dag_id, safe='')}/dagRuns"
    body: dict[str, Any] = {"logical_date": None, "conf": conf}
    if note:
        body["note"] = note
    try:
        with httpx.Client(timeout=TIMEOUT, transport=transport, follow_redirects=False) as client:
            response = client.post(url, json=body, headers={"Authorization": f"Bearer {jwt}"})
    except httpx.HTTPError as exc:
        raise TriggerError(f"Airflow's API at {base_url} did not answer ({type(exc).__name__}); check "
                           "L1NDA_AIRFLOW_API_URL or [api] base_url and that the API server is up, then try "
                           "again") from None
    if response.status_code in (200, 201):
        data = response.json()
        run_id = str(data.get("dag_run_id") or "")
        if not run_id:
            raise TriggerError("Airflow's API answered without a run id; see the DAG's runs in Airflow")
        return Triggered(run_id, data.get("state"), run_path(ui_base or base_url, dag_id, run_id))
    detail = _detail(response)
    if response.status_code == 401:
        raise TriggerError("Airflow did not accept your login for its API (it may have expired); log in again")
    if response.status_code == 403:
        raise TriggerError(f"you may not run the DAG {dag_id}: your Airflow role lacks the permission to create "
                           "its runs; ask an admin for the Op role")
    if response.status_code == 404:
        raise TriggerError(f"Airflow does not know the DAG {dag_id} (not loaded, or parsing failed); check its "
                           "import errors in Airflow")
    if response.status_code == 409:
        raise TriggerError(f"Airflow refused the run: {detail or 'a run with that id exists'}")
    return_text = f": {detail}" if detail else ""
    raise TriggerError(f"Airflow's API answered {response.status_code}{return_text[:300]}")
