"""Everything the demo runs on: embedded PostgreSQL, the Nmbrs simulator, the mail sink, an Airflow home, and the
customer page (`l1nda-sync web`'s app) that the invitation links in the mails lead to.

`DemoStack` starts them in that order and stops them in reverse, also on Ctrl-C. Airflow reads its
configuration when first imported, so the environment (connections as AIRFLOW_CONN_*, settings as L1NDA_*)
is set in `os.environ` here, before anything imports airflow; child processes inherit it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import nmbrs_sim
from l1nda_dev.demo.console import Console
from l1nda_sync.masking import mask

DEMO_SCENARIO = Path(nmbrs_sim.__path__[0]).resolve() / "scenarios" / "demo.yaml"
OPS = "support@l1nda.example"
UI_USER = "admin"
UI_PASSWORD = "l1nda-demo"  # noqa: S105 - a local demo login on 127.0.0.1, printed on purpose

# What the demo shortens so the story completes in a minute (production value in the comment).
SHORTENED = {
    "L1NDA_REVOKE_MIN_SPACING": "3",      # 600 s between the first and the confirming 1001
    "L1NDA_CHECK_INTERVAL_FAILED": "3",   # 600 s until a token that just failed is checked again
}


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and where the detail is."""


@dataclass(frozen=True)
class DemoToken:
    """A token the demo registers: label, level, login."""

    label: str
    level: str  # accountant | debtor, as `l1nda-sync tokens add --level` takes it
    username: str
    contact: str
    language: str
    note: str


# The customers of the demo, all logins of include/nmbrs_sim/scenarios/demo.yaml but the unfiltered master
# (which reaches every company and would take over every link instead of letting one be suspended).
TOKENS: tuple[DemoToken, ...] = (
    DemoToken("Horeca office", "accountant", "master-horeca@demo-accountants.example",
              "salaris@demo-accountants.example", "en", "accountant master filtered on the tag Horeca"),
    DemoToken("Modehuis Van Dijk", "debtor", "payroll@modehuis-vandijk.example",
              "payroll@modehuis-vandijk.example", "nl", "debtor login, one company"),
    DemoToken("Thuiszorg De Linde", "debtor", "hr@thuiszorg-delinde.example",
              "hr@thuiszorg-delinde.example", "nl", "debtor login, two companies, no Tags_Get right"),
    DemoToken("Bakkerij De Graaf", "debtor", "salaris@bakkerij-degraaf.example",
              "salaris@bakkerij-degraaf.example", "en", "business customer"),
)

# (customer reference, Nmbrs company id): the links L1NDA asks for.
LINKS: tuple[tuple[str, int], ...] = (
    ("CUST-ANKER", 50101),      # Brasserie Het Anker B.V.       (Horeca office)
    ("CUST-ZWAAN", 50201),      # Café De Zwaan V.O.F.           (Horeca office)
    ("CUST-ZWAAN", 50202),      # Café De Zwaan Terras B.V.      (does not exist yet: added during the demo)
    ("CUST-SNEL", 50401),       # Fietsenwinkel Snel B.V.        (Horeca office, via the debtor's Horeca tag)
    ("CUST-VANDIJK", 50301),    # Modehuis Van Dijk B.V.         (Modehuis Van Dijk's own login)
    ("CUST-DELINDE", 50501),    # Thuiszorg De Linde B.V.
    ("CUST-DEGRAAF", 60101),    # Bakkerij De Graaf B.V.
    ("CUST-KOK", 50701),        # Bouwbedrijf Kok B.V.           (Bouw: no registered token reaches it)
)


def scenario_tokens(path: Path = DEMO_SCENARIO) -> dict[str, str]:
    """username -> token of every login in the scenario (the tokens only open the simulator)."""
    scenario = yaml.safe_load(path.read_text())
    return {login["username"]: login["token"] for env in scenario["environments"] for login in env["logins"]}


REST_APP_ID = "PartnerApp_L1NDA_demo"  # L1NDA's Nmbrs app in the demo scenario's `rest.clients`


def scenario_rest_app(path: Path = DEMO_SCENARIO, client_id: str = REST_APP_ID) -> dict[str, Any]:
    """L1NDA's Nmbrs app as the scenario registers it: client id, secret, redirect URIs, subscription keys."""
    scenario = yaml.safe_load(path.read_text())
    for client in (scenario.get("rest") or {}).get("clients") or []:
        if client["client_id"] == client_id:
            return dict(client)
    raise DemoError(f"{path.name} registers no REST client {client_id}")


def rest_settings(root_url: str, path: Path = DEMO_SCENARIO) -> dict[str, str]:
    """The L1NDA_NMBRS_REST_* settings for L1NDA's app on the simulator (API and identity server on one host)."""
    app = scenario_rest_app(path)
    return {
        "L1NDA_NMBRS_REST_API_BASE_URL": root_url,
        "L1NDA_NMBRS_REST_IDENTITY_BASE_URL": root_url,
        "L1NDA_NMBRS_REST_CLIENT_ID": str(app["client_id"]),
        "L1NDA_NMBRS_REST_CLIENT_SECRET": str(app["client_secret"]),
        "L1NDA_NMBRS_REST_SUBSCRIPTION_KEY": str(app["subscription_keys"][0]),
        "L1NDA_NMBRS_REST_REDIRECT_URI": str(app["redirect_uris"][0]),
    }


def repo_root() -> Path:
    """The checkout (the packages are installed editable from include/); else the working directory."""
    here = Path(__file__).resolve().parents[3]
    return here if (here / "dags").is_dir() else Path.cwd()


# The one-shot set-up compose's airflow-init runs (the image's copy); `--executor celery` runs the checkout's.
INIT_SCRIPT = repo_root() / "deploy" / "airflow-init.sh"


@dataclass
class Paths:
    """Where the demo keeps its files under var/."""

    var: Path

    @property
    def mail(self) -> Path:
        return self.var / "mail"

    @property
    def work(self) -> Path:
        return self.var / "demo"

    @property
    def airflow_home(self) -> Path:
        return self.work / "airflow-home"

    @property
    def log(self) -> Path:
        return self.work / "demo.log"

    def fresh(self) -> None:
        """An empty demo directory and no mails from an earlier run (both are the demo's own output)."""
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.mail.mkdir(parents=True, exist_ok=True)
        for old in self.mail.glob("*.eml"):
            old.unlink()


@dataclass
class DemoStack:
    """Starts and stops the demo's parts; `env` is what the Airflow components and the CLI see."""

    paths: Paths
    console: Console
    dags_folder: Path
    ui_port: int | None = None  # set for `--airflow`: the API server's port
    executor: str = "local"  # `--executor celery`: the production shape (celery_shape), only with --airflow
    web_port: int = 0  # the customer page's port (0: a free one)
    env: dict[str, str] = field(default_factory=dict)
    token_ids: dict[str, int] = field(default_factory=dict)
    reset_tokens: dict[str, str] = field(default_factory=dict)  # username -> the token Nmbrs made on a reset
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)
    pg: Any = None
    sim: Any = None
    sink: Any = None
    page: Any = None

    def __enter__(self) -> DemoStack:
        try:
            self.start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.console.say("stopping the customer page, the mail sink, the simulator and PostgreSQL")
        self._stack.close()

    def start(self) -> None:
        from l1nda_dev.demo.customer_page import CustomerPage, bind
        from l1nda_dev.demo.mailsink import MailSink
        from l1nda_dev.postgres import create_database, embedded_postgres
        from nmbrs_sim.testing import running_simulator

        say = self.console.say
        self.pg = self._stack.enter_context(embedded_postgres())
        say(f"PostgreSQL 18 (embedded) on 127.0.0.1:{self.pg.port}: database 'registry' for the token registry")
        create_database(self.pg.url, "registry")
        if self.executor == "celery":
            from l1nda_dev.demo import celery_shape

            for database in (celery_shape.METADATA_DATABASE, celery_shape.BROKER_DATABASE):
                create_database(self.pg.url, database)
            celery_shape.prepare_broker(celery_shape.environment(self.pg.url)["AIRFLOW__CELERY__BROKER_URL"])
            say(f"  and '{celery_shape.METADATA_DATABASE}' (Airflow's metadata, Celery's results), "
                f"'{celery_shape.BROKER_DATABASE}' (the Celery broker: kombu's SQLAlchemy transport)")
        self.sim = self._stack.enter_context(running_simulator(DEMO_SCENARIO))
        say(f"Nmbrs simulator on {self.sim.root_url} with the demo scenario ({DEMO_SCENARIO.name})")
        self.sink = self._stack.enter_context(MailSink(self.paths.mail))
        say(f"mail sink on smtp://127.0.0.1:{self.sink.port}: every mail becomes an .eml file in {self.paths.mail}/")
        sock = bind(self.web_port)
        self._stack.callback(sock.close)
        self.web_port = int(sock.getsockname()[1])
        self.env = self._environment()
        os.environ.update(self.env)
        self._write_env_file()
        self._airflow_home()
        self.page = self._stack.enter_context(CustomerPage(sock))
        say(f"customer page on {self.page.url}/ (`l1nda-sync web`'s app): the invitation links in the mails lead here")

    def _environment(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        home = self.paths.airflow_home
        registry = self.pg.url_for("registry")
        env = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.dags_folder.parent / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Airflow's own metadata: SQLite is enough for one machine (Airflow on PostgreSQL needs asyncpg).
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{UI_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # The connections the DAGs use, exactly as a worker finds them in production.
            "AIRFLOW_CONN_L1NDA_REGISTRY": registry,
            "AIRFLOW_CONN_NMBRS_SOAP": json.dumps({"conn_type": "http", "host": self.sim.base_url}),
            "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps({
                "conn_type": "smtp", "host": "127.0.0.1", "port": self.sink.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 10},
            }),
            # The CLI's registry and the keys that encrypt tokens at rest (new for every demo).
            "L1NDA_DATABASE_URL": registry,
            "L1NDA_FERNET_KEYS": Fernet.generate_key().decode(),
            "L1NDA_OPS_RECIPIENTS": OPS,
            "L1NDA_NMBRS_WSDL_CACHE_DIR": str(self.paths.work / "wsdl-cache"),
            # L1NDA's own Nmbrs REST app (the scenario's PartnerApp_L1NDA_demo), for consents and REST checks.
            **rest_settings(self.sim.root_url),
            # The customer page: alert mails link to one-time invitations on it (the key is new for every demo).
            "L1NDA_WEB_BASE_URL": f"http://127.0.0.1:{self.web_port}",
            "L1NDA_WEB_SECRET": secrets.token_urlsafe(32),
            **SHORTENED,
        }
        if self.ui_port is not None:
            env["AIRFLOW__API__BASE_URL"] = f"http://127.0.0.1:{self.ui_port}"
            env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{self.ui_port}/execution/"
            env["AIRFLOW__CORE__PARALLELISM"] = "4"
        if self.executor == "celery":
            from l1nda_dev.demo import celery_shape

            env.update(celery_shape.environment(self.pg.url))
        return env

    @property
    def env_file(self) -> Path:
        return self.paths.work / "demo.env"

    def _write_env_file(self) -> None:
        """The demo's environment for a second shell (`set -a; . var/demo/demo.env`), readable by its owner only."""
        self.env_file.touch(mode=0o600)
        self.env_file.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(self.env.items())))

    def _airflow_home(self) -> None:
        home = self.paths.airflow_home
        home.mkdir(parents=True, exist_ok=True)
        (home / "passwords.json").write_text(json.dumps({UI_USER: UI_PASSWORD}))
        if self.executor == "celery":
            self.console.say(f"Airflow home {home} (metadata in PostgreSQL); {INIT_SCRIPT.relative_to(repo_root())}, "
                             "as compose's airflow-init: migrate Airflow, pool nmbrs_api, migrate the registry")
            venv_bin = str(Path(sys.executable).parent)  # the script's `airflow` and `l1nda-sync`: this venv's
            self.run(["bash", str(INIT_SCRIPT)], what=INIT_SCRIPT.name,
                     extra_env={"PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "/usr/bin:/bin")])})
            return
        self.console.say(f"Airflow home {home} (metadata in SQLite); migrating Airflow's database")
        self.run(["airflow", "db", "migrate"], what="airflow db migrate")

    # -- commands ------------------------------------------------------------------------------------------
    def run(self, argv: Sequence[str], *, what: str, stdin: str | None = None,
            extra_env: dict[str, str] | None = None) -> str:
        """Run a console script of this virtualenv; its output goes to the log, a failure stops the demo."""
        exe = Path(sys.executable).parent / argv[0]
        command = [str(exe) if exe.exists() else argv[0], *argv[1:]]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True,
                              env={**os.environ, **self.env, **(extra_env or {})}, check=False)
        with open(self.paths.log, "a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise DemoError(f"{what} failed (exit {done.returncode}):\n{tail}")
        return done.stdout

    def cli_json(self, *argv: str) -> Any:
        return json.loads(self.run(["l1nda-sync", "--json", *argv], what=f"l1nda-sync {' '.join(argv)}"))

    def register(self) -> None:
        """The registry's schema, the customers' tokens and L1NDA's link requests, all through `l1nda-sync`."""
        say = self.console.say
        out = self.run(["l1nda-sync", "db", "upgrade"], what="l1nda-sync db upgrade")
        say(f"$ l1nda-sync db upgrade  -> {out.strip().splitlines()[-1] if out.strip() else 'ok'}")
        secrets_by_user = scenario_tokens()

        def add(t: DemoToken) -> int:
            argv = ["l1nda-sync", "--json", "tokens", "add", "--label", t.label, "--level", t.level,
                    "--username", t.username, "--contact", t.contact, "--language", t.language]
            return _find_id(json.loads(self.run(argv, what=f"tokens add {t.label}",
                                                stdin=secrets_by_user[t.username] + "\n")))

        # Two at a time: each command starts a Python that imports Airflow (about 2 s on this kind of machine).
        with ThreadPoolExecutor(max_workers=2) as pool:
            for t, token_id in zip(TOKENS, pool.map(add, TOKENS), strict=True):
                self.token_ids[t.label] = token_id
                say(f"$ l1nda-sync tokens add --label '{t.label}' --level {t.level} --username {t.username} "
                    f"--contact {t.contact} --language {t.language}  < token {mask(secrets_by_user[t.username])}"
                    f"  -> token {token_id}")

            def request(link: tuple[str, int]) -> str:
                customer, company = link
                return self.run(["l1nda-sync", "links", "request", "--customer", customer, "--company", str(company)],
                                what=f"links request {company}")

            list(pool.map(request, LINKS))
        say(f"$ l1nda-sync links request --customer REF --company ID, {len(LINKS)} times: "
            + ", ".join(f"{c} ({r})" for r, c in LINKS))

    def create_pool(self) -> None:
        if self.executor == "celery":
            self.console.say("Airflow pool nmbrs_api: made by the init script")
            return
        from airflow.models.pool import Pool

        Pool.create_or_update_pool("nmbrs_api", slots=4, description="Nmbrs API calls (demo)",
                                   include_deferred=False)
        self.console.say("Airflow pool nmbrs_api: 4 slots")


def _find_id(document: Any) -> int:
    """The token id in `tokens add --json` output: {"token": {"id": ...}, ...}."""
    try:
        return int(document["token"]["id"])
    except (KeyError, TypeError, ValueError):
        raise DemoError(f"no token id in the output of `tokens add --json`: {str(document)[:200]}") from None

