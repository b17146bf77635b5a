"""PostgreSQL side of the statistics projection (asyncpg, no ORM): the fold state a batch needs
(``load_state``) and the one transaction per batch that applies the deltas, the fold state, the checkpoint and
the outbox rows (``commit_batch``).

The rest of the PostgreSQL side lives beside it: the active copy, locks and checkpoints
(``projections.checkpoints``), the calendar figures the feed publishes and the runner's cache of them
(``projections.calendar_figures``), the update feed's outbox (``projections.outbox``), and the reads that
answer queries (``projections.reads``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import asyncpg

from projections.calendar_figures import CalendarCache, standing_figures, this_year
from projections.checkpoints import (
    NAME,
    Checkpoint,
    CheckpointMoved,
    active_copy,
    hold_copies,
    mark_halted,
    open_checkpoint,
    read_checkpoint,
    try_lock,
    unlock,
)
from projections.fold_state import (
    Figures,
    Key,
    StateUpdate,
    Value,
    decode_value,
    encode_value,
    key_bytes,
    key_of,
)
from projections.outbox import (
    OutboxRow,
    StatsUpdate,
    delete_outbox,
    pending_outbox,
    write_outbox,
    write_updates,
)
from projections.reads import StatsSnapshot, all_figures, read_province_stats, read_stats

# Re-exported: 22 of the 36 modules that import ``projections.store`` (the runner, rebuilds, the publisher,
# services, tests and the benchmarks) use these names as ``store.<name>``: the PostgreSQL side of the projection
# stays one import for them, whichever module holds the name.
__all__ = [
    "NAME",
    "CalendarCache",
    "Checkpoint",
    "CheckpointMoved",
    "OutboxRow",
    "StatsSnapshot",
    "StatsUpdate",
    "active_copy",
    "all_figures",
    "commit_batch",
    "delete_outbox",
    "hold_copies",
    "load_state",
    "mark_halted",
    "open_checkpoint",
    "pending_outbox",
    "read_checkpoint",
    "read_province_stats",
    "read_stats",
    "this_year",
    "try_lock",
    "unlock",
    "write_updates",
]


async def load_state(conn: asyncpg.Connection, copy: int, keys: Collection[Key]) -> dict[Key, Value]:
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT key, value FROM stats_fold_state WHERE copy = $1 AND key = ANY($2::bytea[])",
        copy,
        [key_bytes(k) for k in keys],
    )
    return {key_of(r["key"]): decode_value(r["value"]) for r in rows}


_SEP = "\x1f"
"""Separates the items of a column sent as one text (the ASCII unit separator: no code or metric name has it)."""


def _column_texts(rows: Sequence[tuple[Any, ...]], width: int) -> list[str]:
    """Each column of ``rows`` as one text of its items joined by ``_SEP``, which PostgreSQL splits with
    ``string_to_array``: asyncpg encodes an array item by item in Python, a text in one copy, so a batch's
    tens of thousands of rows cost the projector's one core almost nothing and PostgreSQL's core the split."""
    out = []
    for i in range(width):
        text = _SEP.join([str(row[i]) for row in rows])
        if text.count(_SEP) != len(rows) - 1:
            raise ValueError(f"an item of column {i} holds the separator U+001F")
        out.append(text)
    return out


async def _apply_deltas(
    conn: asyncpg.Connection, copy: int, deltas: Figures, provinces: Mapping[str, str]
) -> None:
    if not deltas:
        return
    rows = sorted((p, provinces[w], w, y, metric, v) for (p, w, y, metric), v in deltas.items())
    period, province, ward, year, metric, value = _column_texts(rows, 6)
    await conn.execute(
        """INSERT INTO stats AS s (copy, period, province, ward, year, metric, value)
           SELECT $1, * FROM unnest(string_to_array($2, chr(31)), string_to_array($3, chr(31)),
                                    string_to_array($4, chr(31)), string_to_array($5, chr(31))::int[],
                                    string_to_array($6, chr(31)), string_to_array($7, chr(31))::bigint[])
           ON CONFLICT (copy, period, ward, year, metric) DO UPDATE SET value = s.value + EXCLUDED.value""",
        copy,
        period,
        province,
        ward,
        year,
        metric,
        value,
    )


async def _save_state(conn: asyncpg.Connection, copy: int, update: StateUpdate) -> None:
    """Upsert and delete fold state; keys and values travel as hex in one text each (``_column_texts``)."""
    upserts = sorted((key_bytes(k), encode_value(v)) for k, v in update.items() if v is not None)
    deletes = sorted(key_bytes(k) for k, v in update.items() if v is None)
    if upserts:
        await conn.execute(
            """INSERT INTO stats_fold_state AS f (copy, key, value)
               SELECT $1, decode(k, 'hex'), decode(v, 'hex')
               FROM unnest(string_to_array($2, ','), string_to_array($3, ',')) AS u(k, v)
               ON CONFLICT (copy, key) DO UPDATE SET value = EXCLUDED.value""",
            copy,
            ",".join([k.hex() for k, _ in upserts]),
            ",".join([v.hex() for _, v in upserts]),
        )
    if deletes:
        await conn.execute(
            """DELETE FROM stats_fold_state WHERE copy = $1
               AND key = ANY(SELECT decode(k, 'hex') FROM unnest(string_to_array($2, ',')) AS u(k))""",
            copy,
            ",".join([k.hex() for k in deletes]),
        )


async def commit_batch(
    conn: asyncpg.Connection,
    *,
    copy: int,
    from_seq: int,
    to_seq: int,
    update: StateUpdate,
    deltas: Figures,
    provinces: Mapping[str, str],
    outbox: CalendarCache | None,
    name: str = NAME,
    during: Callable[[], Awaitable[None]] | None = None,
    checkpoint: Callable[[], Awaitable[None]] | None = None,
) -> list[OutboxRow]:
    """One transaction: deltas, fold state, checkpoint from_seq → to_seq, and with ``outbox`` (the
    runner's cache of its figures) the outbox rows of the changed ward-years (returned).

    Raises ``CheckpointMoved`` (and writes nothing) if the checkpoint is not at ``from_seq``. ``checkpoint``:
    moves another checkpoint instead, first in the transaction (a partition's: ``projections.partitions``).
    """
    async with conn.transaction():
        if checkpoint is not None:
            await checkpoint()
        else:
            moved = await conn.execute(
                """UPDATE projection_checkpoint SET seq = $3, halted = NULL, halted_seq = NULL, updated_at = now()
                   WHERE name = $1 AND copy = $2 AND seq = $4 AND retired_at_seq IS NULL""",
                name,
                copy,
                to_seq,
                from_seq,
            )
            if moved != "UPDATE 1":
                raise CheckpointMoved(f"checkpoint of {name} copy {copy} is no longer at {from_seq}")
        changed = outbox.changed(deltas) if outbox is not None else []
        if outbox is not None:
            await outbox.load(conn, copy, changed)  # before the changes: the cache holds committed figures
        await _apply_deltas(conn, copy, deltas, provinces)
        if during is not None:
            await during()  # a crash here rolls the whole batch back
        await _save_state(conn, copy, update)
        if outbox is None:
            return []
        after, stocks = outbox.after(changed, deltas)
        rows = await write_outbox(conn, copy, to_seq, standing_figures(after, stocks), provinces)
    outbox.committed(after, stocks)
    return rows
