"""The intake pipeline: validate, check against the index, publish in order, answer every event.

Events of one request are published with ``publish_async`` and awaited together; an event that depends on
one still in flight (same entity subject, a retraction of it, the same event_id) waits for it first, so a
request is processed as if its events came one by one.

This module holds the request's admission (``handle``: per-office gates), the batch flow (``submit``,
``_validate``, ``_process``, ``_prefetch``, ``_publish``, ``_drain``). Three mixins hold the rest: the entity
and claim checks (``services.gateway.checks``), the refusals and their records in ANTQ_REJECTED
(``services.gateway.refusals``), the resolution of a 'wrong last sequence' (``services.gateway.conflicts``);
what is known of one event and one request is in ``services.gateway.candidates``, the answers' counters in
``services.gateway.counters``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from events.catalogue import spec_of
from events.codec import (
    decode_event_encoded,
    encode,
    hash_of_encoded,
    recorded_bytes,
    split_body,
    vietnam_today,
)
from events.errors import EventError, UnknownLocality
from events.intake import ErrorDetail, IntakeResult, refused
from events.localities import Localities
from events.schema import (
    EntryCorrected,
    EntryRetracted,
    LegacyLocality,
)
from events.stored import StoredRecords
from events.subjects import event_subject, id_text
from infra.streams import EVENTS
from services.gateway.candidates import (
    _ENDS,
    _Batch,
    _Candidate,
    claim_key,
    entity_of,
    guess_event_id,
    link_keys,
    may_be_ended,
)
from services.gateway.catch_up import catch_up
from services.gateway.checks import EntityChecks
from services.gateway.conflicts import WrongLastResolution
from services.gateway.counters import IntakeCounters
from services.gateway.errors import (
    GatewayError,
    OutOfJurisdiction,
    Unavailable,
    UnknownOffice,
)
from services.gateway.index import Claim, EventIndex, IndexRow
from services.gateway.offices import UNKNOWN_OFFICE, Office, OfficeRegistry, RateLimiter
from services.gateway.publisher import IntakePublisher
from services.gateway.refusals import Refusals
from services.gateway.rejected_later import RejectedLater

__all__ = [  # the pipeline and what it is given (the per-event rules are in candidates)
    "BUSY_RETRY_MS",
    "ORPHAN_AFTER_S",
    "CatchUp",
    "Clock",
    "IntakePipeline",
    "utc_now",
]

log = logging.getLogger("antq.gateway")
Clock = Callable[[], dt.datetime]
CatchUp = Callable[[], Awaitable[int]]
"""Index everything the stream holds beyond the index's checkpoint; return the sequence reached."""


# A claim whose event is not in the log after this long was left by a failed publish (acks time out in 10 s).
ORPHAN_AFTER_S = 60.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Gate:
    """One office's requests in this copy: at most so many running, and so many admitted (running or waiting)."""

    running: asyncio.Semaphore
    admitted: int = 0


BUSY_RETRY_MS = 100
"""``retry_after_ms`` of a request refused because its office has too many requests in progress here."""


class IntakePipeline(EntityChecks, Refusals, WrongLastResolution):
    def __init__(
        self,
        js: JetStreamContext,
        publisher: IntakePublisher,
        index: EventIndex,
        localities: Localities,
        offices: OfficeRegistry,
        clock: Clock = utc_now,
        counters: IntakeCounters | None = None,
        catch_up: CatchUp | None = None,
        office_running: int = 2,
        office_admitted: int = 32,
        limited_hold_s: float = 1.0,
    ) -> None:
        self._js = js
        self._publisher = publisher
        self._index = index
        self._localities = localities
        self._stored = StoredRecords(localities)
        self._offices = offices
        self._clock = clock
        self.counters = counters if counters is not None else IntakeCounters()
        self._catch_up = catch_up or self._catch_up_index
        self._catching_up = asyncio.Lock()
        self._limiter = RateLimiter()
        self._office_running = office_running
        self._office_admitted = office_admitted
        self._limited_hold_s = limited_hold_s
        self._gates: dict[str, _Gate] = {}
        self.rejected_later = RejectedLater(publisher, self.counters.rejected_late)
        """Refusals' records ANTQ_REJECTED could not take at once, sent again until stored."""

    async def _catch_up_index(self) -> int:
        return await catch_up(self._js, self._index, self._stored)

    async def handle(self, office_id: str | None, body: bytes) -> bytes:
        """Answer one intake request; never raises (a request that raises would get no reply).

        One office's requests run at most ``office_running`` at a time in this copy, so that one office's big
        batches cannot hold every worker; beyond ``office_admitted`` requests of one office in this copy
        (running or waiting), a request is answered ``unavailable`` at once, with ``retry_after_ms``."""
        key = (
            office_id
            if office_id is not None and self._offices.get(office_id) is not None
            else UNKNOWN_OFFICE
        )
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = _Gate(asyncio.Semaphore(self._office_running))
        if gate.admitted >= self._office_admitted:
            self.counters.office_busy += 1
            message = f"office {office_id} has {gate.admitted} requests in progress at this gateway; retry"
            results, is_array = self._failed(body, message, BUSY_RETRY_MS)
        else:
            gate.admitted += 1
            try:
                async with gate.running:
                    results, is_array = await self.submit(office_id, body)
                await self._hold_if_limited(results)
            except Exception:
                log.exception("intake failed")
                results, is_array = self._failed(body)
            finally:
                gate.admitted -= 1
        self.counters.record(results)
        return encode(results if is_array else results[0])

    async def _hold_if_limited(self, results: list[IntakeResult]) -> None:
        """A request with events refused by the rate limit is answered after a pause (up to
        ``limited_hold_s``, never beyond their ``retry_after_ms``): a client that resends as soon as it is
        answered sends a few requests a second instead of hundreds. The pause holds only this office's
        admission, outside its running slots; the events accepted in the request are already stored."""
        waits = [r.error.retry_after_ms for r in results if r.error is not None and r.error.retry_after_ms]
        if waits:
            await asyncio.sleep(min(self._limited_hold_s, min(waits) / 1000))

    @staticmethod
    def _failed(
        body: bytes,
        message: str = "the gateway failed; retry the same request",
        retry_after_ms: int | None = None,
    ) -> tuple[list[IntakeResult], bool]:
        """``unavailable`` for every event of a request that failed inside the gateway (or was not taken up),
        in the request's own shape: an array is answered with an array of the same length, in order."""
        detail = ErrorDetail(code="unavailable", message=message, path=None, retry_after_ms=retry_after_ms)
        try:
            raws, is_array = split_body(body)
            results = [IntakeResult(ok=False, event_id=guess_event_id(bytes(r)), error=detail) for r in raws]
        except Exception:  # answer whatever happens: a request without a reply times out at the office
            return [IntakeResult(ok=False, event_id=None, error=detail)], False
        return results, is_array

    async def submit(self, office_id: str | None, body: bytes) -> tuple[list[IntakeResult], bool]:
        now = self._clock()
        office_name = office_id or "_unknown"
        try:
            raws, is_array = split_body(body)
        except EventError as exc:
            office = self._offices.get(office_id or "")
            if office is not None:  # a body refused whole costs a token, as one event: a flood is not kept
                granted, retry_after_ms = self._limiter.take(office, 1, now.timestamp())
                if not granted:
                    return self._rate_limited(office, [b""], retry_after_ms), False
            result = refused(exc.code, exc.message, exc.path)
            await self._keep_rejected(office_name, [(body, result)], now)
            return [result], False
        raw_items = [bytes(r) for r in raws]
        office = self._offices.get(office_id or "")
        limited: list[IntakeResult] = []
        if office is None:
            err = UnknownOffice(f"office {office_id!r} is not in the offices registry; ask the administrator")
            results = [self._refuse(err, guess_event_id(raw)) for raw in raw_items]
        else:
            granted, retry_after_ms = self._limiter.take(office, len(raw_items), now.timestamp())
            if granted < len(raw_items):
                limited = self._rate_limited(office, raw_items[granted:], retry_after_ms)
                raw_items = raw_items[:granted]
            results = await self._process(office, raw_items, vietnam_today(now)) if raw_items else []
        refused_items = [(raw, res) for raw, res in zip(raw_items, results, strict=True) if not res.ok]
        await self._keep_rejected(office_name, refused_items, now)
        # events beyond the rate are not examined and not kept in ANTQ_REJECTED (a flood would write there)
        return results + limited, is_array

    def _validate(self, office: Office, raw: bytes, today: dt.date) -> _Candidate:
        event, encoded = decode_event_encoded(raw, today=today)
        locality = event.locality
        approximate = False
        if isinstance(locality, LegacyLocality):
            # resolved on the fact's date (a correction's: its corrected copy's); raises with the field's path
            on = (event.corrected if isinstance(event, EntryCorrected) else event).occurred_on
            resolved = self._localities.resolve_legacy(
                locality.commune,
                on,
                district=locality.district,
                province=locality.province,
                ward=locality.ward,
            )
            code, approximate = resolved.ward, resolved.approximate
            path = "$.locality.ward" if locality.ward is not None else "$.locality.commune"
            where = f"pre-2025 commune {resolved.commune} ({resolved.commune_name}), now ward"
        else:
            code, path, where = locality.ward, "$.locality.ward", "ward"
        ward = self._localities.ward(code)
        if ward is None:
            raise UnknownLocality(f"ward {code} is not an official 2025 ward code", path)
        if not office.covers(ward.code, ward.province):
            raise OutOfJurisdiction(
                f"office {office.id} may not publish for {where} {ward.code} ({ward.name}, {ward.province_name})",
                path,
            )
        return _Candidate(
            0,
            event,
            event_subject(event, ward.province, ward.code),
            hash_of_encoded(encoded),
            ward.code,
            approximate,
            eid=id_text(event.event_id),
            spec=spec_of(event),
            encoded=encoded,
        )

    async def _process(self, office: Office, raws: list[bytes], today: dt.date) -> list[IntakeResult]:
        results: list[IntakeResult | None] = [None] * len(raws)
        candidates: list[_Candidate] = []
        for slot, raw in enumerate(raws):
            try:
                cand = self._validate(office, raw, today)
            except (EventError, GatewayError) as exc:
                results[slot] = self._refuse(exc, guess_event_id(raw))
                continue
            cand.slot = slot
            candidates.append(cand)

        if candidates:
            batch = await self._prefetch(candidates)
            for cand in candidates:
                if self._depends_on_inflight(batch, cand):
                    await self._drain(batch, results)
                try:
                    early = self._check(batch, cand)
                except GatewayError as exc:
                    results[cand.slot] = self._refuse(exc, cand.eid)
                    continue
                if early is not None:
                    results[cand.slot] = early
                    continue
                try:
                    await self._check_end(batch, cand)
                except GatewayError as exc:
                    results[cand.slot] = self._refuse(exc, cand.eid)
                    continue
                await self._publish(office, batch, cand)
            await self._drain(batch, results)
        return [r if r is not None else refused("unavailable", "not processed; retry") for r in results]

    async def _prefetch(self, candidates: list[_Candidate]) -> _Batch:
        ids: set[uuid.UUID] = set()
        new_claims: list[Claim] = []
        referenced: set[str] = set()
        for cand in candidates:
            ev = cand.event
            ids.add(ev.event_id)
            rule = spec_of(ev).entity
            if rule is not None and rule.role == "retracts":
                ids.add(getattr(ev, rule.field))
            if isinstance(ev, EntryCorrected):
                ids.add(ev.corrected.event_id)
            if rule is not None and rule.role in ("refers", "ends"):
                referenced.add(claim_key(rule, ev))
            named = ev.corrected if isinstance(ev, EntryCorrected) else ev
            referenced.update(key for key, _ in link_keys(named))
            entity = entity_of(ev)
            if entity is not None:
                new_claims.append(Claim(entity, ev.event_id, cand.ward, cand.subject))
        known = await self._index.lookup(ids)
        # an event already in the log keeps its claim; claim only for events not yet known
        claims = await self._index.claim([c for c in new_claims if c.event_id not in known])
        claims.update(await self._index.claims(referenced - claims.keys()))
        # the owners of the entities named: those not already looked up (a new entity's owner is mostly its
        # creating event, in this very request)
        known.update(await self._index.lookup({c.event_id for c in claims.values()} - ids))
        for mine in new_claims:
            owner = claims.get(mine.entity)
            if (
                owner is not None
                and owner.event_id != mine.event_id
                and owner.event_id not in known
                and await self._orphaned(owner)
                and await self._index.take_over(owner, mine, ORPHAN_AFTER_S)
            ):
                claims[mine.entity] = mine
        return _Batch(known=known, claims=claims)

    async def _orphaned(self, claim: Claim) -> bool:
        """A claim whose creating event is not in the log: its publish failed (or is still in flight)."""
        try:
            await self._js.get_last_msg(EVENTS, claim.subject)
        except NotFoundError:
            return True
        return False

    @staticmethod
    def _depends_on_inflight(batch: _Batch, cand: _Candidate) -> bool:
        if not batch.inflight:
            return False
        ev = cand.event
        keys = {cand.eid}
        rule = cand.rule
        named = ev.corrected if isinstance(ev, EntryCorrected) else ev
        links = spec_of(named).links
        if links is not None:  # a tip it names may be in flight: its subject in this ward
            head = cand.subject.rsplit(".", 1 if rule is None else 2)[0]
            keys.update(f"{head}.{links.name}.{value}" for value in getattr(named, links.field))
        if rule is not None:
            keys.add(cand.subject)
            if rule.role == "retracts":
                keys.add(str(getattr(ev, rule.field)))
                # whether a version stands may depend on another end in flight (a retracted correction)
                keys.add(_ENDS)
            if may_be_ended(rule):
                keys.add(_ENDS)  # whether the entity still stands may depend on a retraction in flight
                # an end waits for its entity's creation or updates in flight, an update for an end in flight
                keys.add(cand.subject.removesuffix(".end") if rule.role == "ends" else f"{cand.subject}.end")
        return not keys.isdisjoint(batch.inflight_keys)

    async def _publish(self, office: Office, batch: _Batch, cand: _Candidate) -> None:
        ev = cand.event
        expected: int | None = None
        rule = cand.rule
        if rule is not None:
            # the first event on a created (or retraction) subject; a versioned reference: the version given
            given = getattr(ev, "expected_version", None) if rule.versioned else None
            expected = (
                given
                if given is not None
                else cand.expected
                if rule.role == "retracts" or may_be_ended(rule)
                else 0
                if rule.role == "creates"
                else None
            )
        data = cand.data = recorded_bytes(office.id, cand.encoded)
        future = await self._publisher.publish_event(cand.subject, data, cand.eid, expected)
        batch.inflight.append((cand, future, expected))
        batch.inflight_keys.add(cand.eid)
        if rule is not None:  # plain subjects (…session) are shared by independent events
            batch.inflight_keys.add(cand.subject)
            if rule.role == "retracts":
                batch.inflight_keys.add(_ENDS)

    async def _drain(self, batch: _Batch, results: list[IntakeResult | None]) -> None:
        new_rows: list[IndexRow] = []
        ended: list[uuid.UUID] = []
        outcomes = await self._publisher.settle([future for _, future, _ in batch.inflight])
        for (cand, _, expected), outcome in zip(batch.inflight, outcomes, strict=True):
            ev = cand.event
            try:
                if outcome.seq is not None:
                    seq = outcome.seq
                    if outcome.duplicate:
                        await self._check_stored_hash(seq, cand)
                elif outcome.wrong_last_seq:
                    seq = await self._resolve_wrong_last(cand, expected)
                else:
                    raise Unavailable(
                        outcome.failure or "the event log is unavailable; retry the same request"
                    )
            except GatewayError as exc:
                results[cand.slot] = self._refuse(exc, cand.eid)
                continue
            assert cand.spec is not None
            row = IndexRow(ev.event_id, seq, cand.hash, cand.spec.tag, cand.ward, cand.subject)
            batch.known[ev.event_id] = row
            new_rows.append(row)
            duplicate = outcome.seq is None or outcome.duplicate
            results[cand.slot] = self._accepted(cand, seq, duplicate=duplicate)
            if isinstance(ev, EntryRetracted):
                ended.append(ev.target_event_id)
        batch.inflight.clear()
        batch.inflight_keys.clear()
        # a retracted creating event frees its entity's id (only creating events hold claims); rows and
        # releases in one transaction (the catch-up passes over what has its rows)
        await self._index.record(new_rows, [r.event_id for r in map(batch.known.get, ended) if r is not None])
