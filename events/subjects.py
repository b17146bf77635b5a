"""Subjects of the event log: ``antq.events.<province>.<ward>.<rest>`` with 2025 codes.

A lifecycle entity (a tip, a mediation case, the retraction of one entry) has a subject of its own, so that
``Nats-Expected-Last-Subject-Sequence`` can guard it.
"""

from __future__ import annotations

import uuid

import msgspec

from events.catalogue import CATALOGUE, Entity
from events.schema import Event

_ids = msgspec.json.Encoder()


def id_text(value: object) -> str:
    """An id as text: a UUID as ``str`` writes it (lowercase, hyphens), in C (``UUID.__str__`` is Python,
    about 3 times slower, and the gateway writes every event's id and every entity subject's)."""
    if type(value) is uuid.UUID:
        return _ids.encode(value)[1:-1].decode("ascii")
    return str(value)


EVENTS_PREFIX = "antq.events"
INTAKE_PREFIX = "antq.intake"
REJECTED_PREFIX = "antq.rejected"
UPDATES_PREFIX = "antq.updates.stats"
SEALS_SUBJECT = "antq.seals"
QUERY_SUBJECT = "antq.query.stats"
"""Queries on the open stack; on the secure stack each identity asks on ``query_subject(<its public key>)``."""


def query_subject(client: str | None = None) -> str:
    """Where a client sends queries: ``antq.query.stats.<client>`` for an identity (its public key: the
    server lets each identity publish only on its own, so the query service counts its waiting requests per
    identity), ``antq.query.stats`` without one (counted per reply-inbox prefix)."""
    return f"{QUERY_SUBJECT}.{client}" if client else QUERY_SUBJECT


def client_of_query(subject: str) -> str | None:
    """The client a query subject names (its last token after ``antq.query.stats.``), or None."""
    head, _, client = subject.rpartition(".")
    return client if head == QUERY_SUBJECT and client else None


_PLAIN_REST: dict[type, str] = {s.struct: s.subject for s in CATALOGUE if not isinstance(s.subject, Entity)}
_ENTITY_REST: dict[type, tuple[str, str, str]] = {
    s.struct: (f"{s.subject.name}.", s.subject.field, ".end" if s.subject.role == "ends" else "")
    for s in CATALOGUE
    if isinstance(s.subject, Entity)
}


def rest_of(event: Event) -> str:
    """The subject's tokens after the ward: the event's plain subject, or its entity's (``EventSpec.rest_of``,
    read here from two tables built once: every reader checks every stored record's subject with this)."""
    plain = _PLAIN_REST.get(type(event))
    if plain is not None:
        return plain
    head, field, end = _ENTITY_REST[type(event)]
    return f"{head}{id_text(getattr(event, field))}{end}"


def event_subject(event: Event, province: str, ward: str | None = None) -> str:
    """The subject of an event in ``province``: on its 2025 ward (``ward``: the resolved ward of a pre-2025
    locality; by default the ward a ``gso-2025`` locality names)."""
    if ward is None:
        ward = getattr(event.locality, "ward", None)
        if ward is None:
            raise ValueError("a pre-2025 locality without a ward: give its resolved 2025 ward")
    return f"{EVENTS_PREFIX}.{province}.{ward}.{rest_of(event)}"


def ward_filter(province: str, ward: str | None = None) -> str:
    """Subject filter for one province or one ward."""
    return f"{EVENTS_PREFIX}.{province}.{ward or '*'}.>"


def updates_subject(province: str, ward: str, year: int) -> str:
    return f"{UPDATES_PREFIX}.{province}.{ward}.{year}"


def office_of_intake(subject: str) -> str | None:
    head, _, office = subject.rpartition(".")
    return office if head == INTAKE_PREFIX and office else None
