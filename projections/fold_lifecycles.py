"""Lifecycle entities in the fold (models, persons under management): an event's entity key and its mark
(role, day, values of ``Lifecycle.fields``), the entity named in error messages, and the figures an entity
contributes as a pure function of its history (``entity_figures``), with the memo of the figures last
computed per entity (``_last_figures``) the fold starts the next change from; and the fold's rules for
lifecycle events (``EntityFolding``: an entity's creation, updates and end, a mark retracted). Pure; no I/O.
"""

from __future__ import annotations

import sys
import uuid
from typing import Final

import msgspec

from events.catalogue import CATALOGUE, LIFECYCLES, Contribution, Lifecycle
from events.schema import Event, Locality
from projections import metrics as m
from projections.errors import DuplicateEntity, UnknownEntity, WardMismatch
from projections.fold_parts import FolderBase, other_ward, resolved_place
from projections.fold_state import (
    CREATES,
    ENDS,
    EVENT_BIT,
    REFERS,
    STATE_SHIFT,
    EntityLink,
    EntityState,
    Key,
    Mark,
    YearKey,
    key_bytes,
    key_of,
    year_key,
)

_ROLE_CODES: Final = {"creates": CREATES, "refers": REFERS, "ends": ENDS}


_ENTITY_FIELD: Final = {s.struct: s.entity.field for s in CATALOGUE if s.fold == "lifecycle" and s.entity}


_SAME: Final = {
    s.struct: frozenset(s.entity.same) for s in CATALOGUE if s.fold == "lifecycle" and s.entity is not None
}


def _what(life: Lifecycle, event: Event) -> str:
    """An entity named in an error message (``model <uuid>``)."""
    return f"{life.entity} {getattr(event, _ENTITY_FIELD[type(event)])}"


_ENTITY_BASE: Final = {
    struct: (life.state << STATE_SHIFT, _ENTITY_FIELD[struct]) for struct, life in LIFECYCLES.items()
}
"""Per lifecycle type: the high bits of its entity's key (``entity_key``) and the field naming the entity."""


def entity_key_of(event: Event) -> Key:
    base, field = _ENTITY_BASE[type(event)]
    entity_id: uuid.UUID = getattr(event, field)
    return base | entity_id.int


def mark_of(event: Event, mark_id: bytes) -> Mark:
    life = LIFECYCLES[type(event)]
    role = _ROLE_CODES[life.roles[type(event)]]
    values = life.values_of(event) if role != ENDS else ()
    same = _SAME[type(event)]
    if same:  # fields a reference repeats from its creation (checked by the gateway) never change it
        values = tuple(None if name in same else v for name, v in zip(life.fields, values, strict=True))
    return (mark_id, role, event.occurred_on.toordinal(), values)  # type: ignore[return-value]


def _put(out: dict[tuple[YearKey, str], int], yk: YearKey, pairs: Contribution, sign: int) -> None:
    for metric, amount in pairs:
        k = (yk, metric)
        out[k] = out.get(k, 0) + sign * amount


def entity_figures(life: Lifecycle, state: EntityState | None) -> dict[tuple[YearKey, str], int]:
    """What a lifecycle entity contributes to its ward, by year key: a pure function of its history.

    The creation's flows and its stocks in the year of its day; each update (in order of day, then of the
    stream) changes the stocks from its day on; the first end takes the stocks away and adds its own flows in
    its year. A mark dated before the creation counts on the creation's day. Stocks are stored as the change in
    each year: what stands at the end of a year is the sum of the changes up to it (``projections.reads``,
    ``projections.calendar_figures``)."""
    out: dict[tuple[YearKey, str], int] = {}
    if state is None:
        return out
    start = next((m for m in state.marks if m[1] == CREATES), None)
    if start is None:
        return out
    first = start[2]
    values = start[3]
    attrs = life.attrs(values)
    fixed: YearKey | None = None
    if life.counted_in is not None:  # every figure in the year a field names (both kinds of year)
        fixed = int(values[life.fields.index(life.counted_in)]) * 2  # type: ignore[arg-type]
    yk = year_key(first) if fixed is None else fixed
    created = yk
    if "creates" in life.flows:
        _put(out, yk, life.flows["creates"](attrs), 1)
    stock = life.stocks(attrs)
    _put(out, yk, stock, 1)
    rest = sorted((m for m in state.marks if m is not start), key=lambda m: max(m[2], first))
    for _, role, day, changes in rest:
        yk = year_key(max(day, first)) if fixed is None else fixed
        if role == REFERS:
            values = tuple(old if new is None else new for old, new in zip(values, changes, strict=True))
            attrs = life.attrs(values)
            after = life.stocks(attrs)
            _put(out, yk, stock, -1)
            _put(out, yk, after, 1)
            stock = after
            if "refers" in life.flows:
                _put(out, yk, life.flows["refers"](attrs), 1)
        elif role == ENDS:
            if "ends" in life.flows:
                _put(out, yk, life.flows["ends"](attrs), 1)
            _put(out, yk, stock, -1)
            break
    _put(out, created, life.finals(attrs), 1)  # on the latest values, once
    return {k: v for k, v in out.items() if v}


_last_figures: dict[Key, tuple[EntityState, dict[tuple[YearKey, str], int]]] = {}
"""The figures last computed for an entity's state (by key): the next event of that entity starts from that
very state (``is``), so its figures before the change are not computed again. A memo of a pure function, the
entities changed most recently first kept (``remember``: least recently changed ones go beyond
``_LAST_FIGURES_MAX``); the fold's results never depend on it."""
_LAST_FIGURES_MAX: Final = 4_096
"""About 1.5 kB an entity (its state and its figures): a few MB. At 50,000 entries, cleared when full, the memo
was the projection's slow growth under load (about 3 MB per 100,000 events of the bench's mix, where one
event in 50 creates an entity) up to some 75 MB."""


def _figures_of(life: Lifecycle, key: Key, state: EntityState | None) -> dict[tuple[YearKey, str], int]:
    """``entity_figures(life, state)``, from the memo when ``state`` is the very state last computed."""
    if state is None:
        return {}
    found = _last_figures.get(key)
    if found is not None and found[0] is state:
        return found[1]
    return entity_figures(life, state)


def remember(key: Key, state: EntityState, figures: dict[tuple[YearKey, str], int]) -> None:
    """Keep an entity's figures for its next change; the least recently changed entity goes when full."""
    _last_figures.pop(key, None)  # to the end: dicts keep insertion order
    _last_figures[key] = (state, figures)
    if len(_last_figures) > _LAST_FIGURES_MAX:
        del _last_figures[next(iter(_last_figures))]


_LIFE_BY_STATE: Final = {life.state: life for life in LIFECYCLES.values()}


class EntityFolding(FolderBase):
    """The rules of lifecycle events, and a lifecycle mark retracted."""

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
        key = entity_key_of(event)
        state = self.get(key)
        before = state if isinstance(state, EntityState) else None
        mark = mark_of(event, event.event_id.bytes)
        if mark[1] == CREATES:
            if before is not None and before.marks:
                raise DuplicateEntity(
                    f"{_what(life, event)} already exists", seq=seq, event_id=event.event_id
                )
            locality = event.locality
            if type(locality) is Locality:
                after = EntityState(ward=sys.intern(locality.ward), marks=(mark,))
            else:
                place = resolved_place(event, seq)
                after = EntityState(
                    ward=place.ward, marks=(mark,), units=place.units, approx=place.approximate
                )
        else:
            if before is None or not before.marks:
                raise UnknownEntity(f"{_what(life, event)} is unknown", seq=seq, event_id=event.event_id)
            if other_ward(before.ward, before.units, event):
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
        if other_ward(state.ward, state.units, event):
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
