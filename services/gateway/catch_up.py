"""Bring the gateway's index up to the stream, reading in order from its checkpoint."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext

from events.codec import body_hash, decode_recorded
from infra.stream_reader import read_stream
from infra.streams import EVENTS
from services.gateway.index import Claim, EventIndex, IndexRow
from services.gateway.pipeline import entity_of, event_type

log = logging.getLogger("antq.gateway")


async def catch_up(js: JetStreamContext, index: EventIndex, stream: str = EVENTS) -> int:
    """Index every event the stream holds beyond the checkpoint; return the sequence reached."""
    start = await index.checkpoint() + 1
    reached = start - 1
    async for batch in read_stream(js, stream, start_seq=start):
        rows: list[IndexRow] = []
        claims: list[Claim] = []
        for msg in batch:
            event = decode_recorded(msg.data).event
            rows.append(
                IndexRow(
                    event.event_id,
                    msg.seq,
                    body_hash(event),
                    event_type(event),
                    event.locality.ward,
                    msg.subject,
                )
            )
            entity = entity_of(event)
            if entity is not None:
                claims.append(Claim(entity, event.event_id, event.locality.ward, msg.subject))
        reached = batch[-1].seq
        await index.record_caught_up(rows, claims, reached)
    if reached >= start:
        log.info("index caught up from seq %d to %d", start, reached)
    return reached
