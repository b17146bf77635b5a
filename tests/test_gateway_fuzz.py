"""Fuzzing the ingest gateway over real NATS: arbitrary bytes and near-valid JSON.

Every reply must be a well-formed result (or an array of them, one per event, for an array body), nothing
invalid may reach ANTQ_EVENTS, every refused submission is kept in ANTQ_REJECTED, and the gateway keeps
answering. Hypothesis runs in a worker thread and hands each request to the test's event loop, so the
servers and the gateway are set up once per test and checked as a whole at the end. Bounded and
derandomised in CI by the profile registered in conftest.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.codec import MAX_BATCH, MAX_BODY_BYTES, body_hash, decode_event, decode_recorded, vietnam_today
from events.intake import IntakeResult, RejectedRecord, decode_results
from events.schema import Event
from infra.stream_reader import read_stream
from infra.streams import EVENTS, REJECTED
from services.client import OfficeClient
from tests import factories as f
from tests.conftest import FixedClock, Stack

pytestmark = pytest.mark.servers

T = TypeVar("T")
OFFICE = "ca-cao-bang"  # province 04
CODES = {
    "malformed",
    "unknown_type",
    "invalid",
    "unknown_locality",
    "unknown_office",
    "out_of_jurisdiction",
    "unknown_target",
    "conflict",
    "id_reused",
    "too_large",
    "unavailable",
}
EXAMPLES = settings().max_examples * 25  # the registered profile bounds (and in CI derandomises) the run

# --- strategies -------------------------------------------------------------------------------------------

WARDS = ["01447", "01456", "01273", "09454", "99999", "00004"]  # in/out of jurisdiction, unknown
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
huge_numbers = st.sampled_from([10**20, -(10**20), 2**63, 2**64, -(2**63) - 1, 1e308, -0.0, 0.5, 10_000_001])
junk_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=60)
long_text = st.sampled_from([199, 200, 201, 999, 1000, 1001, 2000, 2001, 17_000]).map(lambda n: "ạ" * n)


@st.composite
def valid_docs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(["session", "pledge", "weapons", "tip", "mediation", "assessment", "retraction"])
    )
    ward = draw(st.sampled_from(["01447", "01456", "01273"]))
    doc: dict[str, Any]
    if kind == "session":
        doc = f.session(ward=ward, attendance=draw(st.integers(0, 10_000_000)))
        doc["level"] = draw(st.sampled_from(["commune", "hamlet", "institution"]))
        doc["topics"] = draw(
            st.lists(st.sampled_from(["law", "drugs", "weapons", "other"]), min_size=1, max_size=9)
        )
    elif kind == "pledge":
        doc = f.pledge(ward=ward, signatures=draw(st.integers(1, 10_000_000)))
    elif kind == "weapons":
        items = st.fixed_dictionaries(
            {"kind": st.sampled_from(["air_gun", "explosive"]), "quantity": st.integers(1, 99)}
        )
        doc = f.weapons(ward=ward, items=draw(st.lists(items, min_size=1, max_size=5)))
    elif kind == "tip":
        doc = f.tip(ward=ward, tip_id=str(draw(st.uuids())))
    elif kind == "mediation":
        doc = f.mediation(ward=ward, case_id=str(draw(st.uuids())))
    elif kind == "assessment":
        doc = f.assessment(f.tip(ward=ward, tip_id=str(draw(st.uuids()))))
    else:
        doc = f.retraction({"event_id": str(draw(st.uuids())), "locality": {"ward": ward}})
    doc["event_id"] = str(draw(st.uuids()))
    doc["occurred_on"] = draw(st.dates(dt.date(2012, 1, 1), dt.date(2026, 11, 22))).isoformat()
    if draw(st.booleans()):
        doc["hamlet"] = draw(st.text(min_size=1, max_size=200))
    if draw(st.booleans()):
        doc["note"] = draw(junk_text)
    return doc


@st.composite
def near_valid_docs(draw: st.DrawFn) -> Any:
    """A valid event with one thing wrong (or, sometimes, nothing wrong)."""
    doc = draw(valid_docs())
    keys = sorted(doc)
    how = draw(
        st.sampled_from(["none", "drop", "retype", "huge", "long", "junk", "nest", "extra", "ward", "type"])
    )
    key = draw(st.sampled_from(keys))
    if how == "drop":
        del doc[key]
    elif how == "retype":
        doc[key] = draw(json_values)
    elif how == "huge":
        doc[draw(st.sampled_from([*keys, "attendance", "signatures", "expected_version"]))] = draw(
            huge_numbers
        )
    elif how == "long":
        doc[draw(st.sampled_from(["hamlet", "note", "reason", "type", "channel", key]))] = draw(long_text)
    elif how == "junk":
        doc[key] = draw(junk_text)
    elif how == "nest":
        wrapped: Any = draw(
            st.sampled_from(
                [{"event": doc}, [doc], {**doc, "locality": [doc["locality"]]}, {**doc, "locality": "01447"}]
            )
        )
        return wrapped
    elif how == "extra":
        doc[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
    elif how == "ward":
        doc["locality"] = {
            "scheme": draw(st.sampled_from(["gso-2025", "gso-2019"])),
            "ward": draw(st.sampled_from(WARDS)),
        }
    elif how == "type":
        doc["type"] = draw(
            st.sampled_from(["SESSION.HELD", "session", "", "tip.received ", "entry.retracted"])
        )
    return doc


@st.composite
def mangled_bytes(draw: st.DrawFn) -> bytes:
    """Valid JSON of an event or an array of events, then cut, flipped or salted with bytes that are not
    UTF-8."""
    source = draw(st.one_of(valid_docs(), st.lists(valid_docs(), min_size=1, max_size=4)))
    data = bytearray(msgspec.json.encode(source))
    at = draw(st.integers(0, len(data) - 1))
    how = draw(st.sampled_from(["cut", "flip", "insert"]))
    if how == "cut":
        del data[at:]
    elif how == "flip":
        data[at] ^= draw(st.integers(1, 255))
    else:
        data[at:at] = draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xed\xa0\x80", b"\\", b'"', b"]"]))
    return bytes(data)


def encode_doc(doc: Any) -> bytes:
    return msgspec.json.encode(doc)


arrays = st.lists(st.one_of(valid_docs(), near_valid_docs(), json_scalars), min_size=0, max_size=8).map(
    encode_doc
)
bodies = st.one_of(
    st.binary(max_size=300),
    near_valid_docs().map(encode_doc),
    mangled_bytes(),
    arrays,
    json_values.map(encode_doc),
)

# --- the oracle -------------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the gateway accepted (event_id -> the normalised event) and how many submissions it refused."""

    today: dt.date
    accepted: dict[uuid.UUID, Event] = field(default_factory=dict)
    refused: int = 0
    requests: int = 0


def expected_items(body: bytes) -> list[bytes] | None:
    """The events of an array body (None: the reply is one object)."""
    if len(body) > MAX_BODY_BYTES or not body.lstrip().startswith(b"["):
        return None
    try:
        items = msgspec.json.decode(body, type=list[msgspec.Raw])
    except msgspec.DecodeError:
        return None
    return [bytes(i) for i in items] if 1 <= len(items) <= MAX_BATCH else None


def check_shape(obj: Any) -> None:
    """The documented reply shape, exactly: no missing and no extra keys."""
    assert isinstance(obj, dict), obj
    if obj.get("ok") is True:
        assert (
            {"ok", "event_id", "seq", "duplicate"}
            <= obj.keys()
            <= {"ok", "event_id", "seq", "duplicate", "version"}
        )
        assert isinstance(obj["event_id"], str) and uuid.UUID(obj["event_id"])
        assert isinstance(obj["seq"], int) and obj["seq"] >= 1
        assert isinstance(obj["duplicate"], bool)
        assert obj.get("version") in (None, obj["seq"])
    else:
        assert obj.keys() == {"ok", "event_id", "error"} and obj["ok"] is False, obj
        assert obj["event_id"] is None or isinstance(obj["event_id"], str)
        error = obj["error"]
        assert error.keys() == {"code", "message", "path"}, error
        assert error["code"] in CODES, error
        assert isinstance(error["message"], str) and error["message"].strip(), error
        assert error["path"] is None or (isinstance(error["path"], str) and error["path"].startswith("$")), (
            error
        )


async def submit_and_check(stack: Stack, ledger: Ledger, body: bytes) -> None:
    reply = await stack.nc.request(f"antq.intake.{OFFICE}", body, timeout=5)
    raw = msgspec.json.decode(reply.data)
    results = decode_results(reply.data)
    items = expected_items(body)
    if items is None:
        assert isinstance(results, IntakeResult), (body, raw)
        pairs = [(body, results)]
        check_shape(raw)
    else:
        assert isinstance(results, list) and len(results) == len(items), (body, raw)
        pairs = list(zip(items, results, strict=True))
        for obj in raw:
            check_shape(obj)
    ledger.requests += 1
    for item, result in pairs:
        if not result.ok:
            ledger.refused += 1
            if result.error is not None and result.error.code == "unavailable":
                pytest.fail(f"the gateway failed on {item!r}: {result}")
            continue
        event = decode_event(item, today=ledger.today)  # accepted, so it must be a valid event
        assert result.event_id == str(event.event_id) and result.seq is not None
        stored = decode_recorded((await stack.js.get_msg(EVENTS, result.seq)).data or b"")
        assert stored.office == OFFICE and body_hash(stored.event) == body_hash(event)
        known = ledger.accepted.setdefault(event.event_id, event)
        assert body_hash(known) == body_hash(event)
    info = await stack.js.stream_info(EVENTS)
    assert info.state.messages == len(ledger.accepted), "an event was stored twice, or without a reply"


def fuzz_in_thread(
    loop: asyncio.AbstractEventLoop,
    strategy: st.SearchStrategy[bytes],
    check: Callable[[bytes], Coroutine[Any, Any, None]],
) -> Callable[[], None]:
    @settings(max_examples=EXAMPLES)
    @given(strategy)
    def run(body: bytes) -> None:
        asyncio.run_coroutine_threadsafe(check(body), loop).result(timeout=60)

    return run


async def fuzz(stack: Stack, clock: FixedClock, strategy: st.SearchStrategy[bytes]) -> Ledger:
    ledger = Ledger(today=vietnam_today(clock.now))

    async def check(body: bytes) -> None:
        await submit_and_check(stack, ledger, body)

    await asyncio.to_thread(fuzz_in_thread(asyncio.get_running_loop(), strategy, check))
    return ledger


async def check_the_log_and_the_gateway(stack: Stack, office: OfficeClient, ledger: Ledger) -> None:
    """Afterwards: the log holds exactly the accepted events, each valid; every refusal was kept; the
    gateway still answers."""
    seen: set[uuid.UUID] = set()
    async for batch in read_stream(stack.js, EVENTS):
        for msg in batch:
            event = decode_recorded(msg.data).event
            assert event.event_id not in seen
            seen.add(event.event_id)
            decode_event(msgspec.json.encode(event), today=ledger.today)  # still a valid event
            assert body_hash(event) == body_hash(ledger.accepted[event.event_id])
    assert seen == set(ledger.accepted)

    kept = 0
    async for batch in read_stream(stack.js, REJECTED):
        kept += sum(msgspec.json.decode(m.data, type=RejectedRecord).office == OFFICE for m in batch)
    assert kept == ledger.refused

    doc = f.session()
    after = await office.submit_one(doc)
    assert after.ok and not after.duplicate and after.event_id == doc["event_id"]
    assert ledger.requests >= 1


async def test_fuzz_arbitrary_bytes(stack: Stack, office: OfficeClient, clock: FixedClock) -> None:
    ledger = await fuzz(stack, clock, st.one_of(st.binary(max_size=400), mangled_bytes()))
    await check_the_log_and_the_gateway(stack, office, ledger)


async def test_fuzz_near_valid_events(stack: Stack, office: OfficeClient, clock: FixedClock) -> None:
    ledger = await fuzz(stack, clock, near_valid_docs().map(encode_doc))
    await check_the_log_and_the_gateway(stack, office, ledger)
    assert ledger.accepted, "the strategy should also produce valid events"


async def test_fuzz_mixed_arrays_and_anything(stack: Stack, office: OfficeClient, clock: FixedClock) -> None:
    ledger = await fuzz(stack, clock, st.one_of(arrays, bodies))
    await check_the_log_and_the_gateway(stack, office, ledger)
