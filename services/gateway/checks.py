"""The gateway's entity and claim checks, as a mixin of ``IntakePipeline``: an event against what its request
knows (``_check``: a duplicate or a reused id, a claim, a reference, a retraction's target, ``_check_links``:
the entities it names), and the few direct gets that decide the rest (``_check_end``: a version still open,
``_check_standing``: an entity not ended, ``_check_same``: fields shared with the entity's creation,
``_check_copy``: a correction's copy); ``_accepted`` is the answer to an event that is (or was) stored.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from events.catalogue import BY_TAG, Entity, spec_of
from events.intake import IntakeResult
from events.schema import EntryCorrected, EntryRetracted, Event, LegacyLocality
from events.stored import Foreign, StoredRecords
from infra.streams import EVENTS
from services.gateway.candidates import (
    MAX_CORRECTIONS,
    _Batch,
    _Candidate,
    _ward_path,
    claim_key,
    is_lifecycle,
    link_keys,
    may_be_ended,
)
from services.gateway.errors import Conflict, GatewayInvalid, IdReused, Unavailable, UnknownTarget
from services.gateway.index import IndexRow


class EntityChecks:
    """The checks of ``IntakePipeline`` (which sets these attributes)."""

    _js: JetStreamContext
    _stored: StoredRecords

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
