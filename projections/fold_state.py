"""The fold's state values and keys (``projections.folds`` folds over them): the stored values (``TipState``,
``TipLink``, ``Part``, ``Fix``, ``Superseded``, ``EntityState``, ``EntityLink``) and their msgpack form
(``encode_value``/``decode_value``), the integer keys (a tip, an event with ``EVENT_BIT``, a lifecycle entity
by its state number) and their stored form (``key_bytes``/``key_of``), and the year keys of deltas
(``year_key``) split into calendar and reporting years (``by_period``). Pure values; no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Final, TypeAlias

import msgspec

from events.catalogue import Lifecycle
from projections.periods import CALENDAR, REPORTING, REPORTING_START_DAY, REPORTING_START_MONTH, Period

Key: TypeAlias = int
"""A tip: its id as an integer. An event: its id as an integer plus ``EVENT_BIT``. A lifecycle entity: its id
plus its entity's state number (``Entity.state``) shifted by ``STATE_SHIFT``."""
EVENT_BIT: Final = 1 << 128
STATE_SHIFT: Final = 129
YearKey: TypeAlias = int
"""``calendar year * 2 + 1`` for 15–31 December (counted in the next reporting year), ``* 2`` otherwise."""
DeltaKey: TypeAlias = tuple[str, YearKey, str]
"""(ward, year key, metric)"""
Deltas: TypeAlias = dict[DeltaKey, int]
PeriodKey: TypeAlias = tuple[Period, str, int, str]
"""(period, ward, year, metric)"""
Figures: TypeAlias = dict[PeriodKey, int]
_TIP_TAG: Final = b"t"
_EVENT_TAG: Final = b"e"
_STATE_TAG: Final = b"s"
_ID_MASK: Final = EVENT_BIT - 1


class TipState(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False, tag=1):
    ward: str
    day: int  # proleptic Gregorian ordinal of the day the tip was received
    retracted: bool
    assessments: tuple[tuple[bytes, bool], ...]  # (event_id, valuable), stream order, retracted ones removed
    source: str  # its standing version's source: tips_received.<source>, tips_valuable.<source>
    since: int = 0  # the stream sequence this tip (this receipt of its id) was received at
    cases: tuple[bytes, ...] = ()  # versions of cases.cleared naming it (event ids), recorded after ``since``

    @property
    def leads(self) -> bool:
        """Counted in ``tips_leading_to_cases``: it stands and a standing case names it."""
        return not self.retracted and bool(self.cases)

    units: tuple[str, ...] = ()  # a pre-2025 locality: the units as recorded (``projections.places``)
    approx: bool = False  # a split commune resolved to its default ward

    @property
    def valuable(self) -> bool:
        return not self.retracted and bool(self.assessments) and self.assessments[-1][1]


class TipLink(
    msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False, tag=2, omit_defaults=True
):
    """A tip.received (``assessment`` False) or tip.assessed event: its contribution lives in the tip. What a
    correction may change is kept here, so that the version stands again when its correction is retracted:
    an assessment's ``valuable``, a received tip's ``day`` and ``source``."""

    tip: bytes
    assessment: bool
    valuable: bool = False
    day: int = 0
    source: str = ""
    ward: str = ""
    """A received tip of a pre-2025 locality: its place on ``day`` (a corrected date may move it); else empty."""
    units: tuple[str, ...] = ()
    approx: bool = False


class Part(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False, tag=3, omit_defaults=True):
    """What a plain event added to its ward-year: its declared figures (``events.catalogue``), as amounts; and
    for an event naming tips (``EventSpec.links``), those tips and the sequence this version was recorded at:
    it counts for a tip only when that tip was received before it (a tip received again after its retraction is
    another tip, as its assessments are)."""

    ward: str
    day: int
    amounts: tuple[tuple[str, int], ...]
    tips: tuple[bytes, ...] = ()
    seq: int = 0
    units: tuple[str, ...] = ()
    """A pre-2025 locality: the units as recorded, each counted the same amounts (``projections.places``)."""
    approx: bool = False
    """A split commune resolved to its default ward: the amounts also count as ``~<metric>`` of the ward."""


class Fix(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False, tag=4):
    """A correction (the version it is now): the corrected copy's contribution, and the version it replaced."""

    value: Part | TipLink | EntityLink
    replaces: bytes
    """The replaced version's event id (its key holds a ``Superseded``)."""


class Superseded(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False, tag=5):
    """A version replaced by a correction: its own value, restored if that correction is retracted."""

    value: Part | TipLink | EntityLink | Fix
    by: bytes
    """The correction's event id."""


Mark: TypeAlias = tuple[bytes, int, int, tuple[str | bool | int | None, ...]]
"""One event of a lifecycle entity's history: (event id, role, day ordinal, its values of ``Lifecycle.fields``)."""
CREATES: Final = 0
REFERS: Final = 1
ENDS: Final = 2


class EntityState(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False, tag=6):
    """A lifecycle entity (a model, a person under management): its ward and its standing history of marks,
    in stream order (retracted marks removed; a retracted creation empties it and frees the id)."""

    ward: str
    marks: tuple[Mark, ...]
    units: tuple[str, ...] = ()  # a pre-2025 locality: the units as recorded (``projections.places``)
    approx: bool = False  # a split commune resolved to its default ward


class EntityLink(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False, tag=7):
    """A lifecycle entity's event: the entity's stored key and the event's mark (kept so that a corrected
    version stands again when its correction is retracted)."""

    entity: bytes
    mark: Mark


Value: TypeAlias = TipState | TipLink | Part | Fix | Superseded | EntityState | EntityLink
State: TypeAlias = Mapping[Key, Value]
StateUpdate: TypeAlias = dict[Key, Value | None]
"""Keys the fold wrote: the new value, or None for a deleted key."""

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Value] = msgspec.msgpack.Decoder(Value)


def encode_value(value: Value) -> bytes:
    return _encoder.encode(value)


def decode_value(data: bytes) -> Value:
    return _decoder.decode(data)


def key_bytes(key: Key) -> bytes:
    """The stored form of a key: ``t`` or ``e`` and the 16 bytes of the id; ``s``, the state number and the
    16 bytes of the id for a lifecycle entity."""
    ns = key >> STATE_SHIFT
    if ns:
        return _STATE_TAG + bytes([ns]) + (key & _ID_MASK).to_bytes(16, "big")
    tag = _EVENT_TAG if key & EVENT_BIT else _TIP_TAG
    return tag + (key & _ID_MASK).to_bytes(16, "big")


def key_of(stored: bytes) -> Key:
    if stored[:1] == _STATE_TAG:
        return (stored[1] << STATE_SHIFT) | int.from_bytes(stored[2:], "big")
    number = int.from_bytes(stored[1:], "big")
    return number | EVENT_BIT if stored[:1] == _EVENT_TAG else number


def entity_key(life: Lifecycle, entity_id: bytes) -> Key:
    return (life.state << STATE_SHIFT) | int.from_bytes(entity_id, "big")


def tip_key(tip_id: bytes) -> Key:
    return int.from_bytes(tip_id, "big")


def event_key(event_id: bytes) -> Key:
    return int.from_bytes(event_id, "big") | EVENT_BIT


_year_keys: dict[int, YearKey] = {}


def year_key(ordinal: int) -> YearKey:
    """The year key of a day (a proleptic Gregorian ordinal); memoised, days repeat a lot."""
    found = _year_keys.get(ordinal)
    if found is None:
        day = dt.date.fromordinal(ordinal)
        late = day.month == REPORTING_START_MONTH and day.day >= REPORTING_START_DAY
        found = _year_keys[ordinal] = day.year * 2 + late
    return found


def by_period(deltas: Mapping[DeltaKey, int]) -> Figures:
    """Deltas (or figures) split into both kinds of year, keyed (period, ward, year, metric); zeros left out."""
    out: Figures = {}
    for (ward, yk, metric), amount in deltas.items():
        if amount:
            year = yk >> 1
            for key in ((CALENDAR, ward, year, metric), (REPORTING, ward, year + (yk & 1), metric)):
                total = out.get(key, 0) + amount
                if total:
                    out[key] = total
                else:
                    del out[key]
    return out
