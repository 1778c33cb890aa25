"""The connection pool and the one way the PostgreSQL store talks to the server.

Every operation is a function of a connection run through `Database.run` (a single statement, in
autocommit: its own transaction) or `Database.transaction` (several, in one transaction). Both
translate the driver's failures into `StoreUnavailable` (the contract: nothing else escapes), and
retry what is safe to retry:

- a stale pooled connection (the server restarted): the first attempt fails before the server saw
  anything of it (`BEGIN` of a transaction) or the operation is idempotent (a read, or the delivery
  INSERT ... ON CONFLICT DO NOTHING, whose replay answers "duplicate" at worst);
- a deadlock or serialization failure the server resolved by aborting us (nothing was kept).

Text parameters pass a guard: PostgreSQL text holds no NUL character and only valid UTF-8, while a
webhook's JSON may carry `\\u0000` or a lone surrogate; both are replaced, never refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import psycopg_pool
import structlog
from psycopg.rows import DictRow, dict_row
from psycopg.types.string import StrBinaryDumper, StrDumperUnknown

from ..base import StoreUnavailable

T = TypeVar("T")
Conn = psycopg.AsyncConnection[DictRow]

log = structlog.get_logger("receiver.storage.postgres")

_RETRIES = 3  # attempts of an operation the server aborted for a deadlock / serialization failure
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def storable_text(text: str) -> str:
    """`text` as PostgreSQL can hold it: NUL replaced by U+FFFD, a lone surrogate by '?' (as SQLite's)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # as the SQLite store keeps it (receiver.records._storable)
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


class _Text(StrDumperUnknown):
    def dump(self, obj: str) -> Any:
        return super().dump(storable_text(obj))


class _TextBinary(StrBinaryDumper):
    def dump(self, obj: str) -> Any:
        return super().dump(storable_text(obj))


def register_text_guard(conn: Conn) -> None:
    conn.adapters.register_dumper(str, _TextBinary)
    conn.adapters.register_dumper(str, _Text)  # the default for %s (text format, type inferred)


def _configurer(lock_timeout: float) -> Callable[[Conn], Awaitable[None]]:
    async def configure(conn: Conn) -> None:
        """Each new pooled connection: the text guard, and bounds on waiting. No request waits for a
        lock forever (a row another replica holds is held for milliseconds; past `lock_timeout` the
        caller gets StoreUnavailable), and a session stalled inside a transaction (a frozen replica
        holding row locks) is ended by the server instead of blocking the others."""
        register_text_guard(conn)
        await conn.execute(
            "SELECT set_config('lock_timeout', %s, false), "
            "set_config('idle_in_transaction_session_timeout', '60s', false)",
            (f"{max(1, round(lock_timeout * 1000))}ms",),
        )

    return configure


class Database:
    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        lock_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.pool: psycopg_pool.AsyncConnectionPool[Conn] = psycopg_pool.AsyncConnectionPool(
            url,
            connection_class=Conn,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": max(2, round(timeout))},
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=_configurer(lock_timeout),
            timeout=timeout,  # how long a caller waits for a connection before StoreUnavailable
            # The pool retries a lost connection with a doubling delay (1, 2, 4, 8 s...) until this gives
            # up; then the next caller starts a fresh attempt at once. Short: after the server is back
            # the receiver answers again within seconds, not after a 16 s step of the backoff.
            reconnect_timeout=max(1.0, timeout),
            name="receiver",
        )

    async def open(self) -> None:
        try:
            await self.pool.open(wait=True, timeout=self.timeout)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            await self.pool.close()
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {_reason(exc)}") from None

    async def close(self) -> None:
        await self.pool.close()

    def waiting(self) -> int:
        """Callers waiting for a connection right now (how hard the store is pushed)."""
        return int(self.pool.get_stats().get("requests_waiting", 0))

    async def run(self, fn: Callable[[Conn], Awaitable[T]], *, idempotent: bool = False) -> T:
        """`fn(conn)` on an autocommit connection: each statement its own transaction."""
        for attempt in range(_RETRIES):
            try:
                async with self.pool.connection() as conn:
                    return await fn(conn)
            except _RETRYABLE:
                if attempt + 1 < _RETRIES:
                    continue
                raise StoreUnavailable("the database kept aborting the operation (deadlock)") from None
            except psycopg.OperationalError as exc:
                if idempotent and attempt == 0:
                    continue  # maybe a connection the server dropped while it sat in the pool
                raise StoreUnavailable(f"PostgreSQL: {_reason(exc)}") from None
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                raise StoreUnavailable(f"PostgreSQL: {_reason(exc)}") from None
        raise AssertionError("unreachable")

    async def transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """`fn(conn)` inside one transaction, committed before this returns (rolled back if it raises)."""
        for attempt in range(_RETRIES):
            began = False
            try:
                async with self.pool.connection() as conn, conn.transaction():
                    began = True
                    return await fn(conn)
            except _RETRYABLE:
                if attempt + 1 < _RETRIES:
                    continue
                raise StoreUnavailable("the database kept aborting the transaction (deadlock)") from None
            except psycopg.OperationalError as exc:
                if not began and attempt == 0:
                    continue  # BEGIN failed: nothing was sent of it; a stale pooled connection
                raise StoreUnavailable(f"PostgreSQL: {_reason(exc)}") from None
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                raise StoreUnavailable(f"PostgreSQL: {_reason(exc)}") from None
        raise AssertionError("unreachable")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


async def sleep_backoff(attempt: int, cap: float = 10.0) -> None:
    await asyncio.sleep(min(cap, 0.1 * 2**attempt))
