"""Uninstall from this interpreter's environment every distribution the pin files no longer name.

`pip install -r` over an existing .venv adds and upgrades but never removes, so a package that left the pins stays
behind (and `pip check` may then object to it). Run with the venv's python: `python tools/prune_venv.py PINFILE...`.
The project itself (installed editable) and the installer's own packages are kept.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

KEEP = {"pip", "setuptools", "wheel", "l1nda-nmbrs-sync"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(files: list[str]) -> set[str]:
    names = set()
    for file in files:
        for line in Path(file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "-")):
                names.add(canonical(re.split(r"[=<>~!;\[ ]", line, maxsplit=1)[0]))
    return names


def main(files: list[str]) -> int:
    wanted = pinned(files) | KEEP
    extra = sorted({d.metadata["Name"] for d in metadata.distributions()
                    if d.metadata["Name"] and canonical(d.metadata["Name"]) not in wanted})
    if not extra:
        return 0
    print(f"removing what the pins no longer name: {' '.join(extra)}")
    return subprocess.call([sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", *extra])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
