"""Composition root of the query service: ``antq.query.stats`` request/reply over the read models.

The handler takes the raw message with its body as bytes (``raw_body``: FastStream decodes nothing), decodes it
with msgspec and always answers. It sends the answer itself (the subscriber has ``no_reply``), and only to an
inbox: a request whose reply subject is not one is dropped unprocessed (``services.replies``). A request
waiting for its ``min_seq`` is answered later, from a task of its own, so that it holds neither a worker nor a
database connection while it waits (``services.query.waiting``); each client (its reply inbox prefix) may have
``max_waiters_per_client`` requests waiting at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

import asyncpg
import msgspec
from faststream import FastStream
from faststream.nats import NatsMessage

from events.codec import encode
from events.localities import Localities
from events.subjects import QUERY_SUBJECT, client_of_query
from infra.db import create_pool
from projections.store import StatsSnapshot, read_stats
from services.nats_broker import nats_broker, raw_responder
from services.query.errors import Busy, NotCaughtUp, QueryError, Unavailable
from services.query.request import (
    ErrorBody,
    ErrorReply,
    StatsQuery,
    StatsReply,
    parse_query,
    resolve_wards,
    years_of,
)
from services.query.waiting import CheckpointWatch, ClientFull, Waiter, WatchClosed, WatchFull, read_head
from services.replies import DroppedRequests, client_of

log = logging.getLogger("antq.query")

Send = Callable[[bytes], Awaitable[None]]


@dataclass
class QueryConfig:
    nats_url: str
    database_url: str
    queue: str = "antq-query"
    workers: int = 8
    """Requests served at once. A request waiting for ``min_seq`` gives its worker back while it waits."""
    max_waiters: int = 1000
    """Requests that may wait for their ``min_seq`` at once; beyond, a request is answered ``busy``."""
    max_waiters_per_client: int = 100
    """Requests of one client (its reply inbox prefix) that may wait at once; beyond, that client is answered
    ``busy`` while the others still wait."""
    database_timeout_s: float = 10.0
    """A PostgreSQL statement not answered by then fails (the request is answered ``unavailable``)."""
    poll_interval_s: float = 0.025
    """How often the active copy's checkpoint is read while requests wait for their ``min_seq``."""
    localities: Localities | None = None
    nats_options: Mapping[str, str] = field(default_factory=dict)
    """``nats.connect`` options of the query service's identity (``infra.auth.nats_connect_options``)."""


@dataclass(frozen=True)
class _Waiting:
    """A request whose snapshot was behind its ``min_seq``: what its answer needs once the wait is over."""

    query: StatsQuery
    min_seq: int
    wards: list[str]
    waiter: Waiter
    deadline: float  # the event loop's clock


def _error(exc: QueryError) -> bytes:
    return encode(ErrorReply(error=ErrorBody(code=exc.code, message=exc.message, path=exc.path)))


_FAILED = encode(
    ErrorReply(error=ErrorBody(code="unavailable", message="the query failed; retry", path=None))
)


def _not_caught_up(snapshot: StatsSnapshot, min_seq: int) -> NotCaughtUp:
    return NotCaughtUp(
        f"the statistics are at seq {snapshot.as_of_seq}, not yet {min_seq}; retry or raise timeout_ms",
        "$.min_seq",
    )


def _caught_up(snapshot: StatsSnapshot, min_seq: int) -> bool:
    return snapshot.as_of_seq >= min_seq or snapshot.stale  # a halted projection will not get there


class StatsQueries:
    """Answers statistics queries from the active read model."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        localities: Localities,
        *,
        max_waiters: int = 1000,
        max_waiters_per_client: int = 100,
        poll_interval_s: float = 0.025,
    ) -> None:
        self._pool = pool
        self._localities = localities
        self._watch = CheckpointWatch(
            lambda: read_head(pool),
            interval=poll_interval_s,
            capacity=max_waiters,
            per_client=max_waiters_per_client,
        )
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Requests waiting for their ``min_seq`` right now."""
        return self._watch.waiting

    async def answer(self, body: bytes, send: Send, client: str) -> None:
        """Answer ``body`` through ``send``, exactly once: before returning, or, when the request waits for its
        ``min_seq``, from a task that sends once the projection is there or the request's timeout has passed.
        ``client`` (the reply inbox prefix) is whose share of the waiters a wait takes."""
        started = asyncio.get_running_loop().time()
        try:
            outcome = await self._start(parse_query(body), started, client)
        except QueryError as exc:
            await _send(send, _error(exc))
            return
        except Exception:
            log.exception("query failed")
            await _send(send, _FAILED)
            return
        if isinstance(outcome, _Waiting):
            task = asyncio.create_task(self._finish(outcome, send), name="antq-query-waiting")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            await _send(send, encode(outcome))

    async def close(self, grace_s: float = 5.0) -> None:
        """Answer the waiting requests ``unavailable`` (the service is stopping) and wait for those answers."""
        await self._watch.close()
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()

    async def _start(self, query: StatsQuery, started: float, client: str) -> StatsReply | _Waiting:
        wards = resolve_wards(query, self._localities)
        snapshot = await self._read(wards, query)
        if query.min_seq is None or _caught_up(snapshot, query.min_seq):
            return self._reply(query, wards, snapshot)
        if query.timeout_ms == 0:
            raise _not_caught_up(snapshot, query.min_seq)
        try:
            waiter = self._watch.register(query.min_seq, client)
        except ClientFull:
            raise Busy(
                f"{self._watch.waiting_for(client)} requests of this client ({client}) are already waiting for"
                " their min_seq, the most this service allows one client; retry once some are answered, or ask"
                " without min_seq",
                "$.min_seq",
            ) from None
        except WatchFull:
            raise Busy(
                f"{self.waiting} requests are already waiting for their min_seq, the most this service allows;"
                " retry later, or ask without min_seq",
                "$.min_seq",
            ) from None
        except WatchClosed:
            raise Unavailable("the query service is stopping; retry") from None
        deadline = started + query.timeout_ms / 1000
        return _Waiting(query=query, min_seq=query.min_seq, wards=wards, waiter=waiter, deadline=deadline)

    async def _finish(self, waiting: _Waiting, send: Send) -> None:
        try:
            body = encode(await self._wait(waiting))
        except QueryError as exc:
            body = _error(exc)
        except Exception:
            log.exception("query failed")
            body = _FAILED
        finally:
            self._watch.unregister(waiting.waiter)
        await _send(send, body)

    async def _wait(self, waiting: _Waiting) -> StatsReply:
        """Read-your-writes: read again once the checkpoint has reached ``min_seq``, or once at the timeout."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                released = await self._watch.wait(waiting.waiter, waiting.deadline - loop.time())
            except WatchClosed:
                raise Unavailable("the query service is stopping; retry") from None
            snapshot = await self._read(waiting.wards, waiting.query)
            if _caught_up(snapshot, waiting.min_seq):
                return self._reply(waiting.query, waiting.wards, snapshot)
            if not released or loop.time() >= waiting.deadline:
                raise _not_caught_up(snapshot, waiting.min_seq)
            # released, yet the snapshot is behind: the active copy switched between the poll and the read

    def _reply(self, query: StatsQuery, wards: list[str], snapshot: StatsSnapshot) -> StatsReply:
        return StatsReply(
            year=query.year,
            from_year=query.from_year,
            to_year=query.to_year,
            period=query.period,
            metrics=snapshot.metrics,
            as_of_seq=snapshot.as_of_seq,
            stale=snapshot.stale,
            fold_version=snapshot.fold_version,
            ward=query.ward,
            province=query.province,
            wards=wards if query.wards is not None else None,
            scheme=query.scheme if query.scheme != "gso-2025" else None,
            commune=query.commune,
            district=query.district,
            approximate=snapshot.approximate or None,
            by_ward=snapshot.by_ward,
        )

    async def _read(self, wards: list[str], query: StatsQuery) -> StatsSnapshot:
        async with self._pool.acquire() as conn:
            connection = cast(asyncpg.Connection, conn)  # a pooled connection proxies a Connection
            first, last = years_of(query)
            return await read_stats(
                connection,
                wards=wards,
                year=last,
                from_year=first,
                period=query.period,
                by_ward=query.by == "ward",
            )


class _CodeOnly(msgspec.Struct, frozen=True, kw_only=True):
    code: str = "unknown"


class _ReplyCode(msgspec.Struct, frozen=True, kw_only=True):
    error: _CodeOnly | None = None


_reply_code = msgspec.json.Decoder(_ReplyCode)


def reply_code(body: bytes) -> str:
    """``ok`` for figures, else the error's code: what ``antq_query_requests_total{code}`` counts."""
    try:
        error = _reply_code.decode(body).error
    except msgspec.DecodeError:
        return "unknown"
    return "ok" if error is None else error.code


async def _send(send: Send, body: bytes) -> None:
    try:
        await send(body)
    except Exception:  # the requester is gone or NATS is: nobody left to tell
        log.warning("could not send a query reply", exc_info=True)


class QueryService:
    """One query service copy: its pool lives here, created at start and closed at stop."""

    def __init__(self, config: QueryConfig) -> None:
        self._config = config
        self._localities = config.localities or Localities.load()
        self._pool: asyncpg.Pool | None = None
        self._queries: StatsQueries | None = None
        self.dropped = DroppedRequests("the query service", log)
        """Requests dropped unanswered for their reply subject, per reason."""
        self.requests_by_code: dict[str, int] = {}
        """Answers sent, by code (``ok`` for figures): ``services/query/telemetry.py`` exports them."""
        self._broker = nats_broker(config.nats_url, config.nats_options)
        for subject in (QUERY_SUBJECT, f"{QUERY_SUBJECT}.*"):  # the open stack's, and each identity's own
            raw_responder(self._broker, subject, self._handle, queue=config.queue, workers=config.workers)
        self.app = FastStream(
            self._broker,
            logger=None,
            on_startup=[self._connect],
            on_shutdown=[self._stop_waiting],
            after_shutdown=[self._close],
        )

    @property
    def waiting(self) -> int:
        """Requests waiting for their ``min_seq`` right now."""
        return 0 if self._queries is None else self._queries.waiting

    @property
    def dropped_reply_subject(self) -> int:
        """Requests dropped because their reply subject was missing or not an inbox."""
        return self.dropped.total

    async def _connect(self) -> None:
        self._pool = await create_pool(
            self._config.database_url, max_size=8, command_timeout=self._config.database_timeout_s
        )
        self._queries = StatsQueries(
            self._pool,
            self._localities,
            max_waiters=self._config.max_waiters,
            max_waiters_per_client=self._config.max_waiters_per_client,
            poll_interval_s=self._config.poll_interval_s,
        )

    async def _handle(self, msg: NatsMessage) -> None:
        reply_to = msg.raw_message.reply
        if not self.dropped.accept(msg.raw_message.subject, reply_to) or not reply_to:
            return  # nobody to answer, or a subject that is not an inbox: never published to
        correlation_id = msg.correlation_id

        async def send(body: bytes) -> None:
            code = reply_code(body)
            self.requests_by_code[code] = self.requests_by_code.get(code, 0) + 1
            await self._broker.publish(body, reply_to, correlation_id=correlation_id)

        if self._queries is None:
            await _send(send, _error(Unavailable("starting; retry")))
            return
        # an identity's own query subject names the client (the server checks it); else its reply inbox prefix
        client = client_of_query(msg.raw_message.subject)
        await self._queries.answer(msg.body, send, f"id:{client}" if client else client_of(reply_to))

    async def _stop_waiting(self) -> None:
        """Before the broker stops: the waiting requests are answered while the connection is still open."""
        if self._queries is not None:
            await self._queries.close()

    async def _close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
