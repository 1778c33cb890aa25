"""Named API tokens on PostgreSQL (the `Tokens` interface): rows of the `tokens` table, only hashes."""

from __future__ import annotations

import dataclasses
from typing import Any

from ...domain.tokens import TokenRecord
from ..gateway import TokenExists
from ._db import Conn, Database

_COLUMNS = tuple(f.name for f in dataclasses.fields(TokenRecord))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM tokens"
_INSERT = (
    f"INSERT INTO tokens ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))}) "
    "ON CONFLICT DO NOTHING RETURNING name"
)


def _record(row: dict[str, Any] | None) -> TokenRecord | None:
    return TokenRecord(**row) if row is not None else None


class Tokens:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, record: TokenRecord) -> None:
        async def insert(conn: Conn) -> bool:
            row = await (await conn.execute(_INSERT, [getattr(record, n) for n in _COLUMNS])).fetchone()
            return row is not None

        if not await self._db.run(insert):
            raise TokenExists(f"a token named {record.name!r} exists already")

    async def _one(self, column: str, value: str) -> TokenRecord | None:
        async def read(conn: Conn) -> dict[str, Any] | None:
            return await (await conn.execute(f"{_SELECT} WHERE {column} = %s", (value,))).fetchone()

        return _record(await self._db.run(read, idempotent=True))

    async def by_hash(self, token_hash: str) -> TokenRecord | None:
        return await self._one("token_hash", token_hash)

    async def get(self, name: str) -> TokenRecord | None:
        return await self._one("name", name)

    async def list(self) -> list[TokenRecord]:
        async def read(conn: Conn) -> list[dict[str, Any]]:
            return await (await conn.execute(f"{_SELECT} ORDER BY name")).fetchall()

        return [TokenRecord(**row) for row in await self._db.run(read, idempotent=True)]

    async def revoke(self, name: str, at: float) -> bool:
        async def update(conn: Conn) -> bool:
            done = await conn.execute(
                "UPDATE tokens SET revoked_at = %s WHERE name = %s AND revoked_at IS NULL", (at, name)
            )
            return done.rowcount == 1

        return await self._db.run(update)

    async def touch(self, name: str, at: float) -> None:
        async def update(conn: Conn) -> None:
            await conn.execute(
                "UPDATE tokens SET last_used_at = greatest(coalesce(last_used_at, 0), %s) WHERE name = %s",
                (at, name),
            )

        await self._db.run(update)

    async def notify_secret(self, name: str) -> str | None:
        record = await self.get(name)
        return record.notify_secret if record is not None and record.revoked_at is None else None
