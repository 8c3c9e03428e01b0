"""What Airflow's ProvidersManager learns about this package (entry point `apache_airflow_provider`).

Airflow calls `get_provider_info()` in every process that discovers providers (scheduler, workers, API server),
so this module stays pure data: it imports nothing of the package. The `nmbrs_soap` connection type's form is
declared here (`ui-field-behaviour`, `conn-fields`), the way Airflow 3.2+ wants it: the hook's
`get_connection_form_widgets()`/`get_ui_field_behaviour()` are deprecated there and are not read when the
provider info declares the form. `package-name` must equal the distribution's name in pyproject.toml, or
Airflow refuses every provider at discovery.
"""

from __future__ import annotations

import copy
from typing import Any

PACKAGE_NAME = "l1nda-nmbrs-sync"
CONN_TYPE = "nmbrs_soap"
HOOK_CLASS_NAME = "l1nda_sync.nmbrs.airflow_connection.NmbrsSoapHook"
HOOK_NAME = "Nmbrs SOAP"
DEFAULT_BASE_URL = "https://api.nmbrs.nl/soap/v3/"

# Extra fields of the connection (stored in its extra JSON under these names).
TEST_LOGIN = "test_login"
TEST_TOKEN = "test_token"  # noqa: S105 - the name of an extra field, not a secret

# Standard fields: only the host (the SOAP base URL) and the extra (request options such as timeout, verify,
# proxies) are used; the Nmbrs credentials of the synced tokens live in the registry, never in the connection.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login", "password"],
    "relabeling": {"host": "SOAP base URL"},
    "placeholders": {
        "host": DEFAULT_BASE_URL,
        "extra": '{"timeout": 30}',
    },
}

CONN_FIELDS: dict[str, Any] = {
    TEST_LOGIN: {
        "label": "Test login (e-mail)",
        "description": "Optional. With a test token, the Test button also calls DebtorService.Environment_Get "
                       "as this Nmbrs login (the AuthHeader Username).",
        "schema": {"type": ["string", "null"]},
    },
    TEST_TOKEN: {
        "label": "Test token",
        "description": "Optional. An API token of the test login, used only by the Test button; never logged "
                       "or shown beyond its last 4 characters.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE_NAME)
    except PackageNotFoundError:  # pragma: no cover - only when run from a source tree that is not installed
        return "0.0.0"


def get_provider_info() -> dict[str, Any]:
    """The provider info dict (Airflow's provider_info.schema.json) for the entry point."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "L1NDA Nmbrs sync",
        "description": "Keeps L1NDA's Nmbrs payroll links alive; provides the `nmbrs_soap` connection type.",
        "versions": [_version()],
        "connection-types": [
            {
                "hook-class-name": HOOK_CLASS_NAME,
                "hook-name": HOOK_NAME,
                "connection-type": CONN_TYPE,
                "ui-field-behaviour": copy.deepcopy(UI_FIELD_BEHAVIOUR),
                "conn-fields": copy.deepcopy(CONN_FIELDS),
            }
        ],
    }
