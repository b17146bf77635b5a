"""The pure fold of the statistics read model: ``(state, events) -> (state update, deltas)``. No I/O.

The same fold serves the live runner, full rebuilds and auditors' in-memory replay.

State maps small integer keys to small values, so a runner loads only the keys a batch needs
(``keys_needed``) and stores only those the fold wrote (encoded with ``encode_value``, keyed ``key_bytes``):

- a tip's id (``uuid.int``) → ``TipState``: the tip's ward, day, retracted flag, and its non-retracted
  assessments in stream order (so that retracting the latest one falls back to the previous one);
- an event's id with ``EVENT_BIT`` set → what a version of an entry contributes: a ``TipLink`` for a tip's own
  events, or a ``Part`` (the few numbers a session / pledge / mediation / weapons event added). A retraction
  subtracts exactly that and deletes the key (the gateway lets each version be ended at most once).
- corrections keep a chain: the correction's key holds a ``Fix`` (the copy's contribution and the version it
  replaced), the replaced version's key a ``Superseded`` (its own value, kept to stand again). A correction
  swaps the two contributions in one step; a retraction of a correction swaps them back and the replaced
  version is the latest again.

Deltas are changes of figures keyed ``(ward, year key, metric)``. The year key holds both kinds of year at
once (``year_key``), so each change is counted once while folding and split into the calendar and reporting
years only when figures are stored or read (``by_period``).

The state's values and keys are declared in ``projections.fold_state``, lifecycle entities' keys, marks and
figures in ``projections.fold_lifecycles``; this module applies events to them (and re-exports their names).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Final

import msgspec

from events.catalogue import CATALOGUE, CONTRIBUTIONS, LIFECYCLES, FoldRule, Lifecycle
from events.schema import (
    TIP_SOURCES,
    EntryCorrected,
    EntryRetracted,
    Event,
    Locality,
    Recorded,
    TipAssessed,
    TipReceived,
)
from projections import metrics as m
from projections.errors import (
    DuplicateEntity,
    UnknownEntity,
    UnknownTarget,
    UnknownTip,
    UnknownWard,
    WardMismatch,
)
from projections.fold_lifecycles import (
    _LIFE_BY_STATE,
    _entity_key_of,
    _figures_of,
    _mark_of,
    _what,
    entity_figures,
    remember,
)
from projections.fold_state import (
    CREATES,
    EVENT_BIT,
    STATE_SHIFT,
    DeltaKey,
    Deltas,
    EntityLink,
    EntityState,
    Figures,
    Fix,
    Key,
    Mark,
    Part,
    PeriodKey,
    State,
    StateUpdate,
    Superseded,
    TipLink,
    TipState,
    Value,
    YearKey,
    _year_keys,
    by_period,
    decode_value,
    encode_value,
    entity_key,
    event_key,
    key_bytes,
    key_of,
    tip_key,
    year_key,
)
from projections.places import Place, place_of

__all__ = [  # the fold, and what other modules import from here (values and keys: projections.fold_state)
    "EVENT_BIT",
    "STATE_SHIFT",
    "DeltaKey",
    "Deltas",
    "EntityLink",
    "EntityState",
    "Figures",
    "Fix",
    "Key",
    "Part",
    "PeriodKey",
    "State",
    "StateUpdate",
    "Superseded",
    "TipLink",
    "TipState",
    "Value",
    "YearKey",
    "apply_update",
    "by_period",
    "contribution",
    "decode_value",
    "encode_value",
    "entity_figures",
    "entity_key",
    "event_key",
    "fold",
    "fold_into",
    "handled_types",
    "key_bytes",
    "key_of",
    "keys_needed",
    "part_of",
    "tip_key",
    "year_key",
]

_RECEIVED_BY: Final[dict[str, tuple[str, str]]] = {
    s: (m.TIPS_RECEIVED, f"{m.TIPS_RECEIVED}.{s}") for s in TIP_SOURCES
}
_VALUABLE_BY: Final[dict[str, tuple[str, str]]] = {
    s: (m.TIPS_VALUABLE, f"{m.TIPS_VALUABLE}.{s}") for s in TIP_SOURCES
}
"""Per source, the metrics a tip counts in: the total and its source's breakdown."""
_LEADING: Final = (m.TIPS_LEADING,)


def contribution(part: Part) -> tuple[tuple[str, int], ...]:
    """The (metric, amount) pairs a plain event added to its ward-year."""
    return part.amounts


_interned: dict[str, str] = {}


def part_of(event: Event, seq: int = 0) -> Part:
    """The compact record of what a plain event contributes, by the figures its catalogue entry declares (and
    the tips it names, with ``seq``, the sequence of the event that recorded this version)."""
    # interned: a long replay keeps one of these per event, and a ward's code is the same few bytes each time
    amounts = CONTRIBUTIONS[type(event)](event)
    locality = event.locality
    links = _LINKS.get(type(event))
    tips = tuple(t.bytes for t in getattr(event, links)) if links is not None else ()
    if type(locality) is Locality and not tips:  # the common case first, as cheaply as it can be told
        return Part(ward=sys.intern(locality.ward), day=event.occurred_on.toordinal(), amounts=amounts)
    units: tuple[str, ...] = ()
    if type(locality) is Locality:
        ward, approx = sys.intern(locality.ward), False
    else:
        place = _place(event, seq)
        ward, units, approx = place.ward, place.units, place.approximate
    return Part(
        ward=ward,
        day=event.occurred_on.toordinal(),
        amounts=amounts,
        tips=tips,
        seq=seq if tips else 0,
        units=units,
        approx=approx,
    )


def _place(event: Event, seq: int) -> Place:
    place = place_of(event)
    if place is None:
        raise UnknownWard(
            f"pre-2025 locality {event.locality} has no 2025 ward under this mapping (was it corrected?)",
            seq=seq,
            event_id=event.event_id,
        )
    return place


def _other_ward(ward: str, units: tuple[str, ...], event: Event) -> bool:
    """An event about an entry (assessment, retraction, correction) filed in another ward than the entry's.
    Checked between two ``gso-2025`` localities only: a pre-2025 one resolves through the mapping, which a
    later correction may change (the gateway checked it on the mapping of its day); its figures go where the
    entry's own place says."""
    locality = event.locality
    return not units and isinstance(locality, Locality) and locality.ward != ward


_LINKS: Final[dict[type, str]] = {s.struct: s.links.field for s in CATALOGUE if s.links is not None}
"""Per type naming tips (``EventSpec.links``), the list field naming them."""


def _tips_of(value: Value | None) -> tuple[bytes, ...]:
    """The tips a stored version (or what it holds) names."""
    if isinstance(value, Superseded | Fix):
        return _tips_of(value.value)
    return value.tips if isinstance(value, Part) else ()


def keys_needed(events: Iterable[tuple[int, Recorded]], state: State) -> set[Key]:
    """Keys the fold may read for these events, given the state loaded so far.

    A retraction of a tip's event needs the tip too, and a retraction of a correction the version it replaced,
    which are known only once the target's key is loaded: call again with the larger state until nothing new
    is needed.
    """
    keys: set[Key] = set()
    for _, recorded in events:
        event = recorded.event
        if isinstance(event, TipReceived | TipAssessed):
            keys.add(event.tip_id.int)
        elif type(event) in _LINKS:
            keys.update(t.int for t in getattr(event, _LINKS[type(event)]))
        elif type(event) in LIFECYCLES:
            keys.add(_entity_key_of(event))
        elif isinstance(event, EntryRetracted | EntryCorrected):
            target = event.target_event_id.int | EVENT_BIT
            keys.add(target)
            value = state.get(target)
            keys.update(map(tip_key, _tips_of(value)))  # a version naming tips, ended or replaced
            if isinstance(value, Superseded | Fix):
                fix = value.value if isinstance(value, Superseded) else value
                if isinstance(fix, Fix):  # the version a retracted correction restores may name others
                    keys.update(map(tip_key, _tips_of(state.get(event_key(fix.replaces)))))
            if isinstance(
                value, Superseded
            ):  # it may stand again within the batch (its correction retracted)
                value = value.value
            if isinstance(value, Fix):  # a retracted correction restores the version it replaced
                keys.add(event_key(value.replaces))
                value = value.value
            if isinstance(value, TipLink):
                keys.add(tip_key(value.tip))
            if isinstance(value, EntityLink):
                keys.add(key_of(value.entity))
            if isinstance(event, EntryCorrected) and isinstance(event.corrected, TipReceived | TipAssessed):
                keys.add(event.corrected.tip_id.int)
            if isinstance(event, EntryCorrected) and type(event.corrected) in _LINKS:
                keys.update(t.int for t in getattr(event.corrected, _LINKS[type(event.corrected)]))
            if isinstance(event, EntryCorrected) and type(event.corrected) in LIFECYCLES:
                keys.add(_entity_key_of(event.corrected))
    return keys


_ABSENT: Final = object()


class _Folder:
    """Applies events one by one. Reads ``written`` first, then ``state``; writes go to ``written``."""

    def __init__(self, state: State, written: dict[Key, Value | None], deltas: Deltas) -> None:
        self._state = state
        self._written = written
        self.deltas = deltas
        rules: dict[FoldRule, Callable[[int, Event], None]] = {
            "plain": self._part,
            "tip": self._tip_event,
            "lifecycle": self._lifecycle,
            "retraction": self._retracted,
            "correction": self._corrected,
        }
        self._apply: dict[type, Callable[[int, Event], None]] = {s.struct: rules[s.fold] for s in CATALOGUE}

    def run(self, events: Iterable[tuple[int, Recorded]]) -> None:
        apply = self._apply
        for seq, recorded in events:
            event = recorded.event
            apply[type(event)](seq, event)

    def get(self, key: Key) -> Value | None:
        found = self._written.get(key, _ABSENT)
        if found is _ABSENT:
            return self._state.get(key)
        return found  # type: ignore[return-value]

    def add(self, ward: str, yk: YearKey, metric: str, amount: int) -> None:
        deltas = self.deltas
        k = (ward, yk, metric)
        deltas[k] = deltas.get(k, 0) + amount

    def spread(self, part: Part, yk: YearKey, sign: int) -> None:
        """A pre-2025 place's extra figures: the amounts again under each unit as recorded, and as
        ``~<metric>`` of the ward when approximate (the ward's own figures are added by the caller)."""
        for metric, amount in part.amounts:
            if part.approx:
                self.add(part.ward, yk, m.APPROXIMATE + metric, sign * amount)
            for unit in part.units:
                self.add(unit, yk, metric, sign * amount)

    def add_tip(self, tip: TipState, yk: YearKey, metric: str, amount: int) -> None:
        self.add(tip.ward, yk, metric, amount)
        if tip.approx:
            self.add(tip.ward, yk, m.APPROXIMATE + metric, amount)
        for unit in tip.units:
            self.add(unit, yk, metric, amount)

    def set_tip(self, key: Key, before: TipState | None, after: TipState) -> None:
        """Store the tip and add the change of its tips_received / tips_valuable contribution (each also by
        the tip's source)."""
        if before is not None and (before.day, before.ward, before.units, before.approx, before.source) != (
            after.day,
            after.ward,
            after.units,
            after.approx,
            after.source,
        ):  # a corrected tip.received: its year, its source (and a pre-2025 tip's place) may move
            self._count_tip(before, -1)
            before = None
        if before is None:
            was_counted = was_valuable = was_leading = False
        else:
            was_counted = not before.retracted
            was_valuable = before.valuable
            was_leading = was_counted and bool(before.cases)
        counted = not after.retracted
        valuable = after.valuable
        leading = counted and bool(after.cases)
        if was_counted != counted or was_valuable != valuable or was_leading != leading:
            deltas, ward, yk, plain = (
                self.deltas,
                after.ward,
                year_key(after.day),
                not after.units and not after.approx,
            )
            for changed, now, metrics in (
                (was_counted != counted, counted, _RECEIVED_BY[after.source]),
                (was_valuable != valuable, valuable, _VALUABLE_BY[after.source]),
                (was_leading != leading, leading, _LEADING),
            ):
                if changed:
                    n = 1 if now else -1
                    for metric in metrics:
                        if plain:  # a gso-2025 tip: its ward only (the common case, kept cheap)
                            k = (ward, yk, metric)
                            deltas[k] = deltas.get(k, 0) + n
                        else:
                            self.add_tip(after, yk, metric, n)
        self._written[key] = after

    def _count_tip(self, tip: TipState, n: int) -> None:
        """Add (or with -1 take away) everything a tip counts."""
        yk = year_key(tip.day)
        counted = not tip.retracted
        for now, metrics in (
            (counted, _RECEIVED_BY[tip.source]),
            (tip.valuable, _VALUABLE_BY[tip.source]),
            (counted and bool(tip.cases), _LEADING),
        ):
            if now:
                for metric in metrics:
                    self.add_tip(tip, yk, metric, n)

    def _tip_event(self, seq: int, event: Event) -> None:
        if isinstance(event, TipReceived):
            self._tip_received(seq, event)
        else:
            self._tip_assessed(seq, event)

    def _tip_received(self, seq: int, event: Event) -> None:
        assert isinstance(event, TipReceived)
        key = event.tip_id.int
        before = self.get(key)
        if before is not None and not (isinstance(before, TipState) and before.retracted):
            raise DuplicateEntity(
                f"tip {event.tip_id} was already received", seq=seq, event_id=event.event_id
            )
        # a retracted tip's id was freed: received again, it is a new tip (the old one's assessments stay
        # with the old one)
        link = _received(event, seq)
        tip = TipState(
            ward=sys.intern(event.locality.ward) if isinstance(event.locality, Locality) else link.ward,
            day=link.day,
            retracted=False,
            assessments=(),
            source=link.source,
            since=seq,
            units=link.units,
            approx=link.approx,
        )
        self.set_tip(key, before if isinstance(before, TipState) else None, tip)
        self._written[event.event_id.int | EVENT_BIT] = link

    def _tip_assessed(self, seq: int, event: Event) -> None:
        assert isinstance(event, TipAssessed)
        key = event.tip_id.int
        tip = self.get(key)
        if not isinstance(tip, TipState):
            raise UnknownTip(f"tip {event.tip_id} is unknown", seq=seq, event_id=event.event_id)
        if _other_ward(tip.ward, tip.units, event):
            raise WardMismatch(f"tip {event.tip_id} is in ward {tip.ward}", seq=seq, event_id=event.event_id)
        assessed = (*tip.assessments, (event.event_id.bytes, event.valuable))
        self.set_tip(key, tip, msgspec.structs.replace(tip, assessments=assessed))
        self._written[event.event_id.int | EVENT_BIT] = TipLink(
            tip=event.tip_id.bytes, assessment=True, valuable=event.valuable
        )

    def set_entity(self, life: Lifecycle, key: Key, before: EntityState | None, after: EntityState) -> None:
        """Store the entity and add the change of what it contributes (its figures before and after)."""
        old = _figures_of(life, key, before)
        new = entity_figures(life, after)
        remember(key, after, new)
        ward = after.ward
        for k in old.keys() | new.keys():
            change = new.get(k, 0) - old.get(k, 0)
            if change:
                self.add(ward, k[0], k[1], change)
                if after.units:  # a pre-2025 place: also under its units as recorded, and ~ when approximate
                    if after.approx:
                        self.add(ward, k[0], m.APPROXIMATE + k[1], change)
                    for unit in after.units:
                        self.add(unit, k[0], k[1], change)
        self._written[key] = after

    def _lifecycle(self, seq: int, event: Event) -> None:
        life = LIFECYCLES[type(event)]
        key = _entity_key_of(event)
        state = self.get(key)
        before = state if isinstance(state, EntityState) else None
        mark = _mark_of(event, event.event_id.bytes)
        if mark[1] == CREATES:
            if before is not None and before.marks:
                raise DuplicateEntity(
                    f"{_what(life, event)} already exists", seq=seq, event_id=event.event_id
                )
            locality = event.locality
            if type(locality) is Locality:
                after = EntityState(ward=sys.intern(locality.ward), marks=(mark,))
            else:
                place = _place(event, seq)
                after = EntityState(
                    ward=place.ward, marks=(mark,), units=place.units, approx=place.approximate
                )
        else:
            if before is None or not before.marks:
                raise UnknownEntity(f"{_what(life, event)} is unknown", seq=seq, event_id=event.event_id)
            if _other_ward(before.ward, before.units, event):
                raise WardMismatch(
                    f"{_what(life, event)} is in ward {before.ward}", seq=seq, event_id=event.event_id
                )
            after = msgspec.structs.replace(before, marks=(*before.marks, mark))
        self.set_entity(life, key, before, after)
        self._written[event.event_id.int | EVENT_BIT] = EntityLink(entity=key_bytes(key), mark=mark)

    def _entity_of(
        self, link: EntityLink, mark_id: bytes, seq: int, event: Event
    ) -> tuple[Lifecycle, Key, EntityState] | None:
        """The entity of a version's mark, or None when the mark is of an earlier entity of this id (its
        creation retracted, the id used again, maybe in another ward): nothing of the present one changes."""
        key = key_of(link.entity)
        state = self.get(key)
        if not isinstance(state, EntityState):
            raise UnknownEntity("the entry's entity is unknown", seq=seq, event_id=event.event_id)
        if not any(m[0] == mark_id for m in state.marks):
            return None
        if _other_ward(state.ward, state.units, event):
            raise WardMismatch(f"the entry is in ward {state.ward}", seq=seq, event_id=event.event_id)
        return _LIFE_BY_STATE[key >> STATE_SHIFT], key, state

    def _retract_mark(self, seq: int, event: Event, link: EntityLink) -> None:
        mark_id = link.mark[0]
        found = self._entity_of(link, mark_id, seq, event)
        if found is None:
            return  # an event of an earlier entity of this id (its creation retracted, the id used again)
        life, key, state = found
        if link.mark[1] == CREATES:
            marks: tuple[Mark, ...] = ()  # the entity is gone, its id freed
        else:
            marks = tuple(m for m in state.marks if m[0] != mark_id)
        self.set_entity(life, key, state, msgspec.structs.replace(state, marks=marks))

    def _part(self, seq: int, event: Event) -> None:
        locality = event.locality
        if type(locality) is Locality and type(event) not in _LINKS:  # the common case, kept cheap
            ward = sys.intern(locality.ward)
            day = event.occurred_on.toordinal()
            amounts = CONTRIBUTIONS[type(event)](event)
            yk = _year_keys.get(day) or year_key(day)
            deltas = self.deltas
            for metric, amount in amounts:
                k = (ward, yk, metric)
                deltas[k] = deltas.get(k, 0) + amount
            self._written[event.event_id.int | EVENT_BIT] = Part(ward=ward, day=day, amounts=amounts)
            return
        part = part_of(event, seq)
        yk = year_key(part.day)
        deltas = self.deltas
        ward = part.ward
        for metric, amount in part.amounts:
            k = (ward, yk, metric)
            deltas[k] = deltas.get(k, 0) + amount
        if part.units:
            self.spread(part, yk, 1)
        self._written[event.event_id.int | EVENT_BIT] = part
        if part.tips:
            self._link(event.event_id.bytes, part)

    def _link(self, version: bytes, part: Part) -> None:
        """A version naming tips stands: each tip it names, received before it in its ward, counts it."""
        for tip_id in part.tips:
            key = tip_key(tip_id)
            tip = self.get(key)
            # not a tip (an as-of replay left it out), received again since, or in another ward (a concurrent
            # retraction and new receipt elsewhere): the version speaks of no tip that stands here
            stands_here = isinstance(tip, TipState) and tip.since < part.seq and tip.ward == part.ward
            if stands_here and isinstance(tip, TipState) and version not in tip.cases:
                self.set_tip(key, tip, msgspec.structs.replace(tip, cases=(*tip.cases, version)))

    def _unlink(self, version: bytes, part: Part) -> None:
        """A version naming tips no longer stands (retracted, or replaced by a correction)."""
        for tip_id in part.tips:
            key = tip_key(tip_id)
            tip = self.get(key)
            if isinstance(tip, TipState) and version in tip.cases:
                kept = tuple(v for v in tip.cases if v != version)
                self.set_tip(key, tip, msgspec.structs.replace(tip, cases=kept))

    def _tip(self, key: Key, seq: int, event: Event, message: str) -> TipState:
        tip = self.get(key)
        if not isinstance(tip, TipState):
            raise UnknownTip(message, seq=seq, event_id=event.event_id)
        return tip

    def _retracted(self, seq: int, event: Event) -> None:
        assert isinstance(event, EntryRetracted)
        target = event.target_event_id
        tkey = target.int | EVENT_BIT
        value = self.get(tkey)
        if value is None or isinstance(value, TipState | EntityState | Superseded):
            raise UnknownTarget(
                f"no retractable event {target} (unknown, already retracted, or corrected)",
                seq=seq,
                event_id=event.event_id,
            )
        if isinstance(value, Fix):  # the version it replaced stands again
            pkey = event_key(value.replaces)
            previous = self.get(pkey)
            if not isinstance(previous, Superseded) or previous.by != target.bytes:
                raise UnknownTarget(
                    f"the version correction {target} replaced is missing", seq=seq, event_id=event.event_id
                )
            restored = previous.value
            self._swap(seq, event, target.bytes, value.value, value.replaces, _current(restored))
            self._written[pkey] = restored
        elif isinstance(value, EntityLink):
            self._retract_mark(seq, event, value)
        elif isinstance(value, TipLink):
            key = tip_key(value.tip)
            tip = self._tip(key, seq, event, "the retracted entry's tip is unknown")
            if value.assessment and not _assessed(tip, target.bytes):
                pass  # an assessment of an earlier tip of this id (retracted, its id received again)
            elif _other_ward(tip.ward, tip.units, event):
                raise WardMismatch(
                    f"the retracted entry is in ward {tip.ward}", seq=seq, event_id=event.event_id
                )
            elif value.assessment:
                kept = tuple(a for a in tip.assessments if a[0] != target.bytes)
                self.set_tip(key, tip, msgspec.structs.replace(tip, assessments=kept))
            else:
                self.set_tip(key, tip, msgspec.structs.replace(tip, retracted=True))
        else:
            if _other_ward(value.ward, value.units, event):
                raise WardMismatch(
                    f"the retracted entry is in ward {value.ward}", seq=seq, event_id=event.event_id
                )
            yk = year_key(value.day)
            for metric, amount in value.amounts:
                self.add(value.ward, yk, metric, -amount)
            if value.tips:
                self._unlink(target.bytes, value)
            if value.units:
                self.spread(value, yk, -1)
        self._written[tkey] = None

    def _corrected(self, seq: int, event: Event) -> None:
        assert isinstance(event, EntryCorrected)
        target = event.target_event_id
        tkey = target.int | EVENT_BIT
        value = self.get(tkey)
        if not isinstance(value, Part | TipLink | EntityLink | Fix):
            raise UnknownTarget(
                f"no correctable version {target} (unknown, retracted, or already corrected)",
                seq=seq,
                event_id=event.event_id,
            )
        copy = event.corrected
        new: Part | TipLink | EntityLink
        if type(copy) in LIFECYCLES:
            new = EntityLink(
                entity=key_bytes(_entity_key_of(copy)), mark=_mark_of(copy, event.event_id.bytes)
            )
        elif isinstance(copy, TipReceived):
            new = _received(copy, seq)
        elif isinstance(copy, TipAssessed):
            new = TipLink(tip=copy.tip_id.bytes, assessment=True, valuable=copy.valuable)
        else:
            new = part_of(copy, seq)
        self._swap(seq, event, target.bytes, _current(value), event.event_id.bytes, new)
        self._written[event.event_id.int | EVENT_BIT] = Fix(value=new, replaces=target.bytes)
        self._written[tkey] = Superseded(value=value, by=event.event_id.bytes)

    def _swap(
        self,
        seq: int,
        event: Event,
        old_id: bytes,
        old: Part | TipLink | EntityLink,
        new_id: bytes,
        new: Part | TipLink | EntityLink,
    ) -> None:
        """Replace one version's contribution (``old``, of version ``old_id``) by another's, in one step."""
        if isinstance(old, EntityLink) or isinstance(new, EntityLink):
            if not (isinstance(old, EntityLink) and isinstance(new, EntityLink) and old.entity == new.entity):
                raise UnknownTarget(
                    "a correction must keep its target's type and entity", seq=seq, event_id=event.event_id
                )
            found = self._entity_of(old, old_id, seq, event)
            if found is None:
                return  # an event of an earlier entity of this id
            life, key, state = found
            marks = tuple(new.mark if m[0] == old_id else m for m in state.marks)
            self.set_entity(life, key, state, msgspec.structs.replace(state, marks=marks))
            return
        if isinstance(old, Part) and isinstance(new, Part):
            if _other_ward(old.ward, old.units, event) or _other_ward(new.ward, new.units, event):
                raise WardMismatch(
                    f"the corrected entry is in ward {old.ward}", seq=seq, event_id=event.event_id
                )
            # each version counts where its own place says (a pre-2025 copy's date may move it)
            oyk, nyk = year_key(old.day), year_key(new.day)
            for metric, amount in old.amounts:
                self.add(old.ward, oyk, metric, -amount)
            if old.units:
                self.spread(old, oyk, -1)
            for metric, amount in new.amounts:
                self.add(new.ward, nyk, metric, amount)
            if new.units:
                self.spread(new, nyk, 1)
            if old.tips:
                self._unlink(old_id, old)
            if new.tips:
                self._link(new_id, new)
            return
        if not (
            isinstance(old, TipLink)
            and isinstance(new, TipLink)
            and old.tip == new.tip
            and old.assessment == new.assessment
        ):
            raise UnknownTarget(
                "a correction must keep its target's type and tip", seq=seq, event_id=event.event_id
            )
        key = tip_key(old.tip)
        tip = self._tip(key, seq, event, "the corrected entry's tip is unknown")
        if new.assessment and not _assessed(tip, old_id):
            return  # an assessment of an earlier tip of this id (retracted, its id received again)
        if _other_ward(tip.ward, tip.units, event):
            raise WardMismatch(f"the corrected entry is in ward {tip.ward}", seq=seq, event_id=event.event_id)
        if not new.assessment:
            after = msgspec.structs.replace(tip, day=new.day, source=new.source)
            if new.ward:  # a pre-2025 tip: the version's own place
                after = msgspec.structs.replace(after, ward=new.ward, units=new.units, approx=new.approx)
        else:
            kept = tuple((new_id, new.valuable) if a[0] == old_id else a for a in tip.assessments)
            after = msgspec.structs.replace(tip, assessments=kept)
        self.set_tip(key, tip, after)


def _received(event: TipReceived, seq: int) -> TipLink:
    """A received tip's link: its day, and a pre-2025 tip's place on that day."""
    day = event.occurred_on.toordinal()
    source = sys.intern(event.source)
    if isinstance(event.locality, Locality):
        return TipLink(tip=event.tip_id.bytes, assessment=False, day=day, source=source)
    place = _place(event, seq)
    return TipLink(
        tip=event.tip_id.bytes,
        assessment=False,
        day=day,
        source=source,
        ward=place.ward,
        units=place.units,
        approx=place.approximate,
    )


def _assessed(tip: TipState, event_id: bytes) -> bool:
    return any(a[0] == event_id for a in tip.assessments)


def _current(value: Part | TipLink | EntityLink | Fix) -> Part | TipLink | EntityLink:
    """What a standing version contributes."""
    return value.value if isinstance(value, Fix) else value


def handled_types() -> frozenset[type]:
    """The event types the fold has a handler for (``tests/test_catalogue.py``: every type of the union)."""
    return frozenset(_Folder({}, {}, {})._apply)


def fold(state: State, events: Iterable[tuple[int, Recorded]]) -> tuple[StateUpdate, Deltas]:
    """Fold events (stream sequence, record) in order over ``state``; neither input is changed.

    Returns the state update (the keys written: new value or None = delete; the new state is ``state``
    overlaid with it) and the non-zero changes of figures. Raises a ``FoldError`` for an event that cannot
    apply; nothing of the batch should then be stored.
    """
    update: StateUpdate = {}
    deltas: Deltas = {}
    _Folder(state, update, deltas).run(events)
    return update, {k: v for k, v in deltas.items() if v}


def fold_into(state: dict[Key, Value | None], totals: Deltas, events: Iterable[tuple[int, Recorded]]) -> None:
    """The same fold, writing straight into a state and running totals held whole in memory (replays).

    A retracted entry's key is left with None. On a ``FoldError`` both may hold part of the batch: a replay
    stops there.
    """
    _Folder({}, state, totals).run(events)


def apply_update(state: dict[Key, Value], update: StateUpdate) -> None:
    """Overlay a state update on an in-memory state."""
    for key, value in update.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
