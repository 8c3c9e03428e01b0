"""`make airflow EXECUTOR=celery`: the production shape (docker-compose.yaml) on one machine, without Docker.

What compose runs in containers runs here as processes: Airflow's metadata on PostgreSQL, the CeleryExecutor, two
Celery workers, the scheduler, DAG processor, triggerer and API server. The broker is made of pip-installable parts:
kombu's SQLAlchemy transport on the same embedded PostgreSQL (database `celery_broker`), and Celery's results go to
Airflow's metadata database as in compose (`db+postgresql://`). So one embedded PostgreSQL holds Airflow's metadata,
the broker and the registry, each in a database of its own.

Differences from compose, and why:
- broker: kombu's SQLAlchemy transport instead of Redis (no Redis server from pip). It has no fanout, so Celery's
  remote control (`celery inspect ping`, compose's worker health check) does not reach the workers; a worker is
  healthy here when its log says `<hostname> ready.` and it is running. It hides a message once a worker fetched it:
  a worker killed with SIGKILL loses the messages it held, and Airflow's own timeouts recover the task instances
  (a running one through its missing heartbeat, a queued one through `task_queued_timeout`), shortened below.
- two workers on one host: each serves its task logs on a port of its own, and each reports its Celery node name
  (`w1@<host>`) as the task instances' hostname (`hostname_callable` below), which distinct containers get for free.
- SimpleAuthManager (the demo's login) instead of FAB; the same init script as compose (deploy/airflow-init.sh).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

WORKERS = ("w1", "w2")
WORKER_CONCURRENCY = 2  # task slots per worker: 4 in all, more than the pool below
POOL_SLOTS = 4  # nmbrs_api, as the local demo's pool
HOSTNAME_ENV = "L1NDA_DEV_WORKER_HOSTNAME"
HOSTNAME_CALLABLE = "l1nda_dev.demo.celery_shape.worker_hostname"
BROKER_DATABASE = "celery_broker"
DEFAULT_QUEUE = "default"  # Airflow's [operators] default_queue: where the executor sends and the workers listen
METADATA_DATABASE = "airflow"

# Airflow's recovery waits, shortened so that a killed worker's tasks come back in about a minute (default in the
# comment). Production keeps the defaults: compose sets none of these.
SHORTENED_RECOVERY = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "45",  # 300 s without a heartbeat: the task failed
    # 600 s queued without starting: queue it again. It is also the lifetime of the token a queued task starts with.
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
}


def prepare_broker(broker_url: str) -> None:
    """Create the broker's tables and Airflow's queue before any Airflow process starts. kombu's SQLAlchemy transport
    creates both on first use in every process, and two processes doing that at once race: its `_get_or_create`
    catches OperationalError only, so the loser gets IntegrityError (kombu_queue_name_key) and a worker that loses
    it at start exits ("Unrecoverable error"). Seen once in two runs with two workers starting together."""
    from kombu import Connection

    with Connection(broker_url) as conn:
        channel = conn.default_channel
        channel.queue_declare(queue=DEFAULT_QUEUE)
        channel.session.close()
        # The transport keeps its engines for the life of the process (a class attribute): none stays open here.
        for engine, _session in channel._engines.values():
            engine.dispose()
        channel._engines.clear()


def worker_hostname() -> str:
    """Airflow's `[core] hostname_callable` in the local workers: the Celery node name the worker was given (a
    container's own hostname in compose). The same name at start and at every heartbeat, as Airflow requires."""
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


def node_name(worker: str) -> str:
    """What Celery makes of `--celery-hostname w1@%h` on this machine."""
    return f"{worker}@{socket.gethostname()}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(postgres_server_url: str) -> dict[str, str]:
    """Airflow's settings for the Celery shape, given the embedded server's URL (`postgresql://.../postgres`)."""
    base = postgres_server_url.rsplit("/", 1)[0].replace("postgresql://", "", 1)
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        # psycopg2 for the sync engine (the psycopg 3 driver is not installed); Airflow derives the API server's
        # async engine from it: postgresql+asyncpg (hence the asyncpg pin).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{base}/{METADATA_DATABASE}",
        "AIRFLOW__CELERY__BROKER_URL": f"sqla+postgresql+psycopg2://{base}/{BROKER_DATABASE}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{base}/{METADATA_DATABASE}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AIRFLOW__CORE__PARALLELISM": str(WORKER_CONCURRENCY * len(WORKERS)),
        "NMBRS_API_POOL_SLOTS": str(POOL_SLOTS),
        **SHORTENED_RECOVERY,
    }


@dataclass(frozen=True)
class Spec:
    """One Airflow process to start: its name, `airflow` arguments, and what its environment adds."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_line: str | None = None  # a line its log shows once it serves (None: the API's health covers it)
    restart: bool = False  # started again when it dies (compose: restart: always); the workers
    # SIGTERM to the main process only, not its group: a Celery worker's warm shutdown stops its pool processes
    # itself, whereas SIGTERM to the group kills them under it (and the tasks they supervise)
    leader_only_term: bool = False


def specs(api_port: int) -> list[Spec]:
    """The processes of the Celery shape, in start order (stopped in reverse)."""
    out = [
        Spec("scheduler", ("scheduler",)),
        Spec("dag-processor", ("dag-processor",)),
        Spec("triggerer", ("triggerer",), {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}),
        Spec("api-server", ("api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1")),
    ]
    for worker in WORKERS:
        node = node_name(worker)
        out.append(Spec(
            f"worker-{worker}", ("celery", "worker", "--celery-hostname", f"{worker}@%h"),
            {
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE,
                HOSTNAME_ENV: node,
            },
            ready_line=f"{node} ready.",
            restart=True,
            leader_only_term=True,
        ))
    return out
