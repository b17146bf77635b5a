"""Composition root of the query service: ``antq.query.stats`` request/reply over the read models.

The handler takes the raw message, decodes it with msgspec and always answers (a FastStream handler that
raises sends no reply at all).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

import asyncpg
from faststream import FastStream
from faststream.nats import NatsMessage

from events.codec import encode
from events.localities import Localities
from events.subjects import QUERY_SUBJECT
from infra.db import create_pool
from projections.store import StatsSnapshot, read_stats
from services.nats_broker import nats_broker
from services.query.request import (
    ErrorBody,
    ErrorReply,
    NotCaughtUp,
    QueryError,
    StatsQuery,
    StatsReply,
    parse_query,
    resolve_wards,
)

log = logging.getLogger("antq.query")


@dataclass
class QueryConfig:
    nats_url: str
    database_url: str
    queue: str = "antq-query"
    workers: int = 8
    """Requests served at once: one waiting for ``min_seq`` must not hold up the others."""
    localities: Localities | None = None
    nats_options: Mapping[str, str] = field(default_factory=dict)
    """``nats.connect`` options of the query service's identity (``infra.auth.nats_connect_options``)."""


class StatsQueries:
    """Answers statistics queries from the active read model."""

    def __init__(self, pool: asyncpg.Pool, localities: Localities) -> None:
        self._pool = pool
        self._localities = localities

    async def answer(self, body: bytes) -> bytes:
        try:
            return encode(await self._answer(parse_query(body)))
        except QueryError as exc:
            return encode(ErrorReply(error=ErrorBody(code=exc.code, message=exc.message, path=exc.path)))
        except Exception:
            log.exception("query failed")
            return encode(
                ErrorReply(error=ErrorBody(code="unavailable", message="the query failed; retry", path=None))
            )

    async def _answer(self, query: StatsQuery) -> StatsReply:
        wards = resolve_wards(query, self._localities)
        snapshot = await self._read(wards, query)
        if query.min_seq is not None and snapshot.as_of_seq < query.min_seq and not snapshot.stale:
            snapshot = await self._wait_for_seq(wards, query, query.min_seq)
        return StatsReply(
            year=query.year,
            period=query.period,
            metrics=snapshot.metrics,
            as_of_seq=snapshot.as_of_seq,
            stale=snapshot.stale,
            fold_version=snapshot.fold_version,
            ward=query.ward,
            province=query.province,
            wards=wards if query.wards is not None else None,
        )

    async def _read(self, wards: list[str], query: StatsQuery) -> StatsSnapshot:
        async with self._pool.acquire() as conn:
            connection = cast(asyncpg.Connection, conn)  # a pooled connection proxies a Connection
            return await read_stats(connection, wards=wards, year=query.year, period=query.period)

    async def _wait_for_seq(self, wards: list[str], query: StatsQuery, min_seq: int) -> StatsSnapshot:
        """Read-your-writes: answer once the projection has folded ``min_seq`` in, or time out."""
        deadline = time.monotonic() + query.timeout_ms / 1000
        delay = 0.005
        while True:
            snapshot = await self._read(wards, query)
            if snapshot.as_of_seq >= min_seq or snapshot.stale:  # a halted projection will not get there
                return snapshot
            if time.monotonic() >= deadline:
                raise NotCaughtUp(
                    f"the statistics are at seq {snapshot.as_of_seq}, not yet {min_seq}; retry or raise timeout_ms",
                    "$.min_seq",
                )
            await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 0.05)


class QueryService:
    """One query service copy: its pool lives here, created at start and closed at stop."""

    def __init__(self, config: QueryConfig) -> None:
        self._config = config
        self._localities = config.localities or Localities.load()
        self._pool: asyncpg.Pool | None = None
        self._queries: StatsQueries | None = None
        broker = nats_broker(config.nats_url, config.nats_options)
        broker.subscriber(QUERY_SUBJECT, queue=config.queue, max_workers=config.workers)(self._handle)
        self.app = FastStream(broker, logger=None, on_startup=[self._connect], after_shutdown=[self._close])

    async def _connect(self) -> None:
        self._pool = await create_pool(self._config.database_url, max_size=8)
        self._queries = StatsQueries(self._pool, self._localities)

    async def _handle(self, msg: NatsMessage) -> bytes:
        if self._queries is None:
            return encode(
                ErrorReply(error=ErrorBody(code="unavailable", message="starting; retry", path=None))
            )
        return await self._queries.answer(msg.body)

    async def _close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
