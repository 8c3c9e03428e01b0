"""`python -m l1nda_dev.demo [--airflow]`: see the package docstring."""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from l1nda_dev.demo.console import Console, output_to
from l1nda_dev.demo.stack import DemoError, DemoStack, Paths, repo_root


def _interrupt_on_sigterm() -> None:
    """SIGTERM stops the demo like Ctrl-C does: through the same clean-up."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    root = repo_root()
    parser = argparse.ArgumentParser(prog="python -m l1nda_dev.demo", description=__doc__)
    parser.add_argument("--airflow", action="store_true",
                        help="set up the same world, then run the Airflow UI until Ctrl-C")
    parser.add_argument("--port", type=int, default=8080, help="the Airflow UI's port (with --airflow)")
    parser.add_argument("--executor", choices=("local", "celery"), default="local",
                        help="with --airflow: local (SQLite metadata, LocalExecutor) or celery (compose's shape: "
                             "PostgreSQL metadata, CeleryExecutor, two workers, a triggerer)")
    parser.add_argument("--web-port", type=int, default=None,
                        help="the customer page's port (default: 8090 with --airflow, the demo scenario's redirect "
                             "URI; else a free one)")
    parser.add_argument("--var-dir", type=Path, default=root / "var",
                        help="where mails (mail/) and the demo's files (demo/) go (default: ./var)")
    parser.add_argument("--dags-folder", type=Path, default=root / "dags", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.executor != "local" and not args.airflow:
        parser.error("--executor is for --airflow (the story runs its DAG with dag.test())")

    _interrupt_on_sigterm()
    console = Console()
    paths = Paths(args.var_dir.resolve())
    what = "Airflow UI" if args.airflow else "demo"
    console.say(f"L1NDA <-> Nmbrs token sync: {what} (all detail goes to {paths.log}; Ctrl-C stops everything)")
    code = 1
    try:
        paths.fresh()
        with output_to(paths.log):
            try:
                web_port = args.web_port if args.web_port is not None else (8090 if args.airflow else 0)
                with DemoStack(paths, console, args.dags_folder.resolve(),
                               ui_port=args.port if args.airflow else None, web_port=web_port,
                               executor=args.executor) as stack:
                    if args.airflow:
                        from l1nda_dev.demo import ui

                        code = ui.run(stack)
                    else:
                        from l1nda_dev.demo import story

                        code = story.run(stack)
            except (DemoError, Exception) as exc:
                traceback.print_exc()  # into the log
                console.say(f"FAILED: {exc}" if isinstance(exc, DemoError) else f"FAILED: {type(exc).__name__}: {exc}")
                console.say(f"the full log: {paths.log}")
                code = 1
    except KeyboardInterrupt:
        console.say("interrupted: everything is stopped")
        return 130
    console.say(f"finished in {console.elapsed():.0f} s" + ("" if code == 0 else f" (exit {code})"))
    return code


if __name__ == "__main__":
    sys.exit(main())
