from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from l1nda_sync.registry import db, schema
from l1nda_sync.registry.crypto import TokenCipher
from l1nda_sync.registry.tokens import TokenStore

TOKEN = "9f86d081884c7d659a2feaa0c55ad015"


def console_script() -> str:
    found = Path(sys.executable).with_name("l1nda-sync")
    return str(found) if found.exists() else shutil.which("l1nda-sync") or "l1nda-sync"


def test_db_upgrade_twice_is_a_no_op_and_status_says_so(run, database_url) -> None:
    behind = run("--database-url", database_url, "tokens", "list")
    assert behind.code == 1
    assert "l1nda-sync db upgrade" in behind.err
    assert "version 0" in behind.err
    status = run("db", "status", "--database-url", database_url, "--json")
    assert status.code == 0
    assert (status.json["version"], status.json["up_to_date"]) == (0, False)
    first = run("db", "upgrade", "--database-url", database_url)
    assert first.code == 0
    assert "applied 0001_initial.sql" in first.out
    second = run("db", "upgrade", "--database-url", database_url, "--json")
    assert second.code == 0
    assert second.json == {"applied": [], "version": schema.head_version(), "head": schema.head_version()}
    status = run("db", "status", "--database-url", database_url)
    assert "up to date" in status.out


def test_missing_or_unreachable_database_is_a_failure_that_says_what_to_set(run, monkeypatch) -> None:
    monkeypatch.delenv("L1NDA_DATABASE_URL", raising=False)
    missing = run("tokens", "list")
    assert missing.code == 1
    assert "L1NDA_DATABASE_URL" in missing.err
    unreachable = run("--database-url", "postgresql://user:hunter2@127.0.0.1:1/registry", "db", "status", "--json")
    assert unreachable.code == 1
    assert "cannot connect to the registry at postgresql://user:***@127.0.0.1:1/registry" in unreachable.err
    assert "hunter2" not in unreachable.out + unreachable.err
    assert unreachable.json["error"]["exit_code"] == 1


def test_keys_generate_prints_a_usable_key(run) -> None:
    text = run("keys", "generate")
    assert text.code == 0
    Fernet(text.out.strip().encode())  # raises if it is not a key
    assert "keys rotate" in text.err
    as_json = run("keys", "generate", "--json")
    assert as_json.json["key"] != text.out.strip()


def test_keys_rotate_lets_the_old_key_go(cli, registry_url, fernet_keys, monkeypatch) -> None:
    for n, token in enumerate((TOKEN, "60303ae22b998861bce3b28f33eec1be")):
        assert cli("tokens", "add", "--no-check", "--label", f"T{n}", "--level", "debtor", "--username", f"u{n}@x.nl",
                   "--contact", "c@x.nl", stdin=token).code == 0
    newest = Fernet.generate_key().decode()
    monkeypatch.setenv("L1NDA_FERNET_KEYS", f"{newest},{fernet_keys[0]}")
    result = cli("keys", "rotate", "--json")
    assert result.code == 0
    assert result.json == {"tokens": 2, "under_older_key": 2, "keys": 2}
    conn = db.connect(registry_url)
    try:
        assert TokenStore(TokenCipher([newest])).reveal(conn, 1).reveal() == TOKEN
    finally:
        conn.close()
    monkeypatch.setenv("L1NDA_FERNET_KEYS", fernet_keys[0])  # only the dropped key: rotation must refuse
    refused = cli("keys", "rotate")
    assert refused.code == 1
    assert "token 1, 2 cannot be decrypted" in refused.err
    assert "nothing was rotated" in refused.err


def test_settings_shows_values_without_secrets(run, fernet_keys, monkeypatch) -> None:
    monkeypatch.setenv("L1NDA_DATABASE_URL", "postgresql://u:pw-secret@db:5432/reg")
    result = run("settings")
    assert result.code == 0
    assert "L1NDA_BATCH_SIZE" in result.out
    assert "(1 set)" in result.out
    assert fernet_keys[0] not in result.out
    assert "pw-secret" not in result.out
    markdown = run("settings", "--markdown")
    assert markdown.out.startswith("| setting | environment variable |")


def test_help_and_unknown_commands(run) -> None:
    assert run().code == 0
    assert run("tokens").code == 0
    assert run("frobnicate").code == 2


def test_the_console_script_end_to_end(registry_url) -> None:
    env = {**os.environ, "L1NDA_DATABASE_URL": registry_url, "L1NDA_FERNET_KEYS": Fernet.generate_key().decode()}
    exe = console_script()
    add = subprocess.run([exe, "tokens", "add", "--no-check",
                          "--label", "Sub", "--level", "debtor", "--username", "s@x.nl",
                          "--contact", "c@x.nl"], input=TOKEN + "\n", env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert add.returncode == 0, add.stderr
    assert TOKEN not in add.stdout + add.stderr
    listed = subprocess.run([exe, "tokens", "list", "--json"], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert listed.returncode == 0
    assert '"label": "Sub"' in listed.stdout
    bad = subprocess.run([exe, "links", "request", "--customer", "C", "--company", "x"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2
    assert "--company" in bad.stderr


def _read_until(fd: int, needle: bytes, deadline: float) -> bytes:
    seen = b""
    while needle not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"never saw {needle!r}; got {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_on_a_terminal_the_token_is_read_from_a_hidden_prompt(registry_url) -> None:
    import fcntl
    import termios

    env = {**os.environ, "L1NDA_DATABASE_URL": registry_url, "L1NDA_FERNET_KEYS": Fernet.generate_key().decode()}
    try:
        master, slave = os.openpty()
    except OSError as exc:
        pytest.skip(f"no pseudo-terminal here: {exc}")

    def take_terminal() -> None:  # runs in the child after setsid(): make the pty its controlling terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [console_script(), "tokens", "add", "--no-check",
         "--label", "Typed", "--level", "debtor", "--username", "t@x.nl",
         "--contact", "c@x.nl"],
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True,
        preexec_fn=take_terminal,
    )
    os.close(slave)
    try:
        deadline = time.monotonic() + 60
        prompt = _read_until(master, b"typing is hidden", deadline)
        os.write(master, TOKEN.encode() + b"\n")
        out, err = proc.communicate(timeout=60)
        echoed = prompt + _read_until(master, b"\n", time.monotonic() + 5)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert b"added token 1 'Typed'" in out
    assert TOKEN.encode() not in echoed + out + err
