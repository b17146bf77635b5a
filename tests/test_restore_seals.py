"""A restore the seal chain records (issue 12, operations): a nats-server snapshot does not carry the stream's
creation time, so a restored ANTQ_EVENTS is "created" at the restore. `antq seals accept-restore` (the sealer's
key) checks that the restored stream holds, up to the last sealed sequence, what the seals sealed, and appends a
signed restore seal; `antq audit seals` then finds the chain intact across the restore. A recreated stream whose
events differ is refused and stays a finding; without acceptance the finding stays and the sealer halts."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import nats
import pytest
from nats.aio.client import Client

from bench.projection import realistic_events
from events.localities import Localities
from events.subjects import SEALS_SUBJECT
from infra import backup as backup_module
from infra.backup import StreamEntry
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.nats_client import server_urls
from infra.reading import StreamReader
from infra.seal_keys import Signer, write_seed_file
from infra.streams import EVENTS, SEALS
from services.sealer.chain import (
    GENESIS,
    RangeHasher,
    Seal,
    decode_seal,
    encode_seal,
    make_seal,
    range_digests,
)
from services.sealer.chain_checks import check_chain, check_expected
from services.sealer.errors import SealingHalted
from services.sealer.findings import Expected
from services.sealer.range_checks import compare_ranges
from services.sealer.service import Sealer, SealerConfig
from services.sealer.store import fetch_seals, insert_seal
from services.sealer.verify import restore_not_proven
from tests.conftest import Stack
from tests.faultkit import antq, say, start_projection, stop, wait_caught_up
from tests.servers import Servers, create_streams, fresh_database, fresh_streams, start_cluster, stop_cluster
from tests.test_cluster import R3
from tests.test_projection import publish_events

pytestmark = pytest.mark.servers


def env_of(nats_url: str, database_url: str, seed_file: Path | None = None) -> dict[str, str]:
    env = {"ANTQ_NATS_URL": nats_url, "ANTQ_DATABASE_URL": database_url}
    if seed_file is not None:
        env["ANTQ_SEAL_SEED_FILE"] = str(seed_file)
    return env


def sealer_config(nats_url: str, database_url: str, signer: Signer) -> SealerConfig:
    return SealerConfig(nats_url=nats_url, database_url=database_url, signer=signer, every_events=150)


async def seal_all(nats_url: str, database_url: str, signer: Signer) -> list[Seal]:
    made = []
    async with Sealer(sealer_config(nats_url, database_url, signer)) as sealer:
        while (seal := await sealer.seal_once()) is not None:
            made.append(seal)
    return made


async def audit_seals(env: dict[str, str], signer: Signer) -> tuple[int, str]:
    return await antq("audit", "seals", env={**env, "ANTQ_SEAL_PUBLIC_KEYS": signer.public_key})


@contextlib.asynccontextmanager
async def restored_on_fresh_servers(
    tmp_path: Path, backup_dir: Path
) -> AsyncIterator[tuple[EmbeddedNats, EmbeddedPostgres, dict[str, str]]]:
    """A fresh nats-server and PostgreSQL with ``antq restore`` of the backup done (the sealer's seed file
    ``tmp_path / "sealer.nk"`` in the environment), stopped afterwards."""
    fresh_nats = EmbeddedNats(tmp_path / "nats2", sync_always=False)
    fresh_pg = EmbeddedPostgres(tmp_path / "pg2", durable=False)
    fresh_nats.start()
    fresh_pg.start()
    try:
        env = env_of(fresh_nats.url, fresh_pg.url, tmp_path / "sealer.nk")
        code, out = await antq("restore", str(backup_dir), env=env)
        assert code == 0, out
        yield fresh_nats, fresh_pg, env
    finally:
        fresh_nats.stop()
        fresh_pg.stop()


@pytest.mark.timeout(170)
async def test_a_restore_on_a_fresh_cluster_is_recorded_in_the_chain_and_the_chain_stays_intact(
    template: Servers, localities: Localities, tmp_path: Path
) -> None:
    wards = localities.wards_of("04")[:10]
    signer = write_seed_file(tmp_path / "sealer.nk")
    source, target = await asyncio.gather(
        asyncio.to_thread(start_cluster, 3, 60.0), asyncio.to_thread(start_cluster, 3, 60.0)
    )
    procs = []
    ncs: list[Client] = []
    try:
        # the original stack: R3 streams on the source cluster, a fresh database; events projected and sealed
        nc = await nats.connect(server_urls(source.url), max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        ncs.append(nc)
        await fresh_streams(nc.jetstream(), R3)
        db = await fresh_database(template)
        await publish_events(nc, localities, realistic_events(400, wards, seed=7))
        procs.append(start_projection(source.url, db, tmp_path / "updates.nk", batch=200))
        await wait_caught_up(nc, db)
        sealed = await seal_all(source.url, db, signer)
        assert sealed and sealed[-1].last_seq == 400
        backup_dir = tmp_path / "backup"
        code, out = await antq("backup", str(backup_dir), env=env_of(source.url, db))
        assert code == 0, out
        stop(procs.pop())
        say(f"source cluster: 400 events, {len(sealed)} seals, `antq backup`: {out.strip()}")

        # restored on a fresh 3-node cluster and an empty database
        db2 = await fresh_database(template, "template0")
        env = env_of(target.url, db2, tmp_path / "sealer.nk")
        code, out = await antq("restore", str(backup_dir), env=env)
        assert code == 0, out
        assert "creation time differs" in out  # on a cluster no --pin-created can put it back
        say(f"`antq restore` onto a fresh 3-node cluster: {out.strip()}")
        nc2 = await nats.connect(server_urls(target.url), max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        ncs.append(nc2)
        info = await nc2.jetstream().stream_info(EVENTS)
        assert info.config.num_replicas == 3 and info.state.last_seq == 400

        # (3) not accepted: the recreation is a finding and the sealer halts (and stays halted)
        code, out = await audit_seals(env, signer)
        assert code == 1 and "stream_recreated" in out, out
        await publish_events(nc2, localities, realistic_events(120, wards, seed=8))
        sealer = Sealer(sealer_config(target.url, db2, signer))
        await sealer.connect()
        try:
            for _ in range(2):
                with pytest.raises(SealingHalted, match="accept-restore"):
                    await sealer.seal_once()
            say("before acceptance: `antq audit seals` reports stream_recreated (exit 1); the sealer halts")

            code, out = await antq("seals", "accept-restore", env=env)
            assert code == 0, out
            assert f"seal #{len(sealed) + 1}" in out and "events 1..400 (400)" in out, out
            say(f"`antq seals accept-restore`: {out.strip()}")
            code, again = await antq("seals", "accept-restore", env=env)
            assert code == 0 and "nothing to accept" in again, again

            # the halted sealer seals on from the restore seal
            after = await sealer.seal_once()
            assert after is not None and after.first_seq == 401 and after.prev_digest != sealed[-1].digest
        finally:
            await sealer.close()
        await publish_events(nc2, localities, realistic_events(100, wards, seed=9))
        more = await seal_all(target.url, db2, signer)
        assert more and more[-1].last_seq == 620
        procs.append(start_projection(target.url, db2, tmp_path / "updates.nk", batch=200))
        await wait_caught_up(nc2, db2)

        code, out = await audit_seals(env, signer)
        assert code == 0, out
        assert "intact" in out and "restored" in out, out
        say(f"`antq audit seals` on the restored cluster, key pinned: exit 0, the restore shown:\n{out}")
        code, out = await antq("audit", "verify", env=env)
        assert code == 0, out
        say("`antq audit verify`: exit 0 (no difference)")
    finally:
        for proc in procs:
            stop(proc)
        for client in ncs:
            await client.drain()
        for nodes in (source, target):
            await asyncio.to_thread(stop_cluster, nodes)


async def recreate_with(stack: Stack, change: str) -> None:
    """Delete ANTQ_EVENTS and write it again from its own messages: one event substituted or dropped, or all
    the same (then only the stream timestamps differ)."""
    js = stack.js
    last = int((await js.stream_info(EVENTS)).state.last_seq)
    msgs = [
        m
        async for batch in StreamReader("direct").messages(js, EVENTS, start_seq=1, stop_seq=last)
        for m in batch
    ]
    await js.delete_stream(EVENTS)
    await create_streams(js, stack.limits)
    if change == "substituted":
        rewritten = [(m.subject, msgs[100].data if m.seq == 100 else m.data) for m in msgs]
    elif change == "missing":
        rewritten = [(m.subject, m.data) for m in msgs if m.seq != 100]
    else:  # the same facts written again: new stream timestamps, not a restore of a snapshot
        rewritten = [(m.subject, m.data) for m in msgs]
    for subject, data in rewritten:
        await js.publish(subject, data)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("change", ["substituted", "missing", "rerecorded"])
async def test_a_recreated_stream_whose_events_differ_cannot_be_accepted_and_stays_a_finding(
    stack: Stack, localities: Localities, tmp_path: Path, change: str
) -> None:
    signer = write_seed_file(tmp_path / "sealer.nk")
    nats_url = stack.servers.nats_url
    await publish_events(stack.nc, localities, realistic_events(300, localities.wards_of("24")[:8], seed=3))
    sealed = await seal_all(nats_url, stack.database_url, signer)
    env = env_of(nats_url, stack.database_url, tmp_path / "sealer.nk")
    code, out = await audit_seals(env, signer)
    assert code == 0, out

    await recreate_with(stack, change)
    code, out = await antq("seals", "accept-restore", env=env)
    assert code == 1 and "restore refused" in out, out
    finding = "range_rerecorded" if change == "rerecorded" else "range_altered"
    assert finding in out, out
    say(f"attacker ({change} event): `antq seals accept-restore` exit 1: {out.strip()[:300]}")
    async with Sealer(sealer_config(nats_url, stack.database_url, signer)) as sealer:
        assert sealer.last_sealed_seq == sealed[-1].last_seq  # nothing appended
        with pytest.raises(SealingHalted):
            await sealer.seal_once()
    code, out = await audit_seals(env, signer)
    assert code == 1 and "stream_recreated" in out and finding in out, out
    assert "restored" not in out
    say(f"`antq audit seals`: still stream_recreated and {finding} (exit 1)")


@pytest.mark.timeout(120)
async def test_a_backup_taken_while_the_sealer_seals_restores_to_a_chain_accept_restore_takes(
    stack: Stack, localities: Localities, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`antq backup` of a running stack: events are stored and sealed between the streams' snapshots. Every seal
    in the backup must cover only events the backup holds, else the restored chain seals events the restored
    stream lacks and `antq seals accept-restore` refuses a faithful restore (a gap) for good."""
    wards = localities.wards_of("24")[:8]
    signer = write_seed_file(tmp_path / "sealer.nk")
    nats_url = stack.servers.nats_url
    await publish_events(stack.nc, localities, realistic_events(300, wards, seed=3))
    assert [s.last_seq for s in await seal_all(nats_url, stack.database_url, signer)] == [150, 300]
    snapshot = backup_module.snapshot_stream
    taken: list[str] = []

    async def snapshot_while_the_stack_runs(nc: Client, stream: str, out: Path, **kw: float) -> StreamEntry:
        entry = await snapshot(nc, stream, out, **kw)
        taken.append(stream)
        if len(taken) == 1:  # the stack goes on between two snapshots: 100 events more, and sealed
            await publish_events(stack.nc, localities, realistic_events(100, wards, seed=4))
            assert [s.last_seq for s in await seal_all(nats_url, stack.database_url, signer)] == [400]
        return entry

    monkeypatch.setattr(backup_module, "snapshot_stream", snapshot_while_the_stack_runs)
    backup_dir = tmp_path / "backup"
    await backup_module.backup(stack.nc, stack.database_url, backup_dir)
    assert len(taken) == 4

    async with restored_on_fresh_servers(tmp_path, backup_dir) as (_, _, env):
        code, out = await antq("seals", "accept-restore", env=env)
        assert code == 0, out  # a faithful restore of the backup is accepted
        code, out = await audit_seals(env, signer)
        assert code == 0 and "restored" in out, out


@pytest.mark.timeout(90)
async def test_accept_restore_does_not_vouch_for_a_chain_another_key_signed(
    stack: Stack, localities: Localities, tmp_path: Path
) -> None:
    """The restored ANTQ_SEALS holds a sound chain, but signed by another key than the sealer's (whoever could
    write there made it): `antq seals accept-restore` refuses, rather than sign with the sealer's key that the
    restored stream holds what that chain says."""
    other = write_seed_file(tmp_path / "other.nk")
    write_seed_file(tmp_path / "sealer.nk")
    await publish_events(stack.nc, localities, realistic_events(300, localities.wards_of("24")[:8], seed=3))
    assert await seal_all(stack.servers.nats_url, stack.database_url, other)
    backup_dir = tmp_path / "backup"
    await backup_module.backup(stack.nc, stack.database_url, backup_dir)
    async with restored_on_fresh_servers(tmp_path, backup_dir) as (_, _, env):
        code, out = await antq("seals", "accept-restore", env=env)
        assert code == 1 and "restore refused" in out and "untrusted_signer" in out, out
        code, out = await antq("audit", "seals", env=env)
        assert code == 1 and "stream_recreated" in out and "restored" not in out, out  # nothing appended


@pytest.mark.timeout(60)
async def test_a_halted_sealer_does_not_seal_on_from_a_restore_seal_its_key_did_not_sign(
    stack: Stack, localities: Localities, tmp_path: Path
) -> None:
    """Halted on a recreated stream, the sealer lifts its halt only for a sound restore seal signed by its own
    key: one written to ANTQ_SEALS by whoever can publish there (another key) leaves it halted, rather than
    chaining the sealer's next seal, signed with its key, onto the forgery."""
    signer = write_seed_file(tmp_path / "sealer.nk")
    forger = write_seed_file(tmp_path / "forger.nk")
    wards = localities.wards_of("24")[:8]
    await publish_events(stack.nc, localities, realistic_events(300, wards, seed=3))
    tip = (await seal_all(stack.servers.nats_url, stack.database_url, signer))[-1]
    await recreate_with(stack, "rerecorded")
    await publish_events(stack.nc, localities, realistic_events(20, wards, seed=4))  # something to seal
    created = (await stack.js.stream_info(EVENTS)).created
    assert created is not None
    async with Sealer(sealer_config(stack.servers.nats_url, stack.database_url, signer)) as sealer:
        with pytest.raises(SealingHalted):
            await sealer.seal_once()
        forged = make_seal(
            number=tip.number + 1,
            stream=EVENTS,
            first_seq=1,
            last_seq=tip.last_seq,
            count=tip.count,
            stream_created=created,
            prev_digest=tip.digest,
            range_digest=tip.range_digest,
            content_digest=tip.content_digest,
            sealed_at=created,
            signer=forger,
            restored_from=tip.stream_created,
        )
        await stack.js.publish(SEALS_SUBJECT, encode_seal(forged))
        with pytest.raises(SealingHalted):
            await sealer.seal_once()
    seals = (await stack.js.stream_info(SEALS)).state.last_seq
    assert seals == tip.number + 1  # the forgery only: nothing chained onto it


@pytest.mark.timeout(90)
async def test_a_restore_seal_that_reached_only_nats_is_copied_to_postgresql_by_the_sealer_that_seals_on(
    stack: Stack, localities: Localities, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`antq seals accept-restore` dies between appending the restore seal to ANTQ_SEALS and inserting it in
    PostgreSQL: the halted sealer that seals on from it puts it into PostgreSQL first (PostgreSQL would
    otherwise miss it for good: a sealer copies on start only the seals after PostgreSQL's latest)."""
    signer = write_seed_file(tmp_path / "sealer.nk")
    wards = localities.wards_of("24")[:8]
    await publish_events(stack.nc, localities, realistic_events(300, wards, seed=3))
    sealed = await seal_all(stack.servers.nats_url, stack.database_url, signer)
    backup_dir = tmp_path / "backup"
    await backup_module.backup(stack.nc, stack.database_url, backup_dir)
    async with restored_on_fresh_servers(tmp_path, backup_dir) as (fresh_nats, fresh_pg, _):
        config = sealer_config(fresh_nats.url, fresh_pg.url, signer)
        async with Sealer(config) as running:
            with pytest.raises(SealingHalted):
                await running.seal_once()

            async def dies(conn: asyncpg.Pool, seal: Seal, seals_seq: int | None) -> bool:
                if seal.is_restore:
                    raise ConnectionResetError("accept-restore killed before its PostgreSQL insert")
                return await insert_seal(conn, seal, seals_seq)

            with monkeypatch.context() as patched:
                patched.setattr("services.sealer.service.insert_seal", dies)
                async with Sealer(config) as accepting:
                    with pytest.raises(ConnectionResetError):
                        await accepting.accept_restore()
            nc = await nats.connect(fresh_nats.url)
            try:
                await publish_events(nc, localities, realistic_events(20, wards, seed=4))
            finally:
                await nc.drain()
            made = await running.seal_once()  # the halt lifted by the restore seal
            assert made is not None and made.number == len(sealed) + 2
        conn = await asyncpg.connect(fresh_pg.url)
        try:
            numbers = [s.number for s in await fetch_seals(conn, EVENTS)]
        finally:
            await conn.close()
        assert numbers == list(range(1, len(sealed) + 3))  # the restore seal too


# -- the restore seal on its own (no server) -----------------------------------------------------------------

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC)
EVENTS_A = [(seq, 1_000 + seq, "antq.events.x", f"event {seq}".encode()) for seq in range(1, 7)]


def chain_with_restore(signer: Signer, *, restored_from: dt.datetime = T0) -> list[Seal]:
    """Seals 1..3 (created T0), #4 a restore seal of 1..6 (created T1), #5 a range seal after it."""
    seals: list[Seal] = []
    for first, last in ((1, 2), (3, 4), (5, 6)):
        range_d, content_d, count = range_digests(e for e in EVENTS_A if first <= e[0] <= last)
        seals.append(
            make_seal(
                number=len(seals) + 1,
                stream=EVENTS,
                first_seq=first,
                last_seq=last,
                count=count,
                stream_created=T0,
                prev_digest=seals[-1].digest if seals else GENESIS,
                range_digest=range_d,
                content_digest=content_d,
                sealed_at=T0,
                signer=signer,
            )
        )
    range_d, content_d, count = range_digests(EVENTS_A)
    seals.append(
        make_seal(
            number=4,
            stream=EVENTS,
            first_seq=1,
            last_seq=6,
            count=count,
            stream_created=T1,
            prev_digest=seals[-1].digest,
            range_digest=range_d,
            content_digest=content_d,
            sealed_at=T1,
            signer=signer,
            restored_from=restored_from,
        )
    )
    range_d, content_d, _ = range_digests([(7, 9, "antq.events.x", b"seven")])
    seals.append(
        make_seal(
            number=5,
            stream=EVENTS,
            first_seq=7,
            last_seq=7,
            count=1,
            stream_created=T1,
            prev_digest=seals[-1].digest,
            range_digest=range_d,
            content_digest=content_d,
            sealed_at=T1,
            signer=signer,
        )
    )
    return seals


def test_a_restore_seal_carries_the_chain_across_a_new_creation_time(tmp_path: Path) -> None:
    signer = write_seed_file(tmp_path / "sealer.nk")
    seals = chain_with_restore(signer)
    assert check_chain("nats", seals, frozenset({signer.public_key})).findings == []
    printed = Expected(number=2, digest=seals[1].digest)
    assert check_expected("nats", seals, printed) == []
    assert b"restored_from" not in encode_seal(seals[0])  # range seals encode (and hash) as before
    assert decode_seal(encode_seal(seals[3])) == seals[3]


def test_a_recreation_without_a_sound_restore_seal_stays_a_finding(tmp_path: Path) -> None:
    signer = write_seed_file(tmp_path / "sealer.nk")
    seals = chain_with_restore(signer)
    # the restore seal's own marker taken away: a range seal cannot stand for it (own digest tag)
    plain = msgspec.structs.replace(seals[3], restored_from=None)
    kinds = {f.kind for f in check_chain("nats", [*seals[:3], plain, seals[4]], None).findings}
    assert {"seal_altered", "stream_recreated"} <= kinds
    # a restore seal naming another old creation time than the chain sealed
    wrong = chain_with_restore(signer, restored_from=T0 + dt.timedelta(seconds=1))
    assert "stream_recreated" in {f.kind for f in check_chain("nats", wrong, None).findings}
    # a restore seal whose range 1..6 no longer matches the stream: the recreation is not proven
    altered = [*EVENTS_A[:2], (3, 1_003, "antq.events.x", b"other"), *EVENTS_A[3:]]
    hasher = RangeHasher(1)
    for event in altered:
        hasher.add(*event)
    hasher.finish(6)
    ranges = compare_ranges([seals[3]], {(1, 6): hasher})
    assert [f.kind for f in ranges] == ["range_altered"]
    assert [f.kind for f in restore_not_proven(seals, ranges)] == ["stream_recreated"]
