"""Named API tokens in SQLite (the `Tokens` interface): rows of the `tokens` table, only hashes."""

from __future__ import annotations

import dataclasses
import sqlite3

from ...domain.tokens import TokenRecord
from ..gateway import TokenExists
from ._file import SQLiteFile

_COLUMNS = tuple(f.name for f in dataclasses.fields(TokenRecord))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM tokens"


def _record(row: sqlite3.Row | None) -> TokenRecord | None:
    return TokenRecord(**dict(row)) if row is not None else None


def _insert(conn: sqlite3.Connection, record: TokenRecord) -> bool:
    cursor = conn.execute(
        f"INSERT OR IGNORE INTO tokens ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
        [getattr(record, name) for name in _COLUMNS],
    )
    return cursor.rowcount == 1


def _revoke(conn: sqlite3.Connection, name: str, at: float) -> bool:
    cursor = conn.execute(
        "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (at, name)
    )
    return cursor.rowcount == 1


def _touch(conn: sqlite3.Connection, name: str, at: float) -> None:
    conn.execute(
        "UPDATE tokens SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE name = ?", (at, name)
    )


def _one(conn: sqlite3.Connection, where: str, value: str) -> TokenRecord | None:
    return _record(conn.execute(f"{_SELECT} WHERE {where} = ?", (value,)).fetchone())


class SQLiteTokens:
    def __init__(self, file: SQLiteFile) -> None:
        self._file = file

    async def create(self, record: TokenRecord) -> None:
        # A hash clash is 2^-256: the name is what can be taken (INSERT OR IGNORE skips either).
        if not await self._file.write(_insert, record):
            raise TokenExists(f"a token named {record.name!r} exists already")

    async def by_hash(self, token_hash: str) -> TokenRecord | None:
        return self._file.read_now(_one, "token_hash", token_hash)

    async def get(self, name: str) -> TokenRecord | None:
        return self._file.read_now(_one, "name", name)

    async def list(self) -> list[TokenRecord]:
        rows = self._file.read_now(lambda conn: conn.execute(f"{_SELECT} ORDER BY name").fetchall())
        return [TokenRecord(**dict(row)) for row in rows]

    async def revoke(self, name: str, at: float) -> bool:
        return await self._file.write(_revoke, name, at)

    async def touch(self, name: str, at: float) -> None:
        await self._file.write(_touch, name, at)

    async def notify_secret(self, name: str) -> str | None:
        record = await self.get(name)
        return record.notify_secret if record is not None and record.revoked_at is None else None
