"""Refusals that ``ANTQ_REJECTED`` could not take at once, published again until it does.

During a JetStream leader election (a node of the cluster killed) or while the stream is away, the write of a
refusal's record fails like the events' own writes do. The office was answered already (``unavailable``, say),
but the promise is that every refusal is kept. Each record carries a ``Nats-Msg-Id`` chosen once, so a retry of
a write whose ack was lost is a duplicate, not a second record (within ``ANTQ_REJECTED``'s duplicate window).

Where such a record waits:

- In PostgreSQL (``PendingTable``, table ``gateway_rejected_pending``, migration 015) when the copy has one
  (``RejectedLater.attach``, done by the gateway at start): ``keep`` inserts it before the office is answered, so
  it survives the process. Every copy drains the table, on start and every ``drain_every_s``, and at once after
  it kept a record: one office at a time, its records oldest first, claimed with ``FOR UPDATE SKIP LOCKED``
  and sent one after the other; a row is deleted in the transaction that claimed it, once the stream took it.
  A copy that finds the office's oldest record claimed by another copy leaves that office to it, so two copies
  never send the same record (unless a copy dies between the stream's ack and its commit: the record is sent
  again, a duplicate within the window), and an office's records are stored in the order they were refused.
- In memory, as before the table, when there is none or when PostgreSQL refuses the insert too (it is away as
  well): sent again with back-off, in order; lost if the process dies (counted ``in_memory`` when queued). The
  records move into the table as soon as PostgreSQL takes them again (the queue's next try, or the next record
  kept, which goes behind them), so they keep their place before later ones.

Both are bounded (``max_records``, ``max_bytes``; the table's bound holds across every copy): beyond that a
record is dropped and counted (``LateCounts.lost``, logged at ERROR). A copy that stops gives its memory queue a
few seconds, moves what is left there into the table if it can, and counts the rest lost; the table's records
stay for the next copy. A refusal whose first write succeeds is stored at once and may come before an older
record of its office still waiting here: the order holds among the records that waited.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import msgspec

from events.subjects import REJECTED_PREFIX
from infra.js_publisher import EXPECTED_STREAM, MSG_ID, JetStreamPublisher, header_block
from infra.streams import REJECTED

log = logging.getLogger("antq.gateway")


@dataclass
class LateCounts:
    """What became of the records that waited (read at scrape time by ``services/gateway/telemetry.py``)."""

    kept: int = 0
    """Records stored on a later try (by this copy; from the table or from memory)."""
    lost: int = 0
    """Records dropped: over the bound, or still waiting in memory when the copy stopped."""
    recovered: int = 0
    """Records another gateway process left waiting in the table (it died or stopped), stored by this one
    (also counted in ``kept``)."""
    in_memory: int = 0
    """Records that waited in memory: PostgreSQL could not take them either (lost if this process dies)."""


@dataclass(frozen=True)
class PendingRecord:
    subject: str
    data: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class PendingRow:
    """A record waiting in the table."""

    id: int
    owner: str
    record: PendingRecord


Send = Callable[[PendingRecord], Awaitable[bool]]
"""Publish one record; True once the stream took it (stored, or a duplicate)."""


def office_of(subject: str) -> str:
    """The key records are ordered by: the subject's last token (``antq.rejected.<office>``)."""
    return subject.rpartition(".")[2]


_PUT = """
    WITH room AS (
        UPDATE gateway_rejected_pending_total SET records = records + 1, bytes = bytes + $5
        WHERE records + 1 <= $6 AND bytes + $5 <= $7
        RETURNING 1
    )
    INSERT INTO gateway_rejected_pending (office, subject, headers, data, owner)
    SELECT $1, $2, $3::jsonb, $4, $8 FROM room
    RETURNING id"""

_OFFICES = """
    SELECT office FROM gateway_rejected_pending GROUP BY office ORDER BY min(id)"""

_CLAIM = """
    SELECT id, owner, subject, headers::text AS headers, data FROM gateway_rejected_pending
    WHERE office = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"""

_DELETE = """
    WITH gone AS (
        DELETE FROM gateway_rejected_pending WHERE id = ANY($1::bigint[]) RETURNING octet_length(data) AS n
    )
    UPDATE gateway_rejected_pending_total
    SET records = records - (SELECT count(*) FROM gone), bytes = bytes - (SELECT coalesce(sum(n), 0) FROM gone)"""


_headers = msgspec.json.Decoder(dict[str, str])


def is_office_token(text: str) -> bool:
    """Whether ``antq.rejected.<text>`` is a refusal's own subject: letters and digits of any script
    (``str.isalnum``), hyphens and underscores. ``IntakePublisher.rejected_record`` names the subject by the same
    rule (an unknown office's token else ``_invalid``), so a row it made is never taken for one changed by hand."""
    return text.replace("-", "").replace("_", "").isalnum()


def _readable(row: asyncpg.Record) -> PendingRecord:
    """A claimed row as the record to send. A row edited by hand (headers that are not names to texts a
    publish can carry, a subject that is not ``antq.rejected.<office>``) is sent with its subject and headers
    made again, and logged: one bad row never stops the drain of the records behind it, and its refusal is
    still kept. The headers made again carry a ``Nats-Msg-Id`` of the row's own (a resend is a duplicate)."""
    subject, repaired = row["subject"], []
    head, _, office = subject.rpartition(".")
    if head != REJECTED_PREFIX or not is_office_token(office):
        subject = f"{REJECTED_PREFIX}._invalid"
        repaired.append("subject")
    try:
        headers = _headers.decode(row["headers"])
        header_block(headers)
        if headers.get(EXPECTED_STREAM) != REJECTED or not headers.get(MSG_ID):
            raise ValueError("not a record of ANTQ_REJECTED")
    except (msgspec.MsgspecError, ValueError):
        headers = {EXPECTED_STREAM: REJECTED, MSG_ID: f"rejected:row:{row['owner']}:{row['id']}"}
        repaired.append("headers")
    if repaired:
        log.error(
            "row %d of gateway_rejected_pending was changed by hand (%s unreadable); sent with them made again",
            row["id"],
            " and ".join(repaired),
        )
    return PendingRecord(subject, bytes(row["data"]), headers)


class PendingTable:
    """The records waiting in PostgreSQL (``gateway_rejected_pending``), shared by every gateway copy."""

    def __init__(self, pool: asyncpg.Pool, *, owner: str | None = None, timeout_s: float = 2.0) -> None:
        self._pool = pool
        self.owner = owner or uuid.uuid4().hex
        """This process's name on the rows it inserts."""
        self._timeout_s = timeout_s

    async def put(self, record: PendingRecord, max_records: int, max_bytes: int) -> bool:
        """Insert one record; False when the table holds too many already (records or bytes). Raises when
        PostgreSQL does not answer within ``timeout_s`` or refuses."""
        async with asyncio.timeout(self._timeout_s):  # the pool's connect too: the office waits for this
            inserted = await self._pool.fetchval(
                _PUT,
                office_of(record.subject),
                record.subject,
                json.dumps(record.headers),
                record.data,
                len(record.data),
                max_records,
                max_bytes,
                self.owner,
            )
        return inserted is not None

    async def offices(self) -> list[str]:
        """Offices with records waiting, the one with the oldest record first (no more than the bound's
        ``max_records``: the table never holds more rows)."""
        return [r["office"] for r in await self._pool.fetch(_OFFICES)]

    async def drain_office(self, office: str, send: Send, limit: int = 256) -> tuple[list[PendingRow], bool]:
        """Send up to ``limit`` of one office's records, oldest first, until one is refused; delete the sent
        ones in the transaction that claimed them. Returns the rows sent and whether every claimed row was
        sent. Nothing is claimed (``[], True``) when the office has no records left or when another copy
        holds its oldest one: that copy sends them, in order."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, office, limit)
            if not rows:
                return [], True
            # rows another copy claimed were skipped: sending the next ones would pass its records
            head = await conn.fetchval(
                "SELECT min(id) FROM gateway_rejected_pending WHERE office = $1", office
            )
            if head != rows[0]["id"]:
                return [], True
            sent: list[PendingRow] = []
            interrupted: asyncio.CancelledError | None = None
            for r in rows:
                row = PendingRow(r["id"], r["owner"], _readable(r))
                try:
                    ok = await send(row.record)
                except asyncio.CancelledError as exc:  # a stop gave up waiting for an ack
                    interrupted = exc
                    break
                except Exception:
                    log.warning("a refusal's record could not be sent", exc_info=True)
                    break
                if not ok:
                    break
                sent.append(row)
            # the rows the stream took are deleted and committed even when interrupted: rolled back with the
            # claim, they would be published again by the next copy
            if sent:
                await conn.execute(_DELETE, [row.id for row in sent])
        if interrupted is not None:
            raise interrupted
        return sent, len(sent) == len(rows)

    async def waiting(self) -> tuple[int, int]:
        """Records and bytes in the table (every copy's)."""
        row = await self._pool.fetchrow("SELECT records, bytes FROM gateway_rejected_pending_total")
        assert row is not None  # migration 015 inserts the one row
        return int(row["records"]), int(row["bytes"])


class RejectedLater:
    def __init__(
        self,
        publisher: JetStreamPublisher,
        counts: LateCounts | None = None,
        *,
        max_records: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        first_delay_s: float = 0.2,
        max_delay_s: float = 5.0,
        drain_every_s: float = 5.0,
        batch: int = 256,
    ) -> None:
        self._publisher = publisher
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._first_delay_s = first_delay_s
        self._max_delay_s = max_delay_s
        self._drain_every_s = drain_every_s
        self._batch = batch
        """Records of one office claimed (and sent one after the other) in one transaction."""
        self._queue: collections.deque[PendingRecord] = collections.deque()
        self._bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._sending = asyncio.Lock()
        """Held by ``_run`` while it sends the memory queue's head, and while ``keep`` moves the queue into the
        table: a record is never both sent from memory and kept in the table."""
        self._table: PendingTable | None = None
        self._draining: asyncio.Task[None] | None = None
        self._table_wake = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self.counts = counts if counts is not None else LateCounts()

    @property
    def pending(self) -> int:
        """Records waiting in this process's memory (not those in the table)."""
        return len(self._queue)

    def attach(self, table: PendingTable) -> None:
        """Keep records in ``table`` from now on, and drain it now (what other processes left there) and every
        ``drain_every_s``. Called once, from the event loop."""
        self._table = table
        self._draining = asyncio.create_task(self._drain_table(), name="rejected-later-table")

    async def keep(self, record: PendingRecord) -> None:
        """Keep a record whose first write failed: in the table when there is one and PostgreSQL takes it (it
        is then durable when this returns), else in memory."""
        if self._table is not None and not self._stopping:
            try:
                # older records of this copy that wait in memory (PostgreSQL was away) go into the table first,
                # else this one would be stored before them; while they cannot, it waits in memory behind them
                if await self._memory_to_table():
                    if await self._table.put(record, self._max_records, self._max_bytes):
                        self._table_wake.set()
                    else:
                        self.counts.lost += 1
                        log.error(
                            "a refusal's record for %s is dropped: too many wait to be kept", record.subject
                        )
                    return
            except Exception:
                log.warning(
                    "could not keep a refusal's record in PostgreSQL; it waits in memory", exc_info=True
                )
            self.counts.in_memory += 1
        self.add(record)

    async def _memory_to_table(self) -> bool:
        """Move the records waiting in memory into the table, oldest first; True when none is left in memory.
        False at once while ``_run`` sends the queue's head (the office's answer does not wait for that ack:
        ``_run`` moves the queue next), and when more than ``batch`` wait (``_run`` moves the rest). Raises when
        PostgreSQL does."""
        if not self._queue:
            return True
        if self._sending.locked():
            return False
        async with self._sending:
            await self._move_queue(self._batch)  # a refusal's answer pays for a bounded number of inserts
        return not self._queue

    async def _move_queue(self, limit: int | None = None) -> None:
        """Under ``_sending``: the memory queue into the table, oldest first, until it refuses (bound) or
        ``limit`` records moved."""
        table = self._table
        assert table is not None
        moved = 0
        while (
            self._queue
            and (limit is None or moved < limit)
            and await table.put(self._queue[0], self._max_records, self._max_bytes)
        ):
            self._bytes -= len(self._queue.popleft().data)
            moved += 1
        if moved:
            log.warning("%d refusals' records moved from memory to PostgreSQL", moved)
            self._table_wake.set()

    def add(self, record: PendingRecord) -> None:
        """Keep a record in memory (bounded), sent again with back-off until stored."""
        if len(self._queue) >= self._max_records or self._bytes + len(record.data) > self._max_bytes:
            self.counts.lost += 1
            log.error("a refusal's record for %s is dropped: too many wait to be kept", record.subject)
            return
        self._queue.append(record)
        self._bytes += len(record.data)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="rejected-later")
        self._wake.set()

    async def _send(self, record: PendingRecord) -> bool:
        if self._stopping:
            return False
        future = await self._publisher.publish(record.subject, record.data, record.headers)
        (outcome,) = await self._publisher.settle([future])
        if outcome.seq is None:
            log.warning("ANTQ_REJECTED still refuses a record (%s)", outcome.failure)
            return False
        return True

    async def _run(self) -> None:
        delay = self._first_delay_s
        while self._queue:
            async with self._sending:  # keep may move the queue into the table meanwhile
                if self._table is not None and not self._stopping:
                    try:  # PostgreSQL back: the records become durable there, in order, and wait no more here
                        await self._move_queue()
                    except Exception:
                        log.debug("PostgreSQL still refuses the records waiting in memory", exc_info=True)
                if not self._queue:
                    return
                record = self._queue[0]
                future = await self._publisher.publish(record.subject, record.data, record.headers)
                (outcome,) = await self._publisher.settle([future])
                if outcome.seq is not None:
                    self._queue.popleft()
                    self._bytes -= len(record.data)
                    self.counts.kept += 1
                    delay = self._first_delay_s
                    continue
            log.warning("ANTQ_REJECTED still refuses a record (%s); again in %.1fs", outcome.failure, delay)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)  # a new refusal tries again at once
            delay = min(delay * 2, self._max_delay_s)

    async def drain_table_once(self) -> bool:
        """One round over the table; True when every office's records were sent (or are being sent by
        another copy), False when the stream refused one (or this copy is stopping)."""
        table = self._table
        assert table is not None
        for office in await table.offices():
            while True:
                if self._stopping:
                    return False
                sent, complete = await table.drain_office(office, self._send, self._batch)
                self.counts.kept += len(sent)
                self.counts.recovered += sum(1 for row in sent if row.owner != table.owner)
                if not complete:
                    return False
                if not sent:
                    break  # none left, or another copy is sending this office's records
        return True

    async def _drain_table(self) -> None:
        table = self._table
        assert table is not None
        with contextlib.suppress(Exception):
            records, size = await table.waiting()
            if records:
                log.warning("%d refusals' records (%d bytes) wait in PostgreSQL; sending them", records, size)
        delay = self._first_delay_s
        while not self._stopping:
            self._table_wake.clear()  # a record kept from now on is seen by this round or wakes the next
            try:
                clear = await self.drain_table_once()
            except Exception:
                log.warning("could not drain the refusals' records waiting in PostgreSQL", exc_info=True)
                clear = False
            if self._stopping:
                return
            if clear:  # until a record is kept, or the next round
                delay = self._first_delay_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._table_wake.wait(), self._drain_every_s)
            else:  # back-off: new records (a flood while the stream is away) do not hasten it
                log.warning("refusals' records wait in PostgreSQL; again in %.1fs", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), delay)
                delay = min(delay * 2, self._max_delay_s)

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Keep trying the memory queue for up to ``drain_timeout`` seconds, move what is left into the table
        if there is one and PostgreSQL takes it, and count the rest as lost. The table's records stay there
        for the next copy to send."""
        task = self._task
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=drain_timeout)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._stopping = True
        draining = self._draining
        if draining is not None and not draining.done():
            self._stopped.set()
            self._table_wake.set()
            done, _ = await asyncio.wait({draining}, timeout=drain_timeout)
            if not done:
                draining.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await draining
        moved = 0
        if self._table is not None:
            while self._queue:
                try:
                    if not await self._table.put(self._queue[0], self._max_records, self._max_bytes):
                        break
                except Exception:
                    break
                self._queue.popleft()
                moved += 1
            if moved:
                log.warning("%d refusals' records moved from memory to PostgreSQL at stop", moved)
        if self._queue:
            self.counts.lost += len(self._queue)
            log.error("%d refusals' records were never kept in ANTQ_REJECTED", len(self._queue))
            self._queue.clear()
        self._bytes = 0
