"""`l1nda-sync problems list|mute|unmute` through the real `l1nda-sync` entry point, in-process."""

from __future__ import annotations

import json

import pytest

from l1nda_sync import cli
from l1nda_sync.cli import problem_commands as problems_cli
from l1nda_sync.engine.token_state import Outcome
from tests.l1nda_sync.alerts.harness import HOUR, MailServer, World, probe

REACH = probe(debtors=[(1, "Jansen Holding")], companies=[(11, 1, "Bakkerij Jansen")])


@pytest.fixture(autouse=True)
def _wired(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until the lead lists the module in l1nda_sync.cli.COMMAND_MODULES."""
    if problems_cli not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, problems_cli))


def _cli(registry_url: str, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["problems", *argv, "--database-url", registry_url])
    out, err = capsys.readouterr()
    return code, out, err


def _open_problem(world: World) -> int:
    token = world.add_token("Bakkerij Jansen")
    world.run({token: (Outcome.VALID, REACH)})
    world.run({token: Outcome.NO_SUBSCRIPTION})
    return token


def test_list_shows_open_problems_with_their_mails(world: World, smtp: MailServer, registry_url: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(registry_url, capsys, "list")[:2] == (0, "no open problems\n")
    _open_problem(world)
    code, out, _ = _cli(registry_url, capsys, "list")
    assert code == 0
    assert "no_subscription" in out
    assert "Bakkerij Jansen" in out
    assert "sent=2" in out
    code, out, _ = _cli(registry_url, capsys, "list", "--json")
    [shown] = json.loads(out)
    assert (shown["kind"], shown["state"], shown["muted"], shown["mails"]) == ("no_subscription", "open", False,
                                                                               {"sent": 2})
    assert _cli(registry_url, capsys, "list", "--state", "resolved")[1] == "no resolved problems\n"
    assert json.loads(_cli(registry_url, capsys, "list", "--kind", "revoked", "--json")[1]) == []


def test_mute_and_unmute(world: World, smtp: MailServer, registry_url: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    _open_problem(world)
    [problem] = world.problems()
    pid = str(problem["id"])
    code, out, _ = _cli(registry_url, capsys, "mute", pid)
    assert code == 0
    assert "muted" in out
    assert world.problems()[0]["muted"] is True
    assert "already muted" in _cli(registry_url, capsys, "mute", pid)[1]
    code, out, _ = _cli(registry_url, capsys, "unmute", pid, "--json")
    assert json.loads(out) == {"id": problem["id"], "kind": "no_subscription", "muted": False, "changed": True}
    assert world.problems()[0]["muted"] is False


def test_bad_ids_exit_2_naming_the_argument_and_change_nothing(world: World, smtp: MailServer, registry_url: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    token = _open_problem(world)
    code, _, err = _cli(registry_url, capsys, "mute", "999")
    assert code == 2
    assert "ID" in err
    assert "no problem 999" in err
    code, _, err = _cli(registry_url, capsys, "mute", "abc")
    assert code == 2
    world.run({token: (Outcome.VALID, REACH)})
    world.advance(HOUR)
    world.sweep_and_send()
    [problem] = world.problems()
    assert problem["state"] == "resolved"
    code, _, err = _cli(registry_url, capsys, "mute", str(problem["id"]))
    assert code == 2
    assert "is resolved" in err
    assert world.problems()[0]["muted"] is False
