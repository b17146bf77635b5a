"""Faults survived on real servers (issue 12, faults 2-4): each kills or stops a part of the stack while offices
send, then checks that the log holds every accepted event exactly once, that `antq audit verify` finds no
difference, that the seal chain is intact and that every refusal is in ANTQ_REJECTED (tests/faultkit.py).

Each is bounded in time and says what it did and checked (``pytest -s -m faults``)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import nats.errors
import pytest

from events.localities import Localities
from events.subjects import QUERY_SUBJECT
from infra.db import migrate
from infra.embedded import EmbeddedPostgres
from services.gateway.app import Gateway
from services.query.app import QueryConfig, QueryService
from tests.conftest import FixedClock, Stack, gateway_config, wait_until_answering
from tests.faultkit import (
    OFFICES,
    Told,
    check_ledger,
    checkpoint_seq,
    connect,
    kill9,
    office_sends,
    say,
    start_gateway,
    start_projection,
    stop,
    traffic,
)
from tests.servers import wait_for

pytestmark = [pytest.mark.servers, pytest.mark.faults]

SEED = 20261203


@pytest.mark.timeout(150)
async def test_projection_killed_10_times_mid_batch_while_events_flow(
    stack: Stack, gateway: Gateway, localities: Localities, tmp_path: Path
) -> None:
    """Fault 2: ``python -m projections`` SIGKILLed at 10 seeded random points while 10 offices send."""
    rnd = random.Random(SEED)
    told = Told()
    flowing = asyncio.Event()
    senders = [
        asyncio.create_task(
            office_sends(
                stack.nc, office, events, told, batch=10, pace=0.3, rnd=random.Random(office), stop=flowing
            )
        )
        for office, events in traffic(localities, 12_000, seed=SEED).items()
    ]
    key = tmp_path / "updates.nk"
    killed_at: list[int] = []
    try:
        for kill in range(10):
            proc = start_projection(stack.servers.nats_url, stack.database_url, key, batch=50)
            before = await checkpoint_seq(stack.database_url)

            async def progressed(proc: subprocess.Popen[bytes] = proc, before: int = before) -> bool:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
                return await checkpoint_seq(stack.database_url) > before

            await wait_for(progressed, timeout=40, what=f"projection #{kill + 1} to commit a batch")
            await asyncio.sleep(rnd.uniform(0.0, 0.4))  # wait-ok: the seeded random kill point
            kill9(proc)
            killed_at.append(await checkpoint_seq(stack.database_url))
        say(f"killed the projection (SIGKILL, --batch 50) 10 times; checkpoints at the kills: {killed_at}")
        sending = sum(not task.done() for task in senders)
        say(
            f"{sending} of {len(senders)} offices were still sending at the last kill; {len(told.ok)} stored so far"
        )
        assert sending, "the traffic ended before the last kill"
    finally:
        flowing.set()
        await asyncio.gather(*senders)
    say(f"{len(OFFICES)} offices stopped: {told.summary()}")
    final = start_projection(stack.servers.nats_url, stack.database_url, key, batch=50)
    try:
        assert killed_at == sorted(killed_at)  # a checkpoint never goes back
        await check_ledger(stack.nc, stack.servers.nats_url, stack.database_url, told)
    finally:
        assert stop(final) == 0


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own (the session's must not be stopped), migrated."""
    pg = EmbeddedPostgres(tmp_path / "pg", durable=False)
    pg.start()
    conn = await asyncpg.connect(pg.url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield pg
    pg.stop()


def fast_stop(pg: EmbeddedPostgres) -> None:
    """Stop PostgreSQL as an operator would for maintenance (fast shutdown: SIGINT; sessions are cut)."""
    assert pg.proc is not None
    pg.proc.send_signal(signal.SIGINT)
    pg.proc.wait(30)
    pg.proc = None


@pytest.mark.timeout(150)
async def test_postgres_stopped_10_seconds_under_load_then_restarted(
    stack: Stack,
    own_postgres: EmbeddedPostgres,
    offices_file: Path,
    clock: FixedClock,
    localities: Localities,
    tmp_path: Path,
) -> None:
    """Fault 3: PostgreSQL stopped for 10 s while offices send, the projection folds and readers query."""
    database_url = own_postgres.url
    config = dataclasses.replace(
        gateway_config(stack, offices_file, clock, localities, database_timeout_s=2.0),
        database_url=database_url,
    )
    told = Told()
    key = tmp_path / "updates.nk"
    projection = start_projection(stack.servers.nats_url, database_url, key, batch=200)
    query = QueryService(
        QueryConfig(
            nats_url=stack.servers.nats_url,
            database_url=database_url,
            localities=localities,
            database_timeout_s=2.0,
        )
    )
    restarts = 0
    queries = {"answered": 0, "refused": 0, "unanswered": 0}
    done = asyncio.Event()
    reader = await connect(stack.servers.nats_url)

    async def read_loop() -> None:
        ward = localities.wards_of("04")[0]
        body = msgspec.json.encode({"ward": ward, "year": 2020})
        while not done.is_set():
            try:
                reply = msgspec.json.decode((await reader.request(QUERY_SUBJECT, body, timeout=3)).data)
                queries["refused" if "error" in reply else "answered"] += 1
            except nats.errors.TimeoutError:
                queries["unanswered"] += 1
            await asyncio.sleep(0.05)  # wait-ok: a reader's pace

    async with Gateway(config).app, query.app:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        await wait_until_answering(stack.nc, QUERY_SUBJECT)
        readers = asyncio.create_task(read_loop())
        senders = [
            asyncio.create_task(office_sends(stack.nc, o, e, told, batch=10, pace=0.3, timeout=8))
            for o, e in traffic(localities, 3000, seed=SEED + 3).items()
        ]

        def supervise() -> None:
            """What the supervisor (compose: a restart policy) does: start the projection again if it exited."""
            nonlocal projection, restarts
            if projection.poll() is not None:
                restarts += 1
                projection = start_projection(stack.servers.nats_url, database_url, key, batch=200)

        async def some_folded() -> bool:
            return await checkpoint_seq(database_url) > 0

        await wait_for(some_folded, timeout=40, what="the projection's first commit")
        fast_stop(own_postgres)
        stored_before = len(told.ok)
        sending = sum(not task.done() for task in senders)
        say(
            f"stopped PostgreSQL (fast shutdown) under load: {sending} offices sending, the projection folding,"
            " a reader asking"
        )
        assert sending, "the traffic ended before PostgreSQL was stopped"
        loop = asyncio.get_running_loop()
        down_until = loop.time() + 10
        while loop.time() < down_until:
            supervise()
            await asyncio.sleep(0.2)  # wait-ok: the outage lasts 10 s by design
        during = dict(queries)
        stored_during = len(told.ok)
        sending = sum(not task.done() for task in senders)
        own_postgres.start()
        say(
            f"restarted PostgreSQL after 10 s ({sending} offices still sending); events confirmed: "
            f"{stored_before} before the stop, {stored_during - stored_before} during the outage; "
            f"queries {during}; projection restarted {restarts} times by the supervisor"
        )
        assert sending, "the traffic ended during the outage"
        await asyncio.gather(*senders)
        supervise()
        say(f"{len(OFFICES)} offices got an answer for every event: {told.summary()}")
        try:
            await check_ledger(stack.nc, stack.servers.nats_url, database_url, told)
            answered = queries["answered"]

            async def reads_again() -> bool:
                return queries["answered"] > answered

            await wait_for(reads_again, timeout=20, what="the query service to answer again")
            say(f"checked: the query service answers again (queries so far {queries})")
        finally:
            done.set()
            await readers
            await reader.drain()
            assert stop(projection) == 0


@pytest.mark.timeout(150)
async def test_gateway_killed_mid_batch_while_a_second_copy_serves(
    stack: Stack, offices_file: Path, localities: Localities, tmp_path: Path
) -> None:
    """Fault 4: two gateway processes in the queue group; one SIGKILLed mid-batch; offices retry, same ids."""
    rnd = random.Random(SEED + 4)
    nats_url = stack.servers.nats_url
    gateways = [start_gateway(nats_url, stack.database_url, offices_file) for _ in range(2)]
    projection = start_projection(nats_url, stack.database_url, tmp_path / "updates.nk", batch=200)
    told = Told()
    try:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        senders = [
            asyncio.create_task(office_sends(stack.nc, o, e, told, batch=50, timeout=5, rnd=random.Random(o)))
            for o, e in traffic(localities, 4000, seed=SEED + 4).items()
        ]
        target = rnd.randrange(200, 1200)

        async def under_way() -> bool:
            return len(told.ok) >= target

        await wait_for(under_way, timeout=60, what=f"{target} events confirmed")
        kill9(gateways[0])
        say(f"killed gateway copy 1 (SIGKILL) after {len(told.ok)} events confirmed; copy 2 serves on")
        await asyncio.gather(*senders)
        say(f"{len(OFFICES)} offices got an answer for every event: {told.summary()}")
        await check_ledger(stack.nc, nats_url, stack.database_url, told)
    finally:
        for proc in [*gateways, projection]:
            stop(proc)
