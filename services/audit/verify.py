"""``antq audit verify``: the live read model against an in-memory replay at the same stream sequence."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from nats.aio.client import Client

from events.localities import Localities
from infra.reading import StreamReader
from infra.stream_reader import last_sequence
from infra.streams import EVENTS
from projections.metrics import FOLD_VERSION
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
    problems: list[str] = field(default_factory=list)
    """Why the comparison itself cannot be trusted (a checkpoint ahead of the log, another fold version), or
    why the read model cannot be current (halted)."""
    log_last_seq: int = 0
    """The last sequence of the log when verify read it: the checkpoint is ``as_of_seq``."""
    halted: str | None = None
    foreign: int = 0
    """Foreign records set aside by the replay (``events.stored``), as the projection sets them aside."""

    @property
    def behind(self) -> int:
        """How many sequences the read model is behind the log."""
        return max(0, self.log_last_seq - self.as_of_seq)

    @property
    def ok(self) -> bool:
        return not self.differences and not self.problems


@dataclass(frozen=True)
class LiveSnapshot:
    copy: int
    seq: int
    fold_version: int
    figures: dict[FigureKey, int]
    halted: str | None = None


async def live_snapshot(conn: asyncpg.Connection) -> LiveSnapshot:
    """The active copy, its checkpoint and fold version, and every non-zero figure, read in one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await hold_copies(conn)
        row = await conn.fetchrow(
            """SELECT a.copy, coalesce(c.seq, 0) AS seq, coalesce(c.fold_version, $2) AS fold_version, c.halted
               FROM projection_active a
               LEFT JOIN projection_checkpoint c ON c.name = a.name AND c.copy = a.copy WHERE a.name = $1""",
            NAME,
            FOLD_VERSION,
        )
        if row is None:
            raise LookupError("no active statistics copy: run the migrations")
        figures = await all_figures(conn, row["copy"])
    return LiveSnapshot(
        int(row["copy"]), int(row["seq"]), int(row["fold_version"]), figures, halted=row["halted"]
    )


async def verify(
    nc: Client,
    conn: asyncpg.Connection,
    localities: Localities,
    *,
    progress: Progress | None = None,
    reader: StreamReader | None = None,
) -> Verification:
    snap = await live_snapshot(conn)
    problems: list[str] = []
    seq = snap.seq
    last = await last_sequence(nc.jetstream(), EVENTS)
    if seq > last:
        problems.append(
            f"the read model (copy {snap.copy}) says it folded the log up to seq {seq}, but the log ends at seq"
            f" {last}: its checkpoint is ahead of the log (edited by hand, or {EVENTS} was recreated)"
        )
        seq = last
    if snap.fold_version != FOLD_VERSION:
        problems.append(
            f"copy {snap.copy} was folded by fold v{snap.fold_version}, this auditor folds v{FOLD_VERSION}: figures"
            " may differ by design; verify with the code of that fold version, or after a rebuild"
        )
    if snap.halted is not None:
        problems.append(
            f"the projection (copy {snap.copy}) is HALTED at seq {seq}, {max(0, last - seq)} behind the log:"
            f" {snap.halted}; its figures are stale (README: 'When the projection halts')"
        )
    result = await replay(nc, ReplayScope(stop_seq=seq), localities, progress=progress, reader=reader)
    live = snap.figures
    replayed: dict[FigureKey, int] = {key: value for key, value in result.replay.figures.items()}
    differences = [
        Difference(key, live.get(key, 0), replayed.get(key, 0))
        for key in sorted(live.keys() | replayed.keys())
        if live.get(key, 0) != replayed.get(key, 0)
    ]
    return Verification(
        seq,
        snap.copy,
        len(replayed),
        differences,
        problems,
        log_last_seq=last,
        halted=snap.halted,
        foreign=result.foreign,
    )
