"""`antq audit seals` while the sealer runs: a seal appended to both stores between the verifier's reads of
NATS and PostgreSQL is not reported as missing from either."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

import services.sealer.service as service_module
import services.sealer.verify as verify_module
from infra.streams import EVENTS, SEALS
from services.client import OfficeClient
from services.sealer.chain import Seal
from services.sealer.service import Sealer
from services.sealer.store import fetch_seals, insert_seal
from services.sealer.verify import verify_seals
from tests.conftest import Stack
from tests.servers import wait_for
from tests.test_seals import config, publish

pytestmark = pytest.mark.servers


@pytest.mark.timeout(60)
async def test_seals_appended_between_the_reads_are_not_reported_missing(
    stack: Stack, office: OfficeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await publish(office, 45)
    async with Sealer(config(stack)) as sealer:
        first = await sealer.seal_once()
        assert first is not None and (first.first_seq, first.last_seq) == (1, 10)
        appended: list[Seal] = []

        async def append_one() -> None:
            seal = await sealer.seal_once()
            assert seal is not None
            appended.append(seal)

        async def sealer_runs_meanwhile(conn: asyncpg.Connection, stream: str) -> list[Seal]:
            """Around each PostgreSQL read, the running sealer appends a seal (to NATS, then PostgreSQL)."""
            await append_one()
            seals = await fetch_seals(conn, stream)
            await append_one()
            return seals

        monkeypatch.setattr(verify_module, "fetch_seals", sealer_runs_meanwhile)
        conn = await asyncpg.connect(stack.database_url)
        try:
            report = await verify_seals(stack.js, conn, stream=EVENTS, seals_stream=SEALS)
        finally:
            await conn.close()
    # seal 2 before the first PostgreSQL read, 3 after it (before the NATS read), 4 before the second
    # PostgreSQL read (after the NATS read), 5 after it
    assert [s.number for s in appended] == [2, 3, 4, 5]
    assert report.ok, report.findings
    assert (report.seals_nats, report.seals_postgres) == (3, 3)  # 4 and 5 wait for the next check
    assert report.latest is not None and report.latest.number == 3


@pytest.mark.timeout(60)
async def test_a_seal_whose_postgres_insert_is_still_in_flight_is_waited_for(
    stack: Stack, office: OfficeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sealer has appended seal 2 to NATS; its PostgreSQL insert commits only after the verifier read both
    stores. The verifier reads PostgreSQL again for a moment instead of reporting the seal missing."""
    await publish(office, 25)
    gate = asyncio.Event()
    real_insert = insert_seal

    async def slow_insert(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await real_insert(*args, **kwargs)

    reads: list[int] = []
    real_fetch = fetch_seals

    async def counted_fetch(conn: asyncpg.Connection, stream: str) -> list[Seal]:
        reads.append(1)
        seals = await real_fetch(conn, stream)
        if len(reads) == 2:  # the verifier has read PostgreSQL, NATS and PostgreSQL: the insert commits now
            gate.set()
        return seals

    async with Sealer(config(stack)) as sealer:
        assert await sealer.seal_once() is not None  # seal 1, in both stores
        monkeypatch.setattr(service_module, "insert_seal", slow_insert)
        sealing = asyncio.create_task(sealer.seal_once())  # seal 2: in NATS, its insert held

        async def in_nats() -> bool:
            info = await stack.js.stream_info(SEALS)
            return info.state.messages == 2

        await wait_for(in_nats, what="seal 2 in NATS")
        monkeypatch.setattr(verify_module, "fetch_seals", counted_fetch)
        conn = await asyncpg.connect(stack.database_url)
        try:
            report = await verify_seals(stack.js, conn, stream=EVENTS, seals_stream=SEALS)
        finally:
            await conn.close()
        assert (await sealing) is not None
    assert report.ok, report.findings
    assert (report.seals_nats, report.seals_postgres) == (2, 2) and len(reads) >= 3


@pytest.mark.timeout(60)
async def test_a_failed_postgres_insert_is_made_good_before_the_next_seal(
    stack: Stack, office: OfficeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seal 2 reaches NATS but its PostgreSQL insert fails once: the next seal first copies seal 2, so
    PostgreSQL never keeps a hole in the chain while the sealer runs on."""
    await publish(office, 35)
    failed: list[int] = []

    async def failing_once(pool: Any, seal: Seal, seals_seq: int) -> None:
        if seal.number == 2 and not failed:
            failed.append(2)
            raise OSError("PostgreSQL went away (test)")
        await insert_seal(pool, seal, seals_seq)

    async with Sealer(config(stack)) as sealer:
        assert await sealer.seal_once() is not None
        monkeypatch.setattr(service_module, "insert_seal", failing_once)
        with pytest.raises(OSError, match="went away"):
            await sealer.seal_once()
        third = await sealer.seal_once()
        assert third is not None and third.number == 3 and failed == [2]
    conn = await asyncpg.connect(stack.database_url)
    try:
        assert [s.number for s in await fetch_seals(conn, EVENTS)] == [1, 2, 3]
        report = await verify_seals(stack.js, conn, stream=EVENTS, seals_stream=SEALS)
    finally:
        await conn.close()
    assert report.ok, report.findings
