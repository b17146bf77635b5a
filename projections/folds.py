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

This module holds the fold's entry points (``fold``, ``fold_into``, ``keys_needed``, ``apply_update``) and the
dispatch by catalogue rule, with the rule of plain events. Elsewhere: the state's values and keys
(``projections.fold_state``), what one event contributes and the folder's base (``projections.fold_parts``),
the rules of tips (``projections.fold_tips``), of lifecycle entities (``projections.fold_lifecycles``), and of
retractions and corrections (``projections.fold_versions``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

from events.catalogue import CATALOGUE, CONTRIBUTIONS, LIFECYCLES, FoldRule
from events.schema import EntryCorrected, EntryRetracted, Event, Locality, Recorded, TipAssessed, TipReceived
from projections.fold_lifecycles import entity_key_of
from projections.fold_parts import LINKS, part_of
from projections.fold_state import (
    EVENT_BIT,
    Deltas,
    EntityLink,
    Fix,
    Key,
    Part,
    State,
    StateUpdate,
    Superseded,
    TipLink,
    Value,
    _year_keys,
    event_key,
    key_of,
    tip_key,
    year_key,
)
from projections.fold_versions import VersionFolding

__all__ = ["apply_update", "fold", "fold_into", "handled_types", "keys_needed"]


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
        elif type(event) in LINKS:
            keys.update(t.int for t in getattr(event, LINKS[type(event)]))
        elif type(event) in LIFECYCLES:
            keys.add(entity_key_of(event))
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
            if isinstance(event, EntryCorrected) and type(event.corrected) in LINKS:
                keys.update(t.int for t in getattr(event.corrected, LINKS[type(event.corrected)]))
            if isinstance(event, EntryCorrected) and type(event.corrected) in LIFECYCLES:
                keys.add(entity_key_of(event.corrected))
    return keys


class _Folder(VersionFolding):
    """Applies events one by one, each by the rule its catalogue entry names. Reads ``written`` first, then
    ``state``; writes go to ``written``."""

    def __init__(self, state: State, written: dict[Key, Value | None], deltas: Deltas) -> None:
        super().__init__(state, written, deltas)
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

    def _part(self, seq: int, event: Event) -> None:
        locality = event.locality
        if type(locality) is Locality and type(event) not in LINKS:  # the common case, kept cheap
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
