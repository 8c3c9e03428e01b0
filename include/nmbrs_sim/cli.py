"""`nmbrs-sim`: run the Nmbrs SOAP simulator, validate or generate a world for it, benchmark it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import json
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml
from aiohttp import web

from nmbrs_sim import __version__
from nmbrs_sim.catalog import PATH_PREFIX
from nmbrs_sim.scenario import ScenarioError, load_scenario
from nmbrs_sim.simulator import Simulator

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nmbrs-sim",
        description="A local simulator of Nmbrs' SOAP API v3 (DebtorService, CompanyService), its REST API and "
                "its OAuth2 identity server.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve a scenario until Ctrl-C / SIGTERM")
    serve.add_argument("--scenario", required=True, type=Path, help="a YAML or JSON scenario file")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8081,
                       help="port (0 = any free port; default 8081, beside the Airflow UI on 8080)")

    generate = sub.add_parser("generate", help="write a large, deterministic world for benchmarks")
    generate.add_argument("--tokens", type=int, default=2000, help="logins (tokens) in all (default 2000)")
    generate.add_argument("--accountant-share", type=float, default=0.1,
                          help="share of accountant master logins (default 0.1)")
    generate.add_argument("--seed", type=int, default=0, help="the same seed gives the same world (default 0)")
    generate.add_argument("--out", required=True, type=Path, help="file to write (.json, or .yaml/.yml)")

    validate = sub.add_parser("validate", help="check a scenario file; errors name the file, path and field")
    validate.add_argument("file", type=Path)

    bench = sub.add_parser("bench", help="measure SOAP List_GetAll and REST /api/debtors calls/s of one server "
                                         "process on one core")
    bench.add_argument("--seconds", type=float, default=3.0, help="measuring time (default 3)")
    bench.add_argument("--concurrency", type=int, default=16, help="calls in flight (default 16)")
    bench.add_argument("--debtors", type=int, default=100, help="debtors the login sees (default 100)")
    bench.add_argument("--protocol", choices=("soap", "rest", "both"), default="both",
                       help="what to load (default both, one after the other)")
    return parser


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"nmbrs-sim: error: {message}", file=sys.stderr)
    return code


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(simulator: Simulator, host: str, port: int) -> None:
    from nmbrs_sim.server import create_app

    runner = web.AppRunner(create_app(simulator), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        bound = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        world = simulator.world
        root = f"http://{shown}:{bound}"
        print(f"nmbrs-sim serving {root}{PATH_PREFIX} ({len(world.environments)} environments, "
              f"{len(world.logins)} logins, {len(world.companies)} companies); REST API at {root}/api/, identity "
              f"server at {root}/connect/ ({len(simulator.rest.clients)} clients); admin API at {root}/_sim/",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def cmd_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        return _fail(f"--port must be 0..65535, got {args.port}")
    try:
        simulator = Simulator(args.scenario)
    except ScenarioError as exc:
        return _fail(str(exc))
    if not _is_loopback(args.host):
        print(f"nmbrs-sim: warning: listening on {args.host}: the admin API has no authentication",
              file=sys.stderr)
    gc.freeze()  # the loaded world lives while serving: keep it out of every collection meanwhile
    try:
        asyncio.run(_serve(simulator, args.host, args.port))
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc} "
                     "(pick another --port, or 0 for any free port)", 1)
    finally:
        gc.unfreeze()  # a caller in the same process (a test) gets its collector back as it was
    print("nmbrs-sim stopped", flush=True)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.file)
    except ScenarioError as exc:
        return _fail(str(exc))
    world = scenario.world
    print(f"{args.file}: OK: {len(world.environments)} environments, {len(world.debtors)} debtors, "
          f"{len(world.companies)} companies, {len(world.logins)} logins, {len(scenario.faults)} fault rules")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from nmbrs_sim.generate import generate_world, summarize

    suffix = args.out.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        return _fail(f"--out {args.out}: the file name must end in .json, .yaml or .yml")
    if not args.out.parent.is_dir():
        return _fail(f"--out {args.out}: the directory {args.out.parent} does not exist")
    try:
        world = generate_world(tokens=args.tokens, accountant_share=args.accountant_share, seed=args.seed)
    except ValueError as exc:
        return _fail(f"{exc} (see --tokens / --accountant-share)")
    if suffix == ".json":
        text = json.dumps(world, separators=(",", ":"))
    else:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        text = yaml.dump(world, Dumper=dumper, sort_keys=False, width=120)
    # Write next to the target and rename: never a half-written file.
    fd, tmp = tempfile.mkstemp(prefix=f".{args.out.name}.", dir=args.out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a scenario is not secret beyond its fake tokens
        os.replace(tmp, args.out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    counts = summarize(world)
    print(f"wrote {args.out}: {counts['logins']} logins ({counts['accountant_logins']} accountant, "
          f"{counts['client_logins']} client), {counts['environments']} environments, {counts['debtors']} debtors, "
          f"{counts['companies']} companies (seed {args.seed})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from nmbrs_sim.bench import run_bench

    if args.seconds <= 0 or args.concurrency < 1 or args.debtors < 1:
        return _fail("--seconds must be > 0, --concurrency and --debtors >= 1")
    protocols = ("soap", "rest") if args.protocol == "both" else (args.protocol,)
    results = run_bench(seconds=args.seconds, concurrency=args.concurrency, debtors=args.debtors,
                        protocols=protocols)
    what = {"soap": "SOAP DebtorService.List_GetAll", "rest": "REST GET /api/debtors?pageSize=100"}
    for result in results:
        core = f"pinned to CPU {result.server_cpu}" if result.server_cpu is not None else "not pinned (one CPU)"
        print(f"{what[result.protocol]} ({result.debtors} debtors), concurrency {result.concurrency}, server "
              f"{core}: {result.calls} calls in {result.seconds:.2f} s, {result.errors} errors")
    for result in results:
        print(f"{result.protocol.upper()} {result.calls_per_second:.0f} calls/s")
    return 0 if all(result.errors == 0 for result in results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handlers = {"serve": cmd_serve, "validate": cmd_validate, "generate": cmd_generate, "bench": cmd_bench}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
