"""Seals in PostgreSQL (table ``seals``, migration 010): append and read. Plain asyncpg, no ORM."""

from __future__ import annotations

import asyncpg

from services.sealer.chain import Seal
from services.sealer.errors import SealConflict as SealConflict  # importable from here as before

_FIELDS: tuple[str, ...] = Seal.__struct_fields__
_COLUMNS = ", ".join(_FIELDS)  # the table's columns are named after the seal's fields


def _seal(row: asyncpg.Record) -> Seal:
    return Seal(**{name: row[name] for name in _FIELDS})


async def insert_seal(conn: asyncpg.Connection | asyncpg.Pool, seal: Seal, seals_seq: int | None) -> bool:
    """Store a seal; True if stored now, False if this very seal was there already; SealConflict otherwise."""
    row = await conn.fetchrow(
        f"""INSERT INTO seals ({_COLUMNS}, seals_seq)
            VALUES ({", ".join(f"${i}" for i in range(1, len(_FIELDS) + 2))})
            ON CONFLICT (stream, number) DO NOTHING
            RETURNING number""",
        *(getattr(seal, name) for name in _FIELDS),
        seals_seq,
    )
    if row is not None:
        return True
    existing = await fetch_seal(conn, seal.stream, seal.number)
    if existing != seal:
        raise SealConflict(f"PostgreSQL holds a different seal #{seal.number} of {seal.stream}")
    return False


async def fetch_seal(conn: asyncpg.Connection | asyncpg.Pool, stream: str, number: int) -> Seal | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM seals WHERE stream = $1 AND number = $2", stream, number
    )
    return _seal(row) if row is not None else None


async def fetch_seals(conn: asyncpg.Connection | asyncpg.Pool, stream: str) -> list[Seal]:
    """Every seal of ``stream``, by number."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM seals WHERE stream = $1 ORDER BY number", stream)
    return [_seal(r) for r in rows]


async def latest_seal(conn: asyncpg.Connection | asyncpg.Pool, stream: str) -> Seal | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM seals WHERE stream = $1 ORDER BY number DESC LIMIT 1", stream
    )
    return _seal(row) if row is not None else None
