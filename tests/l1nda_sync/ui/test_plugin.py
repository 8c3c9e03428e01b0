"""Airflow's plugin manager finds the plugin in the repository's plugins/ folder, with its FastAPI app at /l1nda
and its nav entry (in a subprocess, so the test process's Airflow state stays clean)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

SCRIPT = """
import json
from airflow import plugins_manager
plugins, errors = plugins_manager._get_plugins()
apps, _ = plugins_manager.get_fastapi_plugins()
views, _ = plugins_manager._get_ui_plugins()
from fastapi import FastAPI
print(json.dumps({
    "plugins": [p.name for p in plugins], "errors": {str(k): str(v) for k, v in errors.items()},
    "apps": [{"url_prefix": a["url_prefix"], "name": a.get("name"), "fastapi": isinstance(a["app"], FastAPI)}
             for a in apps],
    "views": views,
}))
"""


def test_airflows_plugin_manager_lists_the_plugin() -> None:
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
           "PYTHONPATH": str(REPO / "include")}
    env.pop("L1NDA_DATABASE_URL", None)  # listing plugins needs no registry
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert "l1nda_token_health" in found["plugins"]
    assert not [e for e in found["errors"] if "l1nda" in e], found["errors"]
    assert {"url_prefix": "/l1nda", "name": "L1NDA token health", "fastapi": True} in found["apps"]
    assert {"name": "L1NDA token health", "href": "/l1nda/", "url_route": "l1nda", "destination": "nav"} in \
        found["views"]
