"""The resolution of a 'wrong last sequence', as a mixin of ``IntakePipeline``: a retry of the gateway's own
earlier publish (answered as a duplicate), a freed id's creation published again after its ended entity
(``_publish_after``), or a real conflict; and the checks that a stored event is the same body (``_same_body``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from events.catalogue import spec_of
from events.codec import body_hash, decode_recorded
from infra.streams import EVENTS
from services.gateway.candidates import _Candidate, claim_key
from services.gateway.counters import IntakeCounters
from services.gateway.errors import Conflict, IdReused, Unavailable
from services.gateway.index import EventIndex
from services.gateway.publisher import MSG_ID, IntakePublisher

log = logging.getLogger("antq.gateway")


class WrongLastResolution:
    """The conflict resolution of ``IntakePipeline`` (which sets these attributes)."""

    _js: JetStreamContext
    _index: EventIndex
    _publisher: IntakePublisher
    counters: IntakeCounters
    _catching_up: asyncio.Lock
    _catch_up: Callable[[], Awaitable[int]]

    async def _publish_after(self, cand: _Candidate, last_seq: int) -> int:
        """Publish a creating event whose freed id's subject ends at ``last_seq``; its sequence."""
        ev = cand.event
        future = await self._publisher.publish_event(cand.subject, cand.data, cand.eid, last_seq)
        (outcome,) = await self._publisher.settle([future])
        if outcome.seq is not None:
            if outcome.duplicate:
                await self._check_stored_hash(outcome.seq, cand)
            return outcome.seq
        if outcome.wrong_last_seq:
            raise Conflict(f"{ev.event_id}: its entity changed concurrently; retry the same request")
        raise Unavailable(outcome.failure or "the event log is unavailable; retry the same request")

    async def _check_stored_hash(self, seq: int, cand: _Candidate) -> None:
        stored = await self._js.get_msg(EVENTS, seq)
        self._same_body(stored.data or b"", seq, cand)

    @staticmethod
    def _same_body(data: bytes, seq: int, cand: _Candidate) -> None:
        if body_hash(decode_recorded(data).event) != cand.hash:
            raise IdReused(
                f"event_id {cand.event.event_id} was already used for a different event (seq {seq})",
                "$.event_id",
            )

    async def _caught_up_to(self, seq: int) -> None:
        """Until the index's checkpoint reaches ``seq``: one catch-up at a time; a request that waited for
        another's finds the checkpoint there and reads nothing."""
        async with self._catching_up:
            if await self._index.checkpoint() >= seq:
                return
            self.counters.index_catch_ups += 1
            try:
                reached = await self._catch_up()
            except Exception as exc:
                log.exception("index catch-up failed while deciding a conflict")
                raise Unavailable("the gateway's index is behind the log; retry the same request") from exc
            if reached < seq:
                raise Unavailable("the gateway's index is behind the log; retry the same request")

    async def _resolve_wrong_last(self, cand: _Candidate, expected: int | None) -> int:
        """'Wrong last sequence': a retry of our own earlier publish (a duplicate), or a real conflict.

        JetStream checks the expected subject sequence before its dedup window, so a retry of an entity event
        lands here, not on 'duplicate'. Decided with a bounded number of reads, whatever the entity's history:
        the index row with its checkpoint (one PostgreSQL statement), the subject's last message (one direct
        get). The event can only be ours without an index row if its row was lost (a crash between the ack and
        the insert) and it lies beyond the checkpoint; then, and only when the subject's last message is
        beyond the checkpoint, the index is caught up first (once, shared by concurrent requests)."""
        ev = cand.event
        row, checkpoint = await self._index.find(ev.event_id)
        last_seq = 0
        if row is None:
            try:
                last = await self._js.get_last_msg(EVENTS, cand.subject)
            except NotFoundError:
                last = None
            if last is not None and last.seq is not None:
                last_seq = int(last.seq)
                if last.headers and last.headers.get(MSG_ID) == str(ev.event_id):
                    self._same_body(last.data or b"", last_seq, cand)
                    return last_seq
            if last_seq > checkpoint:
                await self._caught_up_to(last_seq)
                row, checkpoint = await self._index.find(ev.event_id)
        if row is not None:
            if row.body_hash != cand.hash:
                raise IdReused(f"event_id {ev.event_id} was already used for a different event", "$.event_id")
            return row.seq
        rule = spec_of(ev).entity
        if rule is None:  # pragma: no cover: only entity subjects carry an expected sequence
            raise Conflict("the entity changed concurrently; retry")
        value = getattr(ev, rule.field)
        if rule.versioned and getattr(ev, "expected_version", None) is not None:
            raise Conflict(
                f"{rule.name} {value} is at version {last_seq}, not {expected}: read it again and resubmit",
                "$.expected_version",
            )
        if rule.role == "creates" and last_seq:
            claim = (await self._index.claims([claim_key(rule, ev)])).get(claim_key(rule, ev))
            if claim is not None and claim.event_id == ev.event_id:
                # the id was freed (its creating event retracted): its subject holds the ended entity's events
                return await self._publish_after(cand, last_seq)
        if rule.role in ("refers", "ends"):
            raise Conflict(
                f"{rule.name} {value} changed while this event was checked (another update or end of it was "
                "stored): read it again and resubmit",
                rule.error_path,
            )
        if rule.role == "retracts":
            raise Conflict(
                f"event {value} was already retracted or corrected (by another request): read the entry again "
                "and end its latest version",
                rule.error_path,
            )
        raise Conflict(f"{rule.name} {value} was already {rule.past}", rule.error_path)
