"""What one event brings to the fold, read without any state, and the base every fold rule writes through.

- a plain event's ``Part`` (``part_of``: the figures its catalogue entry declares, the tips it names, a
  pre-2025 event's place), and a received tip's ``TipLink`` (``received_link``);
- the 2025 place of a pre-2025 event (``resolved_place``) and the check that an event about an entry is filed
  in the entry's ward (``other_ward``);
- ``FolderBase``: the fold's view of the state (what the batch wrote first, then what was loaded) and the
  changes of figures it adds up (``add``; ``spread`` for a pre-2025 place's extra figures).

The rules by kind of event build on ``FolderBase``: tips (``projections.fold_tips``), lifecycle entities
(``projections.fold_lifecycles``), retractions and corrections (``projections.fold_versions``), plain events
(``projections.folds``). Pure; no I/O.
"""

from __future__ import annotations

import sys
from typing import Final

from events.catalogue import CATALOGUE, CONTRIBUTIONS
from events.schema import Event, Locality, TipReceived
from projections import metrics as m
from projections.errors import UnknownWard
from projections.fold_state import Deltas, Key, Part, State, TipLink, Value, YearKey
from projections.places import Place, place_of


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
    links = LINKS.get(type(event))
    tips = tuple(t.bytes for t in getattr(event, links)) if links is not None else ()
    if type(locality) is Locality and not tips:  # the common case first, as cheaply as it can be told
        return Part(ward=sys.intern(locality.ward), day=event.occurred_on.toordinal(), amounts=amounts)
    units: tuple[str, ...] = ()
    if type(locality) is Locality:
        ward, approx = sys.intern(locality.ward), False
    else:
        place = resolved_place(event, seq)
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


def resolved_place(event: Event, seq: int) -> Place:
    """The event's 2025 place (``place_of``), or ``UnknownWard`` for a pre-2025 locality the mapping lacks."""
    place = place_of(event)
    if place is None:
        raise UnknownWard(
            f"pre-2025 locality {event.locality} has no 2025 ward under this mapping (was it corrected?)",
            seq=seq,
            event_id=event.event_id,
        )
    return place


def other_ward(ward: str, units: tuple[str, ...], event: Event) -> bool:
    """An event about an entry (assessment, retraction, correction) filed in another ward than the entry's.
    Checked between two ``gso-2025`` localities only: a pre-2025 one resolves through the mapping, which a
    later correction may change (the gateway checked it on the mapping of its day); its figures go where the
    entry's own place says."""
    locality = event.locality
    return not units and isinstance(locality, Locality) and locality.ward != ward


LINKS: Final[dict[type, str]] = {s.struct: s.links.field for s in CATALOGUE if s.links is not None}
"""Per type naming tips (``EventSpec.links``), the list field naming them."""


def received_link(event: TipReceived, seq: int) -> TipLink:
    """A received tip's link: its day, and a pre-2025 tip's place on that day."""
    day = event.occurred_on.toordinal()
    source = sys.intern(event.source)
    if isinstance(event.locality, Locality):
        return TipLink(tip=event.tip_id.bytes, assessment=False, day=day, source=source)
    place = resolved_place(event, seq)
    return TipLink(
        tip=event.tip_id.bytes,
        assessment=False,
        day=day,
        source=source,
        ward=place.ward,
        units=place.units,
        approx=place.approximate,
    )


_ABSENT: Final = object()


class FolderBase:
    """Reads ``written`` first, then ``state``; writes go to ``written``, changes of figures to ``deltas``."""

    def __init__(self, state: State, written: dict[Key, Value | None], deltas: Deltas) -> None:
        self._state = state
        self._written = written
        self.deltas = deltas

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
