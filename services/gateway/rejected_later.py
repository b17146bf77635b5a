"""Refusals that ``ANTQ_REJECTED`` could not take at once, published again until it does.

During a JetStream leader election (a node of the cluster killed) or while the stream is away, the write of a
refusal's record fails like the events' own writes do. The office was answered already (``unavailable``, say),
but the promise is that every refusal is kept: such a record waits here, in memory, in order, and is sent again
with back-off until stored. Each record carries a ``Nats-Msg-Id`` chosen once, so a retry of a write whose ack
was lost is a duplicate, not a second record. Bounded (``max_records``, ``max_bytes``): beyond that a record is
dropped and counted (``LateCounts.lost``, logged at ERROR); a copy that stops drains for a few seconds, then counts what is
left as lost. Records waiting here are lost if the process dies: the office's answer never depended on them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass

from infra.js_publisher import JetStreamPublisher

log = logging.getLogger("antq.gateway")


@dataclass
class LateCounts:
    """What became of the records that waited (read at scrape time by ``services/gateway/telemetry.py``)."""

    kept: int = 0
    """Records stored on a later try."""
    lost: int = 0
    """Records dropped: over the bound, or still waiting when the copy stopped."""


@dataclass(frozen=True)
class PendingRecord:
    subject: str
    data: bytes
    headers: dict[str, str]


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
    ) -> None:
        self._publisher = publisher
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._first_delay_s = first_delay_s
        self._max_delay_s = max_delay_s
        self._queue: collections.deque[PendingRecord] = collections.deque()
        self._bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.counts = counts if counts is not None else LateCounts()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def add(self, record: PendingRecord) -> None:
        if len(self._queue) >= self._max_records or self._bytes + len(record.data) > self._max_bytes:
            self.counts.lost += 1
            log.error("a refusal's record for %s is dropped: too many wait to be kept", record.subject)
            return
        self._queue.append(record)
        self._bytes += len(record.data)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="rejected-later")
        self._wake.set()

    async def _run(self) -> None:
        delay = self._first_delay_s
        while self._queue:
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

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Keep trying for up to ``drain_timeout`` seconds, then count what is left as lost."""
        task = self._task
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=drain_timeout)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._queue:
            self.counts.lost += len(self._queue)
            log.error("%d refusals' records were never kept in ANTQ_REJECTED", len(self._queue))
            self._queue.clear()
            self._bytes = 0
