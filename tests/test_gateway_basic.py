"""The ingest gateway against a real nats-server and PostgreSQL: acceptance, dedup, every error code."""

from __future__ import annotations

import msgspec
import pytest

from events.codec import decode_recorded
from infra.streams import EVENTS, REJECTED
from services.client import OfficeClient
from tests import factories as f
from tests.conftest import Stack

pytestmark = pytest.mark.servers


async def test_accepts_one_event_and_stores_it_with_office(stack: Stack, office: OfficeClient) -> None:
    doc = f.session(hamlet="Lũng Tung")
    result = await office.submit_one(doc)
    assert result.ok and result.seq == 1 and result.duplicate is False and result.version is None
    stored = await stack.js.get_msg(EVENTS, 1)
    assert stored.subject == "antq.events.04.01447.session"
    recorded = decode_recorded(stored.data or b"")
    assert recorded.office == "ca-cao-bang"
    assert str(recorded.event.event_id) == doc["event_id"]


async def test_batch_replies_in_order(office: OfficeClient) -> None:
    docs = [f.session(), f.pledge(), f.weapons(), f.mediation(), f.tip()]
    results = await office.submit(docs)
    assert [r.event_id for r in results] == [d["event_id"] for d in docs]
    assert all(r.ok for r in results)
    assert sorted(r.seq or 0 for r in results) == [1, 2, 3, 4, 5]
    assert results[3].version == results[3].seq and results[4].version == results[4].seq


async def test_retry_is_a_duplicate_and_reused_id_is_refused(stack: Stack, office: OfficeClient) -> None:
    doc = f.pledge()
    first = await office.submit_one(doc)
    again = await office.submit_one(doc)
    assert again.ok and again.duplicate and again.seq == first.seq
    changed = {**doc, "signatures": 99}
    reused = await office.submit_one(changed)
    assert not reused.ok and reused.error is not None
    assert reused.error.code == "id_reused" and reused.error.path == "$.event_id"
    info = await stack.js.stream_info(EVENTS)
    assert info.state.messages == 1


async def test_nfc_normalised_text_is_one_body(stack: Stack, office: OfficeClient) -> None:
    doc = f.session(hamlet="Lu\u0303ng Tung")  # decomposed tilde, as some keyboards type it
    first = await office.submit_one(doc)
    again = await office.submit_one({**doc, "hamlet": "Lũng Tung"})
    assert first.ok and again.ok and again.duplicate
    recorded = decode_recorded((await stack.js.get_msg(EVENTS, 1)).data or b"")
    assert recorded.event.hamlet == "Lũng Tung"


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        (b"{not json", "malformed", None),
        (b"42", "malformed", "$"),
        (msgspec.json.encode({**f.session(), "type": "cake.baked"}), "unknown_type", "$.type"),
        (msgspec.json.encode({**f.session(), "attendance": -3}), "invalid", "$.attendance"),
        (msgspec.json.encode({**f.session(), "occurred_on": "2027-01-01"}), "invalid", "$.occurred_on"),
        (msgspec.json.encode(f.session(ward="99999")), "unknown_locality", "$.locality.ward"),
        (msgspec.json.encode(f.session(ward="09454")), "out_of_jurisdiction", "$.locality.ward"),
        (msgspec.json.encode(f.retraction(f.session())), "unknown_target", "$.target_event_id"),
        (msgspec.json.encode([f.session()] * 1001), "too_large", "$"),
    ],
)
async def test_error_codes(
    stack: Stack, office: OfficeClient, body: bytes, code: str, path: str | None
) -> None:
    result = await office.send_raw(body)
    assert not isinstance(result, list)
    assert not result.ok and result.error is not None
    assert (result.error.code, result.error.path) == (code, path)
    assert result.error.message
    info = await stack.js.stream_info(EVENTS)
    assert info.state.messages == 0
    rejected = await stack.js.stream_info(REJECTED)
    assert rejected.state.messages >= 1


async def test_unknown_office(stack: Stack, gateway: object) -> None:
    client = OfficeClient(stack.nc, "nobody", timeout=10)
    doc = f.session()
    result = await client.submit_one(doc)
    assert not result.ok and result.error is not None and result.error.code == "unknown_office"
    assert result.event_id == doc["event_id"]


async def test_tip_lifecycle_and_conflicts(office: OfficeClient) -> None:
    tip = f.tip()
    received = await office.submit_one(tip)
    assert received.ok and received.version == received.seq
    first = await office.submit_one(f.assessment(tip, expected_version=received.version))
    assert first.ok and first.version is not None and first.version > (received.version or 0)
    stale = await office.submit_one(f.assessment(tip, valuable=False, expected_version=received.version))
    assert not stale.ok and stale.error is not None and stale.error.code == "conflict"
    latest = await office.submit_one(f.assessment(tip, valuable=False))
    assert latest.ok
    reused_tip = await office.submit_one(f.tip(ward="01456", tip_id=tip["tip_id"]))
    assert not reused_tip.ok and reused_tip.error is not None and reused_tip.error.code == "conflict"
    no_tip = await office.submit_one(f.assessment(f.tip()))
    assert no_tip.error is not None and (no_tip.error.code, no_tip.error.path) == ("invalid", "$.tip_id")
    elsewhere = await office.submit_one(
        {**f.assessment(tip), "locality": {"scheme": "gso-2025", "ward": "01456"}}
    )
    assert elsewhere.error is not None and elsewhere.error.code == "invalid"


async def test_mediation_concludes_once(office: OfficeClient) -> None:
    case = f.mediation()
    assert (await office.submit_one(case)).ok
    again = await office.submit_one(f.mediation(case_id=case["case_id"], outcome="referred"))
    assert not again.ok and again.error is not None and again.error.code == "conflict"


async def test_retraction_rules(office: OfficeClient) -> None:
    target = f.session()
    assert (await office.submit_one(target)).ok
    retract = f.retraction(target)
    assert (await office.submit_one(retract)).ok
    twice = await office.submit_one(f.retraction(target))
    assert not twice.ok and twice.error is not None and twice.error.code == "conflict"
    of_retraction = await office.submit_one(f.retraction(retract))
    assert not of_retraction.ok and of_retraction.error is not None and of_retraction.error.code == "conflict"
    retry = await office.submit_one(retract)
    assert retry.ok and retry.duplicate


async def test_dependent_events_in_one_batch(office: OfficeClient) -> None:
    tip = f.tip()
    target = f.pledge()
    docs = [tip, f.assessment(tip), f.assessment(tip, valuable=False), target, f.retraction(target), tip]
    results = await office.submit(docs)
    assert [r.ok for r in results] == [True] * 6
    assert results[5].duplicate and results[5].seq == results[0].seq
    assert results[1].seq is not None and results[2].seq is not None and results[1].seq < results[2].seq
