"""`antq audit seals` while the sealer runs: a seal appended to both stores between the verifier's reads of
NATS and PostgreSQL is not reported as missing from either."""

from __future__ import annotations

import asyncpg
import pytest

import services.sealer.verify as verify_module
from infra.streams import EVENTS, SEALS
from services.client import OfficeClient
from services.sealer.chain import Seal
from services.sealer.service import Sealer
from services.sealer.store import fetch_seals
from services.sealer.verify import verify_seals
from tests.conftest import Stack
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
