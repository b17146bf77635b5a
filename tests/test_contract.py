"""The published contract (docs/contract/): up to date with the code, complete, and enough on its own.

"A client written in another language from these files alone must work": the schemas are checked with
``jsonschema`` (a validator that knows nothing of msgspec) against the factories' documents, mutated ones, real
replies of the gateway and the query service, real stored records, and hypothesis documents judged by the
gateway's own decoder. JSON Schema patterns are ECMA-262 (``$`` is the end of the text, never before a final
newline), so the validator here runs them with those semantics rather than Python's.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import typing
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext
from typer.testing import CliRunner

from events.catalogue import SPECS
from events.codec import decode_event, encode_recorded
from events.errors import EventError
from events.intake import IntakeResult
from events.schema import DATED_VALUES, EVENT_TYPES, Event, Recorded
from events.subjects import INTAKE_PREFIX, QUERY_SUBJECT
from infra.streams import EVENTS, REJECTED
from projections.store import StatsUpdate
from services.cli.main import app
from services.contract import build as contract
from services.contract.build import SCHEMAS, event_tag
from services.query.errors import QueryError
from services.query.request import parse_query
from tests import factories as f
from tests.conftest import Stack
from tests.test_fold_model import PLAIN_SAMPLES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "contract"
TODAY = dt.date(2026, 11, 22)  # the tests' clock (tests/conftest.py FixedClock)
OFFICE = "ca-cao-bang"


# --- a validator with ECMA-262 pattern semantics ---------------------------------------------------------


def _ecma(pattern: str) -> str:
    return pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not re.search(_ecma(pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


EcmaValidator = jsonschema.validators.extend(jsonschema.Draft7Validator, validators={"pattern": _pattern})


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DOCS / SCHEMAS / name).read_text(encoding="utf-8"))
    return doc


def validator(name: str) -> Any:
    schema = load(name)
    jsonschema.Draft7Validator.check_schema(schema)
    return EcmaValidator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def valid(name: str, doc: Any) -> bool:
    return bool(validator(name).is_valid(doc))


TAGS = [event_tag(cls) for cls in EVENT_TYPES]


# --- the files follow the code ---------------------------------------------------------------------------


def test_the_committed_contract_is_what_the_code_generates(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["contract", "export", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    fresh = {
        p.relative_to(tmp_path).as_posix(): p.read_text("utf-8") for p in tmp_path.rglob("*") if p.is_file()
    }
    committed = {p.relative_to(DOCS).as_posix(): p.read_text("utf-8") for p in DOCS.rglob("*") if p.is_file()}
    stale = sorted(
        set(fresh) ^ set(committed) | {rel for rel in fresh if fresh[rel] != committed.get(rel, fresh[rel])}
    )
    assert not stale, f"docs/contract/ differs from the code in {stale}: run `antq contract export`"
    assert all(text.endswith("\n") for text in fresh.values())


def test_a_second_export_changes_nothing_and_removes_a_schema_the_code_no_longer_has(tmp_path: Path) -> None:
    contract.write(tmp_path)
    (tmp_path / SCHEMAS / "gone.type.json").write_text("{}\n")
    first = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*.*"))}
    contract.write(tmp_path)
    assert not (tmp_path / SCHEMAS / "gone.type.json").exists()
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("*.*"))} == {
        p: b for p, b in first.items() if p.name != "gone.type.json"
    }


def test_every_event_type_of_the_union_has_its_schema_file() -> None:
    union = typing.get_args(Event)
    assert set(union) == set(EVENT_TYPES)
    event = load("event.json")
    assert set(event["discriminator"]["mapping"]) == set(TAGS)
    assert len(event["anyOf"]) == len(TAGS)
    for cls in union:
        tag = event_tag(cls)
        schema = load(f"{tag}.json")
        assert schema["properties"]["type"] == {"enum": [tag]}
        assert SPECS[cls].summary in schema["description"]  # the catalogue's word on it
        assert set(schema["properties"]) == {"type", *cls.__struct_fields__}
        required = {
            name
            for name, field in zip(cls.__struct_fields__, msgspec.structs.fields(cls), strict=True)
            if field.required
        }
        assert set(schema["required"]) == {"type", *required}


def _literals(tp: msgspec.inspect.Type, path: str) -> Iterator[tuple[str, set[Any]]]:
    """(path, values) of every Literal in ``tp`` (and every tag of a tagged Struct in it), read with
    msgspec.inspect, not with the exporter's walk."""
    match tp:
        case msgspec.inspect.LiteralType(values=values):
            yield path, set(values)
        case msgspec.inspect.UnionType(types=types):
            for t in types:
                yield from _literals(t, path)
        case msgspec.inspect.ListType(item_type=item) | msgspec.inspect.VarTupleType(item_type=item):
            yield from _literals(item, f"{path}[]")
        case msgspec.inspect.StructType(fields=fields, tag_field=tag_field, tag=tag):

            def at(name: str) -> str:
                return f"{path}.{name}" if path else name

            if tag_field is not None:
                yield at(tag_field), {tag}
            for field in fields:
                yield from _literals(field.type, at(field.encode_name))


def _at(schema: Mapping[str, Any], path: str) -> list[Mapping[str, Any]]:
    """The schemas the field at ``path`` (``locality.scheme``, ``items[].kind``) may have, following refs and
    the options of a union."""
    defs = schema.get("definitions", {})

    def options(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        while "$ref" in node:
            node = defs[node["$ref"].removeprefix("#/definitions/")]
        if "anyOf" in node:
            return [o for option in node["anyOf"] if option != {"type": "null"} for o in options(option)]
        return [node]

    nodes = options(schema)
    for part in re.findall(r"[^.\[\]]+|\[\]", path):
        nodes = [
            o
            for n in nodes
            if (n.get("items") if part == "[]" else n.get("properties", {}).get(part)) is not None
            for o in options(n["items"] if part == "[]" else n["properties"][part])
        ]
    return nodes


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=TAGS)
def test_every_literal_value_of_every_field_is_in_the_schema_enum(cls: type[msgspec.Struct]) -> None:
    schema = load(f"{event_tag(cls)}.json")
    found = list(_literals(msgspec.inspect.type_info(cls), ""))
    assert found
    for path, values in found:
        listed = {v for node in _at(schema, path) for v in node.get("enum", [])}
        assert values <= listed, path


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=TAGS)
def test_every_object_of_an_event_refuses_unknown_fields(cls: type[msgspec.Struct]) -> None:
    schema = load(f"{event_tag(cls)}.json")
    objects = [schema, *schema.get("definitions", {}).values()]
    assert all(o.get("additionalProperties") is False for o in objects if o.get("type") == "object")


def test_patterns_are_ecma_262() -> None:
    for path in (DOCS / SCHEMAS).glob("*.json"):
        text = path.read_text("utf-8")
        assert "\\\\A" not in text and "\\\\Z" not in text, path.name


def test_every_error_code_the_services_can_send_is_documented() -> None:
    assert set(contract.INTAKE_CODES) == contract.intake_wire_codes()
    assert set(contract.QUERY_CODES) == contract.query_wire_codes()
    text = (DOCS / "asyncapi.yaml").read_text("utf-8")
    assert all(f"`{code}`" in text for code in (*contract.INTAKE_CODES, *contract.QUERY_CODES))


# --- the factories' documents, and mutated ones ----------------------------------------------------------


def factory_documents() -> list[dict[str, Any]]:
    tip = f.tip()
    docs = [
        tip,
        f.assessment(tip, expected_version=3),
        f.session(hamlet="Bản Pác Bó", note="họp dân\nở nhà văn hoá"),
        f.pledge(),
        f.mediation(),
        f.weapons(items=[{"kind": "air_gun", "quantity": 2}, {"kind": "ammunition", "quantity": 40}]),
        f.retraction(tip),
        f.correction(f.session(), attendance=12),
        *(f.base(tag, **fields) for tag, fields in PLAIN_SAMPLES.items()),
    ]
    model, person = f.model(points=5, teams=2), f.youth()
    docs += [
        model,
        f.model_update(model, teams=3, expected_version=9),
        f.dissolution(model),
        person,
        f.release(person),
        f.correction(model, kind="dan_van_kheo"),
    ]
    assert {d["type"] for d in docs} == set(TAGS), "a factory per event type (tests/factories.py)"
    return docs


@pytest.mark.parametrize("doc", factory_documents(), ids=lambda d: str(d["type"]))
def test_factory_documents_are_valid_against_the_union_and_their_type(doc: dict[str, Any]) -> None:
    decode_event(json.dumps(doc).encode(), today=TODAY)  # the gateway's decoder takes it
    assert valid("event.json", doc)
    assert valid(f"{doc['type']}.json", doc)
    assert valid("intake-request.json", doc)
    assert valid("intake-request.json", [doc, doc])
    others = [t for t in TAGS if t != doc["type"]]
    assert not any(valid(f"{t}.json", doc) for t in others)


def _mutations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    def copy() -> dict[str, Any]:
        out: dict[str, Any] = json.loads(json.dumps(doc))
        return out

    d = copy()
    d["hamlett"] = "Bản Giới"
    yield "unknown field", d
    d = copy()
    d["locality"]["colour"] = "red"
    yield "unknown field in locality", d
    d = copy()
    d["locality"]["scheme"] = "gso-2019"
    yield "wrong enum in locality", d
    d = copy()
    d["type"] = "tip.forwarded"
    yield "unknown type", d
    for name in ("event_id", "occurred_on", "locality"):
        d = copy()
        del d[name]
        yield f"missing {name}", d
    schema = load(f"{doc['type']}.json")
    for name, prop in schema["properties"].items():
        if "enum" in prop and name != "type":
            d = copy()
            d[name] = "bogus"
            yield f"wrong enum {name}", d
        items = prop.get("items", {})
        if "enum" in items:
            d = copy()
            d[name] = [*d[name], "bogus"]
            yield f"wrong enum in {name}", d
        if name in schema["required"] and name not in ("type", "event_id", "occurred_on", "locality"):
            d = copy()
            del d[name]
            yield f"missing {name}", d
    if "items" in doc:
        d = copy()
        d["items"][0]["colour"] = "black"
        yield "unknown field in items[0]", d
        d = copy()
        d["items"][0]["kind"] = "slingshot"
        yield "wrong enum in items[0]", d
    d = copy()
    d["event_id"] = "00000000-0000-0000-0000-000000000000"
    yield "nil event_id", d
    d = copy()
    d["locality"]["ward"] = "01447\n"
    yield "ward with a newline", d
    d = copy()
    d["hamlet"] = "   "
    yield "blank hamlet", d
    d = copy()
    d["note"] = "a\u202eb"
    yield "bidirectional override in note", d


@pytest.mark.parametrize("doc", factory_documents(), ids=lambda d: str(d["type"]))
def test_mutated_documents_are_invalid_for_the_schemas_and_the_gateway(doc: dict[str, Any]) -> None:
    for what, bad in _mutations(doc):
        with pytest.raises(EventError):
            decode_event(json.dumps(bad).encode(), today=TODAY)
        assert not valid("event.json", bad), what
        assert not valid(f"{doc['type']}.json", bad), what
        assert not valid("intake-request.json", [doc, bad]), what


# --- real replies, records and updates -------------------------------------------------------------------


@pytest.mark.servers
@pytest.mark.timeout(60)
async def test_real_gateway_replies_and_stored_records_match_their_schemas(stack: Stack, office: Any) -> None:
    subject = f"{INTAKE_PREFIX}.{OFFICE}"
    tip = f.tip()
    wrong = f.session()
    wrong["hamlett"] = "x"
    batch = [tip, f.assessment(tip, expected_version=99), wrong, f.weapons(), {"type": "nothing"}]
    reply = await stack.nc.request(subject, json.dumps(batch).encode(), timeout=30)
    results = json.loads(reply.data)
    assert [r["ok"] for r in results] == [True, False, False, True, False]
    assert valid("intake-reply.json", results)
    single = await stack.nc.request(subject, json.dumps(tip).encode(), timeout=30)
    assert json.loads(single.data)["duplicate"] is True
    assert valid("intake-reply.json", json.loads(single.data))
    malformed = await stack.nc.request(subject, b"{not json", timeout=30)
    assert valid("intake-reply.json", json.loads(malformed.data))
    assert not valid("intake-reply.json", {"ok": "yes"})

    js: JetStreamContext = stack.js
    stored = await js.get_msg(EVENTS, results[0]["seq"])
    record = json.loads(stored.data or b"")
    assert record["event"]["event_id"] == tip["event_id"]
    assert valid("stored-record.json", record)
    rejected = await js.get_last_msg(REJECTED, f"antq.rejected.{OFFICE}")
    assert valid("rejected-record.json", json.loads(rejected.data or b""))


@pytest.mark.servers
@pytest.mark.timeout(60)
async def test_real_query_replies_match_their_schema(stack: Stack, query: Any) -> None:
    for body, ok in (
        ({"ward": "01447", "year": 2018}, True),
        ({"province": "04", "year": 2018, "period": "reporting"}, True),
        ({"wards": ["01447"], "year": 2018}, True),
        ({"ward": "99999", "year": 2018}, False),
        ({"ward": "01447", "year": 2018, "colour": 1}, False),
    ):
        assert valid("query-request.json", body) is ok or body["ward"] == "99999"
        reply = json.loads(
            (await stack.nc.request(QUERY_SUBJECT, json.dumps(body).encode(), timeout=30)).data
        )
        assert ("error" not in reply) is ok, reply
        assert valid("query-reply.json", reply)
    assert not valid("query-reply.json", {"error": {"code": "busy"}})


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ({"ward": "01447", "year": 2018}, True),
        ({"ward": "01447", "province": None, "year": 2018}, True),
        ({"ward": "01447", "province": "04", "year": 2018}, False),
        ({"year": 2018}, False),
        ({"ward": None, "year": 2018}, False),
        ({"ward": "01447\n", "year": 2018}, False),
        ({"wards": [], "year": 2018}, False),
        ({"province": "04", "year": 1999}, False),
        ({"province": "04", "year": 2018, "min_seq": 5, "timeout_ms": 60_001}, False),
        ({"province": "04", "year": 2018, "period": "fiscal"}, False),
    ],
)
def test_the_query_request_schema_agrees_with_the_service(body: dict[str, Any], ok: bool) -> None:
    try:
        parse_query(json.dumps(body).encode())
        accepted = True
    except QueryError:
        accepted = False
    assert accepted is ok
    assert valid("query-request.json", body) is ok


def test_update_payloads_match_their_schema() -> None:
    update = StatsUpdate(
        ward="01447", year=2018, period="calendar", metrics={"sessions_held": 6}, as_of_seq=6, province="04"
    )
    assert valid("update.json", json.loads(msgspec.json.encode(update)))
    documented = (  # the worked example of the signed update feed (tests/test_update_signatures.py)
        '{"ward":"01447","year":2018,"period":"calendar","metrics":{"sessions_held":6},"as_of_seq":6,'
        '"stale":false,"fold_version":1,"province":"04"}'
    )
    assert valid("update.json", json.loads(documented))
    assert not valid(
        "update.json", {"ward": "01447", "year": 2018, "period": "weekly", "metrics": {}, "as_of_seq": 1}
    )
    record = Recorded(office=OFFICE, event=msgspec.convert(f.pledge(), Event))
    assert valid("stored-record.json", json.loads(encode_recorded(record)))
    result = IntakeResult(ok=True, event_id=str(uuid.uuid4()), seq=1, duplicate=False)
    assert valid("intake-reply.json", json.loads(msgspec.json.encode([result])))


# --- the schemas and the gateway agree (hypothesis) ------------------------------------------------------


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = defs[schema["$ref"].removeprefix("#/definitions/")]
    return schema


def _values(
    schema: Mapping[str, Any], defs: Mapping[str, Any], name: str, bad: bool
) -> st.SearchStrategy[Any]:
    """Values of ``schema`` built from the schema itself (its enums, bounds, patterns, required fields): valid
    ones, or (``bad``) ones with exactly one thing wrong."""
    schema = _resolve(schema, defs)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o != {"type": "null"}]
        value = st.one_of([_values(o, defs, name, bad) for o in options])
        return value if bad or len(options) == len(schema["anyOf"]) else st.one_of(st.none(), value)
    if "enum" in schema:
        return st.sampled_from(["bogus", 1] if bad else schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return _object(schema, defs, name, bad)
    if kind == "array":
        low, high = schema.get("minItems", 0), min(schema.get("maxItems", 3), 3)
        unique = bool(schema.get("uniqueItems"))  # (an item given twice: refused by both, a fault of its own)
        good_items = st.lists(
            _values(schema["items"], defs, name, False),
            min_size=low,
            max_size=high,
            unique_by=str if unique else None,
        )
        if not bad:
            return good_items
        # good items leave room for the bad one: a list cut to ``high`` afterwards could lose it
        room = st.lists(_values(schema["items"], defs, name, False), min_size=0, max_size=max(high - 1, 0))
        one_bad = st.tuples(room, _values(schema["items"], defs, name, True), st.integers(0, 3)).map(
            lambda t: [*t[0][: t[2]], t[1], *t[0][t[2] :]]
        )
        return st.one_of(one_bad, st.just([])) if low else one_bad
    if kind == "integer":
        low, high = schema.get("minimum", 0), schema.get("maximum", 100)
        return st.sampled_from([low - 1, high + 1, "7", 2.5] if bad else [low, high, (low + high) // 2])
    if kind == "boolean":
        return st.sampled_from(["true", 1] if bad else [True, False])
    if schema.get("format") == "uuid":
        # (the gateway also takes a UUID without hyphens, which the schema does not: the schema is the stricter)
        ids = [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}{i}")) for i in range(4)]
        return st.sampled_from([contract.NIL_UUID, contract.MAX_UUID, "not-a-uuid"] if bad else ids)
    if schema.get("format") == "date":
        bads = ["2018-5-10", "2018-02-30", "20180510"]
        return st.sampled_from(bads if bad else ["2000-01-01", "2018-05-10", "2025-06-30"])
    digits = re.fullmatch(r"\^\[0-9\]\{(\d+)\}\$", schema.get("pattern", ""))
    if digits:
        n = int(digits.group(1))
        good = ["01447", "99999"] if n == 5 else ["0" * (n - 1) + "4", "9" * n]
        return st.sampled_from([good[0][1:], good[0] + "\n", good[0][:-1] + "a"] if bad else good)
    bads = [" \t", "a\u200bb", "a\x07b", "a\u202eb", "y" * (schema.get("maxLength", 200) + 1)]
    return st.sampled_from(bads if bad else ["x", "Bản Pác Bó", "a\nb\tc"])


def _object(
    schema: Mapping[str, Any], defs: Mapping[str, Any], name: str, bad: bool
) -> st.SearchStrategy[Any]:
    props: Mapping[str, Any] = schema.get("properties", {})
    required = list(schema.get("required", []))
    faults = [("value", key) for key in props] + [("missing", key) for key in required] + [("unknown", "")]

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        fault, at = draw(st.sampled_from(faults)) if bad else ("", "")
        doc: dict[str, Any] = {}
        for key, prop in props.items():
            wrong = (fault, at) == ("value", key)
            if (fault, at) == ("missing", key) or not (wrong or key in required or draw(st.booleans())):
                continue
            doc[key] = draw(_values(prop, defs, f"{name}.{key}", wrong))
        if fault == "unknown":
            doc[draw(st.sampled_from(["hamlett", "colour", "women_attending"]))] = 1
        return doc

    return build()


@pytest.mark.parametrize("tag", TAGS)
def test_the_schema_and_the_gateway_agree_on_generated_documents(tag: str) -> None:
    schema = load(f"{tag}.json")
    defs = schema.get("definitions", {})
    check = validator(f"{tag}.json")
    union = validator("event.json")

    @settings(max_examples=100)
    @given(st.booleans().flatmap(lambda bad: st.tuples(st.just(bad), _object(schema, defs, tag, bad))))
    def agree(case: tuple[bool, dict[str, Any]]) -> None:
        bad, doc = case
        inner = doc.get("corrected")
        if isinstance(inner, dict) and not bad:
            # rules across fields that no JSON Schema states (the contract says them in its text): the copy
            # carries the correction's locality, an id of its own, and no expected_version
            if "locality" in doc:
                inner["locality"] = doc["locality"]
            inner.pop("expected_version", None)
            if inner.get("event_id") in (doc.get("event_id"), doc.get("target_event_id")):
                inner["event_id"] = str(uuid.uuid4())
        try:
            decode_event(json.dumps(doc).encode(), today=TODAY)
            accepted = True
        except EventError:
            accepted = False
        # a value tied to a date outside its dates: refused by both (the schemas say it with if/then)
        assert accepted is not (bad or outside_its_dates(doc)), doc
        assert check.is_valid(doc) is accepted, (doc, [e.message for e in check.iter_errors(doc)])
        assert union.is_valid(doc) is accepted, doc

    agree()


def outside_its_dates(doc: dict[str, Any]) -> bool:
    """Whether the document (or its corrected copy) holds a value tied to a date outside its dates."""
    for event in (doc, doc.get("corrected")):
        if not isinstance(event, dict) or not isinstance(event.get("occurred_on"), str):
            continue
        for rule in DATED_VALUES:
            if event.get(rule.field) == rule.value:
                day = event["occurred_on"]
                if (rule.valid_from and day < rule.valid_from.isoformat()) or (
                    rule.valid_to and day > rule.valid_to.isoformat()
                ):
                    return True
    return False


# --- asyncapi.yaml and the README ----------------------------------------------------------------------


def _scalar(text: str) -> Any:
    if text in ("null", "true", "false") or text[:1] in '"[{-0123456789':
        return json.loads(text)
    return text


def parse_yaml(text: str) -> Any:
    """A reader for the subset ``services.contract.yaml`` writes (block mappings and sequences, plain or JSON
    scalars, ``|-`` blocks): enough to prove the file says what the exporter meant."""
    lines = text.split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    pos = 0

    def indent_of(line: str) -> int:
        return len(line) - len(line.lstrip(" "))

    def block_text(indent: int) -> str:
        nonlocal pos
        out = []
        while pos < len(lines) and (lines[pos] == "" or indent_of(lines[pos]) >= indent):
            out.append(lines[pos][indent:])
            pos += 1
        return "\n".join(out)

    def value_after(rest: str, indent: int) -> Any:
        if rest == "|-":
            return block_text(indent + 2)
        if rest:
            return _scalar(rest)
        return node(indent_of(lines[pos]))

    def node(indent: int) -> Any:
        nonlocal pos
        if lines[pos][indent:].startswith("- "):
            items = []
            while (
                pos < len(lines) and indent_of(lines[pos]) == indent and lines[pos][indent:].startswith("- ")
            ):
                rest = lines[pos][indent + 2 :]
                if re.match(r'("[^"]*"|[^":\s][^:]*):( |$)', rest) and not rest.startswith('"'):
                    lines[pos] = " " * (indent + 2) + rest  # a mapping starts on the dash's line
                    items.append(node(indent + 2))
                else:
                    pos += 1
                    items.append(value_after(rest, indent))
            return items
        mapping: dict[str, Any] = {}
        while (
            pos < len(lines) and indent_of(lines[pos]) == indent and not lines[pos][indent:].startswith("- ")
        ):
            line = lines[pos][indent:]
            m = re.match(r'("(?:[^"\\]|\\.)*"|[^":\s][^:]*):(?: (.*))?$', line)
            assert m, line
            key = json.loads(m.group(1)) if m.group(1).startswith('"') else m.group(1)
            pos += 1
            mapping[key] = value_after(m.group(2) or "", indent)
        return mapping

    return node(0)


def test_asyncapi_yaml_says_what_the_exporter_meant_and_its_references_resolve() -> None:
    documents = contract.contract()
    text = (DOCS / "asyncapi.yaml").read_text("utf-8")
    doc = parse_yaml(text)
    assert doc == json.loads(json.dumps(documents.asyncapi))
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {
        "antq.intake.{office}",
        "antq.query.stats",
        "antq.updates.stats.{province}.{ward}.{year}",
        "antq.events.{province}.{ward}.{rest}",
        "antq.rejected.{office}",
        None,
    } <= addresses
    headers = doc["components"]["messages"]["statsUpdate"]["headers"]["required"]
    assert headers == ["Nats-Msg-Id", "Antq-Update-Signature", "Antq-Update-Key"]
    for tag in TAGS:  # every event type's subject part is named
        assert f"({tag})" in doc["channels"]["events"]["description"]
    examples = doc["components"]["messages"]["intakeRequest"]["examples"]
    assert sorted(e["name"] for e in examples) == sorted(TAGS)
    assert all(valid(f"{e['name']}.json", e["payload"]) for e in examples)

    refs = [n["$ref"] for n in contract.walk(doc) if "$ref" in n]
    assert refs
    for ref in refs:
        if ref.startswith("#/"):
            target: Any = doc
            for part in ref[2:].split("/"):
                target = target[part]
        else:
            assert (DOCS / ref).is_file(), ref


def test_the_enum_table_lists_every_enum_value_beside_its_field() -> None:
    table = contract.enum_table()
    for cls in EVENT_TYPES:
        for path, values in _literals(msgspec.inspect.type_info(cls), ""):
            if path == "type":
                continue
            row = next(
                line
                for line in table.splitlines()
                if line.startswith((f"| `{event_tag(cls)}` | `{path}` |", f"| every type | `{path}` |"))
            )
            assert all(f"`{v}`" in row for v in values)


def test_the_readme_lists_every_enum_value_as_the_schemas_say() -> None:
    """Fails until the table printed by `antq contract enums` is pasted into README.md (NOTES-contract.md)."""
    readme = (ROOT / "README.md").read_text("utf-8")
    assert contract.enum_table() in readme, "paste the output of `antq contract enums` into README.md"
