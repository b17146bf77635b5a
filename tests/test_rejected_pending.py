"""Refusals' records that ANTQ_REJECTED could not take wait in PostgreSQL (``gateway_rejected_pending``), so
they survive the gateway that answered them: a copy killed while the stream is away leaves them to the next
copy, which stores each once, in order per office; two copies draining at once never send a record twice; and
a flood of refusals while the stream is away stays within the table's bound (rows and bytes), the rest counted
lost. Real servers: the embedded nats-server and PostgreSQL of tests/conftest.py."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import pytest

from events.intake import IntakeResult, RejectedRecord
from events.localities import Localities
from infra.js_publisher import EXPECTED_STREAM, MSG_ID, JetStreamPublisher, Outcome, Pending
from infra.stream_reader import read_stream
from infra.streams import REJECTED
from services.client import OfficeClient
from services.gateway.app import Gateway
from services.gateway.rejected_later import LateCounts, PendingRecord, PendingTable, RejectedLater
from services.gateway.telemetry import gateway_registry
from tests import factories as f
from tests.conftest import FixedClock, Stack, gateway_config, wait_until_answering
from tests.faultkit import kill9, start_gateway, stop
from tests.servers import create_streams, wait_for
from tests.test_gateway_faults import database_down
from tests.test_rejected_later import StreamAway

pytestmark = pytest.mark.servers


async def stored(stack: Stack) -> list[tuple[str, bytes]]:
    """ANTQ_REJECTED's records in stream order: (subject, data); the fixtures' readiness probes left out."""
    out: list[tuple[str, bytes]] = []
    async for batch in read_stream(stack.js, REJECTED):
        out.extend((m.subject, bytes(m.data)) for m in batch if m.subject != "antq.rejected._probe")
    return out


async def waiting_data(database_url: str) -> list[bytes]:
    """The payloads of the records waiting in the table, oldest first."""
    conn = await asyncpg.connect(database_url)
    try:
        return [
            bytes(r["data"])
            for r in await conn.fetch("SELECT data FROM gateway_rejected_pending ORDER BY id")
        ]
    finally:
        await conn.close()


async def table_rows(database_url: str) -> tuple[int, int, int, int]:
    """Rows and bytes in the table, counted, and as its totals row says."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM gateway_rejected_pending) AS n,
                      (SELECT coalesce(sum(octet_length(data)), 0) FROM gateway_rejected_pending) AS b,
                      t.records, t.bytes FROM gateway_rejected_pending_total t"""
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["n"]), int(row["b"]), int(row["records"]), int(row["bytes"])


@pytest.fixture
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=4)
    yield p
    await p.close()


def record(office: str, n: int, size: int = 0) -> PendingRecord:
    body = f"{office}:{n}:".encode().ljust(size, b"x")
    return PendingRecord(
        f"antq.rejected.{office}", body, {MSG_ID: f"rejected:{office}:{n}", EXPECTED_STREAM: REJECTED}
    )


def in_order_per_office(records: list[tuple[str, bytes]]) -> dict[str, list[int]]:
    by_office: dict[str, list[int]] = collections.defaultdict(list)
    for subject, data in records:
        office, n, _ = data.decode().split(":", 2)
        assert subject == f"antq.rejected.{office}"
        by_office[office].append(int(n))
    return by_office


@pytest.mark.timeout(90)
async def test_refusals_waiting_when_a_gateway_is_killed_are_kept_once_in_order_by_the_next_copy(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities
) -> None:
    """``python -m services.gateway`` answers refusals while ANTQ_REJECTED is away and is SIGKILLed; the stream
    comes back; a new copy stores every record once, in the order each office was refused."""
    gateway = start_gateway(stack.servers.nats_url, stack.database_url, offices_file)
    try:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        await stack.js.delete_stream(REJECTED)
        offices = ["office-0", "office-1", "office-2"]
        sent: dict[str, list[bytes]] = {o: [] for o in offices}

        async def refused(office: str) -> None:
            client = OfficeClient(stack.nc, office, timeout=20)
            for n in range(15):
                body = msgspec.json.encode({**f.session(), "attendance": -1 - n})
                reply = await client.send_raw(body)
                assert isinstance(reply, IntakeResult) and reply.error is not None
                assert reply.error.code == "invalid"
                sent[office].append(body)

        await asyncio.gather(*(refused(o) for o in offices))
        # the record of each refusal is in the table before its office is answered
        assert (await table_rows(stack.database_url))[0] == 45
        kill9(gateway)
    finally:
        stop(gateway)
    await create_streams(stack.js, stack.limits)
    assert await stored(stack) == []

    copy = Gateway(gateway_config(stack, offices_file, clock, localities))
    async with copy.app:
        late = copy.counters.rejected_late

        async def all_kept() -> bool:
            return late.kept == 45 and (await table_rows(stack.database_url))[0] == 0

        await wait_for(all_kept, timeout=30, what="the new copy to keep what the killed one left")
        records = await stored(stack)
    by_office: dict[str, list[bytes]] = collections.defaultdict(list)
    for subject, data in records:
        rec = msgspec.json.decode(data, type=RejectedRecord)
        assert subject == f"antq.rejected.{rec.office}" and rec.error.code == "invalid"
        by_office[rec.office].append(rec.raw)
    assert by_office == sent  # each once, in the order its office was refused
    assert late.recovered == 45 and late.lost == 0 and late.in_memory == 0
    scraped = gateway_registry(copy.counters)
    assert scraped.get_sample_value("antq_gateway_rejected_recovered_total") == 45
    assert scraped.get_sample_value("antq_gateway_rejected_kept_late_total") == 45
    assert scraped.get_sample_value("antq_gateway_rejected_records_lost_total") == 0
    assert await table_rows(stack.database_url) == (0, 0, 0, 0)


class Counting:
    """A real publisher that counts the publishes of each Nats-Msg-Id."""

    def __init__(self, inner: JetStreamPublisher, sends: collections.Counter[str]) -> None:
        self._inner = inner
        self.sends = sends

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> Pending:
        self.sends[headers[MSG_ID]] += 1
        return await self._inner.publish(subject, data, headers)

    async def settle(self, pendings: list[Pending]) -> list[Outcome]:
        return await self._inner.settle(pendings)


@pytest.mark.timeout(60)
async def test_two_copies_draining_the_table_at_once_send_no_record_twice(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    """300 records of 6 offices left by a dead copy; two copies start draining together, 7 records a claim:
    every record is published once in all (not merely deduplicated by the stream), in order per office."""
    dead = PendingTable(pool, owner="dead-copy")
    offices = [f"office-{i}" for i in range(6)]
    for n in range(50):
        for office in offices:
            assert await dead.put(record(office, n), 10_000, 1 << 20)
    sends: collections.Counter[str] = collections.Counter()
    copies = []
    for _ in range(2):
        publisher = JetStreamPublisher(stack.nc)
        copy = RejectedLater(
            Counting(publisher, sends),  # type: ignore[arg-type]  # duck-typed wrapper of the real one
            LateCounts(),
            batch=7,
            first_delay_s=0.01,
            max_delay_s=0.05,
        )
        copies.append(copy)
    for copy in copies:
        copy.attach(PendingTable(pool))

    async def drained() -> bool:
        return sum(c.counts.kept for c in copies) == 300

    await wait_for(drained, timeout=30, what="two copies to drain 300 records")
    for copy in copies:
        await copy.stop(drain_timeout=1)
    assert len(sends) == 300 and set(sends.values()) == {1}, sends.most_common(3)
    assert all(c.counts.kept > 0 for c in copies)  # both took part
    assert sum(c.counts.recovered for c in copies) == 300
    records = await stored(stack)
    assert len(records) == 300
    assert in_order_per_office(records) == {office: list(range(50)) for office in offices}
    assert await table_rows(stack.database_url) == (0, 0, 0, 0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("size", "rows"), [(100, 100), (400, 50)])  # the row bound; the byte bound
async def test_a_flood_of_refusals_while_the_stream_is_away_stays_bounded_in_the_table(
    stack: Stack, pool: asyncpg.Pool, size: int, rows: int
) -> None:
    """An office floods refusals while ANTQ_REJECTED is away: at most 100 records or 20,000 bytes wait in the
    table (concurrent inserts included), the rest is counted lost; when the stream is back the table's
    records are stored once, in order."""
    await stack.js.delete_stream(REJECTED)
    counts = LateCounts()
    later = RejectedLater(
        JetStreamPublisher(stack.nc),
        counts,
        max_records=100,
        max_bytes=20_000,
        first_delay_s=0.01,
        max_delay_s=0.05,
    )
    later.attach(PendingTable(pool))
    flood = [record(f"flooder-{n % 2}", n, size) for n in range(500)]
    for chunk in range(0, 500, 50):  # 50 requests' refusals at a time, as concurrent requests would
        await asyncio.gather(*(later.keep(r) for r in flood[chunk : chunk + 50]))
    n, b, records, size_total = await table_rows(stack.database_url)
    assert (n, b) == (records, size_total) == (rows, rows * size)  # the totals row is exact
    assert counts.lost == 500 - rows and counts.kept == 0 and later.pending == 0
    conn = await asyncpg.connect(stack.database_url)
    try:  # the order the table keeps them in (concurrent requests of one office have no order of their own)
        waiting = [
            (r["subject"], bytes(r["data"]))
            for r in await conn.fetch("SELECT subject, data FROM gateway_rejected_pending ORDER BY id")
        ]
    finally:
        await conn.close()

    await create_streams(stack.js, stack.limits)

    async def kept() -> bool:
        return counts.kept == rows

    await wait_for(kept, timeout=30, what="the table's records to be kept")
    await later.stop(drain_timeout=1)
    assert in_order_per_office(await stored(stack)) == in_order_per_office(waiting)  # in order, each once
    assert counts.recovered == 0 and counts.lost == 500 - rows
    assert await table_rows(stack.database_url) == (0, 0, 0, 0)


@pytest.mark.timeout(60)
async def test_with_postgresql_away_too_a_refusal_waits_in_memory_and_is_kept_once_both_are_back(
    stack: Stack, gateway: Gateway, office: OfficeClient
) -> None:
    await stack.js.delete_stream(REJECTED)
    bad = msgspec.json.encode({**f.session(), "attendance": -7})
    async with database_down(stack):
        reply = await office.send_raw(bad)
    assert isinstance(reply, IntakeResult) and reply.error is not None and reply.error.code == "invalid"
    late = gateway.counters.rejected_late
    assert late.in_memory == 1 and late.lost == 0
    await create_streams(stack.js, stack.limits)

    async def kept() -> bool:
        return late.kept == 1

    await wait_for(kept, timeout=30, what="the record waiting in memory to be kept")
    [(subject, data)] = await stored(stack)
    assert subject == "antq.rejected.ca-cao-bang"
    assert msgspec.json.decode(data, type=RejectedRecord).raw == bad
    assert await table_rows(stack.database_url) == (0, 0, 0, 0)


class _Stalls:
    """A publisher whose stream takes the first ``takes`` records, then acknowledges nothing more (an election
    begins mid-drain: the next ack would come only after the copy's stop gave up waiting)."""

    def __init__(self, takes: int) -> None:
        self.takes = takes
        self.stored: list[bytes] = []
        self.stalled = asyncio.Event()

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if len(self.stored) < self.takes:
            self.stored.append(data)
            future.set_result(Outcome(seq=len(self.stored)))
        else:
            self.stalled.set()  # never settled
        return future

    async def settle(self, futures: list[asyncio.Future[Outcome]]) -> list[Outcome]:
        return [await future for future in futures]


@pytest.mark.timeout(30)
async def test_a_stop_that_interrupts_a_drain_deletes_the_rows_the_stream_already_took(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    """A copy stops while it waits for an ack in the middle of a claim: the rows the stream took before are
    deleted (not rolled back with the claim, to be published again by the next copy); the rest wait."""
    dead = PendingTable(pool, owner="dead-copy")
    for n in range(10):
        assert await dead.put(record("office-0", n), 10_000, 1 << 20)
    stalls = _Stalls(takes=3)
    later = RejectedLater(stalls, LateCounts(), first_delay_s=0.01, max_delay_s=0.05)  # type: ignore[arg-type]
    later.attach(PendingTable(pool))

    async def stalled() -> bool:
        return stalls.stalled.is_set()

    await wait_for(stalled, timeout=10, what="the drain to wait for the fourth record's ack")
    await later.stop(drain_timeout=0.2)
    assert len(stalls.stored) == 3
    waiting = await waiting_data(stack.database_url)
    assert waiting == [record("office-0", n).data for n in range(3, 10)]  # the 3 stored are not sent again
    assert (await table_rows(stack.database_url))[2] == 7  # the totals row follows


class _DatabaseAway(PendingTable):
    """The table, whose inserts fail while ``away`` (PostgreSQL stopped)."""

    away = True

    async def put(self, record: PendingRecord, max_records: int, max_bytes: int) -> bool:
        if self.away:
            raise ConnectionError("PostgreSQL is away")
        return await super().put(record, max_records, max_bytes)


@pytest.mark.timeout(30)
async def test_a_record_that_waited_in_memory_is_stored_before_the_later_ones_of_its_office(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    """ANTQ_REJECTED and PostgreSQL away: refusal 0 waits in memory. PostgreSQL back, refusal 1 is kept in the
    table: refusal 0 goes there first, so the office's records are stored in the order it was refused (before,
    refusal 0 stayed in memory and came after refusal 1: moved into the table at the stop, behind it)."""
    stream = StreamAway()
    table = _DatabaseAway(pool)
    later = RejectedLater(stream, LateCounts(), first_delay_s=0.01, max_delay_s=0.05)  # type: ignore[arg-type]
    later.attach(table)
    await later.keep(record("office-0", 0))
    assert later.counts.in_memory == 1 and later.pending == 1
    table.away = False
    await later.keep(record("office-0", 1))
    await later.stop(drain_timeout=0.1)
    assert later.counts.lost == 0

    stream.back = True  # the next copy stores what waits
    copy = RejectedLater(stream, LateCounts(), first_delay_s=0.01, max_delay_s=0.05)  # type: ignore[arg-type]
    copy.attach(PendingTable(pool))

    async def kept() -> bool:
        return copy.counts.kept == 2

    await wait_for(kept, timeout=10, what="the next copy to store both records")
    await copy.stop(drain_timeout=1)
    assert stream.stored == [record("office-0", n).data for n in range(2)]
    assert await table_rows(stack.database_url) == (0, 0, 0, 0)


class _AckLate:
    """A publisher whose acks wait until ``release`` is set (a stream that hangs); then it stores them."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()
        self.stored: list[bytes] = []
        self.pending = b""

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        future.set_result(Outcome(seq=0))
        self.pending = data
        return future

    async def settle(self, futures: list[asyncio.Future[Outcome]]) -> list[Outcome]:
        self.waiting.set()
        await self.release.wait()
        self.stored.append(self.pending)
        return [Outcome(seq=len(self.stored))]


@pytest.mark.timeout(30)
async def test_a_refusal_is_answered_without_waiting_for_the_ack_of_a_record_sent_from_memory(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    """A record that waited in memory is being sent and its ack is slow: a later refusal of the office is kept
    (behind it, in order) without waiting for that ack, so the office's answer is not held up by it."""
    stream = _AckLate()
    table = _DatabaseAway(pool)
    later = RejectedLater(stream, LateCounts(), first_delay_s=0.01, max_delay_s=0.05)  # type: ignore[arg-type]
    later.attach(table)
    await later.keep(record("office-0", 0))
    await asyncio.wait_for(stream.waiting.wait(), 5)  # refusal 0 is being sent from memory
    table.away = False
    await asyncio.wait_for(later.keep(record("office-0", 1)), 2)  # not held up by refusal 0's ack
    stream.release.set()

    async def kept() -> bool:
        return len(stream.stored) == 2

    await wait_for(kept, timeout=10, what="both records to be stored")
    await later.stop(drain_timeout=1)
    assert stream.stored == [record("office-0", n).data for n in range(2)]
    assert await table_rows(stack.database_url) == (0, 0, 0, 0)


class _CountedDatabaseAway(_DatabaseAway):
    puts = 0

    async def put(self, record: PendingRecord, max_records: int, max_bytes: int) -> bool:
        self.puts += 1
        return await super().put(record, max_records, max_bytes)


@pytest.mark.timeout(30)
async def test_a_refusal_moves_a_bounded_number_of_records_from_memory_and_the_rest_keep_their_order(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    """20 records waited in memory; PostgreSQL back, the next refusal moves no more than a claim's worth (5) of
    them into the table before its answer (its cost is bounded, whatever waits), waits behind the rest, and the
    memory queue's retry moves those: the table holds all 21 in the order they were refused."""
    table = _CountedDatabaseAway(pool)
    later = RejectedLater(StreamAway(), LateCounts(), batch=5, first_delay_s=30, max_delay_s=30)  # type: ignore[arg-type]
    later.attach(table)
    for n in range(20):
        await later.keep(record("office-0", n))
    assert later.pending == 20
    table.away, table.puts = False, 0
    await later.keep(record("office-0", 20))
    assert table.puts <= 5
    await later.stop(drain_timeout=5)
    waiting = await waiting_data(stack.database_url)
    assert waiting == [record("office-0", n).data for n in range(21)]
    assert later.counts.lost == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("headers", "'[1, 2]'::jsonb"),  # not an object
        ("headers", """'{"Nats-Msg-Id": 5}'::jsonb"""),  # not texts
        ("headers", """'{"Nats-Msg-Id": "a\\r\\nPUB x 1"}'::jsonb"""),  # a line break: would inject a command
        ("headers", """'{"Nats-Msg-Id": "rejected:x"}'::jsonb"""),  # no Nats-Expected-Stream
        ("subject", "'antq.rejected.a b'"),  # a space: nats refuses the publish
        ("subject", "'antq.events.04.01447.session'"),  # another stream's subject
    ],
)
async def test_a_row_changed_by_hand_is_sent_repaired_and_the_rows_behind_it_follow(
    stack: Stack, pool: asyncpg.Pool, column: str, value: str
) -> None:
    """The oldest of three waiting rows of an office is edited by hand: every round used to fail on it, and the
    rows behind it (and every office's after it) waited for ever. It is now sent with its subject or headers made
    again (a Nats-Msg-Id of the row's own), and the others follow, in order."""
    table = PendingTable(pool, owner="dead-copy")
    for n in range(3):
        assert await table.put(record("office-a", n), 100, 1 << 20)
    assert await table.put(record("office-b", 0), 100, 1 << 20)
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(
            f"UPDATE gateway_rejected_pending SET {column} = {value} "
            "WHERE id = (SELECT min(id) FROM gateway_rejected_pending)"
        )
    finally:
        await conn.close()
    later = RejectedLater(JetStreamPublisher(stack.nc), LateCounts(), first_delay_s=0.01, max_delay_s=0.05)
    later.attach(PendingTable(pool))

    async def drained() -> bool:
        return later.counts.kept == 4

    await wait_for(drained, timeout=20, what="the four rows to be sent")
    await later.stop(drain_timeout=1)
    records = await stored(stack)
    assert [data for _, data in records] == [
        record(o, n).data for o, n in [("office-a", 0), ("office-a", 1), ("office-a", 2), ("office-b", 0)]
    ]
    repaired_subject = records[0][0]
    assert repaired_subject == ("antq.rejected._invalid" if column == "subject" else "antq.rejected.office-a")
    assert [s for s, _ in records[1:]] == ["antq.rejected.office-a"] * 2 + ["antq.rejected.office-b"]
    assert await table_rows(stack.database_url) == (0, 0, 0, 0)
