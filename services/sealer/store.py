"""Seals in PostgreSQL (table ``seals``, migration 010): append and read. Plain asyncpg, no ORM."""

from __future__ import annotations

import asyncpg

from services.sealer.chain import Seal
from services.sealer.errors import SealConflict as SealConflict  # importable from here as before

_COLUMNS = (
    "stream, number, first_seq, last_seq, count, stream_created, prev_digest, range_digest, "
    "content_digest, digest, sealed_at, signer, signature"
)


def _seal(row: asyncpg.Record) -> Seal:
    return Seal(
        number=row["number"],
        stream=row["stream"],
        first_seq=row["first_seq"],
        last_seq=row["last_seq"],
        count=row["count"],
        stream_created=row["stream_created"],
        prev_digest=row["prev_digest"],
        range_digest=row["range_digest"],
        content_digest=row["content_digest"],
        digest=row["digest"],
        sealed_at=row["sealed_at"],
        signer=row["signer"],
        signature=row["signature"],
    )


async def insert_seal(conn: asyncpg.Connection | asyncpg.Pool, seal: Seal, seals_seq: int | None) -> bool:
    """Store a seal; True if stored now, False if this very seal was there already; SealConflict otherwise."""
    row = await conn.fetchrow(
        f"""INSERT INTO seals ({_COLUMNS}, seals_seq)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
            ON CONFLICT (stream, number) DO NOTHING
            RETURNING number""",
        seal.stream,
        seal.number,
        seal.first_seq,
        seal.last_seq,
        seal.count,
        seal.stream_created,
        seal.prev_digest,
        seal.range_digest,
        seal.content_digest,
        seal.digest,
        seal.sealed_at,
        seal.signer,
        seal.signature,
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
