"""What the demo prints, apart from everything else that runs in its process.

Airflow logs a lot to stdout and stderr (also from `dag.test()` in this process). The demo sends file
descriptors 1 and 2 to a log file while it runs and prints its own lines to a copy of the terminal's stdout,
so the person sees a short story and the full detail stays in `var/demo/demo.log`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO


class Console:
    """Timestamped progress lines on the real terminal, whatever happens to fds 1 and 2."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.t0 = time.monotonic()
        self._stream = stream or os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8",
                                           errors="replace")
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, message: str = "") -> None:
        """One progress line: `[  12.3 s] message` (an empty message prints an empty line)."""
        with self._lock:
            for line in message.splitlines() or [""]:
                self._stream.write(f"[{self.elapsed():6.1f} s] {line}\n" if line else "\n")
            self._stream.flush()

    def raw(self, text: str) -> None:
        """Text as is, for the story's tables."""
        with self._lock:
            self._stream.write(text if text.endswith("\n") else text + "\n")
            self._stream.flush()


@contextlib.contextmanager
def output_to(log_path: Path) -> Iterator[None]:
    """Send fds 1 and 2 (and so sys.stdout, sys.stderr and every child that inherits them) to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")


class TaskFollower:
    """Reads the log while `dag.test()` runs and reports each task as it starts."""

    def __init__(self, log_path: Path, report: Callable[[str], None]) -> None:
        self.log_path = log_path
        self.report = report
        self._stop = threading.Event()
        self._offset = log_path.stat().st_size if log_path.exists() else 0
        self._thread = threading.Thread(target=self._run, name="demo-task-follower", daemon=True)

    def __enter__(self) -> TaskFollower:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._scan()  # the tail written just before the run ended

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._scan()

    def _scan(self) -> None:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._offset)
                chunk = log.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1  # only whole lines; the rest is read next time
        self._offset += end
        for line in chunk[:end].decode("utf-8", "replace").splitlines():
            found = _TASK_START.search(line)
            if found:
                task, index = found.group(1), int(found.group(2))
                self.report(task if index < 0 else f"{task}[{index}]")
