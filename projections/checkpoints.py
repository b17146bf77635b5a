"""A copy's checkpoint and locks in PostgreSQL: which copy of the projection is active, the session lock of the
one runner of a copy (``try_lock``/``unlock``), the lock a reading transaction holds so that no copy is dropped
under it (``hold_copies``), and the checkpoint (the stream sequence folded, the fold version, a halt).

The checkpoint is moved only inside a batch's transaction (``projections.store.commit_batch``).
"""

from __future__ import annotations

from typing import Final

import asyncpg
import msgspec

from projections.errors import ProjectionError
from projections.metrics import FOLD_VERSION

NAME: Final = "stats"
_LOCK_CLASS: Final = 0x414E5453  # 'ANTS': one runner per (projection, copy)


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    copy: int
    seq: int
    fold_version: int
    halted: str | None


class CheckpointMoved(ProjectionError):
    """The checkpoint is not where this runner left it: another runner writes the same copy."""


async def active_copy(conn: asyncpg.Connection, name: str = NAME) -> int:
    copy = await conn.fetchval("SELECT copy FROM projection_active WHERE name = $1", name)
    if copy is None:
        raise LookupError(f"no active copy for projection {name!r}: run the migrations")
    return int(copy)


async def try_lock(conn: asyncpg.Connection, copy: int, name: str = NAME) -> bool:
    """Session advisory lock held by the one runner of (name, copy) for as long as its connection lives."""
    return bool(
        await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2) # $3)", _LOCK_CLASS, name, copy)
    )


async def unlock(conn: asyncpg.Connection, copy: int, name: str = NAME) -> None:
    """Release the session lock ``try_lock`` took on (name, copy)."""
    await conn.fetchval("SELECT pg_advisory_unlock($1, hashtext($2) # $3)", _LOCK_CLASS, name, copy)


async def hold_copies(conn: asyncpg.Connection) -> None:
    """Inside a reading transaction, before it reads which copy is active: no copy's tables can be dropped
    until it ends (``copies.drop_copy`` waits for it), so a read that found the old copy active reads its rows
    even while a rebuild finishes. Needs SELECT on ``stats`` only."""
    await conn.execute("LOCK TABLE stats IN ACCESS SHARE MODE")


async def open_checkpoint(conn: asyncpg.Connection, copy: int, name: str = NAME) -> Checkpoint:
    """The copy's checkpoint, created at 0 with the current fold version if it has none; and the copy's own
    tables (partitions of ``stats``, ``stats_fold_state``, ``stats_outbox``), created if missing."""
    await conn.execute("SELECT antq_create_copy($1)", copy)
    await conn.execute(
        "INSERT INTO projection_checkpoint (name, copy, seq, fold_version) VALUES ($1, $2, 0, $3)"
        " ON CONFLICT (name, copy) DO NOTHING",
        name,
        copy,
        FOLD_VERSION,
    )
    return await read_checkpoint(conn, copy, name)


async def read_checkpoint(conn: asyncpg.Connection, copy: int, name: str = NAME) -> Checkpoint:
    row = await conn.fetchrow(
        "SELECT seq, fold_version, halted FROM projection_checkpoint WHERE name = $1 AND copy = $2",
        name,
        copy,
    )
    if row is None:
        raise LookupError(f"no checkpoint for projection {name!r} copy {copy}")
    return Checkpoint(copy=copy, seq=row["seq"], fold_version=row["fold_version"], halted=row["halted"])


async def mark_halted(conn: asyncpg.Connection, copy: int, seq: int, reason: str, name: str = NAME) -> None:
    await conn.execute(
        """UPDATE projection_checkpoint SET halted = $3, halted_seq = $4, updated_at = now()
           WHERE name = $1 AND copy = $2""",
        name,
        copy,
        reason,
        seq,
    )
