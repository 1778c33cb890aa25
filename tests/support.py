"""Test helpers: run any ASGI app under a real uvicorn server in a thread; a running simulator.

Real sockets, real HTTP framing: what a client sees over the network is what the tests see.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette

from openrouter_video._simulator import SimulatorConfig, create_app
from openrouter_video._simulator._state import SimulatorState


class _Server(uvicorn.Server):
    """uvicorn's server, checking `should_exit` every 10 ms instead of 100 ms (faster test teardown)."""

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            await asyncio.sleep(0.01)
            counter = (counter + 1) % 8640000
            # on_tick refreshes the Date header every 10th call: still at least once per 100 ms.
            should_exit = await self.on_tick(counter)


class UvicornThread:
    """An ASGI app served by uvicorn on a free loopback port, in a daemon thread.

    Use as a context manager (or `start()` / `stop()`); `.url` is `http://127.0.0.1:PORT`.
    The socket is bound before the thread starts, so the port is known and never races.
    Lifespan is "on" by default so a failing startup raises here instead of being ignored.
    `uvicorn_options` go to uvicorn.Config as given: e.g. `http="h11"`, or the receiver's protocol and
    limits, `**receiver.server.uvicorn_options(settings)`.
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        *,
        log_level: str = "warning",
        startup_timeout: float = 10.0,
        graceful_shutdown: float = 3.0,
        port: int = 0,
        **uvicorn_options: Any,
    ) -> None:
        uvicorn_options.setdefault("lifespan", "on")
        uvicorn_options.setdefault("access_log", False)
        # log_config=None: don't reconfigure the process's logging for every server started.
        self.config = uvicorn.Config(
            app,
            host=host,
            port=0,
            log_level=log_level,
            log_config=None,
            timeout_graceful_shutdown=graceful_shutdown,
            **uvicorn_options,
        )
        self.server = _Server(self.config)
        self.host = host
        self._port = port  # 0: any free one
        self.port: int | None = None
        self._startup_timeout = startup_timeout
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> UvicornThread:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self.server.started:
            if not self._thread.is_alive():
                self._close_socket()
                raise RuntimeError(f"uvicorn on port {self.port} exited during startup (see log)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn on port {self.port} did not start in {self._startup_timeout}s")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self.server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.server.force_exit = True
                self._thread.join(timeout)
            self._thread = None
        self._close_socket()

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> UvicornThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fast_simulator_config(**overrides: Any) -> SimulatorConfig:
    """Timings and retries short enough for tests (a job completes in about 0.2 s)."""
    values: dict[str, Any] = {
        "api_key": "sk-or-test-key",
        "webhook_secret": "whsec-test-secret",
        "pending_seconds": 0.1,
        "in_progress_seconds": 0.1,
        "webhook_attempts": 3,
        "webhook_backoff": 0.05,
        "webhook_timeout": 2.0,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


@dataclass
class RunningSimulator:
    """A simulator served over real HTTP, plus direct access to its state."""

    server: UvicornThread
    app: Starlette
    config: SimulatorConfig

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v1"

    @property
    def admin_url(self) -> str:
        return f"{self.url}/_simulator"

    @property
    def api_key(self) -> str:
        return self.config.api_key or "sk-or-any-key"

    @property
    def secret(self) -> str | None:
        return self.config.webhook_secret

    @property
    def headers(self) -> dict[str, str]:
        """`Authorization` header for API calls."""
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def state(self) -> SimulatorState:
        state: SimulatorState = self.app.state.simulator
        return state


@contextlib.contextmanager
def running_simulator(
    config: SimulatorConfig | None = None, **server_options: Any
) -> Iterator[RunningSimulator]:
    """Start a simulator (fast test timings unless `config` is given) and stop it afterwards.

    `server_options` go to `UvicornThread` (e.g. `http="h11"`).
    """
    config = config or fast_simulator_config()
    app = create_app(config)
    with UvicornThread(app, **server_options) as server:
        yield RunningSimulator(server=server, app=app, config=config)
