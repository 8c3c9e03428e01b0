"""The Dockerfile's install steps on top of the official image, proved without Docker (slow).

The official apache/airflow image is `apache-airflow[<its default extras>]==<version>` installed under Airflow's
constraints. This test builds the same package set in a scratch virtualenv with uv (the extras and the versions
come from constraints/, which `make pins` writes), then runs the Dockerfile's own `pip install` steps in it, as
written, with real pip and the Dockerfile's `pip check`, and checks that they added only what the image lacks
(requirements-image.txt and the project) and moved nothing the image ships.

Two packages of the image are C extensions that PyPI has no Linux wheels of and that the official build compiles
against system client libraries (libmariadb, libldap): mysqlclient (providers-mysql) and python-ldap (the ldap
extra). They are resolved (constraints/ pins them) but not installed here; `pip check` is clean except for
"... requires mysqlclient, which is not installed" (python-ldap is only an extra's requirement, which pip check does
not follow). Needs the package index (uv's cache, ~/.cache/uv, makes a second run take seconds).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
NOT_BUILT_HERE = {"mysqlclient", "python-ldap"}  # compiled in the official image, see the module docstring
MISSING_C_EXTENSION = re.compile(rf"\S+ \S+ requires ({'|'.join(map(re.escape, NOT_BUILT_HERE))}), which is not "
                                 r"installed\.")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _dockerignore(directory: str, names: list[str]) -> list[str]:
    """What Docker leaves out of the build context (.dockerignore), for shutil.copytree."""
    from tests.test_deployment import DOCKERIGNORE, _ignored

    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    rel = Path(directory).resolve().relative_to(REPO)
    return [n for n in names if _ignored((rel / n).as_posix(), patterns)]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints() -> tuple[Path, dict[str, str]]:
    (path,) = sorted((REPO / "constraints").glob("constraints-*-python*.txt"))
    header = dict(re.findall(r"^# (airflow|python|extras): (\S+)$", path.read_text(), re.MULTILINE))
    return path, header


def dockerfile_steps() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            steps.append((keyword.upper(), " ".join(rest.split())))
    return steps


def python_for(version: str) -> str:
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if found is None:
        pytest.fail(f"the image runs Python {version}; no python{version} here to build its stand-in with")
    return found


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout}\n{done.stderr}"
    return done


def installed(python: Path) -> dict[str, str]:
    listed = run([str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"]).stdout
    return {canonical(p["name"]): p["version"] for p in json.loads(listed)}


PIP_SHIM = """#!{python}
# `pip` inside the Dockerfile's RUN lines: real pip, except that `pip check` tolerates the C extensions that the
# official image compiles and this stand-in does not install (and nothing else).
import re, subprocess, sys
if sys.argv[1:] == ["check"]:
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    print(done.stdout, end="")
    print(done.stderr, end="", file=sys.stderr)
    rest = [line for line in done.stdout.splitlines()
            if line.strip() and line != "No broken requirements found." and not re.fullmatch({pattern!r}, line)]
    sys.exit(1 if rest or done.returncode not in (0, 1) else 0)
sys.exit(subprocess.call([sys.executable, "-m", "pip", *sys.argv[1:]]))
"""


def test_the_dockerfile_extends_the_official_image_and_pip_check_passes(tmp_path: Path) -> None:
    from uv import find_uv_bin

    uv = find_uv_bin()
    constraint_file, header = constraints()
    pinned = {}
    for line in constraint_file.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[canonical(name)] = version
    assert set(pinned) >= NOT_BUILT_HERE, "the packages not built here are still resolved, in constraints/"
    steps = dockerfile_steps()
    image = dict(steps)["FROM"]
    assert image == f"apache/airflow:{header['airflow']}-python{header['python']}"

    # 1. The base image: Airflow with the official image's default extras, under the constraints.
    venv = tmp_path / "image"
    run([uv, "venv", "--seed", "--quiet", "--python", python_for(header["python"]), str(venv)])
    python = venv / "bin" / "python"
    excludes = tmp_path / "not-built-here.txt"
    excludes.write_text("\n".join(sorted(NOT_BUILT_HERE)) + "\n")
    run([uv, "pip", "install", "--quiet", "--python", str(python), "--constraint", str(constraint_file),
         "--excludes", str(excludes), f"apache-airflow[{header['extras']}]=={header['airflow']}"])
    base = installed(python)
    assert base["apache-airflow"] == header["airflow"]
    assert {"apache-airflow-providers-fab", "apache-airflow-providers-celery"} <= set(base)

    # 2. The Dockerfile's own steps: COPY into a scratch root, then every RUN as written (/bin/sh -c, like Docker),
    #    with AIRFLOW_VERSION as the base image sets it and our constraints passed as AIRFLOW_CONSTRAINTS.
    root = tmp_path / "root"
    copies: list[str] = []
    for keyword, args in steps:
        if keyword != "COPY":
            continue
        *sources, destination = [part for part in args.split() if not part.startswith("--")]
        target = root / destination.lstrip("/")
        for source in sources:
            local = REPO / source
            into = target / local.name if destination.endswith("/") and local.is_file() else target
            if local.is_dir():
                shutil.copytree(local, into, dirs_exist_ok=True, ignore=_dockerignore)
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(local, into)
        copies.append(destination.rstrip("/"))
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    shim = shim_dir / "pip"
    shim.write_text(PIP_SHIM.format(python=python, pattern=MISSING_C_EXTENSION.pattern))
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim_dir}:{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "AIRFLOW_VERSION": header["airflow"], "AIRFLOW_CONSTRAINTS": str(constraint_file),
           "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "VIRTUAL_ENV": str(venv)}
    runs = [args for keyword, args in steps if keyword == "RUN"]
    assert len([r for r in runs if "pip install" in r]) == 2
    for command in runs:
        for destination in sorted(copies, key=len, reverse=True):
            command = re.sub(rf"(?<![\w/.-]){re.escape(destination)}(?=[/\s\"']|$)", str(root) + destination,
                             command)
        run(["/bin/sh", "-c", command], env=env, cwd=tmp_path)

    # 3. Only what the image lacks was added, and nothing the image ships moved.
    after = installed(python)
    moved = {name: (base[name], after.get(name)) for name in base if after.get(name) != base[name]}
    assert not moved, f"the install step changed packages of the image: {moved}"
    needs = {canonical(line.split("==")[0]) for line in (REPO / "requirements-image.txt").read_text().splitlines()
             if line and not line.startswith("#")}
    assert set(after) - set(base) == needs | {"l1nda-nmbrs-sync"}, "requirements-image.txt lists what the image lacks"
    for name in needs:
        assert after[name] == pinned[name]
    final = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, check=False)
    problems = [line for line in final.stdout.splitlines() if line.strip() and not MISSING_C_EXTENSION.fullmatch(line)]
    assert problems in ([], ["No broken requirements found."]), final.stdout
    smoke = run([str(venv / "bin" / "l1nda-sync"), "--help"], env={**env, "AIRFLOW_HOME": str(tmp_path / "home")})
    assert "tokens" in smoke.stdout
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    dev = subprocess.run([str(python), "-c", "import l1nda_dev"], capture_output=True, text=True, check=False,
                         cwd=tmp_path, env=clean)
    assert dev.returncode != 0, "the dev tools shipped (.dockerignore leaves include/l1nda_dev out)"
    assert "No module named 'l1nda_dev'" in dev.stderr
