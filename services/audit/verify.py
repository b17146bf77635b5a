"""``antq audit verify``: the live read model against an in-memory replay at the same stream sequence."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from nats.aio.client import Client

from events.localities import Localities
from infra.reading import StreamReader
from projections.store import NAME, all_figures, hold_copies
from services.audit.replay import Progress, ReplayScope, replay

FigureKey = tuple[str, str, int, str]
"""(period, ward, year, metric)"""


@dataclass(frozen=True)
class Difference:
    key: FigureKey
    live: int
    replayed: int


@dataclass(frozen=True)
class Verification:
    as_of_seq: int
    copy: int
    figures: int
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.differences


async def live_snapshot(conn: asyncpg.Connection) -> tuple[int, int, dict[FigureKey, int]]:
    """(active copy, its checkpoint, every non-zero figure), read in one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await hold_copies(conn)
        row = await conn.fetchrow(
            """SELECT a.copy, coalesce(c.seq, 0) AS seq FROM projection_active a
               LEFT JOIN projection_checkpoint c ON c.name = a.name AND c.copy = a.copy WHERE a.name = $1""",
            NAME,
        )
        if row is None:
            raise LookupError("no active statistics copy: run the migrations")
        figures = await all_figures(conn, row["copy"])
    return int(row["copy"]), int(row["seq"]), figures


async def verify(
    nc: Client,
    conn: asyncpg.Connection,
    localities: Localities,
    *,
    progress: Progress | None = None,
    reader: StreamReader | None = None,
) -> Verification:
    copy, seq, live = await live_snapshot(conn)
    result = await replay(nc, ReplayScope(stop_seq=seq), localities, progress=progress, reader=reader)
    replayed: dict[FigureKey, int] = {key: value for key, value in result.replay.figures.items()}
    differences = [
        Difference(key, live.get(key, 0), replayed.get(key, 0))
        for key in sorted(live.keys() | replayed.keys())
        if live.get(key, 0) != replayed.get(key, 0)
    ]
    return Verification(seq, copy, len(replayed), differences)
