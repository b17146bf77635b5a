"""The gateway encodes an event once (``events.codec.decode_event_encoded``): that encoding is hashed, stored inside
its record (``recorded_bytes``) and, by counting quotes, tells that no key was given twice (``duplicate_key`` with
``encoded``). Each shortcut is held here to what it replaces: msgspec's own encoding of the record, and Python's
json reading the document's pairs."""

from __future__ import annotations

import copy
import datetime as dt
import json
import types
import typing
import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from events.codec import (
    body_hash,
    decode_event,
    decode_event_encoded,
    encode_recorded,
    hash_of_encoded,
    recorded_bytes,
)
from events.errors import EventError, Invalid
from events.schema import EVENT_TYPES, Recorded
from events.subjects import id_text
from services.contract.asyncapi import example_of
from services.contract.build import contract
from tests.test_gateway_fuzz import valid_docs

TODAY = dt.date(2026, 12, 1)


def examples() -> list[dict[str, Any]]:
    """The contract's example of every event type: one valid document each."""
    out = []
    for name, schema in contract().schemas.items():
        tag = name.removesuffix(".json")
        if tag not in {t.__struct_config__.tag for t in EVENT_TYPES}:
            continue
        assert isinstance(schema, dict)
        doc = example_of(schema, schema.get("definitions", {}), tag)
        if "year" in doc:  # the standard's year is the year the example occurred in
            doc["year"] = int(doc["occurred_on"][:4])
        out.append(doc)
    return out


EXAMPLES = examples()


def test_every_event_type_has_an_example() -> None:
    assert len(EXAMPLES) == len(EVENT_TYPES)


def _leaf_types(tp: Any, seen: set[Any]) -> list[Any]:
    """The types a field's annotation can hold, through unions, containers, Annotated and nested Structs."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _leaf_types(typing.get_args(tp)[0], seen)
    if origin in (typing.Union, types.UnionType):
        return [leaf for arg in typing.get_args(tp) for leaf in _leaf_types(arg, seen)]
    if origin is typing.Literal:
        return [type(v) for v in typing.get_args(tp)]
    if origin in (list, tuple, frozenset, set):
        return [leaf for arg in typing.get_args(tp) if arg is not Ellipsis for leaf in _leaf_types(arg, seen)]
    if origin is not None:
        return [origin]
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if tp not in seen:
            seen.add(tp)
            hints = typing.get_type_hints(tp, include_extras=True)
            return [tp, *(leaf for name in tp.__struct_fields__ for leaf in _leaf_types(hints[name], seen))]
        return []
    return [tp]


def test_no_event_struct_encodes_a_string_its_document_did_not_hold() -> None:
    """What makes equal quote counts prove 'no duplicate': every Struct in an event leaves its defaults out (or
    has none), and every value encoded as a JSON string was read from one (no number read as a Decimal, say)."""
    seen: set[Any] = set()
    leaves = {leaf for t in EVENT_TYPES for leaf in _leaf_types(t, seen)}
    structs = {leaf for leaf in leaves if isinstance(leaf, type) and issubclass(leaf, msgspec.Struct)}
    assert set(EVENT_TYPES) <= structs
    for struct in structs:
        info = msgspec.inspect.type_info(struct)
        assert isinstance(info, msgspec.inspect.StructType)
        has_defaults = any(not f.required for f in info.fields)
        assert struct.__struct_config__.omit_defaults or not has_defaults, struct
    plain = leaves - structs
    allowed = {str, int, bool, float, type(None), uuid.UUID, dt.date}
    assert plain <= allowed, plain - allowed


OFFICES = st.one_of(
    st.sampled_from(["ca-phuong-ba-dinh", "cao-bang_01", "x"]),
    st.text(
        min_size=1, max_size=20
    ),  # quotes, backslashes, Vietnamese, control characters: all escaped alike
)


@pytest.mark.parametrize("doc", EXAMPLES, ids=[d["type"] for d in EXAMPLES])
def test_the_record_built_from_the_encoding_is_msgspecs_own(doc: dict[str, Any]) -> None:
    event, encoded = decode_event_encoded(msgspec.json.encode(doc), today=TODAY)
    assert encoded == msgspec.json.encode(event)
    assert hash_of_encoded(encoded) == body_hash(event)
    for office in ("ca-phuong-ba-dinh", 'say "hi"\\', "Công an phường Ba Đình"):
        assert recorded_bytes(office, encoded) == encode_recorded(Recorded(office=office, event=event))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(valid_docs(), OFFICES)
def test_records_built_from_the_encoding_match_for_any_valid_event(doc: dict[str, Any], office: str) -> None:
    try:
        event, encoded = decode_event_encoded(msgspec.json.encode(doc), today=TODAY)
    except Invalid:
        return  # a drawn text msgspec takes but the checks refuse: nothing is encoded then
    assert recorded_bytes(office, encoded) == encode_recorded(Recorded(office=office, event=event))
    assert hash_of_encoded(encoded) == body_hash(event)
    assert msgspec.json.decode(recorded_bytes(office, encoded), type=Recorded) == Recorded(
        office=office, event=event
    )


def test_a_text_normalised_on_the_way_in_is_encoded_normalised() -> None:
    doc = dict(EXAMPLES[0], note="Phu\u031bo\u031b\u0300ng")  # 'Phường' typed with combining marks
    event, encoded = decode_event_encoded(msgspec.json.encode(doc), today=TODAY)
    assert "Phường" in encoded.decode() and encoded == msgspec.json.encode(event)


def _pairs(document: str) -> bool:
    """Oracle: Python's json sees a key twice in one object."""
    found = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        keys = [k for k, _ in pairs]
        found = found or len(keys) != len(set(keys))
        return dict(pairs)

    json.loads(document, object_pairs_hook=hook)
    return found


def _render(doc: Any, repeat: tuple[str, ...] | None, value: Any) -> str:
    """``doc`` as JSON text, with the key at path ``repeat`` written a second time (with ``value``)."""
    if isinstance(doc, dict):
        parts = [f"{json.dumps(k)}:{_render(v, _next(repeat, k), value)}" for k, v in doc.items()]
        if repeat is not None and len(repeat) == 1:
            parts.append(f"{json.dumps(repeat[0])}:{json.dumps(value)}")
        return "{" + ",".join(parts) + "}"
    if isinstance(doc, list):
        return "[" + ",".join(_render(v, _next(repeat, str(i)), value) for i, v in enumerate(doc)) + "]"
    return json.dumps(doc)


def _next(repeat: tuple[str, ...] | None, key: str) -> tuple[str, ...] | None:
    return repeat[1:] if repeat is not None and len(repeat) > 1 and repeat[0] == key else None


def _paths(doc: Any, at: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key's path in ``doc`` (list items by their index)."""
    out: list[tuple[str, ...]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*at, k))
            out += _paths(v, (*at, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*at, str(i)))
    return out


def _value_at(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    return doc


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(valid_docs(), st.sampled_from(EXAMPLES)), st.data())
def test_a_key_given_twice_is_refused_wherever_it_is_and_whatever_its_value(
    doc: dict[str, Any], data: st.DataObject
) -> None:
    """A key repeated at any level, with its own value, another valid value, or its field's default: refused
    with ``invalid`` at that key, as the oracle sees it; the same document without it is accepted."""
    try:
        decode_event(msgspec.json.encode(doc), today=TODAY)
    except EventError:
        assume(False)  # the fuzzer's documents are sometimes invalid on their own (a blank note)
    path = data.draw(st.sampled_from(_paths(doc)))
    original = _value_at(doc, path)
    value = data.draw(st.sampled_from([original, None, "", 0, [], "x"]))
    document = _render(doc, path, value)
    assert _pairs(document)
    # the document as msgspec reads it (the last of the two values): when that is a valid event, only the
    # duplicate can refuse it; else any refusal will do, as long as it is one
    last_wins = copy.deepcopy(doc)
    parent = _value_at(last_wins, path[:-1])
    parent[int(path[-1]) if isinstance(parent, list) else path[-1]] = value
    try:
        decode_event(msgspec.json.encode(last_wins), today=TODAY)
        valid_otherwise = True
    except EventError:
        valid_otherwise = False
    with pytest.raises(EventError) as refused:
        decode_event(document.encode(), today=TODAY)
    if valid_otherwise:
        assert isinstance(refused.value, Invalid) and "given twice" in refused.value.message
        assert refused.value.path == "$" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path)
    decode_event(_render(doc, None, None).encode(), today=TODAY)  # without the second key: accepted


@pytest.mark.parametrize("doc", EXAMPLES[:5], ids=[d["type"] for d in EXAMPLES[:5]])
def test_a_field_given_with_its_default_value_is_no_duplicate(doc: dict[str, Any]) -> None:
    """``"note": null`` is not encoded again (defaults are left out): the counts differ, and the document is
    still read as it is, without a duplicate."""
    with_default = dict(doc, note=None, hamlet=None)
    event = decode_event(msgspec.json.encode(with_default), today=TODAY)
    assert event == decode_event(msgspec.json.encode(doc), today=TODAY)


@given(st.uuids() | st.text(max_size=20) | st.integers())
def test_an_ids_text_is_what_str_writes(value: Any) -> None:
    """``id_text`` (subjects, claim keys, Nats-Msg-Id) writes a UUID in C, exactly as ``str`` does."""
    assert id_text(value) == str(value)
