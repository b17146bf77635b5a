"""Copies of a read model: retiring, switching and dropping them (SQL for zero-downtime rebuilds)."""

from __future__ import annotations

import asyncpg

from projections.store import _LOCK_CLASS, NAME, Checkpoint


class CopyRetired(Exception):
    """The copy a runner folds into was replaced by a rebuild: the runner must stop."""


async def lock_checkpoint(conn: asyncpg.Connection, copy: int, name: str = NAME) -> Checkpoint:
    """Hold the copy's checkpoint row (inside a transaction): its runner's next commit waits on it."""
    row = await conn.fetchrow(
        """SELECT seq, fold_version, halted FROM projection_checkpoint
           WHERE name = $1 AND copy = $2 FOR UPDATE""",
        name,
        copy,
    )
    if row is None:
        raise LookupError(f"no checkpoint for {name} copy {copy}")
    return Checkpoint(copy=copy, seq=row["seq"], fold_version=row["fold_version"], halted=row["halted"])


async def switch_active(
    conn: asyncpg.Connection, *, old: int, new: int, at_seq: int, name: str = NAME
) -> None:
    """Make ``new`` the copy queries read and retire ``old`` at ``at_seq`` (one transaction with the lock)."""
    await conn.execute("UPDATE projection_active SET copy = $2 WHERE name = $1", name, new)
    await conn.execute(
        "UPDATE projection_checkpoint SET retired_at_seq = $3 WHERE name = $1 AND copy = $2",
        name,
        old,
        at_seq,
    )


async def is_retired(conn: asyncpg.Connection, copy: int, name: str = NAME) -> bool:
    value = await conn.fetchval(
        "SELECT retired_at_seq IS NOT NULL FROM projection_checkpoint WHERE name = $1 AND copy = $2",
        name,
        copy,
    )
    return bool(value)


async def drop_copy(conn: asyncpg.Connection, copy: int, name: str = NAME) -> None:
    """Delete every row of a copy that is not active (its outbox must have been published first)."""
    async with conn.transaction():
        active = await conn.fetchval("SELECT copy FROM projection_active WHERE name = $1", name)
        if active == copy:
            raise ValueError(f"copy {copy} of {name} is active; it cannot be dropped")
        for table in ("stats", "stats_fold_state", "stats_outbox"):
            await conn.execute(f"DELETE FROM {table} WHERE copy = $1", copy)
        await conn.execute("DELETE FROM projection_checkpoint WHERE name = $1 AND copy = $2", name, copy)


async def unlock(conn: asyncpg.Connection, copy: int, name: str = NAME) -> None:
    """Release the session lock ``store.try_lock`` took on (name, copy)."""
    await conn.fetchval("SELECT pg_advisory_unlock($1, hashtext($2) # $3)", _LOCK_CLASS, name, copy)


async def inactive_copies(conn: asyncpg.Connection, active: int, name: str = NAME) -> list[int]:
    rows = await conn.fetch(
        "SELECT copy FROM projection_checkpoint WHERE name = $1 AND copy <> $2 ORDER BY copy", name, active
    )
    return [int(r["copy"]) for r in rows]
