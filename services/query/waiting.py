"""Read-your-writes without holding a worker: requests waiting for their ``min_seq`` share one poller.

A request whose snapshot is behind its ``min_seq`` registers a ``Waiter`` here and its handler returns at once
(the answer is sent later, from a task of its own). While anyone waits, one task reads the active copy's
checkpoint every ``interval`` seconds (one short query on a pooled connection, given back between polls) and
releases every waiter whose ``min_seq`` it has reached, or all of them when the projection has halted (it will
get no further: they answer ``stale``). A waiter holds no connection and no worker while it waits, and the
number of waiters is capped (``WatchFull``) so that clients cannot pile up memory: in all, and per client (a
client is its reply inbox prefix, ``services.replies.client_of``), so that one client filling its share
leaves room for every other (``ClientFull``).

With the projection split across workers (``projections/partitions.py``) the copy's checkpoint is the lowest
of its partitions' checkpoints, each worker raising it after its commits: once it reaches ``min_seq``, every
event up to ``min_seq`` is in the figures, whichever partition folded it.

PostgreSQL LISTEN/NOTIFY would need the projection to notify on each commit; it does not, so this polls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import cast

import asyncpg
import msgspec

from projections.store import NAME
from services.query.errors import QueryError

log = logging.getLogger("antq.query")


class Head(msgspec.Struct, frozen=True, kw_only=True):
    """Where the active copy's projection stands."""

    seq: int
    halted: bool


ReadHead = Callable[[], Awaitable[Head]]

# The same pointer and checkpoint a snapshot reads (``projections.reads.read_stats``): a copy without a
# checkpoint yet is at 0.
_HEAD_SQL = """
SELECT coalesce(c.seq, 0) AS seq, c.halted IS NOT NULL AS halted
FROM projection_active a
LEFT JOIN projection_checkpoint c ON c.name = a.name AND c.copy = a.copy
WHERE a.name = $1"""


async def read_head(pool: asyncpg.Pool) -> Head:
    async with pool.acquire() as conn:
        connection = cast(asyncpg.Connection, conn)  # a pooled connection proxies a Connection
        row = await connection.fetchrow(_HEAD_SQL, NAME)
    if row is None:
        raise LookupError(f"no active copy for projection {NAME!r}: run the migrations")
    return Head(seq=int(row["seq"]), halted=bool(row["halted"]))


class WatchFull(QueryError):
    """As many requests as allowed are already waiting (the app answers ``busy``)."""

    code = "busy"

    def __init__(self) -> None:
        super().__init__("as many requests as allowed are already waiting for their min_seq")


class ClientFull(WatchFull):
    """As many requests of this client as allowed are already waiting."""


class WatchClosed(QueryError):
    """The service is stopping: nobody waits any more (the app answers ``unavailable``)."""

    code = "unavailable"

    def __init__(self) -> None:
        super().__init__("the query service is stopping; retry")


class Waiter:
    """One request waiting for the checkpoint to reach ``min_seq``."""

    __slots__ = ("client", "future", "min_seq")

    def __init__(self, min_seq: int, client: str) -> None:
        self.min_seq = min_seq
        self.client = client
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class CheckpointWatch:
    def __init__(self, read: ReadHead, *, interval: float, capacity: int, per_client: int) -> None:
        self._read = read
        self._interval = interval
        self._capacity = capacity
        self._per_client = per_client
        self._waiters: set[Waiter] = set()
        self._of_client: dict[str, int] = {}
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        self._failing = False

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def waiting_for(self, client: str) -> int:
        return self._of_client.get(client, 0)

    def register(self, min_seq: int, client: str) -> Waiter:
        """A waiter for ``min_seq`` (synchronous: the caps are checked before the request's task exists)."""
        if self._closed:
            raise WatchClosed
        if self._of_client.get(client, 0) >= self._per_client:
            raise ClientFull
        if len(self._waiters) >= self._capacity:
            raise WatchFull
        waiter = Waiter(min_seq, client)
        self._waiters.add(waiter)
        self._of_client[client] = self._of_client.get(client, 0) + 1
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="antq-query-checkpoint-poller")
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.discard(waiter)
            left = self._of_client[waiter.client] - 1
            if left:
                self._of_client[waiter.client] = left
            else:
                del self._of_client[waiter.client]
        if not waiter.future.done():
            waiter.future.cancel()

    async def wait(self, waiter: Waiter, timeout: float) -> bool:
        """True once the checkpoint has reached the waiter's ``min_seq`` (or the projection halted), False when
        ``timeout`` seconds pass first. The waiter stays registered (``unregister`` it); it may wait again."""
        if self._closed:
            raise WatchClosed
        if waiter.future.done():  # released before, and waiting again: a fresh future
            waiter.future = asyncio.get_running_loop().create_future()
        if waiter not in self._waiters:
            raise ValueError("wait on a registered waiter")
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await waiter.future
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop polling; every waiter's ``wait`` raises ``WatchClosed``, and so does any new ``register``."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(WatchClosed())
        poller = self._poller
        if poller is not None:
            poller.cancel()
            await asyncio.wait(
                {poller}
            )  # its end, whatever it was; a cancel of ``close`` itself still raises

    async def _poll(self) -> None:
        try:
            while self._waiters:
                await asyncio.sleep(self._interval)
                if not self._waiters:
                    break
                try:
                    head = await self._read()
                except Exception:  # the waiters time out and answer from their own read
                    if not self._failing:
                        log.warning("reading the checkpoint for waiting queries failed", exc_info=True)
                    self._failing = True
                    continue
                self._failing = False
                for waiter in self._waiters:
                    if (head.halted or head.seq >= waiter.min_seq) and not waiter.future.done():
                        waiter.future.set_result(None)
        finally:
            self._poller = None  # no await between the last check of ``_waiters`` and this: none is missed
