"""Auditors against real servers: record time resolves to the right sequence, replay by subject, verify
catches a figure edited by hand in PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from typing import Any

import asyncpg
import nats
import pytest
from nats.aio.msg import Msg

from events.localities import Localities
from infra.streams import EVENTS
from projections import store
from projections.metrics import FOLD_VERSION
from projections.runner import RunnerConfig, StatsRunner
from projections.service import Projector
from projections.store import read_checkpoint
from services.audit.replay import ReplayScope, replay
from services.audit.timeline import parse_rfc3339_ns, sequence_known_on, to_ns
from services.audit.verify import verify
from services.client import OfficeClient
from tests import factories as f
from tests.conftest import Stack
from tests.servers import wait_for

pytestmark = pytest.mark.servers


async def stored_ns(stack: Stack, seq: int) -> int:
    msg = await stack.nc.request(f"$JS.API.STREAM.MSG.GET.{EVENTS}", b'{"seq": %d}' % seq, timeout=5)
    return parse_rfc3339_ns(json.loads(msg.data)["message"]["time"])


def instant(ns: int) -> dt.datetime:
    """The instant of a stream timestamp, truncated to microseconds (what a person can type)."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)


async def test_an_instant_resolves_to_the_last_sequence_stored_by_then(
    stack: Stack, office: OfficeClient
) -> None:
    for _ in range(3):
        results = await office.submit([f.session(), f.pledge()])
        assert all(r.ok for r in results)
    times = {seq: await stored_ns(stack, seq) for seq in range(1, 7)}
    first = instant(times[1])
    assert await sequence_known_on(stack.nc, EVENTS, first - dt.timedelta(seconds=1)) == 0
    for seq in range(1, 7):
        at = instant(times[seq])
        expected = max((s for s, ns in times.items() if ns <= _ns(at)), default=0)
        assert expected >= seq - 1
        assert await sequence_known_on(stack.nc, EVENTS, at) == expected
    assert await sequence_known_on(stack.nc, EVENTS, dt.datetime.now(dt.UTC) + dt.timedelta(days=1)) == 6


def _ns(at: dt.datetime) -> int:
    return to_ns(at)


@pytest.mark.timeout(60)
async def test_an_event_stored_during_the_lookup_is_not_counted(stack: Stack) -> None:
    """An instant of about now: an event stored after the by-time lookup found nothing is after the cut."""
    subject = "antq.events.04.01447.session"
    for i in range(3):
        await stack.js.publish(subject, b"{}", headers={"Nats-Msg-Id": f"before-{i}"})
    at = dt.datetime.now(dt.UTC)  # after the three were stored
    nc = await nats.connect(stack.servers.nats_url)
    real_request = nc.request
    stored_during: list[int] = []

    async def request_then_store(subj: str, payload: bytes = b"", **kwargs: Any) -> Msg:
        reply = await real_request(subj, payload, **kwargs)
        if subj == f"$JS.API.STREAM.MSG.GET.{EVENTS}" and not stored_during:  # right after the lookup
            ack = await stack.js.publish(subject, b"{}", headers={"Nats-Msg-Id": "during"})
            stored_during.append(ack.seq)
        return reply

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(nc, "request", request_then_store)
            known = await sequence_known_on(nc, EVENTS, at)
    finally:
        await nc.close()
    assert stored_during == [4]
    assert await stored_ns(stack, 4) > to_ns(at)  # the scenario: stored after the instant
    assert known == 3
    assert await sequence_known_on(stack.nc, EVENTS, at) == 3  # and resolved again, with nothing racing


async def test_replay_by_ward_reads_only_that_ward_and_honours_record_time(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    here, there = f.session(ward="01447", attendance=10), f.session(ward="01456", attendance=99)
    assert all(r.ok for r in await office.submit([here, there]))
    cut = await sequence_known_on(stack.nc, EVENTS, dt.datetime.now(dt.UTC))
    late = f.session(ward="01447", attendance=5)
    assert (await office.submit_one(late)).ok
    assert (await office.submit_one(f.retraction(here))).ok

    now = await replay(stack.nc, ReplayScope(ward="01447", year=2018), localities)
    assert now.replay.events == 3  # the other ward's event was never read
    assert now.replay.metrics(wards=now.wards, year=2018, period="calendar")["session_attendance"] == 5

    then = await replay(stack.nc, ReplayScope(ward="01447", stop_seq=cut), localities)
    assert then.as_of_seq == 2
    assert then.replay.metrics(wards=then.wards, year=2018, period="calendar")["session_attendance"] == 10


async def test_verify_catches_a_figure_edited_by_hand(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    tip = f.tip()
    docs = [f.session(), f.pledge(), tip, f.assessment(tip), f.weapons(ward="01456")]
    results = await office.submit(docs)
    assert all(r.ok for r in results)
    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    await projector.start()
    conn = await asyncpg.connect(stack.database_url)
    try:

        async def caught_up() -> bool:
            return (await read_checkpoint(conn, 1)).seq >= len(docs)

        await wait_for(caught_up, what="the projection to fold every event")
        clean = await verify(stack.nc, conn, localities)
        assert clean.ok, clean.differences
        assert clean.as_of_seq == len(docs)
        assert clean.figures > 0

        await conn.execute(
            "UPDATE stats SET value = value + 7 WHERE ward = '01447' AND metric = 'pledge_signatures' "
            "AND period = 'calendar'"
        )
        tampered = await verify(stack.nc, conn, localities)
        assert not tampered.ok
        assert [(d.key, d.live - d.replayed) for d in tampered.differences] == [
            (("calendar", "01447", 2018, "pledge_signatures"), 7)
        ]
    finally:
        await conn.close()
        await projector.stop()


async def test_verify_says_when_the_read_model_cannot_be_compared_and_the_runner_halts_on_it(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    """A checkpoint ahead of the log (edited, or the stream recreated) or a copy of another fold version: verify
    does not call the figures matching, the CLI exits 1, and the runner never folds on from such a checkpoint."""
    docs = [f.session(), f.pledge()]
    assert all(r.ok for r in await office.submit(docs))
    stop = asyncio.Event()
    runner = StatsRunner(stack.nc, RunnerConfig(database_url=stack.database_url, localities=localities))
    run = asyncio.create_task(runner.run(stop))
    await wait_for(
        lambda: checkpoint_at(stack.database_url, len(docs)), what="the runner to fold both events"
    )
    stop.set()
    await run
    conn = await asyncpg.connect(stack.database_url)
    env = {"ANTQ_NATS_URL": stack.servers.nats_url, "ANTQ_DATABASE_URL": stack.database_url}
    try:
        assert (await verify(stack.nc, conn, localities)).ok
        await conn.execute("UPDATE projection_checkpoint SET seq = 100 WHERE copy = 1")
        ahead = await verify(stack.nc, conn, localities)
        assert not ahead.ok and ahead.differences == [] and ahead.as_of_seq == len(docs)
        assert len(ahead.problems) == 1 and "ahead of the log" in ahead.problems[0]
        code, out = await cli("audit", "verify", env=env)
        assert code == 1 and b"match the replay" not in out

        again = StatsRunner(stack.nc, RunnerConfig(database_url=stack.database_url, localities=localities))
        await asyncio.wait_for(again.run(asyncio.Event()), timeout=20)  # returns by itself: halted
        assert again.halted is not None and "CheckpointAhead" in again.halted
        projector = Projector(
            nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
        )
        await asyncio.wait_for(projector.start(), timeout=20)  # returns: started, and halted
        try:
            assert projector.halted is not None and "CheckpointAhead" in projector.halted
        finally:
            await asyncio.wait_for(projector.stop(), timeout=20)
        snap = await store.read_stats(conn, wards=["01447"], year=2018, period="calendar")
        assert snap.stale is True

        await conn.execute(
            "UPDATE projection_checkpoint SET seq = $1, halted = NULL, fold_version = $2 WHERE copy = 1",
            len(docs),
            FOLD_VERSION + 1,
        )
        other_fold = await verify(stack.nc, conn, localities)
        assert not other_fold.ok and any(f"fold v{FOLD_VERSION + 1}" in p for p in other_fold.problems)
    finally:
        await conn.close()


async def checkpoint_at(database_url: str, seq: int) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return (await read_checkpoint(conn, 1)).seq >= seq
    except LookupError:
        return False  # the runner has not opened its checkpoint yet
    finally:
        await conn.close()


async def cli(*args: str, env: dict[str, str]) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out


async def test_cli_replay_json_has_the_query_shape_and_verify_exits_nonzero_on_a_mismatch(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    assert all(
        r.ok
        for r in await office.submit([f.session(attendance=12), f.session(attendance=30, day="2018-12-20")])
    )
    env = {"ANTQ_NATS_URL": stack.servers.nats_url, "ANTQ_DATABASE_URL": stack.database_url}
    code, out = await cli("audit", "replay", "--ward", "01447", "--year", "2018", "--format", "json", env=env)
    assert code == 0
    body = json.loads(out)
    assert (body["ward"], body["year"], body["period"], body["as_of_seq"]) == ("01447", 2018, "calendar", 2)
    assert body["metrics"]["session_attendance"] == 42
    assert body["stale"] is False and body["fold_version"] == FOLD_VERSION
    code, out = await cli(
        "audit",
        "replay",
        "--ward",
        "01447",
        "--year",
        "2018",
        "--period",
        "reporting",
        "--format",
        "csv",
        env=env,
    )
    assert code == 0
    assert "01447,2018,reporting,session_attendance,12,2" in out.decode()
    code, _ = await cli("audit", "verify", env=env)
    assert code == 0  # nothing folded yet: both sides are empty at seq 0
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(
            "INSERT INTO stats VALUES (1, 'calendar', '04', '01447', 2018, 'tips_received', 5)"
        )
    finally:
        await conn.close()
    code, out = await cli("audit", "verify", env=env)
    assert code == 1
    assert b"tips_received" in out


async def test_replay_of_a_ward_without_events_says_so_and_gives_zeros_for_a_year(stack: Stack) -> None:
    env = {"ANTQ_NATS_URL": stack.servers.nats_url, "ANTQ_DATABASE_URL": stack.database_url, "COLUMNS": "200"}
    code, out = await cli("audit", "replay", "--ward", "01273", env=env)
    assert code == 0 and "no figures in any year" in out.decode()
    code, out = await cli("audit", "replay", "--ward", "01273", "--year", "2018", "--format", "json", env=env)
    body = json.loads(out)
    assert code == 0 and body["ward"] == "01273" and body["metrics"]["sessions_held"] == 0
    assert set(body["metrics"].values()) == {0}
