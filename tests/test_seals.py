"""Sealing and verifying against the real servers; tampering only ever on a copy stream, never ANTQ_EVENTS."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import msgspec
import pytest
from nats.js.errors import NotFoundError
from typer.testing import CliRunner

from infra.seal_keys import Signer, generate_seed, signer_from_seed
from infra.stream_reader import StoredMsg, read_stream
from infra.streams import EVENTS, SEALS, events_config
from services.cli.audit import audit
from services.client import OfficeClient
from services.sealer.chain import GENESIS, Seal, encode_seal, make_seal
from services.sealer.findings import Report
from services.sealer.service import Sealer, SealerConfig, SealingHalted
from services.sealer.store import fetch_seals, insert_seal
from services.sealer.verify import verify_seals
from tests import factories as f
from tests.conftest import FixedClock, Stack

pytestmark = pytest.mark.servers

COPY = "AUDIT_COPY"
SIGNER = signer_from_seed(generate_seed())


@pytest.fixture(autouse=True)
async def no_copy_stream(stack: Stack) -> AsyncIterator[None]:
    """The copy stream is not one of the stack's streams: drop it around each test."""
    with contextlib.suppress(NotFoundError):
        await stack.js.delete_stream(COPY)
    yield
    with contextlib.suppress(NotFoundError):
        await stack.js.delete_stream(COPY)


def config(stack: Stack, **kw: object) -> SealerConfig:
    base: dict[str, object] = {
        "nats_url": stack.servers.nats_url,
        "database_url": stack.database_url,
        "signer": SIGNER,
        "every_events": 10,
        "every_seconds": 60.0,
    }
    return SealerConfig(**{**base, **kw})  # type: ignore[arg-type]


async def publish(office: OfficeClient, n: int) -> None:
    results = await office.submit([f.session(attendance=40) for _ in range(n)])
    assert all(r.ok for r in results)


async def stored(stack: Stack, stream: str) -> list[StoredMsg]:
    return [m async for batch in read_stream(stack.js, stream) for m in batch]


async def make_copy(stack: Stack, events: list[StoredMsg], alter: dict[int, bytes] | None = None) -> None:
    """AUDIT_COPY: the ANTQ_EVENTS configuration on other subjects, but deletable so that tests can tamper."""
    cfg = events_config(stack.limits, name=COPY, subjects=["copy.>"])
    cfg.deny_delete = False
    cfg.deny_purge = False
    await stack.js.add_stream(cfg)
    for msg in events:
        data = (alter or {}).get(msg.seq, msg.data)
        ack = await stack.js.publish(f"copy.{msg.subject}", data, stream=COPY)
        assert ack.seq == msg.seq


async def sealed_copy(stack: Stack, office: OfficeClient, n: int = 25) -> tuple[list[StoredMsg], list[Seal]]:
    await publish(office, n)
    events = await stored(stack, EVENTS)
    await make_copy(stack, events)
    async with Sealer(config(stack, stream=COPY)) as sealer:
        seals = [s for s in [await sealer.seal_once() for _ in range(4)] if s is not None]
    return events, seals


async def verify(stack: Stack, stream: str = COPY, trusted: frozenset[str] | None = None) -> Report:
    conn = await asyncpg.connect(stack.database_url)
    try:
        return await verify_seals(stack.js, conn, stream=stream, seals_stream=SEALS, trusted_keys=trusted)
    finally:
        await conn.close()


def kinds(report: Report) -> set[str]:
    return {finding.kind for finding in report.findings}


@pytest.mark.timeout(60)
async def test_seal_ranges_are_contiguous_chained_and_stored_twice(
    stack: Stack, office: OfficeClient
) -> None:
    await publish(office, 25)
    async with Sealer(config(stack)) as sealer:
        seals = [await sealer.seal_once() for _ in range(3)]
        assert await sealer.seal_once() is None
    assert [(s.first_seq, s.last_seq, s.count) for s in seals if s] == [
        (1, 10, 10),
        (11, 20, 10),
        (21, 25, 5),
    ]
    assert [s.prev_digest for s in seals if s] == [GENESIS, seals[0].digest, seals[1].digest]  # type: ignore[union-attr]
    in_nats = [msgspec.json.decode(m.data, type=Seal) for m in await stored(stack, SEALS)]
    assert in_nats == seals
    conn = await asyncpg.connect(stack.database_url)
    try:
        assert await fetch_seals(conn, EVENTS) == seals
    finally:
        await conn.close()
    report = await verify(stack, EVENTS)
    assert report.ok, report.findings
    assert report.events_checked == 25 and report.sealed_through == 25 and report.latest == seals[-1]


@pytest.mark.timeout(60)
async def test_seals_every_n_events_or_after_t_seconds(
    stack: Stack, office: OfficeClient, clock: FixedClock
) -> None:
    await publish(office, 25)
    async with Sealer(config(stack, clock=clock)) as sealer:
        assert [(s.first_seq, s.last_seq) for s in await sealer.tick()] == [(1, 10), (11, 20)]
        assert await sealer.tick() == []  # 5 waiting, fewer than N, and T has not passed
        clock.now += dt.timedelta(seconds=61)
        assert [(s.first_seq, s.last_seq) for s in await sealer.tick()] == [(21, 25)]
        assert await sealer.pending() == 0


def race_once(barrier: asyncio.Barrier) -> Callable[[Seal], Awaitable[None]]:
    """A publish hook that holds the first publish until the other sealer is about to publish too."""
    used = False

    async def hook(seal: Seal) -> None:
        nonlocal used
        if not used:
            used = True
            await asyncio.wait_for(barrier.wait(), 10)

    return hook


@pytest.mark.timeout(60)
async def test_two_racing_sealers_keep_one_chain(stack: Stack, office: OfficeClient) -> None:
    await publish(office, 30)
    barrier = asyncio.Barrier(2)
    other = signer_from_seed(generate_seed())
    async with (
        Sealer(config(stack, before_publish=race_once(barrier))) as a,
        Sealer(config(stack, before_publish=race_once(barrier), signer=other)) as b,
    ):
        first = await asyncio.gather(a.seal_once(), b.seal_once())
        assert a.conflicts + b.conflicts == 1  # both built seal #1 on the same tip; the server refused one
        assert sorted((s.number, s.first_seq) for s in first if s) == [(1, 1), (2, 11)]
        assert await b.seal_once() is not None and await a.seal_once() is None
    seals = [msgspec.json.decode(m.data, type=Seal) for m in await stored(stack, SEALS)]
    assert [s.number for s in seals] == [1, 2, 3]
    report = await verify(stack, EVENTS, trusted=frozenset({SIGNER.public_key, other.public_key}))
    assert report.ok, report.findings


@pytest.mark.timeout(60)
async def test_intact_copy_verifies_and_a_deleted_message_is_a_gap(
    stack: Stack, office: OfficeClient
) -> None:
    _, seals = await sealed_copy(stack, office)
    assert len(seals) == 3
    before = await verify(stack)
    assert before.ok, before.findings
    await stack.js.delete_msg(COPY, 14)
    report = await verify(stack)
    gaps = [x for x in report.findings if x.kind == "gap"]
    assert [(g.seal, g.seqs) for g in gaps] == [(2, (14,))]
    assert report.first_altered is not None and report.first_altered.seal == 2
    assert kinds(report) == {"gap"}


@pytest.mark.timeout(60)
async def test_recreated_copy_with_one_altered_event(stack: Stack, office: OfficeClient) -> None:
    events, _ = await sealed_copy(stack, office)
    original = events[16].data
    altered = original.replace(b'"attendance":40', b'"attendance":41')
    assert altered != original
    await stack.js.delete_stream(COPY)
    await make_copy(stack, events, alter={17: altered})
    report = await verify(stack)
    assert "stream_recreated" in kinds(report)
    changed = [x for x in report.findings if x.kind == "range_altered"]
    assert [(x.seal, x.first_seq, x.last_seq) for x in changed] == [(2, 11, 20)]
    assert report.first_altered == changed[0]
    rerecorded = [x for x in report.findings if x.kind == "range_rerecorded"]
    assert [x.seal for x in rerecorded] == [1] and "1 later range" in rerecorded[0].detail
    async with Sealer(config(stack, stream=COPY)) as sealer:
        await stack.js.publish("copy.x", b"late", stream=COPY)
        with pytest.raises(SealingHalted, match="recreated"):
            await sealer.seal_once()


@pytest.mark.timeout(60)
async def test_an_edited_or_deleted_seal_row_in_postgres_is_reported(
    stack: Stack, office: OfficeClient
) -> None:
    _, seals = await sealed_copy(stack, office)
    conn = await asyncpg.connect(stack.database_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE seals SET count = 9 WHERE number = 2")
        await conn.execute("ALTER TABLE seals DISABLE TRIGGER seals_append_only")
        await conn.execute(
            "UPDATE seals SET range_digest = $1 WHERE stream = $2 AND number = 2", "ab" * 32, COPY
        )
        await conn.execute("DELETE FROM seals WHERE stream = $1 AND number = 3", COPY)
    finally:
        await conn.close()
    report = await verify(stack)
    by_kind = {(x.kind, x.store, x.seal) for x in report.findings}
    assert ("stores_disagree", None, 2) in by_kind
    assert ("seal_altered", "postgres", 2) in by_kind
    assert ("store_missing_seal", "postgres", 3) in by_kind
    assert not {"range_altered", "gap"} & kinds(
        report
    )  # the events are intact; the NATS seals vouch for them
    disagree = next(x.detail for x in report.findings if x.kind == "stores_disagree")
    assert "range_digest" in disagree and seals[1].number == 2


@pytest.mark.timeout(60)
async def test_a_seal_signed_by_another_key_is_reported(stack: Stack, office: OfficeClient) -> None:
    _, seals = await sealed_copy(stack, office)
    tip = seals[-1]
    impostor = Signer(signer_from_seed(generate_seed())._pair, SIGNER.public_key)  # claims the sealer's key
    forged = make_seal(
        number=tip.number + 1,
        stream=COPY,
        first_seq=tip.last_seq + 1,
        last_seq=tip.last_seq + 1,
        count=0,
        stream_created=tip.stream_created,
        prev_digest=tip.digest,
        range_digest="00" * 32,
        content_digest="00" * 32,
        sealed_at=tip.sealed_at,
        signer=impostor,
    )
    await append_seal(stack, forged)
    report = await verify(stack)
    bad = {(x.store, x.seal) for x in report.findings if x.kind == "bad_signature"}
    assert bad == {("nats", 4), ("postgres", 4)}
    assert report.latest == tip  # an unsound seal never becomes the reference
    pinned = await verify(stack, trusted=frozenset({signer_from_seed(generate_seed()).public_key}))
    assert {x.seal for x in pinned.findings if x.kind == "untrusted_signer"} == {1, 2, 3, 4}


@pytest.mark.timeout(60)
async def test_cli_audit_seals_exit_status_and_export(stack: Stack, office: OfficeClient) -> None:
    _, seals = await sealed_copy(stack, office)
    env = {"ANTQ_NATS_URL": stack.servers.nats_url, "ANTQ_DATABASE_URL": stack.database_url}
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(audit, ["seals", "--stream", COPY, *args], env=env)
        return result.exit_code, result.stdout

    code, out = await asyncio.to_thread(run, "--export", "--format", "json")
    body = msgspec.json.decode(out)
    assert code == 0 and body["ok"] is True
    assert body["export"]["digest"] == seals[-1].digest and body["export"]["last_seq"] == 25
    assert body["export"]["signer"] == SIGNER.public_key
    await stack.js.delete_msg(COPY, 3)
    code, out = await asyncio.to_thread(run)
    assert code == 1 and "gap" in out


async def append_seal(stack: Stack, seal: Seal) -> None:
    """Append a seal to both stores behind the sealer's back, as someone with access to both could."""
    ack = await stack.js.publish("antq.seals", encode_seal(seal), stream=SEALS)
    conn = await asyncpg.connect(stack.database_url)
    try:
        await insert_seal(conn, seal, ack.seq)
    finally:
        await conn.close()
