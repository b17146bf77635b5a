"""Publishes outbox rows to ANTQ_UPDATES after their commit, then deletes them.

What waits in memory is each ward-year's latest committed row, no more: a row that a later commit of the same
ward-year replaces before it was sent is never sent (the feed promises each ward-year's latest figures, in order
per subject), so however far the feed falls behind the fold, the memory it takes is bounded by the ward-years
that changed, not by the commits. Whatever waits is taken together as one round, published pipelined over one
reply inbox (``infra.js_publisher``) in sequence order and settled with one deadline; then the outbox rows the
round makes obsolete (each ward-year's, up to the sequence sent) are deleted. Rows submitted meanwhile wait for
the next round, whose sequences are all higher: a subject's updates are stored in order (rows left in the outbox
by a crash included). Each update is signed, and its ``Nats-Msg-Id`` is its natural id (ward:year:seq:copy)
tagged under the projection's key (``infra.update_signing``): a re-publish after a crash is harmless, and nobody
without the key can store a message with that id first to have the real update dropped as a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
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


class UpdatePublisher:
    """A background task that publishes the latest committed row of every ward-year waiting; rows left by a
    crash come first.

    ``key`` signs the updates and tags their ids; without one, an ephemeral key (with a warning)."""

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
        self._waiting: dict[tuple[str, int], OutboxRow] = {}
        """The latest committed row of each ward-year not yet taken by a round."""
        self._wake = asyncio.Event()
        """Set when rows wait, or the publisher is to stop."""
        self._stopping = False
        self._idle = asyncio.Event()
        """Set while nothing waits and no round is being published (``idle``)."""
        self._idle.set()
        self._max_queued_rows = max_queued_rows
        self._room = asyncio.Event()
        """Set while fewer than ``max_queued_rows`` ward-years wait in memory (``room``)."""
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
        leftover, older = await store.pending_outbox(self._conn, self._copy, self._provinces)
        if leftover:
            log.info(
                "publishing %d updates left in the outbox (%d older ones superseded)", len(leftover), older
            )
        self.superseded += older
        self.submit(leftover)
        self._task = asyncio.create_task(self._run(), name=f"stats-updates-{self._copy}")

    def submit(self, rows: list[OutboxRow]) -> None:
        """Rows of commits in sequence order (one commit's, or the outbox's latest per ward-year)."""
        if not rows:
            return
        waiting = self._waiting
        for row in rows:
            key = (row.ward, row.year)
            if key in waiting:
                self.superseded += 1
            waiting[key] = row
        self._idle.clear()
        self._wake.set()
        self._sized()

    def _sized(self) -> None:
        if len(self._waiting) >= self._max_queued_rows:
            self._room.clear()
        else:
            self._room.set()

    @property
    def queued_rows(self) -> int:
        """Ward-years whose latest committed row waits in memory to be published (the round being published
        not counted)."""
        return len(self._waiting)

    async def room(self, stop: asyncio.Event) -> None:
        """Until fewer than ``max_queued_rows`` ward-years wait in memory, or ``stop`` is set. The runner waits
        here before its next batch. Rows waiting are one per ward-year, so this bound is reached only by a fold
        that changes more ward-years than it allows while the feed takes nothing (ANTQ_UPDATES away): the fold
        then waits for the feed instead of holding them all (the rows are in the outbox, committed, either
        way)."""
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
        await self._idle.wait()

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Publish what is queued, then stop; after ``drain_timeout`` seconds (NATS or PostgreSQL away) stop
        anyway: what is left stays in the outbox, committed, and the next start publishes it."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
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
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._waiting:
                self._idle.set()
                if self._stopping:
                    return
                continue
            # everything waiting goes as one round (the publisher is behind: a catch-up, a rebuild's switch),
            # each ward-year once, with its latest figures, in sequence order
            taken, self._waiting = self._waiting, {}
            self._sized()
            self._wake.set()  # look again after the round: rows submitted meanwhile, or the stop
            await self._publish_until_done(sorted(taken.values(), key=lambda r: (r.seq, r.ward, r.year)))

    async def _publish_until_done(self, rows: list[OutboxRow]) -> None:
        """Publish ``rows``, then delete them and the older rows of their ward-years from the outbox."""
        delay = 0.1
        while True:
            try:
                for start in range(0, len(rows), self._max_in_flight):
                    await self._publish_chunk(rows[start : start + self._max_in_flight])
                assert self._conn is not None
                await store.delete_outbox(self._conn, self._copy, rows)
                self.published += len(rows)
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
