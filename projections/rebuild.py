"""Rebuild a read model without downtime.

A fresh copy is folded from sequence 1 beside the live one (the live runner keeps folding and serving), then
switched in atomically:

1. bulk: read ANTQ_EVENTS in order into the new copy, round after round, until it is close to the live copy;
2. switch, in one transaction that holds the live copy's checkpoint row (the live runner's next commit waits
   on it): the new copy is brought to exactly the live copy's sequence S, the ``active`` pointer moves to the
   new copy and the old copy is retired at S. Queries read the pointer and ``as_of_seq`` in one snapshot, so
   they see either the old copy or the new one, each complete;
3. the old runner finds its copy retired at its next commit and stops (the projector then follows the
   pointer); once no runner holds the old copy, its rows are dropped.

One rebuild per read model at a time (a session advisory lock); the switch also checks, holding the ``active``
row, that the copy it retires is still the active one.

The copy being built publishes no updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from nats.aio.client import Client

from events.localities import Localities
from events.stored import Foreign, StoredRecords
from infra.stream_reader import last_sequence, read_stream
from infra.streams import EVENTS
from projections import copies, store
from projections.batch import fold_batch
from projections.errors import ProjectionError
from projections.metrics import FOLD_VERSION

log = logging.getLogger(__name__)
Hook = Callable[[str], Awaitable[None]]


class RebuildError(ProjectionError):
    """The rebuild could not finish; the live copy stays active and untouched."""


@dataclass(frozen=True)
class RebuildReport:
    old_copy: int
    new_copy: int
    switch_seq: int
    events: int
    fold_version: int
    old_dropped: bool = True  # False: a runner still held the old copy; the next rebuild drops it


class Rebuild:
    def __init__(
        self,
        nc: Client,
        database_url: str,
        *,
        localities: Localities | None = None,
        close_enough: int = 2000,
        batch: int = 16_000,
        hook: Hook | None = None,
        old_runner_timeout: float = 60.0,
    ) -> None:
        self._nc = nc
        self._url = database_url
        self._localities = localities or Localities.load()
        self._stored = StoredRecords(self._localities)
        self._close_enough = close_enough
        self._batch = batch
        self._hook = hook
        self._old_runner_timeout = old_runner_timeout
        self.events = 0
        self.foreign = 0  # foreign records set aside (events.stored)
        self.switch_ms = 0.0  # how long the switch held the live copy's checkpoint (its commits waited)

    async def _at(self, point: str) -> None:
        if self._hook is not None:
            await self._hook(point)

    async def run(self) -> RebuildReport:
        conn = await asyncpg.connect(self._url)
        try:
            if not await copies.try_lock_rebuild(conn):  # released when ``conn`` closes
                raise RebuildError(
                    f"another rebuild of {store.NAME} is running; wait for it to finish, then rebuild again"
                )
            old = await store.active_copy(conn)
            new = await self._new_copy(conn)
            seq = (await store.open_checkpoint(conn, new)).seq
            log.info("rebuilding %s into copy %d beside the live copy %d", store.NAME, new, old)
            while True:  # bulk rounds
                live = (await store.read_checkpoint(conn, old)).seq
                if live - seq <= self._close_enough:
                    break
                seq = await self._fold_range(conn, new, seq, live)
            await self._at("built")
            switch_seq = await self._switch(conn, old, new, seq)
            await store.unlock(conn, new)  # the projector's runner takes the new copy over
            await self._at("switched")
            dropped = await self._drop_old(conn, old)
            return RebuildReport(old, new, switch_seq, self.events, FOLD_VERSION, dropped)
        finally:
            await conn.close()

    async def _new_copy(self, conn: asyncpg.Connection) -> int:
        """A fresh copy number, after dropping what interrupted rebuilds left (copies nobody holds)."""
        active = await store.active_copy(conn)
        for copy in await copies.inactive_copies(conn, active):
            if await store.try_lock(conn, copy):
                await copies.drop_copy(conn, copy)
                await store.unlock(conn, copy)
                with contextlib.suppress(Exception):
                    await self._nc.jetstream().delete_consumer(EVENTS, f"{store.NAME}-{copy}")
        new = int(
            await conn.fetchval(
                """SELECT greatest(coalesce(max(c.copy), 0), max(a.copy)) + 1
                   FROM projection_active a LEFT JOIN projection_checkpoint c ON c.name = a.name
                   WHERE a.name = $1""",
                store.NAME,
            )
        )
        if not await store.try_lock(conn, new):
            raise RebuildError(f"another rebuild holds copy {new}")
        return new

    async def _fold_range(self, conn: asyncpg.Connection, copy: int, after: int, upto: int) -> int:
        """Fold (after, upto] into ``copy``; return the sequence reached."""
        seq = after
        js = self._nc.jetstream()
        upto = min(upto, await last_sequence(js, EVENTS))
        async for msgs in read_stream(js, EVENTS, start_seq=after + 1, stop_seq=upto, batch=self._batch):
            records = []
            for m in msgs:
                read = self._stored.read(m.seq, m.subject, m.data)  # UnknownEventType: the rebuild stops
                if isinstance(read, Foreign):
                    log.warning(
                        "foreign record set aside at seq %d on %s: %s", read.seq, read.subject, read.why
                    )
                    self.foreign += 1
                else:
                    records.append((m.seq, read))
            update, deltas, provinces = await fold_batch(conn, copy, records, self._localities)
            await store.commit_batch(
                conn,
                copy=copy,
                from_seq=seq,
                to_seq=msgs[-1].seq,
                update=update,
                deltas=deltas,
                provinces=provinces,
                outbox=None,
            )
            self.events += len(msgs)
            seq = msgs[-1].seq
        if seq < upto:  # ANTQ_EVENTS has no gaps (deny_delete): a short read is a failure, never skipped
            raise RebuildError(f"read stopped at seq {seq}, short of {upto}")
        return seq

    async def _switch(self, conn: asyncpg.Connection, old: int, new: int, seq: int) -> int:
        holder = await asyncpg.connect(self._url)
        try:
            async with holder.transaction():
                held_since = time.monotonic()  # the live runner's commits wait from here to the COMMIT
                active = await copies.lock_active(holder)
                if active != old:  # never retire a copy that is no longer the live one
                    raise RebuildError(f"copy {active} became active while copy {new} was built from {old}")
                live = await copies.lock_checkpoint(holder, old)
                if live.halted is not None:
                    log.warning("the live copy %d is halted (%s); the new copy replaces it", old, live.halted)
                if seq > live.seq:
                    raise RebuildError(f"the new copy is ahead of the live one ({seq} > {live.seq})")
                reached = await self._fold_range(
                    conn, new, seq, live.seq
                )  # short of it if the log is shorter
                await copies.switch_active(holder, old=old, new=new, at_seq=reached)
            self.switch_ms = (time.monotonic() - held_since) * 1000
            log.info(
                "%s: copy %d is active from seq %d; copy %d retired (live commits held %.0f ms)",
                store.NAME,
                new,
                reached,
                old,
                self.switch_ms,
            )
            return reached
        finally:
            await holder.close()

    async def _drop_old(self, conn: asyncpg.Connection, old: int) -> bool:
        """Once no runner holds the old copy (it stops when it sees it retired), drop its tables and consumer;
        False if a runner still holds it after ``old_runner_timeout``: the switch stands, and the next rebuild
        drops the retired copy (``_new_copy``).

        Updates the old copy committed but did not publish (a crash) are dropped with it: the switch wrote newer
        ones for those ward-years into the new copy's outbox, which its runner publishes first.
        """
        deadline = time.monotonic() + self._old_runner_timeout
        while not await store.try_lock(conn, old):
            if time.monotonic() > deadline:
                log.warning("a runner still holds the retired copy %d; the next rebuild drops it", old)
                return False
            await asyncio.sleep(0.05)  # the old runner notices at its next fetch
        await copies.drop_copy(conn, old)
        with contextlib.suppress(Exception):
            await self._nc.jetstream().delete_consumer(EVENTS, f"{store.NAME}-{old}")
        return True
