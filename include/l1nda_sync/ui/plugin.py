"""The Airflow plugin: the page's FastAPI app at /l1nda and a nav entry that opens it inside the Airflow UI.

Registered by the one-line `plugins/l1nda_token_health.py`. Airflow mounts the app on its API server; the app
builds lazily (settings and the registry are read on the first request), so listing plugins needs no registry.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from l1nda_sync.ui.app import create_app

URL_PREFIX = "/l1nda"


class L1ndaTokenHealthPlugin(AirflowPlugin):
    """Token health: credentials, links, problems, the outbox and the SOAP-to-REST migration, for operators."""

    name = "l1nda_token_health"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "L1NDA token health"}]
    external_views = [{
        "name": "L1NDA token health",
        "href": f"{URL_PREFIX}/",
        "url_route": "l1nda",
        "destination": "nav",
    }]
