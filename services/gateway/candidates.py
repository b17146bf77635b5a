"""What the intake pipeline knows of one event and of one request while it processes them: ``_Candidate`` (a
validated event, its subject, ward, hash and catalogue entry), ``_Batch`` (a request's index rows, claims and
publishes in flight), and the per-event rules read from the catalogue (``claim_key``, ``link_keys``,
``entity_of``, ``is_lifecycle``, ``may_be_ended``, ``event_type``; ``guess_event_id`` for a document that
failed validation). Plain values and functions; no I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import msgspec

from events.catalogue import Entity, EventSpec, ended_entities, spec_of
from events.schema import Event, LegacyLocality
from events.subjects import id_text
from services.gateway.index import Claim, IndexRow
from services.gateway.publisher import Pending


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
    return f"{entity.claim}:{id_text(getattr(event, entity.field))}"


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


@dataclass(slots=True)
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
    encoded: bytes = b""
    """The normalised event's encoding (``decode_event_encoded``): hashed, and stored inside its record."""
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
    inflight: list[tuple[_Candidate, Pending, int | None]] = field(default_factory=list)
    inflight_keys: set[str] = field(default_factory=set)


_ENDS = "<an end of a version>"
"""An in-flight key held by every retraction and correction: the next one waits for them."""

MAX_CORRECTIONS = 32
"""How many corrections of one end the gateway follows to find the version that stands."""
