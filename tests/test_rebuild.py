"""Rebuild without downtime, on real servers: a fresh copy is built beside the live one, switched in
atomically, the old one dropped; queries paused across the switch still get complete answers."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import pytest
from nats.aio.msg import Msg

from events.localities import Localities
from infra.streams import UPDATES
from projections import store
from projections.errors import FoldError
from projections.fold_state import Figures, StateUpdate
from projections.metrics import FOLD_VERSION
from projections.rebuild import Rebuild, RebuildError
from projections.runner import RunnerConfig, StatsRunner
from projections.service import Projector
from services.audit.replay import ReplayScope, replay
from services.client import OfficeClient
from tests import factories as f
from tests.conftest import Stack
from tests.servers import create_streams, keeping_update_history, settle, wait_for
from tests.test_projection import InjectedCrash, run_until

pytestmark = pytest.mark.servers


def natural_id(headers: dict[str, str] | None) -> str:
    """An update's Nats-Msg-Id without the tag that only the projection's key can make (ward:year:seq:copy)."""
    return (headers or {}).get("Nats-Msg-Id", "").rsplit(":", 1)[0]


WARDS = ["01447", "01456", "01465"]


def some_events(n: int) -> list[dict[str, object]]:
    docs: list[dict[str, object]] = []
    for i in range(n):
        ward = WARDS[i % 3]
        match i % 5:
            case 0:
                tip = f.tip(ward=ward)
                docs += [tip, f.assessment(tip, valuable=i % 2 == 0)]
            case 1:
                session = f.session(ward=ward, attendance=i)
                docs += [session] + ([f.retraction(session)] if i % 3 == 0 else [])
            case 2:
                docs.append(f.pledge(ward=ward, signatures=1 + i % 7))
            case 3:
                docs.append(f.weapons(ward=ward, items=[{"kind": "ammunition", "quantity": 3}]))
            case _:
                docs.append(f.mediation(ward=ward))
    return docs


async def publish(office: OfficeClient, docs: list[dict[str, object]]) -> int:
    results = await office.submit(docs)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return max(r.seq or 0 for r in results)


async def expected(stack: Stack, localities: Localities, seq: int) -> dict[str, int]:
    result = await replay(stack.nc, ReplayScope(stop_seq=seq), localities)
    return result.replay.metrics(wards=WARDS, year=2018, period="calendar")


async def test_rebuild_switches_atomically_while_queries_and_writes_go_on(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    last = await publish(office, some_events(120))
    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    await projector.start()
    conn = await asyncpg.connect(stack.database_url)
    paused_conn = await asyncpg.connect(stack.database_url)
    release = asyncio.Event()
    paused = asyncio.Event()

    async def hold() -> None:
        paused.set()
        await release.wait()

    async def read() -> store.StatsSnapshot:
        return await store.read_stats(conn, wards=WARDS, year=2018, period="calendar")

    async def folded(seq: int) -> store.StatsSnapshot | None:
        snap = await read()
        return snap if snap.as_of_seq >= seq else None

    try:
        await wait_for(lambda: folded(last), what="the live copy to catch up")
        paused_query: asyncio.Task[store.StatsSnapshot] | None = None

        async def during(point: str) -> None:
            nonlocal paused_query, last
            if point == "built":
                # the copy being built has committed figures but wrote no update to publish
                assert await conn.fetchval("SELECT count(*) FROM stats WHERE copy = 2") > 0
                assert await conn.fetchval("SELECT count(*) FROM stats_outbox WHERE copy = 2") == 0
                # the live copy keeps folding while the new one is being built …
                last = await publish(office, some_events(30))
                live = await wait_for(lambda: folded(last), what="the live copy to fold new events")
                assert live.metrics == await expected(stack, localities, live.as_of_seq)
                # … and a query is paused after it read which copy is active, across the switch
                paused_query = asyncio.create_task(
                    store.read_stats(paused_conn, wards=WARDS, year=2018, period="calendar", pause=hold)
                )
                await paused.wait()
            if point == "switched":
                # the old copy's tables are dropped only once the paused query, which read that copy 1 was
                # active, has read its figures: the drop waits for it (seen in pg_locks), then it is released
                release_when_drop_waits.append(asyncio.create_task(release_once_the_drop_waits()))

        async def release_once_the_drop_waits() -> None:
            async def drop_waiting() -> bool:
                return bool(await conn.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"))

            await wait_for(drop_waiting, what="the drop of copy 1 to wait for the paused query")
            assert paused_query is not None and not paused_query.done()
            # while the drop waits, new queries are not queued behind it: they read copy 2 at once
            fresh = await asyncio.wait_for(read(), timeout=5)
            assert fresh.metrics == await expected(stack, localities, fresh.as_of_seq)
            assert await conn.fetchval("SELECT copy FROM projection_active") == 2
            release.set()

        release_when_drop_waits: list[asyncio.Task[None]] = []
        report = await Rebuild(
            stack.nc, stack.database_url, localities=localities, hook=during, close_enough=50, batch=64
        ).run()
        assert (report.old_copy, report.new_copy) == (1, 2)
        assert report.switch_seq >= last
        assert release.is_set()  # by the drop, which could not go on before
        await release_when_drop_waits[0]
        assert paused_query is not None
        before_switch = await paused_query
        assert before_switch.as_of_seq <= report.switch_seq
        assert before_switch.metrics == await expected(stack, localities, before_switch.as_of_seq)
        assert before_switch.fold_version == report.fold_version == FOLD_VERSION
        # the old copy is gone, the new one serves and the projector follows it (with updates)
        assert await conn.fetchval("SELECT count(*) FROM stats WHERE copy = 1") == 0
        assert await store.active_copy(conn) == 2
        last = await publish(office, some_events(20))
        after = await wait_for(lambda: folded(last), what="the projector to fold into the new copy")
        assert after.metrics == await expected(stack, localities, after.as_of_seq)
    finally:
        release.set()
        await projector.stop()
        await conn.close()
        await paused_conn.close()


async def test_a_rebuild_that_changes_figures_publishes_them(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    await create_streams(stack.js, keeping_update_history(stack.limits))  # every update kept, to compare
    # the last event is in 01447: the live copy's update of 01447 and the rebuild's correction both come at
    # the switch sequence, and the correction must not be taken for a re-publish of the live copy's update
    last = await publish(office, [f.pledge(ward="01456"), f.session(ward="01447", attendance=40)])
    updates: list[dict[str, object]] = []

    async def on_update(msg: Msg) -> None:
        updates.append(msgspec.json.decode(msg.data))

    # listening before the projector starts, and the server has the SUB (settle) before the projector's
    # connection publishes the live copy's update: subscribed after it, the update could come first and be lost
    sub = await stack.nc.subscribe("antq.updates.stats.04.01447.2018", cb=on_update)
    await settle(stack.nc)
    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    await projector.start()
    conn = await asyncpg.connect(stack.database_url)
    try:

        async def folded() -> bool:
            return (await store.read_checkpoint(conn, 1)).seq >= last

        await wait_for(folded, what="the live copy to catch up")

        async def first_update() -> bool:
            return bool(updates)

        await wait_for(first_update, what="the live copy's own update")
        updates.clear()
        # figures the old fold got wrong (here: edited by hand) …
        await conn.execute(
            "UPDATE stats SET value = 41 WHERE copy = 1 AND ward = '01447' AND metric = 'session_attendance'"
        )
        await Rebuild(stack.nc, stack.database_url, localities=localities).run()

        # … are published with the rebuilt figures once the new copy's runner starts
        async def corrected() -> bool:
            return any(u["metrics"]["session_attendance"] == 40 for u in updates)  # type: ignore[index]

        await wait_for(corrected, what="an update with the rebuilt figures")
        # … and stored in ANTQ_UPDATES, where durable subscribers read it: the correction comes at the same
        # sequence as the live copy's last update of 01447, under its own Nats-Msg-Id (not a duplicate of it)
        stored = await stack.js.pull_subscribe("antq.updates.stats.04.01447.2018", stream=UPDATES)
        msgs = await stored.fetch(10, timeout=2)
        ids = [natural_id(m.headers) for m in msgs]
        assert ids == [f"01447:2018:{last}:1", f"01447:2018:{last}:2"]
        assert msgspec.json.decode(msgs[-1].data)["metrics"]["session_attendance"] == 40
    finally:
        await sub.unsubscribe()
        await projector.stop()
        await conn.close()


async def started_projector(stack: Stack, localities: Localities, halted_poll_s: float = 1.0) -> Projector:
    projector = Projector(
        nats_url=stack.servers.nats_url,
        database_url=stack.database_url,
        localities=localities,
        halted_poll_s=halted_poll_s,
    )
    await projector.start()
    return projector


async def snapshot_at(conn: asyncpg.Connection, seq: int) -> store.StatsSnapshot | None:
    snap = await store.read_stats(conn, wards=WARDS, year=2018, period="calendar")
    return snap if snap.as_of_seq >= seq else None


async def test_one_rebuild_at_a_time(stack: Stack, office: OfficeClient, localities: Localities) -> None:
    last = await publish(office, some_events(30))
    projector = await started_projector(stack, localities)
    conn = await asyncpg.connect(stack.database_url)
    refused: list[str] = []

    async def during(point: str) -> None:
        if point == "built":  # a second rebuild while the first holds its new copy
            with pytest.raises(RebuildError, match="another rebuild") as exc:
                await Rebuild(stack.nc, stack.database_url, localities=localities).run()
            refused.append(str(exc.value))

    try:
        await wait_for(lambda: snapshot_at(conn, last), what="the live copy to catch up")
        report = await Rebuild(stack.nc, stack.database_url, localities=localities, hook=during).run()
        assert refused and (report.old_copy, report.new_copy) == (1, 2)
        assert await store.active_copy(conn) == 2
        copies = await conn.fetch("SELECT copy, retired_at_seq FROM projection_checkpoint ORDER BY copy")
        assert [(r["copy"], r["retired_at_seq"]) for r in copies] == [(2, None)]  # no third copy was begun
        last = await publish(office, some_events(10))
        after = await wait_for(lambda: snapshot_at(conn, last), what="the projector to fold into copy 2")
        assert after.metrics == await expected(stack, localities, after.as_of_seq)
        # and the lock went with the first rebuild: a later one runs
        assert (await Rebuild(stack.nc, stack.database_url, localities=localities).run()).new_copy == 3
    finally:
        await projector.stop()
        await conn.close()


async def test_the_switch_never_retires_a_copy_that_is_no_longer_active(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    last = await publish(office, some_events(20))
    projector = await started_projector(stack, localities)
    conn = await asyncpg.connect(stack.database_url)

    async def during(point: str) -> None:
        if point == "built":  # the pointer moves on under the rebuild (as another switch would move it)
            await conn.execute("UPDATE projection_active SET copy = 7 WHERE name = 'stats'")

    try:
        await wait_for(lambda: snapshot_at(conn, last), what="the live copy to catch up")
        with pytest.raises(RebuildError, match="copy 7 became active"):
            await Rebuild(stack.nc, stack.database_url, localities=localities, hook=during).run()
        assert await store.active_copy(conn) == 7  # left as it was found
        assert await conn.fetchval("SELECT retired_at_seq FROM projection_checkpoint WHERE copy = 1") is None
    finally:
        await conn.execute("UPDATE projection_active SET copy = 1 WHERE name = 'stats'")
        await projector.stop()
        await conn.close()


async def test_a_halted_projection_follows_the_rebuild_that_replaces_its_copy(
    stack: Stack, office: OfficeClient, localities: Localities, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copy 1 is folded by a fold with a bug (it cannot apply one valid event) and halts; a rebuild with the
    corrected fold replaces it, and the halted projector goes on folding into the new copy by itself."""
    before = await publish(office, some_events(10))
    poison = await publish(office, [f.session(ward="01447", attendance=7)])
    assert poison == before + 1
    real_fold = StatsRunner._fold

    async def buggy_fold(
        self: StatsRunner, conn: asyncpg.Connection, records: list[tuple[int, object]]
    ) -> tuple[StateUpdate, Figures, dict[str, str]]:
        if self.copy == 1 and any(seq == poison for seq, _ in records):
            raise FoldError("the old fold's bug", seq=poison, event_id="poison")
        return await real_fold(self, conn, records)  # type: ignore[arg-type]

    monkeypatch.setattr(StatsRunner, "_fold", buggy_fold)
    projector = await started_projector(stack, localities, halted_poll_s=0.05)
    conn = await asyncpg.connect(stack.database_url)
    try:

        async def halted() -> store.StatsSnapshot | None:
            snap = await store.read_stats(conn, wards=WARDS, year=2018, period="calendar")
            return snap if snap.stale else None

        stale = await wait_for(halted, what="copy 1 to halt")
        assert stale.as_of_seq == before and projector.halted is not None
        report = await Rebuild(stack.nc, stack.database_url, localities=localities).run()
        assert (report.old_copy, report.new_copy, report.switch_seq) == (1, 2, before)
        last = await publish(office, some_events(5))
        after = await wait_for(lambda: snapshot_at(conn, last), what="the projector to fold into copy 2")
        assert not after.stale and projector.halted is None
        assert after.metrics == await expected(stack, localities, after.as_of_seq)
    finally:
        await projector.stop()
        await conn.close()


async def test_updates_a_crashed_copy_left_unpublished_are_superseded_at_the_switch_never_sent_late(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    await create_streams(stack.js, keeping_update_history(stack.limits))  # every update kept, to compare
    last = await publish(
        office, [f.session(ward="01447", attendance=5), f.session(ward="01447", attendance=6)]
    )

    async def crash_after_commit(point: str, seq: int) -> None:
        if point == "after_commit":
            raise InjectedCrash

    config = RunnerConfig(
        database_url=stack.database_url, localities=localities, hook=crash_after_commit, batch=1
    )
    with pytest.raises(InjectedCrash):
        await run_until(stack.nc, config, last)  # copy 1 folded seq 1, its update left in the outbox
    conn = await asyncpg.connect(stack.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM stats_outbox WHERE copy = 1") == 1
        report = await Rebuild(stack.nc, stack.database_url, localities=localities).run()
        assert (report.old_copy, report.new_copy, report.switch_seq) == (1, 2, 1)
        assert await conn.fetchval("SELECT count(*) FROM stats_outbox WHERE copy = 1") == 0  # dropped, unsent
        projector = await started_projector(stack, localities)
        try:

            async def all_published() -> bool:
                folded = (await store.read_checkpoint(conn, 2)).seq == last
                return folded and await conn.fetchval("SELECT count(*) FROM stats_outbox") == 0

            await wait_for(all_published, what="copy 2 to fold and publish everything")
        finally:
            await projector.stop()
    finally:
        await conn.close()
    sub = await stack.js.pull_subscribe("antq.updates.stats.04.01447.2018", stream=UPDATES)
    msgs = await sub.fetch(10, timeout=2)
    sent = [natural_id(m.headers) for m in msgs]
    seqs = [msgspec.json.decode(m.data)["as_of_seq"] for m in msgs]
    assert sent == ["01447:2018:1:2", f"01447:2018:{last}:2"] and seqs == [1, last]


async def test_a_long_read_makes_neither_queries_nor_commits_wait_on_a_rebuild(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    """A read open since before the rebuild (a report, a dump) holds the old copy: the rebuild creates its copy
    beside it and switches, and only the drop of the old copy waits for that read; queries and the projector's
    commits go on all the while (nothing queues behind the drop)."""
    last = await publish(office, some_events(30))
    projector = await started_projector(stack, localities)
    conn = await asyncpg.connect(stack.database_url)
    long_read = await asyncpg.connect(stack.database_url)
    held = long_read.transaction(isolation="repeatable_read", readonly=True)
    try:
        await wait_for(lambda: snapshot_at(conn, last), what="the live copy to catch up")
        await held.start()
        await store.hold_copies(long_read)
        assert await long_read.fetchval("SELECT count(*) FROM stats WHERE copy = 1") > 0
        rebuild = asyncio.create_task(Rebuild(stack.nc, stack.database_url, localities=localities).run())

        async def drop_waits_on_the_long_read() -> bool:
            switched = await conn.fetchval("SELECT copy FROM projection_active") == 2
            return switched and bool(await conn.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"))

        await wait_for(drop_waits_on_the_long_read, what="the rebuild to switch and wait to drop copy 1")
        more = await publish(office, some_events(5))
        after = await wait_for(
            lambda: snapshot_at(conn, more), timeout=15, what="new events folded into copy 2"
        )
        assert after.metrics == await expected(stack, localities, after.as_of_seq)
        assert not rebuild.done()
        assert await long_read.fetchval("SELECT count(*) FROM stats WHERE copy = 1") > 0  # still whole
        await held.rollback()
        report = await asyncio.wait_for(rebuild, timeout=30)
        assert (report.old_copy, report.new_copy) == (1, 2)
        assert await conn.fetchval("SELECT to_regclass('stats_c1')") is None
    finally:
        await projector.stop()
        await long_read.close()
        await conn.close()


async def test_a_switch_stands_when_the_old_copy_cannot_be_dropped_yet(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    """A runner that still holds the retired copy (its publisher draining while NATS is away) does not turn a
    done switch into a failed rebuild: the report says the old copy is left, and the next rebuild drops it."""
    last = await publish(office, some_events(10))
    holder = await asyncpg.connect(stack.database_url)  # stands for an old runner that is slow to stop
    conn = await asyncpg.connect(stack.database_url)
    try:
        await store.open_checkpoint(holder, 1)
        assert await store.try_lock(holder, 1)
        report = await Rebuild(
            stack.nc, stack.database_url, localities=localities, old_runner_timeout=0.3
        ).run()
        assert (report.old_copy, report.new_copy, report.switch_seq, report.old_dropped) == (1, 2, 0, False)
        assert await store.active_copy(conn) == 2
        assert await conn.fetchval("SELECT to_regclass('stats_c1')::text") == "stats_c1"  # left for now
        await holder.close()
        again = await Rebuild(stack.nc, stack.database_url, localities=localities).run()
        assert (again.old_copy, again.new_copy, again.old_dropped) == (2, 3, True)
        assert await conn.fetchval("SELECT to_regclass('stats_c1')") is None
        assert await conn.fetchval("SELECT to_regclass('stats_c2')") is None
        copies = await conn.fetch("SELECT copy FROM projection_checkpoint ORDER BY copy")
        assert [r["copy"] for r in copies] == [3] and last > 0
    finally:
        await holder.close()
        await conn.close()
