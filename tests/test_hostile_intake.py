"""Hostile requests at the ingest gateway (issue 8, defects 1, 4 and the event parts of 9), on real servers,
and the checks behind them (``events.jsonscan``, ``events.text``) against independent oracles.

- A request whose reply subject is not an inbox, or that has none, is not processed: nothing is stored in any
  stream, nothing is published to that subject, it is counted (and exported), and the gateway goes on.
- Every request is answered from its raw bytes: with a ``content-type: application/json`` header, with a body
  nested 1,000 deep.
- Duplicate keys, forbidden characters or blank free text, the nil and max UUIDs are refused with their path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from events.codec import decode_event
from events.errors import EventError
from events.jsonscan import MAX_DEPTH, duplicate_key, nesting_depth, too_deep
from events.localities import Localities
from events.schema import EVENT_TYPES, FREE_TEXT_FIELDS, ID_FIELDS, ID_LIST_FIELDS
from events.text import text_problem
from infra.auth import nats_connect_options
from infra.auth.credentials import generate
from infra.embedded import EmbeddedNats
from infra.settings import Settings
from infra.streams import EVENTS, REJECTED, SEALS, UPDATES, StreamLimits, ensure_streams
from services.cli.stats_view import query_subject_of
from services.client import OfficeClient
from services.gateway.app import Gateway, GatewayConfig
from services.gateway.telemetry import gateway_registry
from services.query.app import QueryConfig, QueryService
from services.replies import LOG_EVERY_S, DroppedRequests, client_of, is_inbox
from tests import factories as f
from tests.conftest import Stack, wait_until_answering
from tests.servers import Servers, fresh_database, settle, wait_for
from tests.test_gateway_limits import rejected_records
from tests.test_unknown_fields import valid_documents

pytestmark = pytest.mark.servers

OFFICE = "ca-cao-bang"
INTAKE = f"antq.intake.{OFFICE}"
TODAY = dt.date(2026, 11, 22)
STREAMS = (EVENTS, REJECTED, UPDATES, SEALS)
NOT_INBOXES = [
    "antq.events.04.01447.session",
    "antq.rejected.x",
    "antq.updates.stats.04.01447.2026",
    "antq.seals",
    "antq.intake.other",
    "foo",
    "_INBOX",
    "_INBOX.",
    "_INBOX..x",
    "_INBOXES.x",
    "_INBOX.*",
    "_INBOX.>",
    "_INBOX.a.*",
]
WILDCARD = ("*", ">")
NIL = "00000000-0000-0000-0000-000000000000"
MAX = "ffffffff-ffff-ffff-ffff-ffffffffffff"
JSON_HEADERS = {"content-type": "application/json"}


async def stream_counts(stack: Stack) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in STREAMS:
        try:
            counts[name] = int((await stack.js.stream_info(name)).state.messages)
        except NotFoundError:
            counts[name] = 0
    return counts


def dropped_samples(gateway: Gateway) -> dict[str, float]:
    registry = gateway_registry(gateway.counters, gateway.dropped)
    return {
        s.labels["reason"]: s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "antq_gateway_requests_dropped_total"
    }


# --- 1. reply subjects ------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("reply", NOT_INBOXES)
async def test_a_request_whose_reply_subject_is_not_an_inbox_is_dropped_unprocessed(
    stack: Stack, gateway: Gateway, office: OfficeClient, reply: str
) -> None:
    listener = await nats.connect(stack.servers.nats_url)
    try:
        received: list[bytes] = []

        async def keep(msg: Any) -> None:
            received.append(msg.data)

        listening = not any(w in reply for w in WILDCARD) and reply.strip(".") == reply and ".." not in reply
        if listening:
            await listener.subscribe(reply, cb=keep)
            await settle(listener)  # listening before the request is sent
        before = await stream_counts(stack)
        dropped_before = gateway.dropped_reply_subject
        # a malformed body (answered with an error today) and a valid event (stored today)
        await stack.nc.publish(INTAKE, b"x", reply=reply)
        await stack.nc.publish(INTAKE, msgspec.json.encode(f.session()), reply=reply)
        await stack.nc.flush()

        async def both_dropped() -> bool:
            return gateway.dropped_reply_subject == dropped_before + 2

        await wait_for(both_dropped, what="two requests dropped")
        assert dropped_samples(gateway)["not_inbox"] >= 2
        proper = await office.submit_one(f.pledge())  # the gateway still answers an inbox
        assert proper.ok, proper
        await listener.flush()
        assert received == []  # nothing was ever published to the reply subject
        after = await stream_counts(stack)
        assert after == {**before, EVENTS: before[EVENTS] + 1}  # only the proper request's event
    finally:
        await listener.close()


@pytest.mark.timeout(60)
async def test_a_request_without_a_reply_subject_is_not_processed(
    stack: Stack, gateway: Gateway, office: OfficeClient
) -> None:
    before = await stream_counts(stack)
    await stack.nc.publish(INTAKE, msgspec.json.encode(f.session()))  # a publish, not a request
    await stack.nc.publish(INTAKE, b"{nope")
    await stack.nc.flush()

    async def both_dropped() -> bool:
        return gateway.dropped.counts.get("no_reply", 0) == 2

    await wait_for(both_dropped, what="two publishes dropped")
    assert dropped_samples(gateway) == {"no_reply": 2, "not_inbox": 0}
    assert (await office.submit_one(f.pledge())).ok
    assert await stream_counts(stack) == {**before, EVENTS: before[EVENTS] + 1}


@pytest.mark.timeout(60)
async def test_an_identity_inbox_and_the_default_inbox_are_answered(stack: Stack, gateway: Gateway) -> None:
    """``_INBOX.<public key>.<token>`` (an identity's private inbox) is an inbox like nats-py's default."""
    inbox = "_INBOX.UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4.reply1"
    sub = await stack.nc.subscribe(inbox, max_msgs=1)
    await stack.nc.publish(INTAKE, msgspec.json.encode(f.session()), reply=inbox)
    msg = await sub.next_msg(timeout=20)
    assert msgspec.json.decode(msg.data)["ok"] is True
    assert gateway.dropped_reply_subject == 0


# --- 2. every request is answered, from its raw bytes ------------------------------------------------------


async def request(stack: Stack, body: bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
    reply = await stack.nc.request(INTAKE, body, timeout=20, headers=headers)
    result: dict[str, Any] = msgspec.json.decode(reply.data)
    return result


@pytest.mark.timeout(60)
@pytest.mark.parametrize("body", [b"{nope", b"", b"\xff\xfe", b'{"type": "session.held"'])
async def test_a_bad_body_with_a_json_content_type_is_answered_malformed_and_kept(
    stack: Stack, gateway: Gateway, body: bytes
) -> None:
    before = len(await rejected_records(stack))
    result = await request(stack, body, JSON_HEADERS)
    assert result["ok"] is False and result["error"]["code"] == "malformed", result
    kept = await rejected_records(stack)
    assert len(kept) == before + 1 and kept[-1].raw == body and kept[-1].error.code == "malformed"


@pytest.mark.timeout(60)
async def test_a_valid_event_with_a_json_content_type_is_accepted(stack: Stack, gateway: Gateway) -> None:
    result = await request(stack, msgspec.json.encode([f.session(), f.pledge()]), JSON_HEADERS)
    assert isinstance(result, list) and all(r["ok"] for r in result), result


@pytest.mark.timeout(60)
@pytest.mark.parametrize("headers", [None, JSON_HEADERS], ids=["no-header", "json-header"])
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"a":' * 1000 + b"1" + b"}" * 1000,
        msgspec.json.encode({**f.session(), "note": "x"})[:-1] + b',"deep":' + b"[" * 65 + b"]" * 65 + b"}",
        b"[" * 100_000,
    ],
    ids=["arrays", "objects", "inside-an-event", "unclosed"],
)
async def test_a_body_nested_deeper_than_64_is_answered_too_large_at_the_root(
    stack: Stack, gateway: Gateway, body: bytes, headers: dict[str, str] | None
) -> None:
    before = await stream_counts(stack)
    result = await request(stack, body, headers)
    assert result["ok"] is False, result
    assert (result["error"]["code"], result["error"]["path"]) == ("too_large", "$"), result
    assert str(MAX_DEPTH) in result["error"]["message"]
    after = await stream_counts(stack)
    assert after == {**before, REJECTED: before[REJECTED] + 1}  # kept, nothing stored


@pytest.mark.timeout(60)
async def test_nesting_up_to_64_is_judged_by_the_event_decoder(stack: Stack, gateway: Gateway) -> None:
    result = await request(stack, b"[" * 64 + b"]" * 64)  # an array of one array...: no event in it
    assert isinstance(result, list) and result[0]["error"]["code"] == "malformed", result


# --- 9. duplicate keys, free text, ids at the gateway ------------------------------------------------------


def with_duplicate(doc: dict[str, Any], key: str, value: Any) -> bytes:
    body = msgspec.json.encode(doc)
    return body[:-1] + b"," + msgspec.json.encode(key) + b":" + msgspec.json.encode(value) + b"}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("body", "path"),
    [
        (with_duplicate(f.session(attendance=5), "attendance", 5_000), "$.attendance"),
        (with_duplicate(f.session(), "event_id", f.new_id()), "$.event_id"),
        (
            msgspec.json.encode(f.session()).replace(b'"ward":"01447"', b'"ward":"01447","ward":"01456"'),
            "$.locality.ward",
        ),
        (
            msgspec.json.encode(f.weapons(items=[{"kind": "air_gun", "quantity": 1}] * 2)).replace(
                b'"quantity":1}]', b'"quantity":1,"quantity":9}]'
            ),
            "$.items[1].quantity",
        ),
    ],
    ids=["attendance", "event_id", "locality.ward", "items[1].quantity"],
)
async def test_a_key_given_twice_is_invalid_with_its_path_and_nothing_is_stored(
    stack: Stack, gateway: Gateway, body: bytes, path: str
) -> None:
    before = await stream_counts(stack)
    result = await request(stack, body)
    assert (result["ok"], result["error"]["code"], result["error"]["path"]) == (False, "invalid", path), (
        result
    )
    assert "twice" in result["error"]["message"]
    assert await stream_counts(stack) == {**before, REJECTED: before[REJECTED] + 1}


BAD_TEXT = [
    "a\x00b",
    "line\r\n",
    "\x1b[31mred",
    "\x7f",
    "\x85",
    "abc\u202edcb",
    "\u2066isolate\u2069",
    "mark\u200f",
    "\u061c",
    "zero\u200bwidth",
    "\u2060",
    "\ufeffbom",
    "",
    "   ",
    "\n\t",
    "\u3000",
]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("field", ["hamlet", "note", "reason"])
async def test_bad_free_text_is_invalid_at_its_path(stack: Stack, gateway: Gateway, field: str) -> None:
    before = await stream_counts(stack)
    for text in BAD_TEXT:
        doc = f.retraction(f.session()) if field == "reason" else f.session()
        doc[field] = text
        result = await request(stack, msgspec.json.encode(doc))
        assert (result["ok"], result["error"]["code"], result["error"]["path"]) == (
            False,
            "invalid",
            f"$.{field}",
        ), (text, result)
    assert (await stream_counts(stack))[EVENTS] == before[EVENTS]
    fine = f.session(hamlet="Lũng Tung", note="dòng một\n\tdòng hai")
    assert (await request(stack, msgspec.json.encode(fine)))["ok"] is True


@pytest.mark.timeout(60)
async def test_the_nil_and_max_uuids_are_refused_as_any_id(stack: Stack, gateway: Gateway) -> None:
    target = f.session()
    cases: list[tuple[dict[str, Any], str]] = []
    for bad in (NIL, MAX, NIL.upper(), MAX.upper(), NIL.replace("-", "")):
        cases += [
            ({**f.session(), "event_id": bad}, "$.event_id"),
            (f.tip(tip_id=bad), "$.tip_id"),
            (f.mediation(case_id=bad), "$.case_id"),
            ({**f.retraction(target), "target_event_id": bad}, "$.target_event_id"),
            (f.assessment(f.tip(tip_id=bad)), "$.tip_id"),
        ]
    before = await stream_counts(stack)
    for doc, path in cases:
        result = await request(stack, msgspec.json.encode(doc))
        assert (result["ok"], result["error"]["code"], result["error"]["path"]) == (False, "invalid", path), (
            doc,
            result,
        )
    assert (await stream_counts(stack))[EVENTS] == before[EVENTS]


# --- the checks themselves, against independent oracles ----------------------------------------------------

BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
ZERO_WIDTH = set("\u200b\u200c\u200d\u2060\ufeff")


def refused_by_oracle(text: str) -> bool:
    for c in text:
        if unicodedata.category(c) == "Cc" and c not in "\n\t":
            return True
        if c in BIDI or c in ZERO_WIDTH or unicodedata.category(c) == "Cf":
            return True
    return text.strip() == ""


interesting_chars = st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.sampled_from(
    sorted(BIDI | ZERO_WIDTH | {"\n", "\t", "\r", "\x00", "\x85", " ", "\u3000", "\u00a0", "\u00ad"})
)


@given(st.text(interesting_chars, max_size=30))
def test_free_text_is_refused_exactly_as_the_unicode_categories_say(text: str) -> None:
    assert (text_problem(text) is not None) == refused_by_oracle(text), repr(text)


def has_duplicate_by_oracle(document: str) -> bool:
    found = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        keys = [k for k, _ in items]
        found = found or len(set(keys)) != len(keys)
        return dict(items)

    json.loads(document, object_pairs_hook=pairs)
    return found


KEYS = st.sampled_from(["a", "b", "k", 'q"', "back\\slash", "é", "\u0000", "a b"])
STRINGS = st.text(st.sampled_from('ab"\\[]{}:,é\n\u2028'), max_size=6)


class Obj(list[tuple[str, Any]]):
    """An object as pairs: keys may repeat."""


json_docs: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | STRINGS,
    lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(KEYS, inner), max_size=4).map(Obj),
    max_leaves=20,
)


def render(node: Any, ascii_only: bool, spaces: bool) -> str:
    sep = ", " if spaces else ","
    colon = " : " if spaces else ":"
    if isinstance(node, Obj):
        inner = sep.join(
            json.dumps(k, ensure_ascii=ascii_only) + colon + render(v, ascii_only, spaces) for k, v in node
        )
        return "{" + inner + "}"
    if isinstance(node, list):
        return "[" + sep.join(render(v, ascii_only, spaces) for v in node) + "]"
    return json.dumps(node, ensure_ascii=ascii_only)


@given(json_docs, st.booleans(), st.booleans())
def test_duplicate_keys_are_found_exactly_when_pythons_json_sees_them(
    node: Any, ascii_only: bool, spaces: bool
) -> None:
    document = render(node, ascii_only, spaces)
    path = duplicate_key(document.encode())
    assert (path is not None) == has_duplicate_by_oracle(document), (document, path)


def test_the_path_of_a_duplicate_names_its_object_and_key() -> None:
    assert duplicate_key(b'{"a":1,"b":{"x":1,"x":2}}') == "$.b.x"
    assert duplicate_key(b'{"a":1,"\\u0061":2}') == "$.a"  # the same key, escaped
    assert duplicate_key(b'[{"k":1},{"k":2,"j":[{"k":1,"k":1}]}]') == "$[1].j[0].k"
    assert duplicate_key(b'{"a b":1,"a b":1}') == '$["a b"]'
    assert duplicate_key(b'{"n":1e400,"a":1,"a":2}') == "$.a"  # a number msgspec will not read as such
    assert duplicate_key(b'{"s":"x\\\\","t":"\\"","s":1}') == "$.s"
    assert duplicate_key(b'{"a":{"b":1},"c":{"b":2}}') is None  # the same name in two objects is fine


def depth_by_oracle(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + max((depth_by_oracle(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((depth_by_oracle(v) for v in node), default=0)
    return 0


nested = st.recursive(
    st.none() | st.integers() | STRINGS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(STRINGS, inner, max_size=3),
    max_leaves=80,
)


@given(nested, st.booleans())
def test_nesting_depth_ignores_brackets_in_strings(node: Any, ascii_only: bool) -> None:
    document = json.dumps(node, ensure_ascii=ascii_only).encode()
    assert nesting_depth(document) == depth_by_oracle(node), document


@given(st.integers(0, 200), st.sampled_from([b"[]", b"{}"]))
def test_too_deep_is_above_64_exactly(depth: int, pair: bytes) -> None:
    document = pair[:1] * depth + pair[1:] * depth
    assert too_deep(document) == (depth if depth > MAX_DEPTH else None)
    quoted = b'["' + b"[" * depth + b'"]'
    assert too_deep(quoted) is None  # brackets in a string are text


def test_every_free_text_and_id_field_is_checked() -> None:
    """Every ``str`` field of an event that is not a ``Literal`` or a patterned code is listed as free text;
    every UUID field as an id (so a field added later is not left unchecked)."""
    text_fields: set[str] = set()
    id_fields: set[str] = set()
    id_list_fields: set[str] = set()
    for event_type in EVENT_TYPES:
        info = msgspec.inspect.type_info(event_type)
        assert isinstance(info, msgspec.inspect.StructType)
        for field in info.fields:
            kinds = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
            for kind in kinds:
                if isinstance(kind, msgspec.inspect.StrType) and kind.pattern is None:
                    text_fields.add(field.name)
                if isinstance(kind, msgspec.inspect.UUIDType):
                    id_fields.add(field.name)
                if isinstance(kind, msgspec.inspect.VarTupleType | msgspec.inspect.ListType) and isinstance(
                    kind.item_type, msgspec.inspect.UUIDType
                ):
                    id_list_fields.add(field.name)
    assert text_fields == set(FREE_TEXT_FIELDS)
    assert id_fields == set(ID_FIELDS)
    assert id_list_fields == set(ID_LIST_FIELDS)


@pytest.mark.parametrize("value", [NIL, MAX])
@pytest.mark.parametrize("field", ID_FIELDS)
def test_decode_event_refuses_the_nil_and_max_uuid_in_every_id_field(field: str, value: str) -> None:
    carrier = next(d for d in valid_documents() if field in d)  # a document of a type that has the field
    doc = {**carrier, field: value}
    with pytest.raises(EventError) as refused:
        decode_event(msgspec.json.encode(doc), today=TODAY)
    assert (refused.value.code, refused.value.path) == ("invalid", f"$.{field}")
    assert uuid.UUID(value) in (uuid.UUID(int=0), uuid.UUID(int=2**128 - 1))


# --- the reply rule itself ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    ["_INBOX.abc", "_INBOX.abc.def", "_INBOX.UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4.n.1"],
)
def test_inboxes(subject: str) -> None:
    assert is_inbox(subject)


@pytest.mark.parametrize(
    "subject",
    [None, "", *NOT_INBOXES, "_INBOX.a>", "_INBOX.a b", "_INBOX.a\tb", "_INBOX.a.", "_inbox.a", "x._INBOX.a"],
)
def test_not_inboxes(subject: str | None) -> None:
    assert not is_inbox(subject)


def test_the_client_of_an_inbox_is_its_prefix() -> None:
    assert client_of("_INBOX.UDXU4.nuid.1") == "_INBOX.UDXU4"
    assert client_of("_INBOX.abc") == "_INBOX.abc"


def test_dropped_requests_are_counted_each_and_logged_at_most_every_ten_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    dropped = DroppedRequests("the test", logging.getLogger("antq.test"), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="antq.test"):
        assert dropped.accept("antq.intake.x", "_INBOX.ok.1")
        for _ in range(5):
            assert not dropped.accept("antq.intake.x", "antq.events.04.01447.session")
        assert not dropped.accept("antq.intake.x", None)
        assert len(caplog.records) == 1  # the first one only
        now[0] += LOG_EVERY_S
        assert not dropped.accept("antq.intake.x", "foo")
    assert dropped.counts == {"not_inbox": 6, "no_reply": 1} and dropped.total == 7
    assert len(caplog.records) == 2
    assert "6 dropped since the last such warning, 7 in all" in caplog.records[1].getMessage()


# --- the same on the secure stack (generated identities) ---------------------------------------------------


@pytest.mark.timeout(120)
async def test_with_generated_auth_a_non_inbox_reply_stores_nothing_at_either_service(
    template: Servers, localities: Localities, offices_file: Path, tmp_path: Path
) -> None:
    """An office (at the gateway, which may write ``antq.events.>``) and a reader (at the query service) name
    a stream's subject as their reply subject: both requests are dropped, and proper requests still work."""
    generated = generate(tmp_path / "auth", ["ca-cao-bang"])
    server = EmbeddedNats(tmp_path / "nats", sync_always=False, auth_conf=generated.server_conf)
    server.start()
    connections: list[Client] = []

    async def connect(name: str) -> Client:
        seed = Settings(nats_url=server.url, nats_nkey_seed_file=generated.directory / f"{name}.nk")
        nc = await nats.connect(server.url, allow_reconnect=False, **nats_connect_options(seed))
        connections.append(nc)
        return nc

    def options(name: str) -> dict[str, str]:
        seed = Settings(nats_url=server.url, nats_nkey_seed_file=generated.directory / f"{name}.nk")
        return nats_connect_options(seed)

    try:
        admin = await connect("admin")
        await ensure_streams(admin.jetstream(), StreamLimits())
        database_url = await fresh_database(template)
        gateway = Gateway(
            GatewayConfig(
                nats_url=server.url,
                database_url=database_url,
                offices_path=offices_file,
                localities=localities,
                nats_options=options("gateway"),
            )
        )
        query = QueryService(
            QueryConfig(
                nats_url=server.url,
                database_url=database_url,
                localities=localities,
                nats_options=options("query"),
            )
        )
        async with gateway.app, query.app:
            office = await connect("office-ca-cao-bang")
            reader = await connect("reader")
            await wait_until_answering(office, INTAKE)
            asks = query_subject_of(reader)  # a reader asks on its own query subject (antq.query.stats.<key>)
            await wait_until_answering(reader, asks)
            before = int((await admin.jetstream().stream_info(EVENTS)).state.messages)
            await office.publish(INTAKE, b"x", reply="antq.events.04.01447.session")
            await office.publish(
                INTAKE, msgspec.json.encode(f.session()), reply="antq.events.04.01447.session"
            )
            await reader.publish(
                asks, msgspec.json.encode({"ward": "01447", "year": 2018}), reply="antq.seals"
            )
            await office.flush()
            await reader.flush()

            async def dropped() -> bool:
                return gateway.dropped_reply_subject == 2 and query.dropped_reply_subject == 1

            await wait_for(dropped, what="the requests dropped at both services")
            assert (await OfficeClient(office, OFFICE, timeout=20).submit_one(f.pledge())).ok
            answer = await reader.request(
                asks, msgspec.json.encode({"ward": "01447", "year": 2018}), timeout=20
            )
            assert "metrics" in msgspec.json.decode(answer.data)
            after = int((await admin.jetstream().stream_info(EVENTS)).state.messages)
            assert after == before + 1  # the proper event only
            assert int((await admin.jetstream().stream_info(SEALS)).state.messages) == 0
    finally:
        for nc in connections:
            with contextlib.suppress(Exception):
                await nc.close()
        server.stop()


@pytest.mark.parametrize("value", [NIL, MAX])
@pytest.mark.parametrize("field", ID_LIST_FIELDS)
def test_decode_event_refuses_the_nil_and_max_uuid_and_a_repeated_id_in_every_id_list(
    field: str, value: str
) -> None:
    docs = {"tip_ids": f.base("cases.cleared", category="drugs", cases=1, offenders=0)}
    other = str(uuid.uuid4())
    for ids, at in (([other, value], 1), ([other, other], 1), ([value], 0)):
        doc = {**docs[field], field: ids}
        with pytest.raises(EventError) as refused:
            decode_event(msgspec.json.encode(doc), today=TODAY)
        assert (refused.value.code, refused.value.path) == ("invalid", f"$.{field}[{at}]")
