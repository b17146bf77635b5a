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

With ``workers`` > 1 the new copy is split in that many partitions (``projections.partitions``): the bulk phase
runs one ``python -m projections --copy NEW --no-publish --workers N --partition K`` process per partition (both
cores), until the new copy's checkpoint (the lowest of its partitions') is close to the live one; the workers
are stopped, and the switch brings each partition of the new copy to the live copy's partition of the same
number (a live copy split the same way: exactly its figures), or every partition to the highest sequence the
live copy folded anywhere (a live copy split otherwise, or not at all: the new copy holds at least every event
the live one does), and retires the live copy at the new copy's checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from nats.aio.client import Client

from events.localities import Localities
from events.schema import Recorded
from events.stored import Foreign, StoredRecords
from infra.stream_reader import last_sequence, read_stream
from infra.streams import EVENTS
from projections import copies, partitions, store
from projections.batch import fold_batch
from projections.errors import ProjectionError
from projections.metrics import FOLD_VERSION
from projections.partitions import Part

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
        workers: int = 1,
        nats_url: str | None = None,
    ) -> None:
        """``workers`` > 1: the new copy is split in that many partitions, each folded by a worker process
        connecting to ``nats_url`` (with this process's environment: its identity, credentials)."""
        if workers > 1 and not nats_url:
            raise ValueError("a rebuild with workers needs the NATS URL the worker processes connect to")
        self._workers = workers
        self._nats_url = nats_url
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
            log.info(
                "rebuilding %s into copy %d beside the live copy %d (%d workers)",
                store.NAME,
                new,
                old,
                self._workers,
            )
            if self._workers > 1:
                await partitions.open_partition(conn, new, Part(parts=self._workers, part=0))  # split at 0
                await store.unlock(conn, new)  # the workers hold it shared
                await self._bulk_with_workers(conn, old, new)
                if not await store.try_lock(conn, new):
                    raise RebuildError(f"a runner still holds copy {new} after its workers stopped")
                switch_seq = await self._switch_parts(conn, old, new)
            else:
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
                await self._delete_consumers(copy)
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
                # a split live copy: up to the highest sequence any of its partitions folded (it holds at least
                # every event the live copy does; its checkpoint, the lowest of them, is at most that)
                top = max((await partitions.partition_seqs(holder, old)).values(), default=live.seq)
                if seq > top:
                    raise RebuildError(f"the new copy is ahead of the live one ({seq} > {top})")
                reached = await self._fold_range(conn, new, seq, top)  # short of it if the log is shorter
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
        await self._delete_consumers(old)
        return True

    async def _delete_consumers(self, copy: int) -> None:
        """The durable consumers of a copy: its runner's, and its partitions' (``stats-<copy>-p<k>of<n>``)."""
        js = self._nc.jetstream()
        names = [f"{store.NAME}-{copy}"]
        with contextlib.suppress(Exception):
            names += [
                c.name
                for c in await js.consumers_info(EVENTS)
                if c.name is not None and c.name.startswith(f"{store.NAME}-{copy}-p")
            ]
        for name in names:
            with contextlib.suppress(Exception):
                await js.delete_consumer(EVENTS, name)

    async def _bulk_with_workers(self, conn: asyncpg.Connection, old: int, new: int) -> None:
        """One worker process per partition folds the new copy until its checkpoint is close to the live
        copy's; then they are stopped (SIGTERM: each ends after its commit under way)."""
        assert self._nats_url is not None
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "projections",
                "--nats-url",
                self._nats_url,
                "--database-url",
                self._url,
                "--copy",
                str(new),
                "--no-publish",
                "--batch",
                str(self._batch),
                "--workers",
                str(self._workers),
                "--partition",
                str(k),
                env=dict(os.environ),
            )
            for k in range(self._workers)
        ]
        try:
            while True:
                live = (await store.read_checkpoint(conn, old)).seq
                reached = (await store.read_checkpoint(conn, new)).seq
                if live - reached <= self._close_enough:
                    break
                ended = [p for p in procs if p.returncode is not None]
                if ended:
                    raise RebuildError(
                        f"a rebuild worker of copy {new} exited with {ended[0].returncode}; the live copy stays"
                    )
                await asyncio.sleep(0.1)  # polling the checkpoints: the workers report nothing else
            self.events = reached
        finally:
            for p in procs:
                if p.returncode is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    await asyncio.wait_for(p.wait(), 30)
                except TimeoutError:
                    p.kill()
                    await p.wait()
        await self._at("built")

    async def _switch_parts(self, conn: asyncpg.Connection, old: int, new: int) -> int:
        """The switch of a split new copy (see the module's doc); returns the new copy's checkpoint."""
        part_of = {
            code: k
            for k, codes in enumerate(
                partitions.assignment(self._workers, partitions.province_codes(self._localities))
            )
            for code in codes
        }
        holder = await asyncpg.connect(self._url)
        try:
            async with holder.transaction():
                held_since = time.monotonic()
                active = await copies.lock_active(holder)
                if active != old:
                    raise RebuildError(f"copy {active} became active while copy {new} was built from {old}")
                live = await copies.lock_checkpoint(holder, old)  # the live partitions' commits wait
                live_parts = await partitions.partition_seqs(holder, old)
                start = await partitions.partition_seqs(conn, new)
                if len(live_parts) == self._workers and all(start[k] <= s for k, s in live_parts.items()):
                    targets = live_parts  # split the same way: each partition to its live twin, exactly
                else:  # at least every event the live copy folded, in every partition
                    top = max([live.seq, *live_parts.values(), *start.values()])
                    targets = dict.fromkeys(range(self._workers), top)
                await self._fold_parts(conn, new, start, targets, part_of)
                await partitions.raise_copy_checkpoint(conn, new, self._workers)
                reached = (await store.read_checkpoint(conn, new)).seq
                await copies.switch_active(holder, old=old, new=new, at_seq=reached)
            self.switch_ms = (time.monotonic() - held_since) * 1000
            log.info(
                "%s: copy %d (%d partitions) is active from seq %d; copy %d retired (live commits held %.0f ms)",
                store.NAME,
                new,
                self._workers,
                reached,
                old,
                self.switch_ms,
            )
            return reached
        finally:
            await holder.close()

    async def _fold_parts(
        self,
        conn: asyncpg.Connection,
        copy: int,
        start: dict[int, int],
        targets: dict[int, int],
        part_of: dict[str, int],
    ) -> None:
        """Fold each partition k of ``copy`` from ``start[k]`` to ``targets[k]`` (one read of the stream, each
        message to the partition of its subject's province)."""
        js = self._nc.jetstream()
        after, upto = min(start.values()), min(max(targets.values()), await last_sequence(js, EVENTS))
        pending: dict[int, list[tuple[int, Recorded]]] = {k: [] for k in targets}
        seq = after
        if upto > after:
            async for msgs in read_stream(js, EVENTS, start_seq=after + 1, stop_seq=upto, batch=self._batch):
                for m in msgs:
                    k = part_of.get(
                        partitions.province_of_subject(m.subject), 0
                    )  # a foreign subject: partition 0
                    if k in targets and start[k] < m.seq <= targets[k]:
                        read = self._stored.read(m.seq, m.subject, m.data)
                        if isinstance(read, Foreign):
                            self.foreign += 1
                        else:
                            pending[k].append((m.seq, read))
                seq = msgs[-1].seq
        if seq < upto:
            raise RebuildError(f"read stopped at seq {seq}, short of {upto}")
        for k, records in pending.items():
            to_seq = min(targets[k], upto)
            if to_seq <= start[k]:
                continue
            update, deltas, provinces = await fold_batch(conn, copy, records, self._localities)
            part, from_seq = Part(parts=self._workers, part=k), start[k]
            await store.commit_batch(
                conn,
                copy=copy,
                from_seq=from_seq,
                to_seq=to_seq,
                update=update,
                deltas=deltas,
                provinces=provinces,
                outbox=None,
                checkpoint=functools.partial(partitions.advance, conn, copy, part, from_seq, to_seq),
            )
            self.events += len(records)
