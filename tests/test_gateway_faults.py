"""The gateway under faults, against real servers: lost index rows, the dedup window passing, restarts,
the event log or the index going away, refused submissions kept in ANTQ_REJECTED, mixed batches.

Nothing here waits for time to pass: the dedup window is made tiny (100 ms, JetStream's minimum) and the
tests wait on the condition "JetStream has forgotten this Nats-Msg-Id", probed without storing anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client

from events.codec import decode_event, decode_recorded, encode_recorded, vietnam_today
from events.intake import IntakeResult, RejectedRecord
from events.localities import Localities
from events.schema import Recorded, ward_of
from events.stored import StoredRecords
from events.subjects import event_subject
from infra.embedded import EmbeddedNats
from infra.stream_reader import read_stream
from infra.streams import EVENTS, REJECTED, REJECTED_RAW_LIMIT, StreamLimits
from services.client import OfficeClient
from services.gateway.app import Gateway, GatewayConfig
from services.gateway.catch_up import CatchUpCounters, catch_up
from services.gateway.index import EventIndex
from tests import factories as f
from tests.conftest import FixedClock, Stack, wait_until_answering
from tests.servers import create_streams, wait_for

pytestmark = pytest.mark.servers

TINY_WINDOW = StreamLimits(dedup_window_s=0.1)  # JetStream refuses anything below 100 ms
OFFICE = "ca-cao-bang"


def gateway_config(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities, limits: StreamLimits
) -> GatewayConfig:
    return GatewayConfig(
        nats_url=stack.servers.nats_url,
        database_url=stack.database_url,
        offices_path=offices_file,
        limits=limits,
        clock=clock,
        localities=localities,
    )


@contextlib.asynccontextmanager
async def running(config: GatewayConfig, nc: Client) -> AsyncIterator[Gateway]:
    gw = Gateway(config)
    async with gw.app:
        await wait_until_answering(nc, "antq.intake._probe")
        yield gw


async def jetstream_remembers(nc: Client, subject: str, msg_id: str) -> bool:
    """Whether ANTQ_EVENTS still deduplicates ``msg_id``, asked without ever storing a message.

    The server checks dedup before ``Nats-Expected-Last-Msg-Id``: a remembered id is answered "duplicate";
    a forgotten one fails the (impossible) expectation and nothing is stored.
    """
    headers = {"Nats-Msg-Id": msg_id, "Nats-Expected-Last-Msg-Id": f"never-{uuid.uuid4()}"}
    reply = await nc.request(subject, b"probe", headers=headers, timeout=5)
    ack = msgspec.json.decode(reply.data)
    if ack.get("duplicate"):
        return True
    assert ack["error"]["err_code"] == 10070, ack  # wrong last msg ID: nothing stored
    return False


async def wait_until_forgotten(nc: Client, subject: str, msg_id: str) -> None:
    async def forgotten() -> bool:
        return not await jetstream_remembers(nc, subject, msg_id)

    await wait_for(forgotten, timeout=10, what=f"JetStream to forget Nats-Msg-Id {msg_id}")


async def stored(stack: Stack) -> list[tuple[int, str, Recorded]]:
    out: list[tuple[int, str, Recorded]] = []
    async for batch in read_stream(stack.js, EVENTS):
        out.extend((m.seq, m.subject, decode_recorded(m.data)) for m in batch)
    return out


async def count(stack: Stack, stream: str = EVENTS) -> int:
    return int((await stack.js.stream_info(stream)).state.messages)


async def index_seq(database_url: str, event_id: str) -> int | None:
    conn = await asyncpg.connect(database_url)
    try:
        seq = await conn.fetchval("SELECT seq FROM event_index WHERE event_id = $1", uuid.UUID(event_id))
    finally:
        await conn.close()
    return None if seq is None else int(seq)


async def forget_index_row(database_url: str, event_id: str) -> None:
    """What a crash between the stream's ack and the index insert leaves behind."""
    conn = await asyncpg.connect(database_url)
    try:
        status = await conn.execute("DELETE FROM event_index WHERE event_id = $1", uuid.UUID(event_id))
    finally:
        await conn.close()
    assert status == "DELETE 1"


def subject_of(doc: dict[str, Any], clock: FixedClock, localities: Localities) -> str:
    event = decode_event(msgspec.json.encode(doc), today=vietnam_today(clock.now))
    ward = localities.ward(ward_of(event))
    assert ward is not None
    return event_subject(event, ward.province)


def accepted(result: IntakeResult) -> int:
    assert result.ok, result
    assert result.seq is not None
    return result.seq


def refused_with(result: IntakeResult, code: str) -> None:
    assert not result.ok, result
    assert result.error is not None and result.error.code == code, result
    assert result.error.message


# --- dedup: within JetStream's window, after it, and across a crash between publish and index insert ----


async def test_retry_within_window_with_index_row_lost_is_a_duplicate(
    stack: Stack, office: OfficeClient
) -> None:
    doc = f.session()
    seq = accepted(await office.submit_one(doc))
    await forget_index_row(stack.database_url, doc["event_id"])
    again = await office.submit_one(doc)
    assert again.ok and again.duplicate and again.seq == seq  # JetStream's dedup answered
    assert await count(stack) == 1
    assert await index_seq(stack.database_url, doc["event_id"]) == seq  # and the index is whole again
    changed = await office.submit_one({**doc, "attendance": 41})
    refused_with(changed, "id_reused")  # the stored body is checked even when JetStream says duplicate
    assert await count(stack) == 1


@pytest.mark.parametrize("scenario", ["tip", "assessment", "retraction", "mediation"])
async def test_lifecycle_retry_with_index_row_lost_is_a_duplicate(
    stack: Stack, office: OfficeClient, scenario: str
) -> None:
    """An entity event is published with an expected subject sequence, so the server answers its retry
    'wrong last sequence' (10071), not 'duplicate': the gateway must recognise its own event in the log
    even when later events followed it on the entity's subject and its index row was never written."""
    tip = f.tip()
    tip_version = accepted(await office.submit_one(tip))
    if scenario == "tip":
        retried = tip
        later = [f.assessment(tip)]
    elif scenario == "assessment":
        retried = f.assessment(tip, expected_version=tip_version)
        later = [f.assessment(tip, valuable=False)]
    elif scenario == "retraction":
        target = f.pledge()
        accepted(await office.submit_one(target))
        retried = f.retraction(target)
        later = []
    else:
        retried = f.mediation()
        later = []
    seq = accepted(await office.submit_one(retried))
    for doc in later:
        accepted(await office.submit_one(doc))
    before = await count(stack)
    await forget_index_row(stack.database_url, retried["event_id"])

    again = await office.submit_one(retried)
    assert again.ok, again
    assert again.duplicate and again.seq == seq
    assert again.version == (None if scenario == "retraction" else seq)
    assert await count(stack) == before
    assert await index_seq(stack.database_url, retried["event_id"]) == seq


async def test_retry_after_the_dedup_window_is_answered_from_the_index(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities
) -> None:
    config = gateway_config(stack, offices_file, clock, localities, TINY_WINDOW)
    async with running(config, stack.nc):
        assert (await stack.js.stream_info(EVENTS)).config.duplicate_window == pytest.approx(0.1)
        office = OfficeClient(stack.nc, OFFICE, timeout=20)
        docs = [f.session(), f.pledge(), f.tip()]
        seqs = [accepted(r) for r in await office.submit(docs)]
        for doc in docs:
            await wait_until_forgotten(stack.nc, subject_of(doc, clock, localities), doc["event_id"])
        again = await office.submit(docs)
        assert [(r.ok, r.duplicate, r.seq) for r in again] == [(True, True, s) for s in seqs]
        reused = await office.submit_one({**docs[0], "attendance": 7})
        refused_with(reused, "id_reused")
        assert await count(stack) == 3


async def test_restart_catches_the_index_up_from_the_stream(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities
) -> None:
    """A copy publishes and dies before writing its index row; the dedup window passes; after a restart the
    index is caught up from the stream, so the retry is still a duplicate and the tip is still claimed."""
    config = gateway_config(stack, offices_file, clock, localities, TINY_WINDOW)
    async with running(config, stack.nc):
        office = OfficeClient(stack.nc, OFFICE, timeout=20)
        before = f.session()
        accepted(await office.submit_one(before))

    # "the crashed copy": exactly the bytes and headers the gateway publishes, and nothing in PostgreSQL
    today = vietnam_today(clock.now)
    lost = [f.pledge(), f.tip()]
    lost_seqs = []
    for doc in lost:
        event = decode_event(msgspec.json.encode(doc), today=today)
        subject = subject_of(doc, clock, localities)
        headers = {"Nats-Msg-Id": doc["event_id"], "Nats-Expected-Stream": EVENTS}
        ack = await stack.js.publish(
            subject, encode_recorded(Recorded(office=OFFICE, event=event)), headers=headers
        )
        lost_seqs.append(ack.seq)
        await wait_until_forgotten(stack.nc, subject, doc["event_id"])
    assert [await index_seq(stack.database_url, d["event_id"]) for d in lost] == [None, None]

    async with running(config, stack.nc):
        assert [await index_seq(stack.database_url, d["event_id"]) for d in lost] == lost_seqs
        conn = await asyncpg.connect(stack.database_url)
        try:
            checkpoint = await conn.fetchval("SELECT seq FROM event_index_checkpoint")
            owner = await conn.fetchval(
                "SELECT event_id FROM entity_claims WHERE entity = $1", f"tip:{lost[1]['tip_id']}"
            )
        finally:
            await conn.close()
        assert checkpoint == lost_seqs[-1]
        assert str(owner) == lost[1]["event_id"]

        office = OfficeClient(stack.nc, OFFICE, timeout=20)
        again = await office.submit([before, *lost])
        assert all(r.ok and r.duplicate for r in again), again
        assert [r.seq for r in again[1:]] == lost_seqs
        rival = await office.submit_one(f.tip(tip_id=lost[1]["tip_id"]))
        refused_with(rival, "conflict")
        assessed = await office.submit_one(f.assessment(lost[1], expected_version=lost_seqs[1]))
        assert assessed.ok and not assessed.duplicate
        assert await count(stack) == 4


async def test_the_catch_up_passes_over_what_the_request_path_indexed_and_reads_from_the_first_hole(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities
) -> None:
    """The request path writes each stored event's row (and its releases) in one transaction; the catch-up
    does not read those again (it used to re-read and re-write every event since its checkpoint, every 30 s,
    in every copy), only from the first sequence without its row: a crash between the ack and the insert."""
    config = gateway_config(stack, offices_file, clock, localities, TINY_WINDOW)
    async with running(config, stack.nc):
        office = OfficeClient(stack.nc, OFFICE, timeout=20)
        docs = [f.session() for _ in range(5)]
        seqs = [accepted(r) for r in await office.submit(docs)]
        pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=2)
        try:
            index = EventIndex(pool)
            checkpoint = await index.checkpoint()
            assert checkpoint < seqs[0]
            await forget_index_row(stack.database_url, docs[3]["event_id"])
            counters = CatchUpCounters()
            reached = await catch_up(stack.js, index, StoredRecords(localities), counters=counters)
            assert reached == seqs[-1] == await index.checkpoint()
            assert counters.passed_over == seqs[2] - checkpoint  # up to the hole, nothing read
            assert await index_seq(stack.database_url, docs[3]["event_id"]) == seqs[3]  # the hole, read
            again = CatchUpCounters()
            assert await catch_up(stack.js, index, StoredRecords(localities), counters=again) == seqs[-1]
            assert again.passed_over == 0  # nothing new since
        finally:
            await pool.close()


# --- unavailable: a well-formed answer, never a time-out --------------------------------------------------


def all_unavailable(results: list[IntakeResult], docs: list[dict[str, Any]]) -> None:
    assert [r.event_id for r in results] == [d["event_id"] for d in docs]
    for result in results:
        refused_with(result, "unavailable")


async def test_event_stream_missing_is_unavailable(stack: Stack, office: OfficeClient) -> None:
    await stack.js.delete_stream(EVENTS)
    doc = f.session()
    one = await office.submit_one(doc)
    refused_with(one, "unavailable")
    assert one.event_id == doc["event_id"]
    docs = [f.session(), f.tip(), f.mediation()]
    all_unavailable(await office.submit(docs), docs)
    bad = {**f.session(), "attendance": -1}
    mixed = await office.submit([doc, bad])
    refused_with(mixed[0], "unavailable")
    refused_with(mixed[1], "invalid")  # validation still answers for itself

    await create_streams(stack.js, stack.limits)  # the log is back: the same requests now succeed
    again = await office.submit([doc, *docs])
    assert [r.ok and not r.duplicate for r in again] == [True] * 4, again
    assert await count(stack) == 4


async def test_event_stream_sealed_is_unavailable(stack: Stack, office: OfficeClient) -> None:
    info = await stack.js.stream_info(EVENTS)
    info.config.sealed = True
    await stack.js.update_stream(info.config)
    docs = [f.pledge(), f.tip()]
    all_unavailable(await office.submit(docs), docs)
    assert await count(stack) == 0


@contextlib.asynccontextmanager
async def database_down(stack: Stack) -> AsyncIterator[None]:
    """The gateway's database refuses connections and its open ones are cut."""
    name = stack.database_url.rpartition("/")[2]
    admin = await asyncpg.connect(stack.servers.database_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_index_database_down_is_unavailable(stack: Stack, office: OfficeClient) -> None:
    async with database_down(stack):
        doc = f.session()
        one = await office.submit_one(doc)
        refused_with(one, "unavailable")
        docs = [f.session(), f.pledge(), f.tip()]
        many = await office.submit(docs)
        assert len(many) == 3, many  # a batch is answered with a batch, one result per event
        all_unavailable(many, docs)
    assert await count(stack) == 0
    again = await office.submit([doc, *docs])  # the pool reconnects once the database is back
    assert all(r.ok and not r.duplicate for r in again), again


# --- ANTQ_REJECTED: nothing a field office sent is lost ---------------------------------------------------


async def rejected_records(stack: Stack) -> list[tuple[str, RejectedRecord]]:
    out: list[tuple[str, RejectedRecord]] = []
    async for batch in read_stream(stack.js, REJECTED):
        out.extend((m.subject, msgspec.json.decode(m.data, type=RejectedRecord)) for m in batch)
    return [(subject, rec) for subject, rec in out if rec.office != "_probe"]  # the fixture's readiness probe


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_rejected_submissions_are_kept_with_office_error_hash_and_body(
    stack: Stack, office: OfficeClient, clock: FixedClock
) -> None:
    invalid = msgspec.json.encode({**f.session(), "attendance": -3})
    garbage = b"\x00\xffnot json at all"
    stranger = msgspec.json.encode(f.pledge())
    r1 = await office.send_raw(invalid)
    r2 = await office.send_raw(garbage)
    r3 = await OfficeClient(stack.nc, "nobody", timeout=20).send_raw(stranger)
    replies = [r1, r2, r3]
    assert all(isinstance(r, IntakeResult) and not r.ok for r in replies)

    records = await rejected_records(stack)
    assert [subject for subject, _ in records] == [
        "antq.rejected.ca-cao-bang",
        "antq.rejected.ca-cao-bang",
        "antq.rejected.nobody",
    ]
    for (_, rec), body, reply, who in zip(
        records, [invalid, garbage, stranger], replies, [OFFICE, OFFICE, "nobody"], strict=True
    ):
        assert isinstance(reply, IntakeResult)
        assert rec.office == who
        assert rec.error == reply.error
        assert rec.raw == body and rec.size == len(body) and not rec.truncated
        assert rec.sha256 == sha256(body)
        assert rec.received_at == clock.now.isoformat()
    assert [rec.error.code for _, rec in records] == ["invalid", "malformed", "unknown_office"]
    assert await count(stack) == 0


async def test_a_refusal_whose_record_cannot_be_stored_at_once_is_kept_later_exactly_once(
    stack: Stack, gateway: Gateway, office: OfficeClient
) -> None:
    """ANTQ_REJECTED away (as during a leader election on a cluster): the office is answered at once, and the
    record of its refusal waits in the gateway and is stored, once, when the stream is back."""
    await stack.js.delete_stream(REJECTED)
    bad = msgspec.json.encode({**f.session(), "attendance": -5})
    reply = await office.send_raw(bad)
    assert isinstance(reply, IntakeResult)
    refused_with(reply, "invalid")
    late = gateway.counters.rejected_late
    assert late.kept == 0 and late.lost == 0
    await create_streams(stack.js, stack.limits)

    async def kept() -> list[tuple[str, RejectedRecord]] | None:
        found = [r for r in await rejected_records(stack) if r[1].sha256 == sha256(bad)]
        return found or None

    (subject, record), *more = await wait_for(kept, timeout=30, what="the refusal's record, kept later")
    assert not more and subject == f"antq.rejected.{OFFICE}"
    assert record.error == reply.error and record.raw == bad

    async def counted() -> bool:  # the copy counts it once its row's delete committed, just after the ack
        return late.kept == 1

    await wait_for(counted, timeout=10, what="the record counted kept")
    assert late.lost == 0


@pytest.mark.parametrize("size", [100_000, 2 * 1024 * 1024])
async def test_oversize_body_is_kept_truncated_with_the_full_hash(
    stack: Stack, office: OfficeClient, size: int
) -> None:
    doc = f.session()
    body = msgspec.json.encode({**doc, "note": "x" * size})  # over the event limit, or over the body limit
    reply = await office.send_raw(body)
    assert isinstance(reply, IntakeResult)
    refused_with(reply, "too_large")
    [(_, rec)] = await rejected_records(stack)
    assert rec.truncated and rec.size == len(body)
    assert len(rec.raw) == REJECTED_RAW_LIMIT == 64 * 1024 and rec.raw == body[:REJECTED_RAW_LIMIT]
    assert rec.sha256 == sha256(body)
    assert rec.error.code == "too_large"
    assert await count(stack) == 0


# --- a batch mixing valid and invalid events --------------------------------------------------------------


async def test_mixed_batch_stores_the_valid_refuses_the_invalid_in_order(
    stack: Stack, office: OfficeClient
) -> None:
    tip = f.tip()
    target = f.pledge()
    items: list[tuple[Any, str | None]] = [
        (f.session(), None),
        ({**f.session(), "attendance": -1}, "invalid"),
        (tip, None),
        ({**f.pledge(), "type": "pledge.broken"}, "unknown_type"),
        (target, None),
        (42, "malformed"),
        (f.session(ward="09454"), "out_of_jurisdiction"),
        (f.assessment(tip), None),  # depends on the tip earlier in the batch
        (f.assessment(f.tip()), "invalid"),  # no such tip
        (f.retraction(f.session()), "unknown_target"),
        (f.session(ward="99999"), "unknown_locality"),
        (f.retraction(target), None),
        (f.tip(tip_id=tip["tip_id"]), "conflict"),
        ({**f.weapons(), "items": []}, "invalid"),
        (f.weapons(), None),
    ]
    results = await office.submit([doc for doc, _ in items])
    assert len(results) == len(items)
    for (doc, code), result in zip(items, results, strict=True):
        if code is None:
            assert result.ok and not result.duplicate, result
            assert result.event_id == doc["event_id"]
        else:
            refused_with(result, code)
            assert result.event_id == (doc["event_id"] if isinstance(doc, dict) else None)

    valid = [doc["event_id"] for doc, code in items if code is None]
    in_log = await stored(stack)
    assert [str(rec.event.event_id) for _, _, rec in in_log] == valid  # stored once each, in request order
    assert [seq for seq, _, _ in in_log] == [r.seq for r in results if r.ok]

    records = await rejected_records(stack)
    refused_raw = sorted(msgspec.json.encode(doc) for doc, code in items if code is not None)
    assert sorted(rec.raw for _, rec in records) == refused_raw  # each refused item kept as sent
    assert all(rec.sha256 == sha256(rec.raw) for _, rec in records)


async def test_invalid_utf8_inside_a_string_is_malformed(stack: Stack, office: OfficeClient) -> None:
    """Found by the fuzz test: msgspec raises UnicodeDecodeError (not DecodeError) for bad UTF-8 inside a
    string; the request must still get a well-formed answer, in time."""
    doc = f.session()
    bad = msgspec.json.encode({**doc, "hamlet": "X"}).replace(b"X", b"\xa9\xff")
    one = await office.send_raw(bad)
    assert isinstance(one, IntakeResult)
    refused_with(one, "malformed")
    good = f.pledge()
    many = await office.send_raw(b"[" + bad + b"," + msgspec.json.encode(good) + b"]")
    assert isinstance(many, list) and len(many) == 2
    refused_with(many[0], "malformed")
    assert many[1].ok and many[1].event_id == good["event_id"]
    assert await count(stack) == 1


async def test_event_log_crash_and_restart(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities, tmp_path: Path
) -> None:
    """The nats-server holding the log is killed (SIGKILL) and restarted: acknowledged events are still
    there, the running gateway reconnects by itself, and retries are duplicates."""
    log_server = EmbeddedNats(tmp_path / "nats", sync_always=True)  # as in production
    url = log_server.start()
    try:
        config = dataclasses.replace(
            gateway_config(stack, offices_file, clock, localities, stack.limits), nats_url=url
        )
        nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        try:
            async with running(config, nc):
                office = OfficeClient(nc, OFFICE, timeout=5)
                docs = [f.session(), f.tip(), f.pledge()]
                seqs = [accepted(r) for r in await office.submit(docs)]

                log_server.kill()
                log_server.start()  # same port, same store

                async def answered() -> list[IntakeResult] | None:
                    try:  # a short time-out: an attempt lost in the reconnection is simply made again
                        return await OfficeClient(nc, OFFICE, timeout=1).submit(docs)
                    except (
                        nats.errors.TimeoutError,
                        nats.errors.NoRespondersError,
                        nats.errors.ConnectionClosedError,
                    ):
                        return None

                again = await wait_for(answered, timeout=30, what="the gateway to answer after the restart")
                assert [(r.ok, r.duplicate, r.seq) for r in again] == [(True, True, s) for s in seqs]
                later = await office.submit_one(f.assessment(docs[1], expected_version=seqs[1]))
                assert later.ok and later.seq == 4
                info = await nc.jetstream().stream_info(EVENTS)
                assert info.state.messages == 4
        finally:
            await nc.close()
    finally:
        log_server.stop()


async def test_a_claim_left_by_a_failed_publish_is_taken_over_after_a_while(
    stack: Stack, office: OfficeClient
) -> None:
    tip = f.tip()
    orphan_event = f.new_id()
    conn = await asyncpg.connect(stack.database_url)
    try:
        # a tip.received claimed its tip_id, then its publish failed: nothing on the subject
        await conn.execute(
            "INSERT INTO entity_claims (entity, event_id, ward, subject) VALUES ($1, $2, '01447', $3)",
            f"tip:{tip['tip_id']}",
            uuid.UUID(orphan_event),
            f"antq.events.04.01447.tip.{tip['tip_id']}",
        )
        fresh = await office.submit_one(tip)
        assert fresh.error is not None and fresh.error.code == "conflict"  # too recent: maybe still in flight
        await conn.execute("UPDATE entity_claims SET claimed_at = now() - interval '2 minutes'")
        taken = await office.submit_one(tip)
        assert taken.ok and not taken.duplicate
        other = await office.submit_one(f.tip(tip_id=tip["tip_id"]))
        assert other.error is not None and other.error.code == "conflict"  # now the tip is really in the log
    finally:
        await conn.close()


async def test_only_the_index_commits_without_waiting_for_the_disk(gateway: Gateway) -> None:
    """The index's rows (read again from the stream after a PostgreSQL crash) commit asynchronously; the claims
    and the refusals that wait for ANTQ_REJECTED, kept nowhere else, commit as the server is configured."""
    assert gateway._index_pool is not None and gateway._pool is not None
    query = "SELECT setting, source FROM pg_settings WHERE name = 'synchronous_commit'"
    index = await gateway._index_pool.fetchrow(query)
    assert index is not None and tuple(index) == ("off", "client")  # the gateway's own setting
    # the refusals' pool keeps the server's (the tests' server commits asynchronously itself: command line)
    refusals = await gateway._pool.fetchrow(query)
    assert refusals is not None and refusals["source"] != "client"
