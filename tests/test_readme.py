"""The README says what the code does: its settings table is the generated one, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from l1nda_sync.cli import build_parser
from l1nda_sync.settings import settings_markdown
from tests.l1nda_sync.conftest import fernet_keys, registry_template, registry_url  # noqa: F401 - fixtures

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_settings_table_is_the_generated_one() -> None:
    block = re.search(r"<!-- settings:start -->\n(.*?)\n<!-- settings:end -->", README, re.S)
    assert block, "README lost its settings markers"
    assert block.group(1).strip() == settings_markdown().strip(), "run `l1nda-sync settings --markdown`"


def test_every_l1nda_sync_command_in_the_readme_exists() -> None:
    parser = build_parser()
    commands = re.findall(r"^l1nda-sync ((?:[a-z]+ ?){1,2})", README, re.M)
    commands += re.findall(r"`l1nda-sync ([a-z]+(?: [a-z]+)?)", README)
    assert len(commands) > 5
    groups = parser._subparsers._group_actions[0].choices
    for command in commands:
        words = command.split()
        assert words[0] in groups, f"README mentions `l1nda-sync {command}`"
        if len(words) > 1 and not words[1].startswith("-"):
            actions = groups[words[0]]._subparsers._group_actions[0].choices
            assert words[1] in actions, f"README mentions `l1nda-sync {command}`"


def _sh_block(after_heading: str) -> list[str]:
    section = README[README.index(after_heading):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, f"no sh block after {after_heading!r}"
    return [line for line in block.group(1).splitlines() if line.startswith("l1nda-sync ")]


def test_the_readme_commands_run_as_written(registry_url, fernet_keys, monkeypatch, tmp_path, capsys) -> None:  # noqa: F811
    """Every `l1nda-sync` line of the registration and operations blocks, in order, against the demo world;
    lines with an UPPER_CASE placeholder (an id only known at run time) are skipped."""
    import io
    import shlex
    import sys

    from l1nda_sync.cli import main
    from nmbrs_sim.testing import running_simulator
    from tests.l1nda_sync.engine.story_world import DEMO_SCENARIO, LOGINS

    lines = _sh_block("### Registering a customer's token") + _sh_block("### Operations")
    with running_simulator(DEMO_SCENARIO) as sim:
        monkeypatch.setenv("L1NDA_DATABASE_URL", registry_url)
        monkeypatch.setenv("L1NDA_NMBRS_BASE_URL", sim.base_url)
        monkeypatch.setenv("L1NDA_NMBRS_WSDL_CACHE_DIR", str(tmp_path / "wsdl"))
        files = {"token.txt": LOGINS["horeca"][2]}
        ran = []
        for line in lines:
            argv = shlex.split(line, comments=True)[1:]
            if any(re.fullmatch(r"[A-Z]+(_[A-Z]+)+", a) for a in argv):
                continue
            stdin = ""
            if "<" in argv:
                at = argv.index("<")
                name = argv[at + 1]
                if name == "new-token.txt":
                    files[name] = sim.admin.reset_token(LOGINS["horeca"][1])
                stdin = files[name]
                argv = argv[:at] + argv[at + 2:]
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
            code = main(argv)
            out, err = capsys.readouterr()
            assert code == 0, f"`{line}` exited {code}: {err}"
            assert LOGINS["horeca"][2] not in out + err
            ran.append(argv[0])
    assert len(ran) >= 10
    assert {"tokens", "links", "sync", "runs", "keys", "problems", "settings"} <= set(ran)


def test_every_path_in_the_code_map_exists() -> None:
    section = README[README.index("## Where the code lives"):README.index("## Tests")]
    paths = re.findall(r"^\| `([^`]+)`", section, re.M)
    paths += [p for row in re.findall(r"^\| (`[^|]+`) \|", section, re.M) for p in re.findall(r"`([^`]+)`", row)]
    root = Path(__file__).resolve().parents[1]
    assert len(set(paths)) > 12
    for path in set(paths):
        base = "include/l1nda_sync/" if "/" not in path and path.endswith(".py") else ""
        assert (root / base / path).exists(), f"the README's code map names {path}, which does not exist"


PLACEHOLDER = re.compile(r"[A-Z]+(_[A-Z]+)+")
EXAMPLES = {"CUSTOMER_REF": "CUST-GRAAF", "CONTACT_EMAIL": "jan@bakkerij-degraaf.example",
            "CALLBACK_URL": "https://l1nda.example/nmbrs/callback?code=x&state=y", "CONNECTION_ID": "1",
            "REST_UUID": "6f1c7d9e-0b3a-4c52-9a8e-2d4f6b8a0c11", "COMPANY_ID": "50101"}


def test_the_rest_connection_commands_parse_and_run_as_written(registry_url, fernet_keys, monkeypatch,  # noqa: F811
                                                               capsys) -> None:
    """The "REST connections" block: every line parses (placeholders filled with examples); the lines without
    a placeholder run against an empty registry."""
    import shlex

    from l1nda_sync.cli import main

    lines = _sh_block("### REST connections")
    assert {shlex.split(line, comments=True)[1] for line in lines} == {"connections", "companies", "tokens"}
    parser = build_parser()
    monkeypatch.setenv("L1NDA_DATABASE_URL", registry_url)
    ran = 0
    for line in lines:
        argv = shlex.split(line, comments=True)[1:]
        parser.parse_args([EXAMPLES.get(a, a) for a in argv])  # exits 2 on a wrong option
        if any(PLACEHOLDER.fullmatch(a) for a in argv):
            assert all(a in EXAMPLES for a in argv if PLACEHOLDER.fullmatch(a)), line
            continue
        code = main(argv)
        _out, err = capsys.readouterr()
        assert code == 0, f"`{line}` exited {code}: {err}"
        ran += 1
    assert ran >= 3
