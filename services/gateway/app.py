"""Composition root of the ingest gateway: a FastStream app answering ``antq.intake.<office_id>``.

Core NATS request/reply in a queue group, so several copies share the load. The handler takes the raw
``NatsMessage`` with its body as bytes (``raw_body``: FastStream decodes nothing) and always answers, whatever
happens inside, itself (the subscriber has ``no_reply``) and only to an inbox: a request whose reply subject is
not one is dropped unprocessed (``services.replies``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from faststream import FastStream
from faststream.nats import NatsMessage
from nats.aio.client import Client
from nats.js import JetStreamContext

from events.codec import encode
from events.intake import refused
from events.localities import Localities
from events.stored import StoredRecords
from events.subjects import INTAKE_PREFIX, office_of_intake
from infra.db import create_pool
from infra.nats_client import connect
from infra.streams import StreamLimits, ensure_streams
from services.gateway.catch_up import CatchUpCounters, catch_up
from services.gateway.counters import IntakeCounters
from services.gateway.index import EventIndex
from services.gateway.offices import OfficeRegistry
from services.gateway.pipeline import Clock, IntakePipeline, utc_now
from services.gateway.publisher import IntakePublisher
from services.gateway.rejected_later import PendingTable
from services.nats_broker import nats_broker, raw_responder
from services.replies import DroppedRequests

log = logging.getLogger("antq.gateway")


INDEX_COMMITS = {"synchronous_commit": "off"}
"""The index's rows and checkpoint are committed without waiting for PostgreSQL's disk (``synchronous_commit``):
they are the stream's, read again by the catch-up (from the checkpoint, over every hole), and visible to every
copy at once either way. A PostgreSQL crash may lose the last fraction of a second of rows, never an event: a
retry within the dedup window is still a duplicate, and until the next catch-up round (30 s) a reference to an
entity created in that fraction of a second may be refused ``unknown_target`` (kept in ANTQ_REJECTED; sent again
later, it is accepted). The claims (``entity_claims``: the one guard against an id created twice, in two wards)
and the refusals waiting for ANTQ_REJECTED (kept nowhere else) are on a pool that commits as the server is
configured."""


@dataclass
class GatewayConfig:
    nats_url: str
    database_url: str
    offices_path: Path
    queue: str = "antq-gateway"
    workers: int = 64  # requests taken up at once; one office runs at most 2 of them (IntakePipeline)
    catch_up_every_s: float = 30.0
    ack_timeout_s: float = 10.0  # a publish not acked by then is answered `unavailable` (ANTQ_ACK_TIMEOUT_S)
    database_timeout_s: float = 10.0
    """A PostgreSQL statement not answered by then fails (the request is answered ``unavailable``)."""
    limits: StreamLimits = field(default_factory=StreamLimits)
    clock: Clock = utc_now
    localities: Localities | None = None
    nats_options: Mapping[str, str] = field(default_factory=dict)
    """``nats.connect`` options of the gateway's identity (``infra.auth.nats_connect_options``)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ack_timeout_s) and self.ack_timeout_s > 0):
            raise ValueError(f"ack_timeout_s must be a positive number of seconds, not {self.ack_timeout_s}")


class Gateway:
    """One gateway copy: its connections live here, created at start and closed at stop."""

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self._localities = config.localities or Localities.load()
        self._offices = OfficeRegistry.load(config.offices_path, self._localities)  # fail early
        self._nc: Client | None = None
        self._pool: asyncpg.Pool | None = None
        self._index_pool: asyncpg.Pool | None = None
        self._pipeline: IntakePipeline | None = None
        self._catching_up: asyncio.Task[None] | None = None
        self.counters = IntakeCounters()
        """Answers of this copy (``services/gateway/telemetry.py`` exports them)."""
        self.catch_up_counters = CatchUpCounters()
        self._stored = StoredRecords(self._localities)
        self.dropped = DroppedRequests("the gateway", log)
        """Requests dropped unanswered for their reply subject, per reason (exported with the counters)."""
        self._broker = nats_broker(config.nats_url, config.nats_options)
        # a few requests at once per copy: each is independent, entity races are settled by the stream
        raw_responder(
            self._broker, f"{INTAKE_PREFIX}.*", self._receive, queue=config.queue, workers=config.workers
        )
        self.app = FastStream(
            self._broker, logger=None, on_startup=[self._connect], after_shutdown=[self._close]
        )

    @property
    def dropped_reply_subject(self) -> int:
        """Requests dropped because their reply subject was missing or not an inbox."""
        return self.dropped.total

    async def _connect(self) -> None:
        # a FastHeadersClient: the acks of every publish are taken straight from the parser (infra.js_publisher)
        self._nc = await connect(
            self._config.nats_url, max_reconnect_attempts=-1, **self._config.nats_options
        )
        js = self._nc.jetstream(publish_async_max_pending=4000)
        await ensure_streams(js, self._config.limits)
        timeout = self._config.database_timeout_s
        # claims, and refusals waiting for ANTQ_REJECTED, are kept nowhere else: on disk before an office is answered
        self._pool = await create_pool(self._config.database_url, max_size=6, command_timeout=timeout)
        # the index is the log's, read again from the stream: a commit need not wait for the disk (INDEX_COMMITS)
        self._index_pool = await create_pool(
            self._config.database_url,
            max_size=8,
            command_timeout=timeout,
            server_settings=INDEX_COMMITS,
            reset_session=False,  # its statements set nothing, lock nothing, listen to nothing
        )
        index = EventIndex(self._index_pool, claims_pool=self._pool)
        await catch_up(js, index, self._stored, counters=self.catch_up_counters)
        # An event stored whose index row was lost (an ack that timed out, a copy that died between publish
        # and insert) is indexed by the next round, long before the dedup window ends.
        self._catching_up = asyncio.create_task(self._keep_caught_up(js, index))
        publisher = IntakePublisher(self._nc, ack_timeout=self._config.ack_timeout_s)
        self._pipeline = IntakePipeline(
            js,
            publisher,
            index,
            self._localities,
            self._offices,
            self._config.clock,
            self.counters,
            catch_up=lambda: catch_up(js, index, self._stored, counters=self.catch_up_counters),
        )
        self._pipeline.rejected_later.attach(PendingTable(self._pool))  # drains what a dead copy left

    async def _keep_caught_up(self, js: JetStreamContext, index: EventIndex) -> None:
        while True:
            await asyncio.sleep(self._config.catch_up_every_s)
            try:
                await catch_up(js, index, self._stored, counters=self.catch_up_counters)
            except Exception:
                log.exception("index catch-up failed; retrying at the next round")

    async def _receive(self, msg: NatsMessage) -> None:
        raw = msg.raw_message
        if not self.dropped.accept(raw.subject, raw.reply):
            return
        body = await self._intake(msg)
        try:
            await self._broker.publish(body, raw.reply, correlation_id=msg.correlation_id)
        except Exception:  # the office is gone or NATS is: nobody left to tell (a retry is a duplicate)
            log.warning("could not send an intake reply", exc_info=True)

    async def _intake(self, msg: NatsMessage) -> bytes:
        """The answer to one request (whose reply subject is an inbox)."""
        if self._pipeline is None:
            result = refused("unavailable", "the gateway is starting; retry")
            self.counters.record([result])
            return encode(result)
        return await self._pipeline.handle(office_of_intake(msg.raw_message.subject), msg.body)

    async def _close(self) -> None:
        if self._pipeline is not None:
            await self._pipeline.rejected_later.stop()
        if self._catching_up is not None:
            self._catching_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._catching_up
        for pool in (self._pool, self._index_pool):
            if pool is not None:
                await pool.close()
        if self._nc is not None:
            await self._nc.drain()
