"""Helpers for receiver tests: a receiver over real HTTP (in a thread or a subprocess), signed events."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from support import RunningSimulator, UvicornThread

from openrouter_video import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign
from openrouter_video.receiver.app import create_app
from openrouter_video.receiver.server import uvicorn_options
from openrouter_video.receiver.settings import Secret, Settings
from openrouter_video.receiver.storage import assemble, open_stores
from openrouter_video.receiver.storage.base import Stores
from openrouter_video.receiver.storage.local_content import LocalContentStore
from openrouter_video.receiver.storage.sqlite import open_sqlite
from openrouter_video.receiver.storage.sqlite._db import connect

API_TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def receiver_settings(data_dir: str, sim: RunningSimulator, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": Secret(sim.api_key),
        "webhook_secrets": (Secret(sim.secret or "whsec-test-secret"),),
        "base_url": sim.api_base,
        "data_dir": data_dir,
        "api_token": Secret(API_TOKEN),
        "fallback_after": 60.0,
        "poll_first_interval": 0.2,
        "poll_max_interval": 0.5,
        "download_retry_initial": 0.1,
        "download_retry_cap": 0.5,
        "min_free_bytes": 1,
        "log_format": "json",
        # The suite registers made-up ids; tests/test_first_hour_receiver.py checks them upstream.
        "verify_registrations": False,
    }
    values.update(overrides)
    return Settings(**values)


# What `open_test_stores` opens (the dashboard's store cases run over each); the receivers of the
# behavioural suites take theirs from the `backend` fixture (tests/backends.py).
STORE_KINDS = ("sqlite", "postgres")


async def open_test_stores(
    kind: str,
    tmp_path: Any,
    *,
    worker: str | None = None,
    lease: float = 60.0,
    exclusive: bool = False,
    database_url: str | None = None,
) -> Stores:
    """Fresh stores of `kind` in `tmp_path` (records, and a local content store), for tests that drive
    the interfaces directly. Two calls on one `tmp_path` (or one `database_url`) share one store (two
    workers). `postgres`: on `database_url` (the `pg_url` fixture's), no LISTEN connection."""
    content = LocalContentStore(os.path.join(str(tmp_path), "videos"))
    if kind == "postgres":
        from openrouter_video.receiver.storage.postgres import open_postgres

        if database_url is None:
            raise ValueError("postgres test stores need a database_url (the pg_url fixture)")
        on_pg = await open_postgres(database_url, worker=worker, lease=lease, poll_lease=lease, listen=False)
        return assemble(on_pg, content, exclusive=False)
    if kind != "sqlite":
        raise ValueError(f"no test stores of kind {kind!r} (have: {', '.join(STORE_KINDS)})")
    records = open_sqlite(
        os.path.join(str(tmp_path), "receiver.db"),
        worker=worker,
        lease=lease,
        poll_lease=lease,
        exclusive=exclusive,
    )
    return assemble(records, content, exclusive=exclusive)


T = TypeVar("T")


def with_stores(settings: Settings, use: Callable[[Stores], Awaitable[T]], *, readonly: bool = True) -> T:
    """`use` the stores `settings` configure (any backend), opened beside the receiver as a CLI
    command opens them (a reading one unless `readonly=False`), then closed."""

    async def run() -> T:
        stores = await open_stores(settings, exclusive=False, readonly=readonly)
        try:
            return await use(stores)
        finally:
            await stores.close()

    return asyncio.run(run())


def stored_deliveries(settings: Settings) -> list[dict[str, Any]]:
    """Every stored delivery (newest first), read through the store interface."""

    async def every(stores: Stores) -> list[dict[str, Any]]:
        page = await stores.deliveries.page(state=None, cursor=None, limit=10**9)
        return [dataclasses.asdict(d) for d in page.items]

    return with_stores(settings, every)


def wait_until(
    predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> Any:
    """`wait_until` for a test already on an event loop: awaits `predicate` until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(interval)


def wait_applied(settings: Settings, timeout: float = 10.0) -> None:
    """Wait until the receiver's applier has applied (or marked failed) every stored delivery."""

    async def settled(stores: Stores) -> None:
        async def none_pending() -> bool:
            return await stores.deliveries.pending_count() == 0

        await wait_until_async(none_pending, timeout, what="the applier to apply every stored delivery")

    with_stores(settings, settled)


@dataclass
class RunningReceiver:
    url: str
    settings: Settings

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhooks/openrouter"

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=AUTH, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", headers=AUTH, timeout=10, **kwargs)

    def job(self, job_id: str) -> dict | None:
        response = self.get(f"/jobs/{job_id}")
        return response.json() if response.status_code == 200 else None

    def wait_job(self, job_id: str, predicate: Callable[[dict], bool], timeout: float = 15.0) -> dict:
        return wait_until(
            lambda: (lambda j: j if j and predicate(j) else None)(self.job(job_id)),
            timeout,
            what=f"job {job_id}",
        )

    def wait_downloaded(self, job_id: str, timeout: float = 20.0) -> dict:
        return self.wait_job(
            job_id, lambda j: bool(j["outputs"]) and all(o["state"] == "done" for o in j["outputs"]), timeout
        )

    def db(self):
        """The SQLite file itself: for tests about SQLite only (the others read through the API)."""
        return connect(self.settings.db_path)

    def applied(self, timeout: float = 10.0) -> None:
        wait_applied(self.settings, timeout)

    def delivery_count(self) -> int:
        return len(self.deliveries())

    def deliveries(self) -> list[dict]:
        """Every stored delivery, newest first, as GET /deliveries lists them (every page)."""
        found: list[dict] = []
        cursor = None
        while True:
            response = self.get(
                "/deliveries", params={"limit": 500, **({"cursor": cursor} if cursor else {})}
            )
            assert response.status_code == 200, response.text
            found += response.json()["deliveries"]
            if not (cursor := response.json()["next_cursor"]):
                return found


@contextlib.contextmanager
def running_receiver(settings: Settings, *, port: int = 0) -> Iterator[RunningReceiver]:
    """The receiver under uvicorn configured as `openrouter-video serve` configures it (on `port`, e.g.
    the one its `public_url` names; 0: any free one)."""
    with UvicornThread(create_app(settings), port=port, **uvicorn_options(settings)) as server:
        yield RunningReceiver(url=server.url, settings=settings)


@contextlib.contextmanager
def public_receiver(settings: Settings) -> Iterator[RunningReceiver]:
    """A receiver that knows its own URL (RECEIVER_PUBLIC_URL), as submitting through it needs."""
    port = free_port()
    settings = dataclasses.replace(settings, public_url=f"http://127.0.0.1:{port}")
    with running_receiver(settings, port=port) as receiver:
        yield receiver


def signed_event(
    secret: str,
    data: dict[str, Any],
    *,
    status: str | None = None,
    timestamp: int | None = None,
    key: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    status = status or data["status"]
    body = json.dumps(
        {
            "type": f"video.generation.{status}",
            "created_at": "2026-11-21T10:00:00.000Z",
            "data": {**data, "status": status},
        },
        separators=(",", ":"),
    ).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body, timestamp),
        IDEMPOTENCY_HEADER: key or f"{data['id']}-{status}",
    }
    return body, headers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ReceiverProcess:
    """`openrouter-video serve` in a subprocess, so a test can SIGKILL it."""

    def __init__(
        self,
        settings: Settings,
        port: int | None = None,
        log_path: str | None = None,
        extra_args: tuple[str, ...] | list[str] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.extra_args = list(extra_args)
        self.extra_env = dict(extra_env or {})  # e.g. RECEIVER_DATABASE_URL, RECEIVER_CONTENT_URL, AWS_*
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or os.path.join(settings.data_dir, f"receiver-{self.port}.log")

        self.process: subprocess.Popen | None = None

    def applied(self, timeout: float = 10.0) -> None:
        wait_applied(self.settings, timeout)

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "RECEIVER_"))}
        env.update(
            {
                "OPENROUTER_API_KEY": s.api_key.reveal(),
                "OPENROUTER_BASE_URL": s.base_url,
                "OPENROUTER_WEBHOOK_SECRET": ",".join(s.secret_values()),
                "RECEIVER_DATA_DIR": s.data_dir,
                "RECEIVER_API_TOKEN": s.api_token.reveal() if s.api_token else "",
                "RECEIVER_FALLBACK_AFTER": str(s.fallback_after),
                "RECEIVER_POLL_FIRST_INTERVAL": str(s.poll_first_interval),
                "RECEIVER_POLL_MAX_INTERVAL": str(s.poll_max_interval),
                "RECEIVER_DOWNLOAD_CONCURRENCY": str(s.download_concurrency),
                "RECEIVER_DOWNLOAD_RETRY_INITIAL": str(s.download_retry_initial),
                "RECEIVER_DOWNLOAD_RETRY_CAP": str(s.download_retry_cap),
                "RECEIVER_MIN_FREE_BYTES": str(s.min_free_bytes),
                "RECEIVER_LOG_FORMAT": "json",
                "RECEIVER_VERIFY_REGISTRATIONS": "1" if s.verify_registrations else "0",
                "RECEIVER_CLAIM_LEASE": str(s.claim_lease),
            }
        )
        # The backend: the settings' stores (the AWS credentials come from this process's environment).
        if s.database_url is not None:
            env["RECEIVER_DATABASE_URL"] = s.database_url
        if s.content_url is not None:
            env["RECEIVER_CONTENT_URL"] = s.content_url
        env.update(self.extra_env)
        return env

    def start(self) -> ReceiverProcess:
        os.makedirs(self.settings.data_dir, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "openrouter_video._cli",
                "serve",
                "--port",
                str(self.port),
                *self.extra_args,
            ],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def up() -> bool:
            if self.process.poll() is not None:
                with open(self.log_path) as fh:
                    raise AssertionError(f"receiver exited: {fh.read()[-2000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=20, what="receiver process to start")
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
