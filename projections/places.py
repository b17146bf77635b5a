"""Where an event counts: its 2025 ward, and for a pre-2025 locality also the units it was recorded under.

One pure function, ``place_of(event)``, used by the fold wherever it needs an event's place, so that every
reader of the log (the live runner, rebuilds, replay, verify) resolves alike:

- ``gso-2025``: the ward itself; nothing else.
- ``gso-pre2025``: the locality is resolved on the event's date (``occurred_on``; a correction's on its
  corrected copy's) by ``events.localities.Localities.resolve_legacy``: the resolved 2025 ward, ``approximate``
  when a split commune went to its default ward because no ``ward`` was given, and the units as recorded:
  the commune code given and its district and province on that date, as keys in the ward position of the
  figures (``unit_key``: ``pre2025:commune:01471``, ``pre2025:district:046``, ``pre2025:province:04``).

The gateway refused every locality that did not resolve when it was recorded. If the mapping was corrected
since (a new ``lineage.tsv`` row), a stored event may no longer resolve as it did: it is then placed as far as
the data allows (the commune on that date without the district/province check; else its ward given; else the
default of all the code's successors, flagged approximate), never set aside. Only a commune code the mapping
no longer knows at all, with no ward given, has no place (``None``): the fold halts loudly on it (the mapping
correction is then wrong, not the log).
"""

from __future__ import annotations

import datetime as dt
from functools import cache, lru_cache
from typing import Final, Literal, NamedTuple

from events.errors import EventError
from events.legacy_localities import REFORM_EVE
from events.localities import Localities
from events.schema import EntryCorrected, Event, LegacyLocality, Locality

UNIT_PREFIX: Final = "pre2025:"
"""Figures kept by a pre-2025 unit as recorded live under ``pre2025:<kind>:<code>`` in the ward position. Their
province column is ``UNIT_PROVINCE``, which no 2025 province code (two digits) matches; they are not published
on the update feed, which carries 2025 wards only."""
UNIT_PROVINCE: Final = "pre2025"
UnitKind = Literal["commune", "district", "province"]


def unit_key(kind: UnitKind, code: str) -> str:
    """The key of a pre-2025 unit's figures (``pre2025:district:046``)."""
    return f"{UNIT_PREFIX}{kind}:{code}"


def is_unit_key(key: str) -> bool:
    """True for a pre-2025 unit's key, False for a 2025 ward code."""
    return key.startswith(UNIT_PREFIX)


class Place(NamedTuple):
    """Where an event's figures count: its 2025 ward (with ``approximate``) and the pre-2025 units it was
    recorded under (keys by ``unit_key``; empty for a ``gso-2025`` locality)."""

    ward: str
    units: tuple[str, ...]
    approximate: bool


@cache
def localities() -> Localities:
    """The packaged mapping, loaded once per process (pure lookups afterwards)."""
    return Localities.load()


def place_of(event: Event) -> Place | None:
    """Where ``event`` counts (see the module's text); None only when its pre-2025 commune is unknown to the
    mapping altogether and it names no ward."""
    locality = event.locality
    if isinstance(locality, Locality):
        return Place(locality.ward, (), False)
    day = (event.corrected if isinstance(event, EntryCorrected) else event).occurred_on
    return legacy_place(locality, day)


@lru_cache(maxsize=65_536)
def legacy_place(locality: LegacyLocality, day: dt.date) -> Place | None:
    """The place of a pre-2025 locality on a day (memoised: a district's events repeat a few localities)."""
    data = localities()
    commune = locality.commune
    try:
        found = data.resolve_legacy(
            commune, day, district=locality.district, province=locality.province, ward=locality.ward
        )
    except (
        EventError
    ):  # the mapping changed since the gateway accepted it: place it as far as the data allows
        return _fallback(data, locality, day)
    units = (
        unit_key("commune", commune),
        unit_key("district", found.district),
        unit_key("province", found.province),
    )
    return Place(found.ward, units, found.approximate)


def _fallback(data: Localities, locality: LegacyLocality, day: dt.date) -> Place | None:
    commune = locality.commune
    given = locality.ward if locality.ward is not None and data.ward(locality.ward) is not None else None
    found = data.legacy_commune(commune, min(day, REFORM_EVE))
    if found is not None:
        ward = given or found.successors[0]
        units = (
            unit_key("commune", commune),
            unit_key("district", found.district),
            unit_key("province", found.province),
        )
        return Place(ward, units, given is None and len(found.successors) > 1)
    recorded = [unit_key("commune", commune)]
    if locality.district is not None:
        recorded.append(unit_key("district", locality.district))
    if locality.province is not None:
        recorded.append(unit_key("province", locality.province))
    if given is not None:
        return Place(given, tuple(recorded), False)
    successors = data.successors(commune)
    if not successors:
        return None
    return Place(successors[0], tuple(recorded), True)
