"""The embedded PostgreSQL wrapper starts, serves over TCP on loopback, and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import psycopg2
import pytest

from l1nda_dev.postgres import EmbeddedPostgres


def _postgres_children_of(pid: int) -> list[psutil.Process]:
    """The live postgres processes under `pid`; a child that exits while it is listed (initdb's helpers) is not one."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.name() == "postgres":
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_start_query_stop_removes_everything() -> None:
    server = EmbeddedPostgres().start()
    root = server.root
    assert root is not None
    assert root.exists()
    assert server.url.startswith("postgresql://postgres@127.0.0.1:")
    with psycopg2.connect(server.url) as conn, conn.cursor() as cur:
        cur.execute("show fsync")
        assert cur.fetchone()[0] == "off"
    # Only this server's tree: the session's shared server is a child of pytest too.
    assert server.pid is not None
    postmaster = psutil.Process(server.pid)
    tree = [postmaster, *postmaster.children(recursive=True)]
    assert postmaster in _postgres_children_of(os.getpid())
    server.stop()
    assert not root.exists()
    _gone, alive = psutil.wait_procs(tree, timeout=20)
    assert not alive, f"postgres processes outlived stop(): {alive}"
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(server.url, connect_timeout=2)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_server_dies_with_its_owner(how: signal.Signals) -> None:
    """Ctrl-C (SIGINT) and even a hard kill of the owning process leave no server running."""
    script = textwrap.dedent(
        """
        import sys, time
        from l1nda_dev.postgres import embedded_postgres
        with embedded_postgres() as pg:
            print(pg.port, flush=True)
            time.sleep(120)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        port = int(owner.stdout.readline())
        servers = _postgres_children_of(owner.pid)
        assert servers, "the owner should have a postgres child"
        owner.send_signal(how)
        owner.wait(30)
        _gone, alive = psutil.wait_procs(servers, timeout=20)
        assert not alive, f"postgres outlived its owner ({how.name}): {alive}"
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2)
    finally:
        if owner.poll() is None:
            owner.kill()


def test_stale_directories_of_killed_owners_are_removed(tmp_path) -> None:
    from l1nda_dev.postgres import ROOT_PREFIX, STALE_AFTER, remove_stale_roots

    dead = tmp_path / f"{ROOT_PREFIX}dead"
    (dead / "data").mkdir(parents=True)
    (dead / "data" / "postmaster.pid").write_text("999999999\n")  # no such process
    running = tmp_path / f"{ROOT_PREFIX}running"
    (running / "data").mkdir(parents=True)
    (running / "data" / "postmaster.pid").write_text(f"{os.getpid()}\n")
    young = tmp_path / f"{ROOT_PREFIX}young"
    young.mkdir()
    other = tmp_path / "someone-else"
    other.mkdir()
    later = young.stat().st_mtime + STALE_AFTER / 2
    assert remove_stale_roots(str(tmp_path), now=later) == []  # everything is still young
    removed = remove_stale_roots(str(tmp_path), now=later + STALE_AFTER)
    assert sorted(removed) == sorted([dead, young])  # young had no server after all
    assert not dead.exists()
    assert running.exists()
    assert other.exists()


def test_the_server_starts_with_a_minimal_environment(monkeypatch) -> None:
    """No L1NDA_* secret, no PG* password, no Airflow connection reaches the postmaster (read from /proc)."""
    secrets = {
        "L1NDA_FERNET_KEYS": "c2VjcmV0LWZlcm5ldC1rZXktbm90LWZvci10aGUtc2VydmVy",
        "L1NDA_DATABASE_URL": "postgresql://l1nda:db-password-xyz@db/l1nda",
        "PGPASSWORD": "pg-password-xyz",
        "PGSERVICEFILE": "/nonexistent/pg_service.conf",
        "AIRFLOW_CONN_NMBRS_SOAP": "http://user:conn-password-xyz@api.nmbrs.nl",
        "AIRFLOW__CORE__FERNET_KEY": "airflow-fernet-xyz",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    server = EmbeddedPostgres().start()
    try:
        assert server.pid is not None
        environ = Path(f"/proc/{server.pid}/environ").read_bytes()
        names = {entry.split(b"=", 1)[0].decode() for entry in environ.split(b"\0") if entry}
        assert names, "the postmaster's environment could not be read"
        assert names <= {"PATH", "LD_LIBRARY_PATH", "TMPDIR", "LC_ALL", "LANG", "TZ", "PGDATA", "PG_GRANDPARENT_PID",
                         "PGLOCALEDIR", "PGSYSCONFDIR"}, names
        assert {"LC_ALL", "TZ"} <= names
        for value in secrets.values():
            assert value.encode() not in environ
        with psycopg2.connect(server.url) as conn, conn.cursor() as cur:  # and it serves
            cur.execute("select 1")
            assert cur.fetchone() == (1,)
    finally:
        server.stop()
