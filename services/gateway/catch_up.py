"""Bring the gateway's index up to the stream, reading in order from its checkpoint."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from nats.js import JetStreamContext

from events.codec import body_hash
from events.schema import EntryRetracted
from events.stored import Foreign, StoredRecords, UnknownEventType
from infra.stream_reader import last_sequence, read_stream
from infra.streams import EVENTS
from services.gateway.candidates import entity_of, event_type
from services.gateway.index import Claim, EventIndex, IndexRow

log = logging.getLogger("antq.gateway")


@dataclass
class CatchUpCounters:
    """What the index catch-up of one gateway copy saw (exported by ``services/gateway/telemetry.py``)."""

    foreign: int = 0
    """Foreign records passed over (``events.stored``)."""
    passed_over: int = 0
    """Events the catch-up did not read: the request path had indexed them already."""
    unknown_type: int = 0
    """Records of a type (or with a field) this code does not know, passed over unindexed (logged at ERROR)."""


async def catch_up(
    js: JetStreamContext,
    index: EventIndex,
    stored: StoredRecords,
    stream: str = EVENTS,
    counters: CatchUpCounters | None = None,
) -> int:
    """Index every event the stream holds beyond the checkpoint; return the sequence reached.

    A foreign record (``events.stored``) is passed over, never indexed, so no later event can refer to it;
    ``counters`` counts them. A record of a type this code does not know (a newer gateway, or a forgery on the
    open stack) is passed over too, logged at ERROR: the gateway must keep serving every office (this copy
    could not have accepted such an event, nor a retry of it: it answers ``unknown_type``), while the
    projection, rebuilds and replays halt on it loudly, as the README's deploy order says.
    """
    checkpoint = await index.checkpoint()
    # what the request path indexed already (every sequence with its row, releases done) is not read again:
    # without this, each copy re-read and re-wrote every event every 30 s (the cost of ingest, twice over)
    covered = await index.covered_until(checkpoint + 1, await last_sequence(js, stream))
    if covered > checkpoint:
        await index.advance(covered)
        if counters is not None:
            counters.passed_over += covered - checkpoint
    start = covered + 1
    reached = start - 1
    async for batch in read_stream(js, stream, start_seq=start):
        rows: list[IndexRow] = []
        claims: list[Claim | uuid.UUID] = []  # in stream order: claims, and retracted events (released)
        for msg in batch:
            try:
                read = stored.read(msg.seq, msg.subject, msg.data)
            except UnknownEventType as exc:
                log.error("index catch-up passes over seq %d on %s: %s", msg.seq, msg.subject, exc.message)
                if counters is not None:
                    counters.unknown_type += 1
                continue
            if isinstance(read, Foreign):
                log.warning("foreign record set aside at seq %d on %s: %s", read.seq, read.subject, read.why)
                if counters is not None:
                    counters.foreign += 1
                continue
            event = read.event
            ward = msg.subject.split(".", 4)[3]  # the 2025 ward it was stored on (a pre-2025 one: resolved)
            rows.append(
                IndexRow(
                    event.event_id,
                    msg.seq,
                    body_hash(event),
                    event_type(event),
                    ward,
                    msg.subject,
                )
            )
            entity = entity_of(event)
            if entity is not None:
                claims.append(Claim(entity, event.event_id, ward, msg.subject))
            if isinstance(event, EntryRetracted):
                claims.append(event.target_event_id)
        reached = batch[-1].seq
        await index.record_caught_up(rows, claims, reached)
    if reached >= start:
        log.info("index caught up from seq %d to %d", start, reached)
    return reached
