"""The checkpointed runner of the statistics projection (nats-py, asyncpg).

A durable pull consumer on ANTQ_EVENTS with ``AckPolicy.ALL``: the runner folds and commits whole batches in
stream order, so one ack of a batch's last message after its commit acknowledges the batch (1 ack per batch
instead of 1000), and nothing is ever acked before the commit that contains it.

Per fetched batch: skip events at or below the checkpoint (redeliveries), load the fold state the batch needs,
fold, then ONE PostgreSQL transaction (deltas + state + checkpoint + outbox rows), then ack, then hand the
outbox rows to the publisher. PostgreSQL's checkpoint is the truth: on start, a durable whose position
disagrees with it (unacked deliveries after a crash) is recreated at checkpoint + 1, so a restart does not
wait for ``ack_wait`` before the redelivery.

An event the fold cannot apply halts the projection: logged at ERROR, ``halted`` set in the checkpoint (query
replies say ``stale``), the batch's events before it committed, the event itself never acked, consumption
stops. Only one runner writes a copy: it holds a PostgreSQL advisory lock on its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from events.localities import Localities
from events.schema import Recorded
from events.stored import Foreign, StoredRecords, UnknownEventType
from infra.pull import BatchPuller, RawMsg
from infra.stream_reader import last_sequence, parse_ack_reply
from infra.streams import EVENTS
from infra.update_signing import UpdateKey
from projections import copies, partitions, store
from projections.batch import fold_batch
from projections.errors import FoldError, ProjectionError
from projections.fold_state import Figures, StateUpdate
from projections.metrics import FOLD_VERSION
from projections.partitions import Part
from projections.publisher import UpdatePublisher

log = logging.getLogger(__name__)

Hook = Callable[[str, int], Awaitable[None]]
"""Called at named points of a batch (``before_commit``, ``during_commit``, ``after_commit``, ``after_ack``)
with the batch's last seq; tests inject crashes here."""


class FoldVersionMismatch(ProjectionError):
    """The copy was built by another version of the fold: folding on would mix two meanings of the figures."""


class SequenceGap(ProjectionError):
    """Messages after the checkpoint are missing from what the consumer delivered."""


class AlreadyRunning(ProjectionError):
    """Another runner holds this copy."""


@dataclass
class RunnerStats:
    batches: int = 0
    events: int = 0
    redelivered_skipped: int = 0
    halts: int = 0
    foreign: int = 0
    """Foreign records set aside (``events.stored``): passed over, never folded."""


@dataclass(kw_only=True)
class RunnerConfig:
    database_url: str
    copy: int | None = None
    """The copy to build; default: the active one."""
    publish: bool | None = None
    """Publish updates; default: only when building the active copy."""
    batch: int = 16_000
    """At most this many events per fetch and per commit (fewer when fewer are waiting)."""
    fetch_timeout: float = 0.5
    ack_wait: float = 60.0
    hook: Hook | None = None
    keep_consumer: bool = False
    """Keep an existing durable whatever its position: its unacked messages then come back after ack_wait
    (and are skipped by seq). By default a durable that disagrees with the checkpoint is recreated."""
    localities: Localities | None = None
    update_key: UpdateKey | None = None
    """Signs the updates and tags their message ids (``infra.update_signing``); default: an ephemeral key."""
    part: Part | None = None
    """Fold only this partition's provinces, with its own checkpoint (``projections.partitions``); default (or
    1 of 1): every event, the copy's checkpoint."""
    server_filter: bool = False
    """A partition's consumer filters on the server (``filter_subjects``, one per province) instead of
    delivering every message and leaving the other provinces' by their subject, undecoded. Off by default:
    nats-server 2.15 delivers a consumer with many filters on a stream of many subjects far slower than an
    unfiltered one (measured: ``projections/partitions.py``)."""


@dataclass
class _Batch:
    records: list[tuple[int, Recorded]] = field(default_factory=list)
    last: RawMsg | None = None
    to_seq: int = 0
    """The last sequence the batch takes in (a record, or a foreign record passed over)."""
    foreign: list[Foreign] = field(default_factory=list)
    taken: int = 0
    """Messages after the checkpoint the batch takes in."""
    unreadable: tuple[int, str] | None = None
    """The first message of a type this code does not know: the batch ends before it."""


class StatsRunner:
    """Runs until ``stop`` is set, the projection halts (``halted`` is then set) or an error escapes."""

    def __init__(self, nc: Client, config: RunnerConfig) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._config = config
        self._localities = config.localities or Localities.load()
        self._stored = StoredRecords(self._localities)
        self._conn: asyncpg.Connection | None = None
        self._publisher: UpdatePublisher | None = None
        self._puller: BatchPuller | None = None
        self._cache: store.CalendarCache | None = None
        self._part = config.part if config.part is not None and config.part.parts > 1 else None
        self._provinces = partitions.provinces_of(self._part, self._localities) if self._part else None
        self._dseq = 0  # the consumer sequence of the last message received (a split copy's gap check)
        self._filtered = self._part is not None and config.server_filter
        # An unfiltered partition's provinces: every message comes, the others' are passed over undecoded; a
        # subject naming none of the 34 provinces (a foreign record) is partition 0's to set aside.
        self._mine: frozenset[str] | None = None
        self._all: frozenset[str] = frozenset()
        if self._provinces is not None and not self._filtered:
            self._mine = frozenset(self._provinces)
            self._all = frozenset(partitions.province_codes(self._localities))
        self.copy = 0
        self.seq = 0
        self.halted: str | None = None
        self.superseded = False
        self.stats = RunnerStats()
        self.ready = asyncio.Event()

    @property
    def durable(self) -> str:
        return f"{store.NAME}-{self.copy}" + (f"-{self._part.label}" if self._part is not None else "")

    @property
    def part(self) -> Part | None:
        """The partition this runner folds (None: the whole stream)."""
        return self._part

    async def run(self, stop: asyncio.Event) -> None:
        self._conn = await asyncpg.connect(self._config.database_url)
        try:
            await self._run(self._conn, stop)
        finally:
            if self._publisher is not None:
                await self._publisher.stop()
            with contextlib.suppress(Exception):
                await self._conn.close()

    async def _run(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        active = await store.active_copy(conn)
        self.copy = self._config.copy if self._config.copy is not None else active
        locked = (
            await partitions.try_lock(conn, self.copy, self._part)
            if self._part is not None
            else await store.try_lock(conn, self.copy)
        )
        if not locked:
            where = f" partition {self._part.label}" if self._part is not None else ""
            raise AlreadyRunning(f"another runner is building {store.NAME} copy {self.copy}{where}")
        # the workers of a split copy create its tables once, one after another
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, $2)", partitions.CREATE_LOCK_CLASS, self.copy
            )
            checkpoint = await store.open_checkpoint(conn, self.copy)
        if checkpoint.fold_version != FOLD_VERSION:
            raise FoldVersionMismatch(
                f"copy {self.copy} was built by fold v{checkpoint.fold_version}; this code folds "
                f"v{FOLD_VERSION}: run the matching version, or rebuild"
            )
        opened = await partitions.open_partition(conn, self.copy, self._part or Part(parts=1, part=0))
        self.seq = opened.seq
        if self._part is not None:
            await partitions.raise_copy_checkpoint(conn, self.copy, self._part.parts)  # after a crash
        log_end = await last_sequence(self._js, EVENTS)
        if self.seq > log_end:  # a checkpoint edited by hand, or ANTQ_EVENTS recreated: never fold on
            await self._halt(
                conn,
                self.seq,
                f"CheckpointAhead: copy {self.copy} says it folded up to seq {self.seq}, but {EVENTS} ends at"
                f" seq {log_end}",
            )
            self.ready.set()  # started, and settled: halted (whoever waits for the start must not wait on)
            return
        publish = self._config.publish if self._config.publish is not None else self.copy == active
        if publish:
            self._publisher = UpdatePublisher(
                self._nc,
                self._config.database_url,
                self.copy,
                key=self._config.update_key,
                provinces=self._provinces,
            )
            await self._publisher.start()
            self._cache = store.CalendarCache()
        sub = await self._subscribe()
        log.info(
            "stats projection copy %d%s starts after seq %d",
            self.copy,
            f" partition {self._part.label} (provinces {', '.join(self._provinces or [])})"
            if self._part
            else "",
            self.seq,
        )
        self.ready.set()
        fetching = asyncio.create_task(self._fetch(sub))
        try:
            while not stop.is_set():
                msgs = await fetching
                # Fetch the next batch while this one is folded and committed.
                fetching = asyncio.create_task(self._fetch(sub))
                if not msgs:
                    if await self._retired(conn):
                        return
                    try:
                        await self._cover(conn)
                    except store.CheckpointMoved:
                        if await self._retired(conn):
                            return
                        raise
                    continue
                batch = self._prepare(msgs)
                if not batch.to_seq and batch.unreadable is None:
                    if batch.last is not None:
                        await sub.ack(batch.last)  # only redeliveries at or below the checkpoint
                    continue
                try:
                    if not await self._process(conn, batch):
                        return
                except store.CheckpointMoved:
                    if await self._retired(conn):
                        return
                    raise
                if self._publisher is not None:  # the update feed behind: fold no further ahead of it
                    await self._publisher.room(stop)
        finally:
            fetching.cancel()
            with contextlib.suppress(BaseException):
                await fetching
            await sub.stop()

    async def _subscribe(self) -> BatchPuller:
        keep = False
        with contextlib.suppress(NotFoundError):
            info = await self._js.consumer_info(EVENTS, self.durable)
            keep = self._config.keep_consumer or (
                info.num_ack_pending == 0
                and info.ack_floor.stream_seq == self.seq
                # one made for smaller batches would hold back the fetch that runs beside a commit
                and (info.config.max_ack_pending or 0) >= 2 * self._config.batch
                and sorted(info.config.filter_subjects or []) == sorted(self._filters())
            )
            if not keep:
                log.info(
                    "consumer %s is at %d with %d unacked; recreating it after checkpoint %d",
                    self.durable,
                    info.ack_floor.stream_seq,
                    info.num_ack_pending,
                    self.seq,
                )
                await self._js.delete_consumer(EVENTS, self.durable)
        if not keep:
            await self._js.add_consumer(
                EVENTS,
                ConsumerConfig(
                    durable_name=self.durable,
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=self.seq + 1,
                    ack_policy=AckPolicy.ALL,
                    ack_wait=self._config.ack_wait,
                    max_ack_pending=self._config.batch * 4,
                    max_deliver=-1,
                    filter_subjects=self._filters() or None,
                ),
            )
        puller = self._puller = BatchPuller(self._nc, EVENTS, self.durable)
        await puller.start()
        return puller

    def _passed_over(self, subject: str) -> bool:
        """Another partition's message (an unfiltered partition's consumer delivers them all)."""
        if self._mine is None or self._part is None:
            return False
        province = partitions.province_of_subject(subject)
        return province not in self._mine and (province in self._all or self._part.part != 0)

    def _filters(self) -> list[str]:
        return partitions.filter_subjects(self._provinces) if self._filtered and self._provinces else []

    async def _fetch(self, puller: BatchPuller) -> list[RawMsg]:
        return await puller.fetch(self._config.batch, timeout=self._config.fetch_timeout)

    def _prepare(self, msgs: list[RawMsg]) -> _Batch:
        """Read a fetched batch, leaving out redeliveries at or below the checkpoint and setting foreign records
        aside (``events.stored``: logged, counted, passed over).

        ANTQ_EVENTS never loses a message (no deletes, no purges), so what follows the checkpoint is exactly
        checkpoint + 1, + 2, ...: a jump means messages were lost on the way (a connection that died and came
        back while requests were open), and the batch is refused unacked (``SequenceGap``). A partition's
        filtered consumer skips the other provinces' sequences: there the consumer's own numbering of its
        deliveries (1, 2, 3, ..., redeliveries included) must have no jump.
        """
        batch = _Batch()
        for msg in msgs:
            ack = parse_ack_reply(msg.reply)
            seq = ack.stream_seq
            batch.last = msg
            if self._filtered:
                if self._dseq and ack.consumer_seq != self._dseq + 1:
                    raise SequenceGap(
                        f"delivery {ack.consumer_seq} came where {self._dseq + 1} was due: messages were lost on"
                        " the way; the runner restarts from its checkpoint"
                    )
                self._dseq = ack.consumer_seq
            if seq <= max(self.seq, batch.to_seq):
                self.stats.redelivered_skipped += 1
                continue
            expected = (batch.to_seq or self.seq) + 1
            if not self._filtered and seq != expected:
                raise SequenceGap(
                    f"seq {seq} came where {expected} was due: messages were lost on the way; the runner "
                    "restarts from its checkpoint"
                )
            if self._passed_over(msg.subject):
                batch.to_seq = seq  # another partition's province: passed over, undecoded
                continue
            try:
                read = self._stored.read(seq, msg.subject, msg.data)
            except UnknownEventType as exc:
                batch.unreadable = (seq, f"{type(exc).__name__}: {exc}")
                break
            if isinstance(read, Foreign):
                batch.foreign.append(read)
            else:
                batch.records.append((seq, read))
            batch.to_seq = seq
            batch.taken += 1
        return batch

    async def _process(self, conn: asyncpg.Connection, batch: _Batch) -> bool:
        """Fold and commit a batch; False if the projection halted on one of its events."""
        records = batch.records
        failure = batch.unreadable
        to_seq = batch.to_seq
        try:
            update, deltas, provinces = await self._fold(conn, records)
        except FoldError as exc:
            failure = (exc.seq, f"{type(exc).__name__}: {exc}")
            records = [r for r in records if r[0] < exc.seq]
            to_seq = exc.seq - 1
            update, deltas, provinces = await self._fold(conn, records)  # the valid prefix
        foreign = [f for f in batch.foreign if f.seq <= to_seq]
        if to_seq > self.seq:
            taken = batch.taken if to_seq == batch.to_seq else len(records) + len(foreign)
            await self._commit(conn, to_seq, update, deltas, provinces, taken)
            for f in foreign:
                log.warning("foreign record set aside at seq %d on %s: %s", f.seq, f.subject, f.why)
            self.stats.foreign += len(foreign)
            if failure is None and batch.last is not None and self._puller is not None:
                await self._puller.ack(batch.last)
            await self._at("after_ack", to_seq)
            if self._part is not None:
                await partitions.raise_copy_checkpoint(conn, self.copy, self._part.parts)
                if (
                    failure is None
                    and batch.last is not None
                    and not parse_ack_reply(batch.last.reply).pending
                ):
                    # the last of what was there: caught up, maybe past other provinces' events
                    await self._cover(conn)
        if failure is not None:
            await self._halt(conn, *failure)
            return False
        return True

    async def _fold(
        self, conn: asyncpg.Connection, records: Sequence[tuple[int, Recorded]]
    ) -> tuple[StateUpdate, Figures, dict[str, str]]:
        return await fold_batch(conn, self.copy, records, self._localities)

    async def _commit(
        self,
        conn: asyncpg.Connection,
        to_seq: int,
        update: StateUpdate,
        deltas: Figures,
        provinces: dict[str, str],
        taken: int,
    ) -> None:
        await self._at("before_commit", to_seq)
        part, from_seq = self._part, self.seq
        outbox = await store.commit_batch(
            conn,
            copy=self.copy,
            from_seq=self.seq,
            to_seq=to_seq,
            update=update,
            deltas=deltas,
            provinces=provinces,
            outbox=self._cache,
            during=(lambda: self._at("during_commit", to_seq)) if self._config.hook else None,
            checkpoint=(lambda: partitions.advance(conn, self.copy, part, from_seq, to_seq))
            if part is not None
            else None,
        )
        self.stats.batches += 1
        self.stats.events += taken
        self.seq = to_seq
        await self._at("after_commit", to_seq)
        if self._publisher is not None:
            self._publisher.submit(outbox)

    async def _cover(self, conn: asyncpg.Connection) -> None:
        """A partition with nothing pending moves its checkpoint up to the stream's last sequence, read BEFORE
        its consumer says that nothing is pending or unacknowledged: every event of its provinces up to there
        is then folded and committed (acks follow commits)."""
        if not self._filtered or self._part is None:
            return  # an unfiltered consumer delivers every sequence: its checkpoint is the last one it saw
        log_end = await last_sequence(self._js, EVENTS)
        if log_end <= self.seq:
            return
        info = await self._js.consumer_info(EVENTS, self.durable)
        if info.num_pending or info.num_ack_pending:
            return
        await partitions.cover(conn, self.copy, self._part, self.seq, log_end)
        self.seq = log_end

    async def _retired(self, conn: asyncpg.Connection) -> bool:
        """A rebuild replaced this copy: stop folding (its last commit did not happen)."""
        if await copies.is_retired(conn, self.copy):
            self.superseded = True
            log.info("stats projection copy %d was replaced by a rebuild; this runner stops", self.copy)
            return True
        return False

    async def _halt(self, conn: asyncpg.Connection, seq: int, reason: str) -> None:
        self.halted = reason
        self.stats.halts += 1
        log.error(
            "stats projection copy %d HALTED at seq %d: %s; figures stay at seq %d and are reported stale",
            self.copy,
            seq,
            reason,
            self.seq,
        )
        if self._part is not None:
            await partitions.mark_halted(conn, self.copy, self._part, seq, reason)
        else:
            await store.mark_halted(conn, self.copy, seq, reason)

    async def _at(self, point: str, seq: int) -> None:
        if self._config.hook is not None:
            await self._config.hook(point, seq)

    async def publisher_idle(self) -> None:
        if self._publisher is not None:
            await self._publisher.idle()
