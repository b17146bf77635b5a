"""The benchmarks' and fault tests' history (``bench.projection.realistic_events``) holds every type of the
catalogue but corrections, and a plain type joins it by its catalogue entry alone: declaring a plain countable
type touches its Struct, its catalogue entry, the test reference model and the README row, not the bench."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
import pytest

import bench.projection as bp
from events.catalogue import CATALOGUE, spec_of
from events.localities import Localities
from events.schema import Event

ENVELOPE = {"type", "event_id", "occurred_on", "locality"}


def _required(cls: type[msgspec.Struct]) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(cls) if f.required}


def test_the_history_holds_every_type_but_corrections() -> None:
    wards = Localities.load().wards_of("04")[:20]
    seen = {spec_of(ev).tag for ev in bp.realistic_events(6000, wards, seed=3)}
    expected = {s.tag for s in CATALOGUE} - {"entry.corrected"}
    assert expected - seen == set(), f"types the bench never files: {sorted(expected - seen)}"


def test_every_plain_type_without_an_entity_is_in_the_mix() -> None:
    plain = {s.tag for s in CATALOGUE if s.fold == "plain" and s.entity is None} - bp.DRAWN_APART
    assert set(bp.MOVEMENT_TAGS) == plain


@pytest.mark.parametrize("tag", sorted(bp.PLAIN_MIX))
def test_a_plain_type_without_written_fields_gets_a_valid_example(
    tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing written for it, a type's fields are the contract's example: exactly its required fields
    (read from the Struct, not from the example builder), and the event they make decodes as that type."""
    monkeypatch.setattr(bp, "MOVEMENT_FIELDS", {})
    fields = bp.plain_mix()[tag]
    spec = next(s for s in CATALOGUE if s.tag == tag)
    assert set(fields) == _required(spec.struct) - ENVELOPE
    doc = {
        "type": tag,
        "event_id": str(uuid.uuid4()),
        "occurred_on": dt.date(2020, 5, 1).isoformat(),
        "locality": {"scheme": "gso-2025", "ward": "01447"},
        **fields,
    }
    event = msgspec.convert(doc, Event)
    assert type(event) is spec.struct
