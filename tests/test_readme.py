"""The README says what the code does: its settings table is the generated one, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from l1nda_sync.cli import build_parser
from l1nda_sync.settings import settings_markdown

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
