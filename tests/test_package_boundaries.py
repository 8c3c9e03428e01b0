"""Who may import whom, read from the source (every import statement, also the ones inside functions).

- The runtime package (what the image installs) never imports the simulator or the dev tools, and the simulator,
  a test oracle for the clients, shares no code with them.
- No import runs back up: the core (Nmbrs clients, registry, engine, alerts, webhook) never reaches for the CLI,
  the DAG task bodies or the run pipeline that composes it; the engine gets its side effects handed in as hooks,
  so it imports neither alerts nor webhook; webhook events may raise alerts, never the other way round.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

INCLUDE = Path(__file__).resolve().parent.parent / "include"

RULES: dict[str, tuple[str, ...]] = {
    "l1nda_sync": ("nmbrs_sim", "l1nda_dev"),
    "nmbrs_sim": ("l1nda_sync", "l1nda_dev"),
    "l1nda_sync.nmbrs": ("l1nda_sync.registry", "l1nda_sync.engine", "l1nda_sync.alerts", "l1nda_sync.webhook"),
    "l1nda_sync.registry": ("l1nda_sync.engine", "l1nda_sync.alerts", "l1nda_sync.webhook"),
    "l1nda_sync.engine": ("l1nda_sync.alerts", "l1nda_sync.webhook"),
    "l1nda_sync.alerts": ("l1nda_sync.webhook",),
}
UPWARD = ("l1nda_sync.cli", "l1nda_sync.orchestration", "l1nda_sync.pipeline")
CORE = ("l1nda_sync.nmbrs", "l1nda_sync.registry", "l1nda_sync.engine", "l1nda_sync.alerts", "l1nda_sync.webhook")


def module_name(path: Path) -> str:
    parts = path.relative_to(INCLUDE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    return imports_of(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def imports_of(source: str, module: str, *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the source, relative ones resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:  # `from l1nda_sync import cli` imports l1nda_sync.cli
                yield node.lineno, f"{base}.{alias.name}"


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(forbidden_for: dict[str, tuple[str, ...]]) -> list[str]:
    found = []
    for path in sorted(INCLUDE.rglob("*.py")):
        mod = module_name(path)
        for owner, forbidden in forbidden_for.items():
            if not under(mod, owner):
                continue
            for line, target in imports(path):
                for bad in forbidden:
                    if under(target, bad):
                        found.append(f"{path.relative_to(INCLUDE)}:{line}: {mod} imports {target}")
    return found


def test_the_packages_keep_their_boundaries() -> None:
    assert violations(RULES) == []


def test_the_core_never_imports_the_layers_that_compose_it() -> None:
    assert violations({core: UPWARD for core in CORE}) == []


def test_nothing_outside_the_cli_imports_the_cli() -> None:
    """The CLI is a front end like the customer page and the DAGs: the runtime below it (consent, web, token_check,
    orchestration, ...) never imports it, so importing any of them first cannot run into a circular import."""
    found = []
    for path in sorted((INCLUDE / "l1nda_sync").rglob("*.py")):
        if under(module_name(path), "l1nda_sync.cli"):
            continue
        found += [f"{path.relative_to(INCLUDE)}:{line}: imports {target}" for line, target in imports(path)
                  if under(target, "l1nda_sync.cli")]
    assert found == []


@pytest.mark.parametrize("module", ["l1nda_sync.web.app", "l1nda_sync.consent", "l1nda_sync.token_check"])
def test_a_runtime_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    """Imported first (as uvicorn or a DAG task would), without the CLI loaded before it."""
    env = {**os.environ, "PYTHONPATH": str(INCLUDE)}
    done = subprocess.run([sys.executable, "-c", f"import {module}"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(("source", "expected"), [
    ("from l1nda_sync.cli import output\n", "l1nda_sync.cli.output"),
    ("def f():\n    import nmbrs_sim.world\n", "nmbrs_sim.world"),
    ("from .. import webhook\n", "l1nda_sync.webhook"),
    ("from .store import ProblemRow\n", "l1nda_sync.alerts.store"),
])
def test_the_reader_finds_imports_inside_functions_and_relative_ones(source: str, expected: str) -> None:
    assert expected in [t for _, t in imports_of(source, "l1nda_sync.alerts.outbox")]


DAGS = INCLUDE.parent / "dags"


def test_dag_files_reach_the_code_through_the_task_bodies_only() -> None:
    """A DAG file wires tasks; everything it calls lives in `l1nda_sync.orchestration`."""
    found = []
    for path in sorted(DAGS.glob("*.py")):
        for line, target in imports_of(path.read_text(), path.stem):
            if under(target, "l1nda_sync") and target not in ("l1nda_sync", "l1nda_sync.orchestration"):
                found.append(f"dags/{path.name}:{line}: imports {target}")
            if under(target, "nmbrs_sim") or under(target, "l1nda_dev"):
                found.append(f"dags/{path.name}:{line}: imports {target}")
    assert found == []
    assert list(DAGS.glob("*.py")), "no DAG file found"


def test_the_runtime_imports_nothing_by_name_at_run_time() -> None:
    """importlib.import_module / __import__ would hide an import from the checks above."""
    found = []
    for path in sorted((INCLUDE / "l1nda_sync").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if name in ("import_module", "__import__"):
                    found.append(f"{path.relative_to(INCLUDE)}:{node.lineno}")
    assert found == []
