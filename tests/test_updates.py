"""The update feed on ANTQ_UPDATES: a late durable subscriber gets every change; crashes lose none."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import msgspec
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from events.localities import Localities
from infra.streams import UPDATES
from projections import store
from projections.metrics import FOLD_VERSION
from projections.publisher import PublishFailed, UpdatePublisher
from projections.runner import RunnerConfig
from projections.service import Projector
from services.client import OfficeClient
from tests import factories as f
from tests.conftest import Stack
from tests.servers import create_streams, keeping_update_history, wait_for
from tests.test_projection import InjectedCrash, as_event, publish_events, run_until

pytestmark = pytest.mark.servers


async def outbox_rows(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM stats_outbox"))
    finally:
        await conn.close()


async def test_a_late_durable_subscriber_receives_every_change_of_its_province(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    await create_streams(stack.js, keeping_update_history(stack.limits))  # every update kept, to compare
    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    await projector.start()
    conn = await asyncpg.connect(stack.database_url)
    seen: list[dict[str, int]] = []
    try:
        for round_ in range(4):
            docs = [f.session(attendance=10 + round_), f.pledge(signatures=3), f.session(ward="01273")]
            results = await office.submit(docs)
            assert all(r.ok for r in results)
            # and one in Bắc Ninh (24), outside this office's jurisdiction: straight to the log
            last = max(
                await publish_events(stack.nc, localities, [as_event(f.session(ward="07210"))]),
                *(r.seq or 0 for r in results),
            )

            async def caught_up(last: int = last) -> store.StatsSnapshot | None:
                snap = await store.read_stats(conn, wards=["01447"], year=2018, period="calendar")
                return snap if snap.as_of_seq >= last else None

            seen.append((await wait_for(caught_up, what="the projection")).metrics)
        assert projector.runner is not None
        await projector.runner.publisher_idle()
    finally:
        await conn.close()
        await projector.stop()

    # attached only now, filtered by province, from the start of the stream
    sub = await stack.js.pull_subscribe(
        "antq.updates.stats.04.>",
        durable="dashboard-04",
        stream=UPDATES,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT),
    )
    received: list[tuple[str, dict[str, object]]] = []
    while (await stack.js.consumer_info(UPDATES, "dashboard-04")).num_pending > 0:
        for msg in await sub.fetch(100, timeout=2):
            received.append((msg.subject, msgspec.json.decode(msg.data)))
            await msg.ack()
    assert received and all(subject.startswith("antq.updates.stats.04.") for subject, _ in received)
    assert await stack.js.get_last_msg(
        UPDATES, "antq.updates.stats.24.07210.2018"
    )  # filtered out, not missing
    ours = [body for subject, body in received if subject == "antq.updates.stats.04.01447.2018"]
    assert [body["metrics"] for body in ours][-1] == seen[-1]
    it = iter(body["metrics"] for body in ours)
    assert all(any(m == want for m in it) for want in seen)  # every figure the queries saw came as an update
    seqs = [int(str(body["as_of_seq"])) for body in ours]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(body["stale"] is False and body["period"] == "calendar" for body in ours)
    assert all(body["fold_version"] == FOLD_VERSION and body["ward"] == "01447" for body in ours)


async def test_updates_committed_before_a_crash_are_published_on_restart(
    stack: Stack, localities: Localities
) -> None:
    events = [as_event(f.session(attendance=5)) for _ in range(6)]
    last = await publish_events(stack.nc, localities, events)

    async def crash_after_commit(point: str, seq: int) -> None:
        if point == "after_commit":
            raise InjectedCrash

    config = RunnerConfig(database_url=stack.database_url, localities=localities, hook=crash_after_commit)
    with pytest.raises(InjectedCrash):
        await run_until(stack.nc, config, last)
    assert await outbox_rows(stack.database_url) == 1  # committed, never handed to the publisher
    assert (await stack.js.stream_info(UPDATES)).state.messages == 0

    await run_until(stack.nc, RunnerConfig(database_url=stack.database_url, localities=localities), last)

    async def published() -> bool:
        return await outbox_rows(stack.database_url) == 0

    await wait_for(published, what="the outbox to drain")
    msg = await stack.js.get_last_msg(UPDATES, "antq.updates.stats.04.01447.2018")
    body = msgspec.json.decode(msg.data or b"")
    assert body["metrics"]["sessions_held"] == 6 and body["as_of_seq"] == last
    # the natural id (ward:year:seq:copy), tagged under the projection's key: infra/update_signing.py
    assert msg.headers is not None and msg.headers["Nats-Msg-Id"].startswith(f"01447:2018:{last}:1:")
    # a re-publish of the same row is a duplicate, not a second update
    reply = await stack.nc.request(
        "antq.updates.stats.04.01447.2018",
        msg.data or b"",
        headers={"Nats-Msg-Id": msg.headers["Nats-Msg-Id"]},
    )
    assert msgspec.json.decode(reply.data).get("duplicate") is True
    assert (await stack.js.stream_info(UPDATES)).state.messages == 1


@pytest.mark.timeout(60)
async def test_stopping_while_updates_cannot_be_published_keeps_them_for_the_next_start(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    """ANTQ_UPDATES away: ``stop`` returns after its drain timeout instead of retrying for ever (a SIGTERM
    would hang), and the committed updates stay in the outbox until a later start publishes them."""
    assert all(r.ok for r in await office.submit([f.session(ward="01447"), f.pledge(ward="01456")]))
    conn = await asyncpg.connect(stack.database_url)
    try:
        await store.open_checkpoint(conn, 1)
        rows = await store.write_updates(conn, 1, 2, {("01447", 2018): "04", ("01456", 2018): "04"})
        assert len(rows) == 2
    finally:
        await conn.close()
    await stack.js.delete_stream(UPDATES)
    stuck = UpdatePublisher(stack.nc, stack.database_url, 1, timeout=0.5)
    await stuck.start()
    started = time.monotonic()
    await stuck.stop(drain_timeout=1.0)
    assert time.monotonic() - started < 10
    assert stuck.published == 0 and await outbox_rows(stack.database_url) == 2

    await create_streams(stack.js, stack.limits)
    later = UpdatePublisher(stack.nc, stack.database_url, 1)
    await later.start()
    await later.idle()
    await later.stop()
    assert later.published == 2 and await outbox_rows(stack.database_url) == 0
    msg = await stack.js.get_last_msg(UPDATES, "antq.updates.stats.04.01447.2018")
    assert msgspec.json.decode(msg.data or b"")["as_of_seq"] == 2


@pytest.mark.timeout(60)
async def test_a_retry_never_stores_a_ward_year_s_older_figures_after_newer_ones(
    stack: Stack, localities: Localities, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two commits' updates of one ward-year left in the outbox are sent together, each ward-year once with its
    latest figures (conflated: the older rows are dropped unsent); a publish lost on the way while the other
    rows of its round get through is retried, and ANTQ_UPDATES holds each ward-year's latest update once."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        await store.open_checkpoint(conn, 1)
        for seq in (1, 2):
            await store.write_updates(conn, 1, seq, {("01447", 2018): "04", ("01456", 2018): "04"})
    finally:
        await conn.close()
    real = UpdatePublisher._publish_chunk
    lost: list[str] = []
    sent: list[tuple[str, int]] = []

    async def losing_the_first(self: UpdatePublisher, rows: list[store.OutboxRow]) -> None:
        sent.extend((r.ward, r.seq) for r in rows)
        first = next((r for r in rows if r.ward == "01447"), None)
        if first is not None and not lost:
            lost.append(first.msg_id)
            await real(self, [r for r in rows if r is not first])  # the rest of the round gets through
            raise PublishFailed(f"{first.msg_id}: lost on the way (test)")
        await real(self, rows)

    monkeypatch.setattr(UpdatePublisher, "_publish_chunk", losing_the_first)
    publisher = UpdatePublisher(stack.nc, stack.database_url, 1)
    await publisher.start()
    await publisher.idle()
    await publisher.stop()
    assert lost == ["01447:2018:2:1"] and await outbox_rows(stack.database_url) == 0
    assert ("01447", 1) not in sent and ("01456", 1) not in sent  # superseded before they were sent
    assert (publisher.published, publisher.superseded) == (2, 2)
    for ward in ("01447", "01456"):
        sub = await stack.js.pull_subscribe(f"antq.updates.stats.04.{ward}.2018", stream=UPDATES)
        stored = [msgspec.json.decode(m.data)["as_of_seq"] for m in await sub.fetch(10, timeout=2)]
        assert stored == [2]  # the retry of the round was a duplicate for the one that got through
        await sub.unsubscribe()


@pytest.mark.timeout(60)
async def test_the_feed_far_behind_holds_one_row_per_ward_year_and_the_fold_waits_beyond_the_bound(
    stack: Stack,
) -> None:
    """ANTQ_UPDATES away while commits pile up: what waits in memory is each ward-year's latest row (three
    commits of two ward-years: two rows); beyond ``max_queued_rows`` ward-years, ``room`` holds the runner
    before its next batch; a stop ends the wait; once the feed takes the rows, there is room again, the feed
    holds each ward-year's latest figures once and the outbox is empty (the superseded rows deleted with them)."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        await store.open_checkpoint(conn, 1)
        await store.write_updates(conn, 1, 1, {("01447", 2018): "04"})  # left by a crash: the first round
        await stack.js.delete_stream(UPDATES)
        publisher = UpdatePublisher(stack.nc, stack.database_url, 1, timeout=0.5, max_queued_rows=2)
        await publisher.start()  # its round is taken, and retried while the feed is away
        await wait_for(lambda: _async(publisher.queued_rows == 0), what="the leftover round taken")
        for seq in (2, 3, 4):
            publisher.submit(
                await store.write_updates(conn, 1, seq, {("01447", 2018): "04", ("01456", 2018): "04"})
            )
        assert publisher.queued_rows == 2 and publisher.superseded == 4  # seqs 2 and 3 replaced by 4
        stop = asyncio.Event()
        waiting = asyncio.create_task(publisher.room(stop))
        done, _ = await asyncio.wait({waiting}, timeout=0.5)
        assert not done  # held: two ward-years wait, the bound
        stop.set()
        await asyncio.wait_for(waiting, 5)  # a stop ends the wait
        await create_streams(stack.js, keeping_update_history(stack.limits))
        await asyncio.wait_for(publisher.room(asyncio.Event()), 20)  # the feed is back: room again
        await publisher.idle()
        assert publisher.queued_rows == 0 and await outbox_rows(stack.database_url) == 0
        assert publisher.published == 3  # 01447 as of 1, then 01447 and 01456 as of 4
        await publisher.stop()
    finally:
        await conn.close()
    for ward, seqs in (("01447", [1, 4]), ("01456", [4])):
        sub = await stack.js.pull_subscribe(f"antq.updates.stats.04.{ward}.2018", stream=UPDATES)
        stored = [msgspec.json.decode(m.data)["as_of_seq"] for m in await sub.fetch(10, timeout=2)]
        assert stored == seqs
        await sub.unsubscribe()


async def _async(value: bool) -> bool:
    return value


@pytest.mark.timeout(60)
async def test_a_round_goes_in_sequence_order_each_ward_year_once_with_its_latest_row(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows submitted while a round is out wait for the next; the next round holds each ward-year once, its
    latest row, in sequence order (the order a subscriber of every subject sees)."""
    rounds: list[list[tuple[str, int, int]]] = []
    release = asyncio.Event()

    async def recording(self: UpdatePublisher, rows: list[store.OutboxRow]) -> None:
        rounds.append([(r.ward, r.year, r.seq) for r in rows])
        await release.wait()

    monkeypatch.setattr(UpdatePublisher, "_publish_chunk", recording)

    def row(ward: str, year: int, seq: int) -> store.OutboxRow:
        return store.OutboxRow(province="04", ward=ward, year=year, seq=seq, payload=b"{}", copy=1)

    publisher = UpdatePublisher(stack.nc, stack.database_url, 1)
    await publisher.start()
    publisher.submit([row("a", 2018, 1)])
    await wait_for(lambda: _async(len(rounds) == 1), what="the first round out")
    publisher.submit([row("a", 2018, 3), row("b", 2018, 3)])
    publisher.submit([row("a", 2019, 4)])
    publisher.submit([row("a", 2018, 5), row("c", 2018, 5)])
    release.set()
    await publisher.idle()
    await publisher.stop()
    assert rounds == [
        [("a", 2018, 1)],
        [("b", 2018, 3), ("a", 2019, 4), ("a", 2018, 5), ("c", 2018, 5)],
    ]
    assert (publisher.published, publisher.superseded) == (5, 1)
