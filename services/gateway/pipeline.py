"""The intake pipeline: validate, check against the index, publish in order, answer every event.

Events of one request are published with ``publish_async`` and awaited together; an event that depends on
one still in flight (same entity subject, a retraction of it, the same event_id) waits for it first, so a
request is processed as if its events came one by one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from events.catalogue import BY_TAG, Entity, EventSpec, ended_entities, spec_of
from events.codec import (
    body_hash,
    decode_event,
    decode_recorded,
    encode,
    encode_recorded,
    split_body,
    vietnam_today,
)
from events.errors import EventError, UnknownLocality
from events.intake import ErrorDetail, IntakeResult, refused
from events.localities import Localities
from events.schema import (
    EntryCorrected,
    EntryRetracted,
    Event,
    LegacyLocality,
    Recorded,
)
from events.stored import Foreign, StoredRecords
from events.subjects import event_subject
from infra.streams import EVENTS, REJECTED_RAW_LIMIT
from services.gateway.errors import (
    Conflict,
    GatewayError,
    GatewayInvalid,
    IdReused,
    OutOfJurisdiction,
    RateLimited,
    Unavailable,
    UnknownOffice,
    UnknownTarget,
)
from services.gateway.index import Claim, EventIndex, IndexRow
from services.gateway.offices import UNKNOWN_OFFICE, Office, OfficeRegistry, RateLimiter
from services.gateway.publisher import MSG_ID, IntakePublisher, Outcome
from services.gateway.rejected_later import LateCounts, RejectedLater

log = logging.getLogger("antq.gateway")
Clock = Callable[[], dt.datetime]
CatchUp = Callable[[], Awaitable[int]]
"""Index everything the stream holds beyond the index's checkpoint; return the sequence reached."""


# A claim whose event is not in the log after this long was left by a failed publish (acks time out in 10 s).
ORPHAN_AFTER_S = 60.0


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _IdOnly(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str | None = None


_id_only = msgspec.json.Decoder(_IdOnly)


def guess_event_id(raw: bytes) -> str | None:
    """The event_id of a document that failed validation, when it can be read at all."""
    try:
        value = _id_only.decode(raw).event_id
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None
    return value if value is not None and len(value) <= 64 else None


def claim_key(entity: Entity, event: Event) -> str:
    """The gateway index's key of an entity (``tip:<id>``)."""
    return f"{entity.claim}:{getattr(event, entity.field)}"


def link_keys(event: Event) -> list[tuple[str, str]]:
    """The entities an event names in a list field (``EventSpec.links``): (index key, path), in order."""
    links = spec_of(event).links
    if links is None:
        return []
    return [
        (f"{links.claim}:{value}", f"$.{links.field}[{i}]")
        for i, value in enumerate(getattr(event, links.field))
    ]


def entity_of(event: Event) -> str | None:
    """The entity a creating event claims (its catalogue entry's rule)."""
    entity = spec_of(event).entity
    return claim_key(entity, event) if entity is not None and entity.role == "creates" else None


def is_lifecycle(event: Event) -> bool:
    """An event that creates, refers to or ends an entity: its reply carries the entity's version."""
    entity = spec_of(event).entity
    return entity is not None and entity.role in ("creates", "refers", "ends")


_ENDABLE = ended_entities()


def may_be_ended(entity: Entity | None) -> bool:
    """An update or end of an entity some type ends: it must find the entity standing (not ended)."""
    return entity is not None and entity.role in ("refers", "ends") and entity.name in _ENDABLE


def event_type(event: Event) -> str:
    return spec_of(event).tag


def _ward_path(event: Event) -> str:
    """The path of the field that decides an event's 2025 ward."""
    locality = event.locality
    if isinstance(locality, LegacyLocality) and locality.ward is None:
        return "$.locality.commune"
    return "$.locality.ward"


@dataclass
class _Candidate:
    slot: int
    event: Event
    subject: str
    hash: bytes
    ward: str
    """The 2025 ward of its subject: the locality's, or a pre-2025 locality's resolved ward."""
    approximate: bool = False
    """A split pre-2025 commune resolved to its default ward (no ``ward`` given)."""
    expected: int | None = None
    """An end of a version (retraction, correction): the last sequence expected on its subject."""
    data: bytes = b""
    """The stored record, once published."""
    eid: str = ""
    """``str(event.event_id)``, formatted once (a uuid's text costs more than most checks)."""
    spec: EventSpec | None = None
    """The event's catalogue entry, looked up once."""

    @property
    def rule(self) -> Entity | None:
        """The entity rule of the event's type."""
        assert self.spec is not None
        return self.spec.entity


@dataclass
class _Batch:
    """What one request knows while it is processed: index rows, claims, and publishes in flight."""

    known: dict[uuid.UUID, IndexRow]
    claims: dict[str, Claim]
    inflight: list[tuple[_Candidate, asyncio.Future[Outcome], int | None]] = field(default_factory=list)
    inflight_keys: set[str] = field(default_factory=set)


@dataclass
class _Gate:
    """One office's requests in this copy: at most so many running, and so many admitted (running or waiting)."""

    running: asyncio.Semaphore
    admitted: int = 0


_ENDS = "<an end of a version>"
"""An in-flight key held by every retraction and correction: the next one waits for them."""

MAX_CORRECTIONS = 32
"""How many corrections of one end the gateway follows to find the version that stands."""

BUSY_RETRY_MS = 100
"""``retry_after_ms`` of a request refused because its office has too many requests in progress here."""


@dataclass
class IntakeCounters:
    """Answers given, per event (read at scrape time by ``services/gateway/telemetry.py``)."""

    requests: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    """Per error code."""
    rate_limited: int = 0
    """Events answered ``unavailable`` by the office's rate limit (also counted in ``rejected``)."""
    rejected_raw_dropped: int = 0
    """Refusals recorded in ANTQ_REJECTED without their raw body: the office's daily quota was used up."""
    index_catch_ups: int = 0
    """Index catch-ups run to decide a 'wrong last sequence' (the entity's last event was beyond the index)."""
    office_busy: int = 0
    """Requests answered ``unavailable`` at once: their office had too many requests in progress here."""
    rejected_late: LateCounts = field(default_factory=LateCounts)
    """Refusals' records ANTQ_REJECTED took only on a later try, or never (``rejected_later``)."""

    def record(self, results: Sequence[IntakeResult]) -> None:
        self.requests += 1
        for result in results:
            if result.ok:
                if result.duplicate:
                    self.duplicate += 1
                else:
                    self.accepted += 1
            else:
                code = result.error.code if result.error is not None else "unknown"
                self.rejected[code] = self.rejected.get(code, 0) + 1


class IntakePipeline:
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
        from services.gateway.catch_up import catch_up  # catch_up imports this module

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

    def _rate_limited(self, office: Office, raws: list[bytes], retry_after_ms: int) -> list[IntakeResult]:
        rate = office.rate
        err = RateLimited(
            f"office {office.id} sent more events than its rate ({rate.events_per_second:g} events/s, "
            f"burst {rate.burst}); send these again in {retry_after_ms} ms",
            retry_after_ms,
        )
        self.counters.rate_limited += len(raws)
        detail = ErrorDetail(code=err.code, message=err.message, path=None, retry_after_ms=retry_after_ms)
        return [IntakeResult(ok=False, event_id=guess_event_id(raw), error=detail) for raw in raws]

    @staticmethod
    def _refuse(exc: EventError | GatewayError, event_id: str | None) -> IntakeResult:
        return refused(exc.code, exc.message, exc.path, event_id)

    async def _keep_rejected(
        self, office: str, items: list[tuple[bytes, IntakeResult]], now: dt.datetime
    ) -> None:
        if not items:
            return
        keep_raw = await self._within_quota(office, [raw for raw, _ in items], now)
        records = []
        for (raw, result), keep in zip(items, keep_raw, strict=True):
            assert result.error is not None
            records.append(self._publisher.rejected_record(office, raw, result.error, now, keep_raw=keep))
        futures = [await self._publisher.publish(r.subject, r.data, r.headers) for r in records]
        for record, outcome in zip(records, await self._publisher.settle(futures), strict=True):
            if outcome.seq is None:  # no stream leader (an election), the stream away: kept later
                log.warning("could not keep a rejected submission yet: %s", outcome.failure)
                await self.rejected_later.keep(record)

    async def _within_quota(self, office: str, raws: list[bytes], now: dt.datetime) -> list[bool]:
        """Which refusals keep their raw body: those within the office's daily quota of ANTQ_REJECTED bytes.

        Counted in PostgreSQL (shared by every copy, kept across restarts). When it cannot be counted (the
        database is down) the bodies are kept: nothing is lost, and the stream's own byte limit still holds."""
        key, quota = self._offices.rejected_quota(office)
        sizes = [min(len(raw), REJECTED_RAW_LIMIT) for raw in raws]
        try:
            used = await self._index.count_rejected_bytes(key, now.astimezone(dt.UTC).date(), sum(sizes))
        except Exception:
            log.warning("could not count ANTQ_REJECTED bytes of %s; keeping the bodies", key, exc_info=True)
            return [True] * len(raws)
        keep = []
        for size in sizes:
            used += size
            keep.append(used <= quota)
        self.counters.rejected_raw_dropped += keep.count(False)
        return keep

    def _validate(self, office: Office, raw: bytes, today: dt.date) -> _Candidate:
        event = decode_event(raw, today=today)
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
            body_hash(event),
            ward.code,
            approximate,
            eid=str(event.event_id),
            spec=spec_of(event),
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
        tip_events = {c.event_id for c in claims.values()} - known.keys()
        known.update(await self._index.lookup(tip_events))
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

    def _check(self, batch: _Batch, cand: _Candidate) -> IntakeResult | None:
        """An answer without publishing (duplicate), an error, or None: publish it."""
        ev = cand.event
        row = batch.known.get(ev.event_id)
        if row is not None:
            if row.body_hash != cand.hash:
                raise IdReused(
                    f"event_id {ev.event_id} was already used for a different event (seq {row.seq}); "
                    "give this event a new event_id",
                    "$.event_id",
                )
            return self._accepted(cand, row.seq, duplicate=True)
        spec = cand.spec
        assert spec is not None
        named = ev.corrected if isinstance(ev, EntryCorrected) else ev
        self._check_links(batch, named, "$.corrected" if named is not ev else "$", cand.ward)
        rule = cand.rule
        if rule is None:
            return None
        value = getattr(ev, rule.field)
        path = rule.error_path
        if rule.role == "creates":
            claim = batch.claims.get(claim_key(rule, ev))
            if claim is not None and claim.event_id != ev.event_id:
                raise Conflict(f"{rule.name} {value} was already {rule.past} (event {claim.event_id})", path)
        elif rule.role in ("refers", "ends"):
            claim = batch.claims.get(claim_key(rule, ev))
            if claim is None or claim.event_id not in batch.known:
                raise GatewayInvalid(
                    f"no {rule.name} {value} is in the log; record the event that creates it first", path
                )
            if claim.ward != cand.ward:
                raise GatewayInvalid(
                    f"{rule.name} {value} is in ward {claim.ward}: a {spec.tag} carries its {rule.name}'s locality"
                    " (or a pre-2025 one that resolves to that ward)",
                    _ward_path(ev),
                )
        else:  # retracts: a retraction or a correction ends a version of an entry
            what = "retraction" if spec.fold == "retraction" else "correction"
            target = batch.known.get(value)
            if target is None:
                raise UnknownTarget(f"no event {value} is in the log", path)
            if BY_TAG[target.type].fold == "retraction":
                raise Conflict(f"a retraction cannot be {rule.past}", path)
            if target.ward != cand.ward:
                raise GatewayInvalid(
                    f"the target was recorded for ward {target.ward}: a {what} carries its target's locality"
                    " (or that 2025 ward)",
                    _ward_path(ev),
                )
            if isinstance(ev, EntryCorrected) and ev.corrected.event_id in batch.known:
                raise IdReused(
                    f"event_id {ev.corrected.event_id} is already in the log: the corrected event needs an "
                    "event_id of its own",
                    "$.corrected.event_id",
                )
        return None

    @staticmethod
    def _check_links(batch: _Batch, ev: Event, at: str, ward: str) -> None:
        """Every entity the event names in a list field (``tip_ids``) is in the log, in the event's (resolved)
        ward."""
        links = spec_of(ev).links
        if links is None:
            return
        for (key, path), value in zip(link_keys(ev), getattr(ev, links.field), strict=True):
            where = at + path[1:]
            claim = batch.claims.get(key)
            if claim is None or claim.event_id not in batch.known:
                raise GatewayInvalid(
                    f"no {links.name} {value} is in the log (or it was retracted); name only {links.name}s "
                    "already recorded",
                    where,
                )
            if claim.ward != ward:
                raise GatewayInvalid(
                    f"{links.name} {value} is in ward {claim.ward}: a {spec_of(ev).tag} names {links.name}s of "
                    "its own ward",
                    where,
                )

    async def _last_on(self, subject: str) -> tuple[int, Event] | None:
        """The last event stored on ``subject`` (one direct get), or None."""
        try:
            msg = await self._js.get_last_msg(EVENTS, subject)
        except NotFoundError:
            return None
        assert msg.seq is not None
        read = self._stored.read(int(msg.seq), subject, msg.data or b"")
        if isinstance(read, Foreign):
            raise Unavailable(f"a foreign record lies on {subject} (seq {read.seq}); ask the administrator")
        return int(msg.seq), read.event

    async def _check_end(self, batch: _Batch, cand: _Candidate) -> None:
        """A retraction or correction: the target must be the latest version, not yet ended (the stream
        guards it with the version's subject's expected last sequence, set here); a correction's copy keeps
        the target's type, entity and locality.

        Every end of version V lies on V's subject ``…retraction.<V>``. V is open when that subject is empty,
        or when its last event is a correction that was itself retracted (V stands again); then the expected
        last sequence is that correction's. Otherwise V was retracted, or corrected (the correction, or a later
        one, is the latest version): ``conflict``."""
        ev = cand.event
        rule = cand.rule
        if rule is not None and rule.same:
            await self._check_same(batch, cand, rule)
        if may_be_ended(rule):
            await self._check_standing(cand)
            return
        if not isinstance(ev, EntryRetracted | EntryCorrected):
            return
        target = ev.target_event_id
        path = "$.target_event_id"
        cand.expected = 0
        last = await self._last_on(cand.subject)
        if last is not None:
            seq, end = last
            if end.event_id == ev.event_id:
                return  # our own earlier publish: the stream answers 'wrong last sequence', resolved as ours
            if isinstance(end, EntryRetracted):
                raise Conflict(f"event {target} was already retracted (event {end.event_id})", path)
            assert isinstance(end, EntryCorrected)
            head = cand.subject.rsplit(".", 1)[0]
            after = await self._last_on(f"{head}.{end.event_id}")
            if after is None or not isinstance(after[1], EntryRetracted):
                raise Conflict(
                    f"event {target} was corrected by event {end.event_id}: correct or retract the latest "
                    "version of the entry (that correction, or its own latest correction)",
                    path,
                )
            cand.expected = seq  # its correction was retracted: the version stands again
        if isinstance(ev, EntryCorrected):
            await self._check_copy(batch.known[target], ev)

    async def _check_same(self, batch: _Batch, cand: _Candidate, rule: Entity) -> None:
        """Fields a reference must share with its entity's creating event (an assessment's ``unit_kind``):
        one direct get of the creation, whatever the entity's history."""
        claim = batch.claims.get(claim_key(rule, cand.event))
        row = batch.known.get(claim.event_id) if claim is not None else None
        if row is None:
            return  # _check refused it already, or it waits on a creation of this request (read next time)
        msg = await self._js.get_msg(EVENTS, row.seq)
        read = self._stored.read(row.seq, row.subject, msg.data or b"")
        if isinstance(read, Foreign):  # pragma: no cover: the index holds no foreign record
            raise Unavailable(f"the {rule.name}'s creation at seq {row.seq} is a foreign record")
        head = ".".join(cand.subject.split(".")[:4])
        created = await self._standing_version(head, read.event)  # a corrected registration: its copy
        if created is None:
            return  # retracted since: the index releases its claim, the fold ignores what refers to it
        for name in rule.same:
            if getattr(cand.event, name) != getattr(created, name, None):
                raise GatewayInvalid(
                    f"{rule.name} was recorded with {name} `{getattr(created, name, None)}`: give the same",
                    f"$.{name}",
                )

    async def _check_standing(self, cand: _Candidate) -> None:
        """An update or end of an entity that may have been ended (a model, a person under management).

        Its end lives on a subject of its own (``…model.<id>.end``). A second end while one stands is
        ``conflict``; an update dated on or after the standing end's day is ``conflict`` (an update dated before
        it is a late record of an earlier fact, and counts). Decided with a few direct gets, whatever the
        entity's history: the end subject's last event, and that end's standing version (its retraction
        subject, and the corrections of it, if any). An end is published expecting the end subject's last
        sequence, so two concurrent ends cannot both be stored."""
        ev = cand.event
        rule = spec_of(ev).entity
        assert rule is not None
        end_subject = cand.subject if rule.role == "ends" else f"{cand.subject}.end"
        last = await self._last_on(end_subject)
        if rule.role == "ends":
            cand.expected = 0 if last is None else last[0]
        if last is None:
            return
        _, end = last
        if end.event_id == ev.event_id:
            return  # our own earlier publish: the stream answers 'wrong last sequence', resolved as ours
        head = ".".join(cand.subject.split(".")[:4])
        standing = await self._standing_version(head, end)
        if standing is None:
            return  # that end was retracted: the entity stands again
        what = f"{rule.name} {getattr(ev, rule.field)}"
        if rule.role == "ends":
            raise Conflict(
                f"{what} was already ended on {standing.occurred_on} (event {end.event_id}); retract that end "
                "first if it was wrong",
                rule.error_path,
            )
        if ev.occurred_on >= standing.occurred_on:
            raise Conflict(
                f"{what} ended on {standing.occurred_on} (event {end.event_id}): nothing can change it on or "
                "after that day; retract the end first if it was wrong",
                rule.error_path,
            )

    async def _standing_version(self, head: str, event: Event) -> Event | None:
        """The version of ``event``'s entry that stands (the event itself, or the copy of a correction of it),
        or None when the entry was retracted. A version's ends lie on its own retraction subject: when the last
        one there is a correction, that correction is the next version; when it is a retraction, the version
        is gone and the one it replaced (if any) stands again. One direct get per version followed."""
        previous: Event | None = None
        value, version = event, event.event_id
        for _ in range(MAX_CORRECTIONS):
            last = await self._last_on(f"{head}.retraction.{version}")
            if last is None:
                return value
            end = last[1]
            if isinstance(end, EntryRetracted):
                return previous  # the original retracted: None; a correction retracted: what it replaced
            assert isinstance(end, EntryCorrected)
            previous, value, version = value, end.corrected, end.event_id
        raise Unavailable(f"the entry {event.event_id} was corrected more than {MAX_CORRECTIONS} times")

    async def _check_copy(self, target: IndexRow, ev: EntryCorrected) -> None:
        msg = await self._js.get_msg(EVENTS, target.seq)
        read = self._stored.read(target.seq, target.subject, msg.data or b"")
        if isinstance(read, Foreign):  # pragma: no cover: the index holds no foreign record
            raise Unavailable(f"the target at seq {target.seq} is a foreign record")
        current = read.event.corrected if isinstance(read.event, EntryCorrected) else read.event
        copy = ev.corrected
        cspec, tspec = spec_of(copy), spec_of(current)
        if cspec is not tspec:
            raise GatewayInvalid(
                f"the target is a {tspec.tag}: a correction carries an event of the same type",
                "$.corrected.type",
            )
        entity = tspec.entity
        if entity is not None and getattr(copy, entity.field) != getattr(current, entity.field):
            raise GatewayInvalid(
                f"the target is of {entity.name} {getattr(current, entity.field)}: a correction keeps its "
                f"{entity.name} ({entity.field}{' : unit_id and year' if entity.path else ''})",
                f"$.corrected.{entity.path or entity.field}",
            )
        if copy.locality != current.locality:
            raise GatewayInvalid(
                "a correction keeps its target's locality; retract the entry and record it anew",
                "$.corrected.locality",
            )
        if copy.event_id == current.event_id:
            raise GatewayInvalid(
                "the corrected event needs an event_id of its own, not its target's", "$.corrected.event_id"
            )

    @staticmethod
    def _accepted(cand: _Candidate, seq: int, *, duplicate: bool) -> IntakeResult:
        ev = cand.event
        version = seq if is_lifecycle(ev) else None
        legacy = isinstance(ev.locality, LegacyLocality)
        return IntakeResult(
            ok=True,
            event_id=cand.eid,
            seq=seq,
            duplicate=duplicate,
            version=version,
            ward=cand.ward if legacy else None,
            approximate=True if cand.approximate else None,
        )

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
        data = cand.data = encode_recorded(Recorded(office=office.id, event=ev))
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
