"""The pure fold of the statistics read model: ``(state, events) -> (state update, deltas)``. No I/O.

The same fold serves the live runner, full rebuilds and auditors' in-memory replay.

State is a mapping of small keys to small msgpack-encoded values, so a runner loads only the keys a batch
needs (``keys_needed``) and stores only those the fold wrote:

- ``b"t" + tip_id`` → ``TipState``: the tip's ward, day, retracted flag, and its non-retracted assessments in
  stream order (so that retracting the latest one falls back to the previous one);
- ``b"e" + event_id`` → what a retractable event contributed: a ``TipLink`` for a tip's own events, or the few
  numbers a session / pledge / mediation / weapons event added. A retraction subtracts exactly that and deletes
  the key (the gateway lets each event be retracted at most once).

Deltas are changes of figures keyed ``(period, ward, year, metric)``; zero changes are left out.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeAlias

import msgspec

from events.schema import (
    EntryRetracted,
    Event,
    MediationConcluded,
    PledgeSigned,
    Recorded,
    SessionHeld,
    TipAssessed,
    TipReceived,
    WeaponsSurrendered,
)
from projections import metrics as m
from projections.errors import DuplicateEntity, UnknownTarget, UnknownTip, WardMismatch
from projections.periods import Period, years_of

Key: TypeAlias = bytes
DeltaKey: TypeAlias = tuple[Period, str, int, str]
"""(period, ward, year, metric)"""
Deltas: TypeAlias = dict[DeltaKey, int]
StateUpdate: TypeAlias = dict[Key, bytes | None]
"""Keys the fold wrote: the new encoded value, or None for a deleted key."""

TIP_PREFIX = b"t"
EVENT_PREFIX = b"e"


class TipState(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=1):
    ward: str
    day: int  # proleptic Gregorian ordinal of the day the tip was received
    retracted: bool
    assessments: tuple[tuple[bytes, bool], ...]  # (event_id, valuable), stream order, retracted ones removed

    @property
    def valuable(self) -> bool:
        return not self.retracted and bool(self.assessments) and self.assessments[-1][1]


class TipLink(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=2):
    """A tip.received (``assessment`` False) or tip.assessed event: its contribution lives in the tip."""

    tip: bytes
    assessment: bool


class SessionPart(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=3):
    ward: str
    day: int
    level: str
    attendance: int


class PledgePart(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=4):
    ward: str
    day: int
    signer: str
    signatures: int


class MediationPart(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=5):
    ward: str
    day: int
    successful: bool


class WeaponsPart(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=6):
    ward: str
    day: int
    items: tuple[tuple[str, int], ...]


Part: TypeAlias = SessionPart | PledgePart | MediationPart | WeaponsPart
Value: TypeAlias = TipState | TipLink | Part

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Value] = msgspec.msgpack.Decoder(Value)


@functools.lru_cache(maxsize=8192)
def _years_of_day(ordinal: int) -> tuple[tuple[Period, int], tuple[Period, int]]:
    return years_of(dt.date.fromordinal(ordinal))


def encode_value(value: Value) -> bytes:
    return _encoder.encode(value)


def decode_value(data: bytes) -> Value:
    return _decoder.decode(data)


def tip_key(tip_id: bytes) -> Key:
    return TIP_PREFIX + tip_id


def event_key(event_id: bytes) -> Key:
    return EVENT_PREFIX + event_id


def contribution(part: Part) -> Iterator[tuple[str, int]]:
    """The (metric, amount) pairs a non-tip event adds to its ward-year."""
    match part:
        case SessionPart(level=level, attendance=attendance):
            yield m.SESSIONS_HELD, 1
            yield m.breakdown(m.SESSIONS_HELD, level), 1
            yield m.SESSION_ATTENDANCE, attendance
            yield m.breakdown(m.SESSION_ATTENDANCE, level), attendance
        case PledgePart(signer=signer, signatures=signatures):
            yield m.PLEDGE_SIGNATURES, signatures
            yield m.breakdown(m.PLEDGE_SIGNATURES, signer), signatures
        case MediationPart(successful=successful):
            yield m.MEDIATIONS_CONCLUDED, 1
            if successful:
                yield m.MEDIATIONS_SUCCESSFUL, 1
        case WeaponsPart(items=items):
            for kind, quantity in items:
                if kind == m.AMMUNITION:
                    yield m.AMMUNITION_SURRENDERED, quantity
                else:
                    yield m.WEAPONS_SURRENDERED, quantity
                    yield m.breakdown(m.WEAPONS_SURRENDERED, kind), quantity


def part_of(event: Event) -> Part | None:
    """The compact record of what a session / pledge / mediation / weapons event contributes."""
    ward, day = event.locality.ward, event.occurred_on.toordinal()
    match event:
        case SessionHeld(level=level, attendance=attendance):
            return SessionPart(ward=ward, day=day, level=level, attendance=attendance)
        case PledgeSigned(signer=signer, signatures=signatures):
            return PledgePart(ward=ward, day=day, signer=signer, signatures=signatures)
        case MediationConcluded(outcome=outcome):
            return MediationPart(ward=ward, day=day, successful=outcome == "successful")
        case WeaponsSurrendered(items=items):
            return WeaponsPart(ward=ward, day=day, items=tuple((i.kind, i.quantity) for i in items))
    return None


def keys_needed(events: Iterable[tuple[int, Recorded]], state: Mapping[Key, bytes]) -> set[Key]:
    """Keys the fold may read for these events, given the state loaded so far.

    A retraction of a tip's event needs the tip too, which is known only once the event's key is loaded:
    call again with the larger state until nothing new is needed (at most twice).
    """
    keys: set[Key] = set()
    for _, recorded in events:
        event = recorded.event
        if isinstance(event, TipReceived | TipAssessed):
            keys.add(tip_key(event.tip_id.bytes))
        elif isinstance(event, EntryRetracted):
            target = event_key(event.target_event_id.bytes)
            keys.add(target)
            raw = state.get(target)
            if raw is not None:
                value = decode_value(raw)
                if isinstance(value, TipLink):
                    keys.add(tip_key(value.tip))
    return keys


class _Folder:
    """Applies events one by one over an overlay of the given state; the input is never mutated."""

    def __init__(self, state: Mapping[Key, bytes]) -> None:
        self._state = state
        self._written: dict[Key, Value | None] = {}
        self.deltas: Deltas = {}

    def get(self, key: Key) -> Value | None:
        if key in self._written:
            return self._written[key]
        raw = self._state.get(key)
        return None if raw is None else decode_value(raw)

    def put(self, key: Key, value: Value | None) -> None:
        self._written[key] = value

    def add(self, ward: str, ordinal: int, metric: str, amount: int) -> None:
        deltas = self.deltas
        for period, year in _years_of_day(ordinal):
            k = (period, ward, year, metric)
            deltas[k] = deltas.get(k, 0) + amount

    def set_tip(self, key: Key, before: TipState | None, after: TipState) -> None:
        """Store the tip and add the change of its tips_received / tips_valuable contribution."""
        for metric, old, new in (
            (m.TIPS_RECEIVED, before is not None and not before.retracted, not after.retracted),
            (m.TIPS_VALUABLE, before is not None and before.valuable, after.valuable),
        ):
            if old != new:
                self.add(after.ward, after.day, metric, int(new) - int(old))
        self.put(key, after)

    def update(self) -> StateUpdate:
        return {k: None if v is None else encode_value(v) for k, v in self._written.items()}

    def apply(self, seq: int, event: Event) -> None:
        eid = event.event_id  # turned into text only for an error
        match event:
            case TipReceived(tip_id=tip_id):
                key = tip_key(tip_id.bytes)
                if self.get(key) is not None:
                    raise DuplicateEntity(f"tip {tip_id} was already received", seq=seq, event_id=eid)
                tip = TipState(
                    ward=event.locality.ward,
                    day=event.occurred_on.toordinal(),
                    retracted=False,
                    assessments=(),
                )
                self.set_tip(key, None, tip)
                self.put(event_key(event.event_id.bytes), TipLink(tip=tip_id.bytes, assessment=False))
            case TipAssessed(tip_id=tip_id, valuable=valuable):
                key = tip_key(tip_id.bytes)
                tip = self._tip(key, seq, eid, f"tip {tip_id} is unknown")
                if tip.ward != event.locality.ward:
                    raise WardMismatch(f"tip {tip_id} is in ward {tip.ward}", seq=seq, event_id=eid)
                assessed = (*tip.assessments, (event.event_id.bytes, valuable))
                self.set_tip(key, tip, msgspec.structs.replace(tip, assessments=assessed))
                self.put(event_key(event.event_id.bytes), TipLink(tip=tip_id.bytes, assessment=True))
            case EntryRetracted(target_event_id=target):
                self._retract(seq, event, target.bytes)
            case _:
                part = part_of(event)
                assert part is not None
                for metric, amount in contribution(part):
                    self.add(part.ward, part.day, metric, amount)
                self.put(event_key(event.event_id.bytes), part)

    def _tip(self, key: Key, seq: int, eid: object, message: str) -> TipState:
        tip = self.get(key)
        if not isinstance(tip, TipState):
            raise UnknownTip(message, seq=seq, event_id=eid)
        return tip

    def _retract(self, seq: int, event: EntryRetracted, target: bytes) -> None:
        eid = event.event_id  # turned into text only for an error
        tkey = event_key(target)
        value = self.get(tkey)
        if value is None or isinstance(value, TipState):
            raise UnknownTarget(
                f"no retractable event {event.target_event_id} (unknown or already retracted)",
                seq=seq,
                event_id=eid,
            )
        ward = value.ward if not isinstance(value, TipLink) else None
        if isinstance(value, TipLink):
            key = tip_key(value.tip)
            tip = self._tip(key, seq, eid, "the retracted entry's tip is unknown")
            ward = tip.ward
            if value.assessment:
                kept = tuple(a for a in tip.assessments if a[0] != target)
                after = msgspec.structs.replace(tip, assessments=kept)
            else:
                after = msgspec.structs.replace(tip, retracted=True)
            if ward != event.locality.ward:
                raise WardMismatch(f"the retracted entry is in ward {ward}", seq=seq, event_id=eid)
            self.set_tip(key, tip, after)
        else:
            if ward != event.locality.ward:
                raise WardMismatch(f"the retracted entry is in ward {ward}", seq=seq, event_id=eid)
            for metric, amount in contribution(value):
                self.add(value.ward, value.day, metric, -amount)
        self.put(tkey, None)


def fold(state: Mapping[Key, bytes], events: Iterable[tuple[int, Recorded]]) -> tuple[StateUpdate, Deltas]:
    """Fold events (stream sequence, record) in order over ``state``.

    Returns the state update (the keys written: new encoded value or None = delete; the new state is
    ``state`` overlaid with it) and the non-zero changes of figures. Raises a ``FoldError`` for an event that
    cannot apply; nothing of the batch should then be stored.
    """
    folder = _Folder(state)
    for seq, recorded in events:
        folder.apply(seq, recorded.event)
    return folder.update(), {k: v for k, v in folder.deltas.items() if v != 0}


def apply_update(state: dict[Key, bytes], update: StateUpdate) -> None:
    """Overlay a state update on an in-memory state (for replays held entirely in memory)."""
    for key, value in update.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
