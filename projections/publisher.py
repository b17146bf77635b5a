"""Publishes outbox rows to ANTQ_UPDATES after their commit, then deletes them.

All rows of a commit are published pipelined over one reply inbox (``infra.js_publisher``) and settled with
one deadline. Each update is signed, and its ``Nats-Msg-Id`` is its natural id (ward:year:seq:copy) tagged
under the projection's key (``infra.update_signing``): a re-publish after a crash is harmless, and nobody
without the key can store a message with that id first to have the real update dropped as a duplicate. Rows of
one commit are published, and settled, before those of the next (rows left in the outbox by a crash included),
so a subject's updates are stored in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence

import asyncpg
import nats.errors
from nats.aio.client import Client

from events.subjects import updates_subject
from infra.js_publisher import EXPECTED_STREAM, JetStreamPublisher
from infra.streams import UPDATES
from infra.update_signing import UpdateKey, ephemeral_update_key
from projections import store
from projections.errors import ProjectionError
from projections.store import OutboxRow

log = logging.getLogger(__name__)


class PublishFailed(ProjectionError):
    """ANTQ_UPDATES did not store an update."""


def conflated(rows: list[OutboxRow]) -> list[OutboxRow]:
    """Each (ward, year) once, with its latest row (highest seq), in the order of those rows' sequences.

    The feed's promise is the latest figures of every ward-year, in order per subject: an update that a later
    one of the same ward-year replaces before it was sent need not be sent (what a subscriber keeping the
    latest update per ward-year holds is the same, and so is the query)."""
    latest: dict[tuple[str, int], OutboxRow] = {}
    for row in rows:
        key = (row.ward, row.year)
        found = latest.get(key)
        if found is None or row.seq > found.seq:
            latest[key] = row
    return sorted(latest.values(), key=lambda row: (row.seq, row.ward, row.year))


class UpdatePublisher:
    """A background task that drains a queue of committed outbox rows; rows left by a crash come first.

    ``key`` signs the updates and tags their ids; without one, an ephemeral key (with a warning)."""

    CONFLATE_ROWS = 100_000
    """At most about this many committed rows are taken together (``conflated``)."""

    def __init__(
        self,
        nc: Client,
        database_url: str,
        copy: int,
        *,
        key: UpdateKey | None = None,
        timeout: float = 10.0,
        max_in_flight: int = 2000,
        provinces: Sequence[str] | None = None,
        max_queued_rows: int = 50_000,
    ) -> None:
        self._nc = nc
        self._key = key if key is not None else ephemeral_update_key()
        self._database_url = database_url
        self._copy = copy
        self._provinces = provinces  # a partition's runner publishes the leftover rows of its provinces only
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self._queue: asyncio.Queue[list[OutboxRow] | None] = asyncio.Queue()
        self._max_queued_rows = max_queued_rows
        self._queued_rows = 0
        self._room = asyncio.Event()
        """Set while fewer than ``max_queued_rows`` rows wait in memory (``room``)."""
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._js = JetStreamPublisher(nc, max_pending=max_in_flight, ack_timeout=timeout)
        self.published = 0
        self.superseded = 0
        """Committed updates never published: a later one of the same ward-year was queued with them."""

    async def start(self) -> None:
        """Connect and queue the rows a previous run committed but did not publish."""
        self._conn = await asyncpg.connect(self._database_url)
        await self._js.start()
        leftover = await store.pending_outbox(self._conn, self._copy, self._provinces)
        if leftover:
            log.info("publishing %d updates left in the outbox", len(leftover))
        # one commit's rows at a time, as they were submitted: a commit names each ward-year once, so a retry
        # after a partly failed publish can never store a ward-year's older figures after its newer ones
        for _, rows in itertools.groupby(leftover, key=lambda row: row.seq):
            self.submit(list(rows))
        self._task = asyncio.create_task(self._run(), name=f"stats-updates-{self._copy}")

    def submit(self, rows: list[OutboxRow]) -> None:
        if rows:
            self._queue.put_nowait(rows)
            self._queued(len(rows))

    def _queued(self, change: int) -> None:
        self._queued_rows += change
        if self._queued_rows >= self._max_queued_rows:
            self._room.clear()
        else:
            self._room.set()

    @property
    def queued_rows(self) -> int:
        """Committed rows waiting in memory to be published."""
        return self._queued_rows

    async def room(self, stop: asyncio.Event) -> None:
        """Until fewer than ``max_queued_rows`` committed rows wait in memory, or ``stop`` is set. The runner
        waits here before its next batch: when ANTQ_UPDATES takes updates more slowly than the fold commits
        them, the fold slows to the feed's pace instead of queueing without bound (the rows are in the outbox,
        committed, either way)."""
        if self._room.is_set() or stop.is_set():
            return
        waits = {asyncio.create_task(self._room.wait()), asyncio.create_task(stop.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def idle(self) -> None:
        """Wait until everything submitted so far is published."""
        await self._queue.join()

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Publish what is queued, then stop; after ``drain_timeout`` seconds (NATS or PostgreSQL away) stop
        anyway: what is left stays in the outbox, committed, and the next start publishes it."""
        if self._task is not None:
            self._queue.put_nowait(None)
            done, _ = await asyncio.wait({self._task}, timeout=drain_timeout)
            if not done:
                log.warning(
                    "stopping with updates unpublished after %.1fs; they stay in the outbox for the next start",
                    drain_timeout,
                )
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._js.stop()
        if self._conn is not None:
            try:
                await self._conn.close(timeout=5)
            except (OSError, TimeoutError, asyncpg.PostgresError):
                self._conn.terminate()
            self._conn = None

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            taken = [await self._queue.get()]
            # commits queued meanwhile (the publisher is behind: a catch-up, a rebuild's switch) go together,
            # each ward-year once, with its latest figures (``conflated``)
            while not self._queue.empty() and sum(len(r) for r in taken if r) < self.CONFLATE_ROWS:
                taken.append(self._queue.get_nowait())
            try:
                stopping = None in taken
                rows = [row for commit in taken if commit for row in commit]
                if rows:
                    await self._publish_until_done(conflated(rows), rows)
            finally:
                self._queued(-sum(len(commit) for commit in taken if commit))
                for _ in taken:
                    self._queue.task_done()

    async def _publish_until_done(self, rows: list[OutboxRow], done: list[OutboxRow]) -> None:
        """Publish ``rows``, then delete ``done`` (``rows`` and the older rows they supersede) from the outbox."""
        delay = 0.1
        while True:
            try:
                for start in range(0, len(rows), self._max_in_flight):
                    await self._publish_chunk(rows[start : start + self._max_in_flight])
                assert self._conn is not None
                await store.delete_outbox(self._conn, self._copy, done)
                self.published += len(rows)
                self.superseded += len(done) - len(rows)
                return
            except (PublishFailed, nats.errors.Error, TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("publishing %d updates failed (%s); retrying in %.1fs", len(rows), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _publish_chunk(self, rows: list[OutboxRow]) -> None:
        futures = [
            await self._js.publish(
                updates_subject(row.province, row.ward, row.year),
                row.payload,
                {**self._key.headers(row.msg_id, row.payload), EXPECTED_STREAM: UPDATES},
            )
            for row in rows
        ]
        for row, outcome in zip(rows, await self._js.settle(futures), strict=True):
            if outcome.seq is None:
                raise PublishFailed(f"{row.msg_id}: {outcome.failure}")
