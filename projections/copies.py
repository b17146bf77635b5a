"""Copies of a read model: retiring, switching and dropping them (SQL for zero-downtime rebuilds)."""

from __future__ import annotations

from typing import Final

import asyncpg

from events.catalogue import stock_metrics
from projections.places import is_unit_key
from projections.store import NAME, Checkpoint, this_year, write_updates

_REBUILD_LOCK_CLASS: Final = 0x414E5452  # 'ANTR': one rebuild per projection at a time


async def try_lock_rebuild(conn: asyncpg.Connection, name: str = NAME) -> bool:
    """Session advisory lock held by the one rebuild of ``name`` for as long as its connection lives."""
    return bool(
        await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", _REBUILD_LOCK_CLASS, name)
    )


async def lock_active(conn: asyncpg.Connection, name: str = NAME) -> int:
    """The active copy, its pointer row held (inside a transaction) until the transaction ends."""
    copy = await conn.fetchval("SELECT copy FROM projection_active WHERE name = $1 FOR UPDATE", name)
    if copy is None:
        raise LookupError(f"no active copy for projection {name!r}: run the migrations")
    return int(copy)


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
    """Make ``new`` the copy queries read and retire ``old`` at ``at_seq`` (one transaction with the lock).

    Ward-years whose figures differ between the copies (a rebuild after the fold changed) get an update in the
    new copy's outbox, published by its runner when it starts: downstream services learn the new figures. So do
    ward-years with updates still unpublished in the old copy's outbox (its runner crashed, or stopped before
    they went out): the new update, as of ``at_seq``, supersedes them, and they are dropped with the old copy
    instead of being published late, after newer figures.
    """
    changed = await conn.fetch(
        """SELECT coalesce(n.ward, o.ward) AS ward, coalesce(n.year, o.year) AS year,
                  coalesce(n.province, o.province) AS province,
                  bool_or(coalesce(n.metric, o.metric) = ANY($3::text[])) AS stock
           FROM (SELECT * FROM stats WHERE copy = $1 AND period = 'calendar') n
           FULL JOIN (SELECT * FROM stats WHERE copy = $2 AND period = 'calendar') o
             ON n.ward = o.ward AND n.year = o.year AND n.metric = o.metric
           WHERE n.value IS DISTINCT FROM o.value
           GROUP BY 1, 2, 3
           UNION
           SELECT ward, year, province, false FROM stats_outbox WHERE copy = $2""",
        new,
        old,
        sorted(stock_metrics()),
    )
    pairs: dict[tuple[str, int], str] = {}
    for r in changed:
        if is_unit_key(r["ward"]):
            continue  # figures by unit as recorded before the reform: not on the update feed
        # a stock that changed in a year changes what stands in every later year, up to the current one
        last = max(r["year"], this_year()) if r["stock"] else r["year"]
        pairs.update({(r["ward"], y): r["province"] for y in range(r["year"], last + 1)})
    if pairs:
        await write_updates(conn, new, at_seq, pairs)
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


COPY_TABLES = ("stats", "stats_fold_state", "stats_outbox")
"""The tables each copy has its own partition of (``<table>_c<copy>``, migration 011)."""


async def drop_copy(conn: asyncpg.Connection, copy: int, name: str = NAME) -> None:
    """Drop the tables of a copy that is not active (unpublished updates included: a retired copy's were
    superseded at the switch, and a copy never switched in has none), then its checkpoint.

    Outside any transaction: each table is detached CONCURRENTLY, which waits for the reads under way (a query
    that found this copy active still reads it whole) without making new queries wait, then dropped. A drop
    interrupted half-way is finished by the next call (a detach left pending is finalised); the checkpoint row
    goes last, so a copy with tables left always has one and is found again by ``inactive_copies``.
    """
    active = await conn.fetchval("SELECT copy FROM projection_active WHERE name = $1", name)
    if active == copy:
        raise ValueError(f"copy {copy} of {name} is active; it cannot be dropped")
    for parent in COPY_TABLES:
        table = f"{parent}_c{int(copy)}"
        attached = await conn.fetchrow(
            """SELECT i.inhdetachpending AS pending FROM pg_class c
               LEFT JOIN pg_inherits i ON i.inhrelid = c.oid WHERE c.oid = to_regclass($1)""",
            table,
        )
        if attached is None:
            continue  # dropped already
        if attached["pending"] is True:
            await conn.execute(f"ALTER TABLE {parent} DETACH PARTITION {table} FINALIZE")
        elif attached["pending"] is False:
            await conn.execute(f"ALTER TABLE {parent} DETACH PARTITION {table} CONCURRENTLY")
        await conn.execute(f"DROP TABLE {table}")
    await conn.execute("DELETE FROM projection_checkpoint WHERE name = $1 AND copy = $2", name, copy)


async def inactive_copies(conn: asyncpg.Connection, active: int, name: str = NAME) -> list[int]:
    rows = await conn.fetch(
        "SELECT copy FROM projection_checkpoint WHERE name = $1 AND copy <> $2 ORDER BY copy", name, active
    )
    return [int(r["copy"]) for r in rows]
