"""Backup and restore (issue 12, operations): `antq backup` of a running stack restored with `antq restore` onto
a fresh NATS and PostgreSQL gives the same figures, `antq audit verify` and `antq audit seals` clean; a lost
database is rebuilt from the stream alone; HighwayHash-64 pinned by the checksums nats-server writes."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
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
from nats.aio.msg import Msg

from bench.projection import realistic_events
from events.localities import Localities
from events.subjects import QUERY_SUBJECT
from infra.backup import RestoreFailed, jetstream_ready, request_patiently
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.highwayhash import highwayhash64
from infra.seal_keys import generate_seed, signer_from_seed
from infra.streams import EVENTS, SEALS
from projections import store
from services.client import OfficeClient
from services.gateway.app import Gateway
from services.query.app import QueryConfig, QueryService
from services.sealer.service import Sealer, SealerConfig
from tests import factories as f
from tests.conftest import FixedClock, Stack, gateway_config, wait_until_answering
from tests.faultkit import (
    Told,
    antq,
    check_ledger,
    checkpoint_seq,
    connect,
    office_sends,
    say,
    start_projection,
    stop,
    traffic,
    wait_caught_up,
)
from tests.servers import Servers, fresh_database
from tests.test_projection import publish_events
from tests.test_secure_stack import start_secure

pytestmark = pytest.mark.servers

SEED = 1204


async def publish_history(stack: Stack, localities: Localities, n: int) -> Told:
    told = Told()
    await asyncio.gather(
        *(
            office_sends(stack.nc, office, events, told, batch=100, rnd=random.Random(office))
            for office, events in traffic(localities, n, seed=SEED).items()
        )
    )
    return told


async def all_figures(database_url: str) -> dict[tuple[str, str, int, str], int]:
    conn = await asyncpg.connect(database_url)
    try:
        return await store.all_figures(conn, await store.active_copy(conn))
    finally:
        await conn.close()


async def query_replies(nc: Client, localities: Localities) -> list[dict[str, Any]]:
    """What the query service answers for some wards and both provinces over a few years."""
    requests: list[dict[str, Any]] = [
        {"province": p, "year": y} for p in ("04", "24") for y in (2016, 2020, 2024)
    ] + [{"ward": w, "year": 2020} for w in [*localities.wards_of("04")[:4], *localities.wards_of("24")[:4]]]
    replies = []
    for request in requests:
        reply = await nc.request(QUERY_SUBJECT, msgspec.json.encode(request), timeout=10)
        body = msgspec.json.decode(reply.data)
        assert "error" not in body, body
        replies.append(body)
    return replies


async def seal_all(nats_url: str, database_url: str, seed: bytes) -> int:
    config = SealerConfig(
        nats_url=nats_url, database_url=database_url, signer=signer_from_seed(seed), every_events=400
    )
    made = 0
    async with Sealer(config) as sealer:
        while await sealer.seal_once() is not None:
            made += 1
    return made


def env_of(nats_url: str, database_url: str) -> dict[str, str]:
    return {"ANTQ_NATS_URL": nats_url, "ANTQ_DATABASE_URL": database_url}


@pytest.fixture
async def served(
    stack: Stack, gateway: Gateway, localities: Localities, tmp_path: Path
) -> AsyncIterator[tuple[Told, bytes, list[dict[str, Any]]]]:
    """The test stack with a history: published through the gateway, projected, sealed; the query answers."""
    told = await publish_history(stack, localities, 1500)
    projection = start_projection(
        stack.servers.nats_url, stack.database_url, tmp_path / "updates.nk", batch=500
    )
    seed = generate_seed()
    try:
        await wait_caught_up(stack.nc, stack.database_url)
        seals = await seal_all(stack.servers.nats_url, stack.database_url, seed)
        service = QueryService(
            QueryConfig(
                nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
            )
        )
        async with service.app:
            await wait_until_answering(stack.nc, QUERY_SUBJECT)
            replies = await query_replies(stack.nc, localities)
        say(f"original stack: {told.summary()}; projected; {seals} seals; {len(replies)} query answers kept")
        yield told, seed, replies
    finally:
        stop(projection)


@pytest.mark.timeout(150)
async def test_backup_restored_on_a_fresh_stack_gives_the_same_figures_and_a_sound_log(
    stack: Stack,
    served: tuple[Told, bytes, list[dict[str, Any]]],
    localities: Localities,
    offices_file: Path,
    clock: FixedClock,
    tmp_path: Path,
) -> None:
    told, seed, replies = served
    signer = signer_from_seed(seed)
    original = await all_figures(stack.database_url)
    events_info = await stack.js.stream_info(EVENTS)
    backup_dir = tmp_path / "backup"
    code, out = await antq("backup", str(backup_dir), env=env_of(stack.servers.nats_url, stack.database_url))
    assert code == 0, out
    say(f"`antq backup {backup_dir.name}`: {out.strip()}")

    fresh_nats = EmbeddedNats(tmp_path / "nats2", sync_always=False)
    fresh_pg = EmbeddedPostgres(tmp_path / "pg2", durable=False)
    fresh_nats.start()
    fresh_pg.start()
    procs = []
    try:
        env = env_of(fresh_nats.url, fresh_pg.url)
        code, out = await antq("restore", str(backup_dir), env=env)
        assert code == 0, out
        say(f"`antq restore` onto a fresh nats-server and PostgreSQL: {out.strip()}")
        assert "creation time differs" in out  # nats-server's snapshot does not carry it
        fresh_nats.stop()
        code, out = await antq(
            "restore", str(backup_dir), "--pin-created", str(fresh_nats.store_dir / "js"), env={}
        )
        assert code == 0, out
        fresh_nats.start()
        say(f"nats-server stopped, `antq restore --pin-created`, started: {out.strip()}")

        nc = await connect(fresh_nats.url)
        try:
            info = await nc.jetstream().stream_info(EVENTS)
            assert (info.state.first_seq, info.state.last_seq) == (
                events_info.state.first_seq,
                events_info.state.last_seq,
            )
            assert info.created == events_info.created
            restored_first = await nc.jetstream().get_msg(EVENTS, 1)
            assert restored_first.headers and restored_first.headers.get("Nats-Msg-Id")
            say("checked: ANTQ_EVENTS has the same sequences, creation time and message ids")

            procs.append(start_projection(fresh_nats.url, fresh_pg.url, tmp_path / "updates.nk", batch=500))
            assert await all_figures(fresh_pg.url) == original
            service = QueryService(
                QueryConfig(nats_url=fresh_nats.url, database_url=fresh_pg.url, localities=localities)
            )
            async with service.app:
                await wait_until_answering(nc, QUERY_SUBJECT)
                assert await query_replies(nc, localities) == replies
            say(
                f"checked: the {len(original)} figures and the {len(replies)} query answers (as_of_seq too) are equal"
            )

            code, out = await antq("audit", "verify", env=env)
            assert code == 0, out
            code, out = await antq("audit", "seals", env={**env, "ANTQ_SEAL_PUBLIC_KEYS": signer.public_key})
            assert code == 0, out
            say(
                "checked: `antq audit verify` and `antq audit seals` (pinned key) exit 0 on the restored stack"
            )

            # the stack goes on: a resent event is a duplicate, new events are stored, sealed on the old chain
            config = dataclasses.replace(
                gateway_config(stack, offices_file, clock, localities),
                nats_url=fresh_nats.url,
                database_url=fresh_pg.url,
            )
            async with Gateway(config).app:
                await wait_until_answering(nc, "antq.intake._probe")
                office, events = next(iter(traffic(localities, 1500, seed=SEED).items()))
                again = await OfficeClient(nc, office, timeout=20).submit(events[:5])
                assert all(r.ok and r.duplicate for r in again), again
                more = Told(ok=dict(told.ok), refused=dict(told.refused))
                fresh = traffic(localities, 200, seed=SEED + 1)
                await asyncio.gather(*(office_sends(nc, o, e, more) for o, e in fresh.items()))
                await wait_caught_up(nc, fresh_pg.url)
                assert await seal_all(fresh_nats.url, fresh_pg.url, seed) >= 1
            await check_ledger(nc, fresh_nats.url, fresh_pg.url, more, seal_seed=seed)
            say(
                "checked: a resent event is a duplicate; 200 new events stored and sealed on the restored chain"
            )
        finally:
            await nc.drain()
    finally:
        for proc in procs:
            stop(proc)
        fresh_nats.stop()
        fresh_pg.stop()


@pytest.mark.timeout(120)
async def test_a_lost_database_is_rebuilt_from_the_stream_alone(
    stack: Stack, served: tuple[Told, bytes, list[dict[str, Any]]], localities: Localities, tmp_path: Path
) -> None:
    _, seed, replies = served
    original = await all_figures(stack.database_url)
    rebuilt = await fresh_database(stack.servers, template="template0")  # the database is lost: an empty one
    env = env_of(stack.servers.nats_url, rebuilt)
    code, out = await antq("db", "migrate", env=env)
    assert code == 0, out
    say(f"the database is lost: a new empty one, `antq db migrate`: {out.strip()}")
    projection = start_projection(stack.servers.nats_url, rebuilt, tmp_path / "updates2.nk", batch=500)
    try:
        last = await wait_caught_up(stack.nc, rebuilt)
        assert await checkpoint_seq(rebuilt) == last
        assert await all_figures(rebuilt) == original
        service = QueryService(
            QueryConfig(nats_url=stack.servers.nats_url, database_url=rebuilt, localities=localities)
        )
        async with service.app:
            await wait_until_answering(stack.nc, QUERY_SUBJECT)
            assert await query_replies(stack.nc, localities) == replies
        say(
            f"checked: the projection caught up from the stream alone to seq {last}: the {len(original)} figures"
            " and the query answers are equal"
        )
        code, out = await antq("audit", "verify", env=env)
        assert code == 0, out
        # the seals outlive the database: the sealer copies ANTQ_SEALS' chain back into it on start
        await seal_all(stack.servers.nats_url, rebuilt, seed)
        code, out = await antq(
            "audit", "seals", env={**env, "ANTQ_SEAL_PUBLIC_KEYS": signer_from_seed(seed).public_key}
        )
        assert code == 0, out
        seals = (await stack.js.stream_info(SEALS)).state.messages
        say(
            f"checked: `antq audit verify` exit 0; the {seals} seals copied back from ANTQ_SEALS,"
            " `antq audit seals` exit 0"
        )
    finally:
        stop(projection)


def test_highwayhash_matches_the_checksums_nats_server_writes(tmp_path: Path) -> None:
    """meta.sum of every stream of a real nats-server, recomputed (lengths on both paths of the remainder)."""
    server = EmbeddedNats(tmp_path / "nats", sync_always=False)
    server.start()
    try:

        async def make() -> None:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            for i, name in enumerate(["A", "BB_STREAM", "C" * 17, "D" * 40]):
                await js.add_stream(name=name, subjects=[f"s{i}.>"], description="x" * i * 7)
            await nc.close()

        asyncio.run(make())
    finally:
        server.stop()
    sums = list((tmp_path / "nats" / "js").rglob("streams/*/meta.sum"))
    assert len(sums) == 4
    for path in sums:
        meta = (path.parent / "meta.inf").read_bytes()
        key = hashlib.sha256(path.parent.name.encode()).digest()
        assert highwayhash64(key, meta).hex() == path.read_text(), path
    assert highwayhash64(bytes(32), b"").hex() != highwayhash64(bytes(32), b"\0").hex()


@pytest.mark.timeout(90)
async def test_restore_changes_nothing_on_a_stack_in_use_and_refuses_a_damaged_backup(
    stack: Stack, office: OfficeClient, tmp_path: Path
) -> None:
    results = await office.submit([f.session(attendance=10 + i) for i in range(5)])
    assert all(r.ok for r in results)
    env = env_of(stack.servers.nats_url, stack.database_url)
    target = tmp_path / "b"
    code, out = await antq("backup", str(target), env=env)
    assert code == 0, out
    code, out = await antq("backup", str(target), env=env)
    assert code == 1 and "not empty" in out, out
    info = await stack.js.stream_info(EVENTS)
    code, out = await antq("restore", str(target), env=env)
    assert code == 1 and "holds" in out and "nothing was changed" in out, out
    assert (await stack.js.stream_info(EVENTS)).state.last_seq == info.state.last_seq
    snapshot = target / f"{EVENTS}.snapshot"
    damaged = bytearray(snapshot.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(damaged))
    code, out = await antq("restore", str(target), env=env)
    assert code == 1 and "does not match the manifest" in out, out
    say(
        "checked: a second backup into the same directory, a restore onto a stack in use, a damaged file: refused"
    )


@pytest.mark.timeout(90)
async def test_backup_and_restore_run_as_the_admin_identity_on_the_secure_stack(
    template: Servers, localities: Localities, tmp_path: Path
) -> None:
    """The generated ``admin`` may take a snapshot and upload a restore ($JS.SNAPSHOT.>), nothing more."""
    source = await start_secure(tmp_path / "a")
    target_nats = EmbeddedNats(tmp_path / "b", sync_always=False, auth_conf=source.generated.server_conf)
    target_nats.start()
    try:
        gateway = await source.connect("gateway")
        events = realistic_events(300, localities.wards_of("04")[:10], seed=5)
        last = await publish_events(gateway, localities, events)
        directory = source.generated.directory
        env = {
            **env_of(source.server.url, await fresh_database(template)),
            "ANTQ_CREDENTIALS_DIR": str(directory),
        }
        code, out = await antq("backup", str(tmp_path / "bk"), env=env)
        assert code == 0, out
        target_db = await fresh_database(template, template="template0")
        env = {**env_of(target_nats.url, target_db), "ANTQ_CREDENTIALS_DIR": str(directory)}
        code, out = await antq("restore", str(tmp_path / "bk"), env=env)
        assert code == 0, out
        admin = await nats.connect(target_nats.url, **source.options("admin"))
        try:
            assert (await admin.jetstream().stream_info(EVENTS)).state.last_seq == last
        finally:
            await admin.close()
        say(f"checked: `antq backup` and `antq restore` as the generated admin identity ({last} events)")
    finally:
        for nc in [*source.clients, source.admin]:
            await nc.close()
        source.server.stop()
        target_nats.stop()


@pytest.mark.timeout(60)
async def test_a_restore_waits_for_jetstream_to_answer_and_says_so_when_it_never_does(stack: Stack) -> None:
    """A cluster just started (or one electing a new meta leader) answers 'no responders': the restore waits for
    JetStream, bounded, instead of failing on its first request (CI, 2026-12-04: a fresh target cluster, busy
    beside a second one, answered 'no responders' to the restore's first request)."""
    await jetstream_ready(stack.nc, timeout=5.0)  # a stack that answers: at once
    started = asyncio.get_running_loop().time()
    with pytest.raises(RestoreFailed, match="did not answer within 1 s"):
        await jetstream_ready(stack.nc, timeout=1.0, api="$JS.nodomain.API")  # nothing answers there
    assert asyncio.get_running_loop().time() - started >= 1.0  # it waited before saying so


@pytest.mark.timeout(60)
async def test_a_request_answered_no_responders_is_sent_again_until_someone_answers_within_its_patience(
    stack: Stack,
) -> None:
    """The restore's requests (the JetStream API, the chunks to the deliver subject) are sent again while the
    subject has no responders: a subscriber that appears 0.5 s late still gets the request, once; without one,
    the error comes back after the patience, not before."""
    subject = f"test.patience.{uuid.uuid4().hex}"
    received: list[bytes] = []

    async def late_responder() -> None:
        await asyncio.sleep(0.5)  # wait-ok: the responder must come late, so the first sends meet no one

        async def answer(msg: Msg) -> None:
            received.append(msg.data)
            await msg.respond(b"ok")

        await stack.nc.subscribe(subject, cb=answer)
        await stack.nc.flush()

    loop = asyncio.get_running_loop()
    started = loop.time()
    responder = asyncio.create_task(late_responder())
    reply = await request_patiently(stack.nc, subject, b"chunk", timeout=2.0, patience=10.0)
    await responder
    assert reply.data == b"ok" and received == [b"chunk"]
    assert loop.time() - started >= 0.5  # it did meet 'no responders' first

    started = loop.time()
    with pytest.raises(nats.errors.NoRespondersError):
        await request_patiently(stack.nc, f"{subject}.nobody", b"x", timeout=2.0, patience=1.0)
    assert 1.0 <= loop.time() - started < 5.0  # sent again up to its patience, then the error
