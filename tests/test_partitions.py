"""The statistics projection split by province across workers (``projections/partitions.py``): 2 workers give
exactly the figures of 1 and of an independent oracle, a worker killed with SIGKILL mid-stream is restarted and
the figures stay exact, and ``min_seq`` stays read-your-writes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from nats.js import JetStreamContext

import tests.factories as f
from bench.projection import realistic_events
from events.localities import Localities
from events.subjects import QUERY_SUBJECT
from infra.stream_reader import last_sequence, read_stream
from infra.streams import UPDATES
from projections import partitions
from projections.partitions import Part
from projections.rebuild import Rebuild
from projections.runner import RunnerConfig, StatsRunner
from projections.service import Projector
from services.client import OfficeClient
from services.query.app import QueryService
from tests.conftest import Stack
from tests.servers import fresh_database, outbox_empty, wait_for
from tests.test_fold_model import reference
from tests.test_projection import checkpoint, figures, publish_events

pytestmark = pytest.mark.servers
ROOT = Path(__file__).resolve().parent.parent


def wards_everywhere(localities: Localities, per_province: int = 3) -> list[str]:
    """A few wards of each of the 34 provinces: every partition has work."""
    return [
        w for code in partitions.province_codes(localities) for w in localities.wards_of(code)[:per_province]
    ]


async def fold_with(
    stack: Stack,
    database_url: str,
    localities: Localities,
    parts: int,
    last: int,
    batch: int = 300,
    server_filter: bool = False,
) -> list[StatsRunner]:
    """Fold ANTQ_EVENTS into ``database_url`` with ``parts`` runners (in this process), publishing updates,
    until the copy's checkpoint is at ``last`` and every update is published; the runners, stopped."""
    stop = asyncio.Event()
    runners = [
        StatsRunner(
            stack.nc,
            RunnerConfig(
                database_url=database_url,
                batch=batch,
                fetch_timeout=0.2,
                localities=localities,
                part=Part(parts=parts, part=k) if parts > 1 else None,
                server_filter=server_filter,
            ),
        )
        for k in range(parts)
    ]
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    try:

        async def caught_up() -> bool:
            for t in tasks:
                if t.done():
                    t.result()  # a runner that ended early: its error
            return await copy_seq(database_url) >= last

        await wait_for(caught_up, timeout=60, what=f"the copy's checkpoint to reach {last}")
        for r in runners:
            await r.publisher_idle()
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return runners


async def latest_updates(js: JetStreamContext) -> dict[tuple[str, int], Any]:
    """The update feed's latest figures (exact and approximate) per ward-year, in stream order."""
    latest: dict[tuple[str, int], Any] = {}
    end = await last_sequence(js, UPDATES)
    if end:
        async for msgs in read_stream(js, UPDATES, start_seq=1, stop_seq=end, batch=1000):
            for m in msgs:
                doc = msgspec.json.decode(m.data)
                latest[doc["ward"], doc["year"]] = (doc["metrics"], doc.get("approximate"))
    return latest


def by_ward_year(figs: Mapping[tuple[str, str, int, str], int]) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = {}
    for _period, ward, year, _metric in figs:
        counts[ward, year] = counts.get((ward, year), 0) + 1
    return counts


@pytest.mark.timeout(120)
@pytest.mark.parametrize("server_filter", [False, True], ids=["by-subject", "filter-subjects"])
async def test_two_workers_give_exactly_the_figures_of_one_and_of_the_oracle(
    stack: Stack, localities: Localities, server_filter: bool
) -> None:
    events = realistic_events(4000, wards_everywhere(localities), seed=21)
    last = await publish_events(stack.nc, localities, events)
    oracle = reference(events)
    print(f"published {last} events over the 34 provinces; the oracle counts {len(oracle)} non-zero figures")

    one = await fold_with(stack, stack.database_url, localities, 1, last)
    figures_one = await figures(stack.database_url)
    updates_one = await latest_updates(stack.js)
    await stack.js.purge_stream(UPDATES)

    split_url = await fresh_database(stack.servers)
    two = await fold_with(stack, split_url, localities, 2, last, server_filter=server_filter)
    figures_two = await figures(split_url)
    updates_two = await latest_updates(stack.js)
    print(
        f"1 worker: {one[0].stats.events} events in {one[0].stats.batches} commits; 2 workers: "
        f"{[r.stats.events for r in two]} events in {[r.stats.batches for r in two]} commits"
    )

    assert figures_one == oracle  # one worker against the independent oracle
    assert figures_two == figures_one  # every (period, ward, year, metric) of 2 workers against 1
    assert len(by_ward_year(figures_two)) == len(by_ward_year(oracle))
    assert updates_two == updates_one and updates_one  # the feed's latest figures per ward-year
    # each event folded once, by the worker of its province; both worked; both checkpoints at the end
    assert sum(r.stats.events for r in two) == last == one[0].stats.events
    assert all(r.stats.events > 0 for r in two)
    conn = await asyncpg.connect(split_url)
    try:
        assert await partitions.partition_seqs(conn, 1) == {0: last, 1: last}
    finally:
        await conn.close()
    print(
        f"checked: {len(figures_two)} figures and {len(updates_two)} ward-year updates equal, oracle included"
    )


def worker_pids(parent: int) -> dict[int, int]:
    """partition -> pid of the supervisor's live worker processes."""
    found: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"--partition" in argv:
                found[int(argv[argv.index(b"--partition") + 1])] = int(pid)
    return found


async def copy_seq(database_url: str) -> int:
    """The copy's checkpoint (0 before the first runner made it)."""
    try:
        return (await checkpoint(database_url)).seq
    except LookupError:
        return 0


async def seqs_of(database_url: str) -> dict[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        return await partitions.partition_seqs(conn, 1)
    finally:
        await conn.close()


@pytest.mark.timeout(120)
@pytest.mark.faults
async def test_sigkill_of_one_worker_mid_stream_is_restarted_and_every_figure_stays_exact(
    stack: Stack, localities: Localities
) -> None:
    events = realistic_events(4000, wards_everywhere(localities), seed=12)
    last = await publish_events(stack.nc, localities, events)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--nats-url", stack.servers.nats_url, "--database-url", stack.database_url, "--batch", "50"]
    supervisor = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
        [sys.executable, "-m", "projections", "--workers", "2", *args], cwd=ROOT, env=env
    )
    try:

        async def mid_stream() -> dict[int, int] | None:
            pids = worker_pids(supervisor.pid)
            seqs = await seqs_of(stack.database_url) if len(pids) == 2 else {}
            return pids if seqs and 0 < seqs[0] < last else None

        pids = await wait_for(mid_stream, timeout=60, what="worker 0 between its first commit and the end")
        os.kill(pids[0], signal.SIGKILL)
        killed_at = (await seqs_of(stack.database_url))[0]
        print(f"SIGKILL to worker 0 (pid {pids[0]}) with its checkpoint at seq {killed_at} of {last}")

        async def restarted() -> int | None:
            pid = worker_pids(supervisor.pid).get(0)
            return pid if pid is not None and pid != pids[0] else None

        again = await wait_for(restarted, timeout=30, what="worker 0 started again")

        async def caught_up() -> bool:
            return await copy_seq(stack.database_url) == last

        await wait_for(caught_up, timeout=60, what=f"the copy's checkpoint to reach {last}")
        assert await figures(stack.database_url) == reference(events)

        await wait_for(
            lambda: outbox_empty(stack.database_url), timeout=30, what="the updates to be published"
        )
        print(
            f"worker 0 restarted (pid {again}); checked: checkpoint {last}, figures equal the oracle, outbox empty"
        )
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(30)
    assert code == 0


async def ask(stack: Stack, body: Any) -> dict[str, Any]:
    reply = await stack.nc.request(QUERY_SUBJECT, msgspec.json.encode(body), timeout=30)
    result: dict[str, Any] = msgspec.json.decode(reply.data)
    return result


async def start_split(stack: Stack, localities: Localities, parts: int) -> Sequence[Projector]:
    projectors = [
        Projector(
            nats_url=stack.servers.nats_url,
            database_url=stack.database_url,
            localities=localities,
            part=Part(parts=parts, part=k),
        )
        for k in range(parts)
    ]
    for p in projectors:
        await p.start()
    return projectors


@pytest.mark.timeout(90)
async def test_min_seq_is_read_your_writes_with_two_workers(
    stack: Stack, query: QueryService, office: OfficeClient, localities: Localities
) -> None:
    # Cao Bằng (04) and Bắc Ninh (24) are in different partitions of 2
    assert [
        next(k for k, ps in enumerate(partitions.assignment(2, partitions.province_codes())) if p in ps)
        for p in ("04", "24")
    ] == [1, 0]
    projectors = await start_split(stack, localities, 2)
    try:
        for round_ in range(3):
            results = await office.submit(
                [f.session(ward="01447", attendance=10), f.pledge(ward="01456", signatures=2)]
            )
            last = max(r.seq or 0 for r in results)
            # the partition of 04 folds them; the one of 24 has nothing pending and is covered up to them
            here = await ask(stack, {"ward": "01447", "year": 2018, "min_seq": last, "timeout_ms": 20_000})
            assert here["as_of_seq"] >= last, here
            assert here["metrics"]["session_attendance"] == 10 * (round_ + 1), here
            province = await ask(
                stack, {"province": "04", "year": 2018, "min_seq": last, "timeout_ms": 20_000}
            )
            assert province["metrics"]["pledge_signatures"] == 2 * (round_ + 1), province
            other = await ask(stack, {"ward": "09454", "year": 2018, "min_seq": last, "timeout_ms": 20_000})
            assert other["as_of_seq"] >= last and "error" not in other, other
            print(
                f"round {round_}: accepted up to seq {last}; min_seq {last} answered at as_of_seq {here['as_of_seq']}"
            )
        # a write in the other partition's province: read at once with min_seq
        (result,) = await OfficeClient(stack.nc, "ca-bac-ninh", timeout=20).submit(
            [f.session(ward="09454", attendance=7)]
        )
        assert result.seq is not None
        seen = await ask(stack, {"ward": "09454", "year": 2018, "min_seq": result.seq, "timeout_ms": 20_000})
        assert seen["metrics"]["session_attendance"] == 7 and seen["as_of_seq"] >= result.seq, seen
    finally:
        for p in projectors:
            await p.stop()


@pytest.mark.timeout(120)
async def test_rebuild_with_two_worker_processes_switches_to_exact_figures_while_events_arrive(
    stack: Stack, localities: Localities
) -> None:
    events = realistic_events(3000, wards_everywhere(localities), seed=5)
    first, later = events[:2000], events[2000:]
    last = await publish_events(stack.nc, localities, first)
    projectors = await start_split(stack, localities, 2)  # the live copy 1, split in 2
    try:
        await wait_for(lambda: _at(stack.database_url, 1, last), timeout=60, what=f"copy 1 at {last}")
        rebuild = Rebuild(
            stack.nc,
            stack.database_url,
            localities=localities,
            close_enough=100,
            batch=200,
            workers=2,
            nats_url=stack.servers.nats_url,
        )
        arriving = asyncio.create_task(publish_events(stack.nc, localities, later))
        report = await rebuild.run()
        end = await arriving
        print(
            f"rebuilt into copy {report.new_copy} with 2 worker processes; switched at seq {report.switch_seq}"
        )
        assert report.new_copy == 2 and report.old_dropped
        # the live projectors follow the pointer to copy 2 and fold what arrived meanwhile
        await wait_for(lambda: _at(stack.database_url, 2, end), timeout=60, what=f"copy 2 at {end}")
        assert await figures(stack.database_url, 2) == reference(events)
        conn = await asyncpg.connect(stack.database_url)
        try:
            assert await partitions.partition_seqs(conn, 2) == {0: end, 1: end}
        finally:
            await conn.close()
        print(f"checked: copy 2 at seq {end} in both partitions, every figure equal to the oracle's")
    finally:
        for p in projectors:
            await p.stop()


async def _at(database_url: str, copy: int, seq: int) -> bool:
    try:
        return (await checkpoint(database_url, copy)).seq >= seq
    except LookupError:
        return False


@pytest.mark.timeout(120)
async def test_a_copy_is_split_again_only_where_its_partitions_agree(
    stack: Stack, localities: Localities
) -> None:
    events = realistic_events(2400, wards_everywhere(localities), seed=8)
    thirds = [events[:800], events[800:1600], events[1600:]]
    last = await publish_events(stack.nc, localities, thirds[0])
    await fold_with(stack, stack.database_url, localities, 1, last)  # one runner up to S
    last = await publish_events(stack.nc, localities, thirds[1])
    await fold_with(stack, stack.database_url, localities, 2, last)  # split in 2 at S, each on from there
    last = await publish_events(stack.nc, localities, thirds[2])
    await fold_with(stack, stack.database_url, localities, 3, last)  # 2 -> 3: both stood at one sequence
    assert await figures(stack.database_url) == reference(events)
    conn = await asyncpg.connect(stack.database_url)
    try:
        assert await partitions.partition_seqs(conn, 1) == {0: last, 1: last, 2: last}
        await conn.execute("UPDATE projection_partition SET seq = seq - 1 WHERE part = 1")  # as if it lagged
        with pytest.raises(partitions.PartitionMismatch, match="run 3 workers"):
            await partitions.open_partition(conn, 1, Part(parts=1, part=0))
    finally:
        await conn.close()
    print(
        f"1 worker, then 2, then 3 over {last} events: figures equal the oracle; a lagging partition refuses 3 -> 1"
    )
