"""Run the simulator in-process for tests and demos: `with running_simulator(scenario) as sim: ...`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from nmbrs_sim.admin import SimAdmin
from nmbrs_sim.catalog import PATH_PREFIX
from nmbrs_sim.server import create_app
from nmbrs_sim.simulator import Simulator

STARTUP_TIMEOUT_S = 30.0


@dataclass
class RunningSim:
    """A simulator serving on host:port, with its state and an admin client."""

    host: str
    port: int
    simulator: Simulator
    admin: SimAdmin = field(repr=False)

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The SOAP base, like Nmbrs' 'https://api.nmbrs.nl/soap/v3/'."""
        return f"{self.root_url}{PATH_PREFIX}"

    def wsdl_url(self, service: str) -> str:
        return f"{self.base_url}{service}.asmx?WSDL"


class ServerThread:
    """An aiohttp server on its own event loop in a daemon thread; `start()` returns once it listens."""

    def __init__(self, simulator: Simulator, host: str, port: int) -> None:
        self.simulator = simulator
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"nmbrs-sim-{host}:{port}", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._stop())
        self._loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(create_app(self.simulator), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT_S):
            raise RuntimeError(f"the simulator did not start within {STARTUP_TIMEOUT_S:.0f} s")
        if self._error is not None:
            self._thread.join()
            raise RuntimeError(f"the simulator could not start on {self.host}:{self.port}: {self._error}") \
                from self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=15)


@contextmanager
def running_simulator(scenario: str | Path | dict[str, Any], *, host: str = "127.0.0.1", port: int = 0
                      ) -> Iterator[RunningSim]:
    """Serve `scenario` (a YAML/JSON path or a parsed dict) on host:port (0 = a free port) until the block ends."""
    simulator = Simulator(scenario)
    server = ServerThread(simulator, host, port).start()
    admin = SimAdmin(f"http://{host}:{server.port}")
    try:
        yield RunningSim(host, server.port, simulator, admin)
    finally:
        admin.close()
        server.stop()
