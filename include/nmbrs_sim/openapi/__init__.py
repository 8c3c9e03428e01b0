"""The OpenAPI subset of Nmbrs' REST API that the simulator serves (`nmbrs-rest-subset.yaml`), and JSON Schemas
cut from it for checking answers."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

DOCUMENT = Path(__file__).with_name("nmbrs-rest-subset.yaml")


@functools.cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def schema(name: str) -> dict[str, Any]:
    """components.schemas[name] as a standalone JSON Schema (its $refs resolve inside it)."""
    components = document()["components"]
    return {"$ref": f"#/components/schemas/{name}", "components": components}


def response_schema(operation_id: str) -> dict[str, Any]:
    """The 200 answer's schema of an operation, by operationId (getDebtors, getCompanies, ...)."""
    for item in document()["paths"].values():
        operation = item.get("get", {})
        if operation.get("operationId") == operation_id:
            ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            return schema(ref.rsplit("/", 1)[1])
    raise KeyError(f"no operation {operation_id!r} in {DOCUMENT.name}")
