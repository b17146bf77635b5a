"""Issue 11, part 3: the downstream subscriber example (``examples/subscriber.py``) on real servers.

It keeps its own table of the latest figures per ward-year of one province from a durable consumer; stopped and
started again (a new connection, the same SQLite file and consumer), it goes on from where it was and its table
equals what the query answers, stocks included; it refuses updates that do not verify against the pinned key.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import nats
import pytest
from nats.aio.client import Client

from events.localities import Localities
from examples.subscriber import Subscriber, Table
from infra.auth.credentials import generate
from infra.embedded import EmbeddedNats
from infra.streams import UPDATES
from projections import store
from projections.service import Projector
from services.client import OfficeClient
from tests import factories as f
from tests.conftest import Stack
from tests.servers import Servers, fresh_database, wait_for
from tests.test_auth import AuthStack, fill

pytestmark = [pytest.mark.servers, pytest.mark.timeout(60)]


@pytest.fixture
async def projector(stack: Stack, localities: Localities) -> AsyncIterator[Projector]:
    running = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def submit(office: OfficeClient, docs: list[dict[str, object]]) -> int:
    results = await office.submit(docs)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return max(r.seq or 0 for r in results)


async def started(stack: Stack, db: Path, key: str | None) -> tuple[Subscriber, Client, Table]:
    nc = await nats.connect(stack.servers.nats_url)
    table = Table(db)
    subscriber = Subscriber(nc, name="dash", province="04", table=table, pinned_key=key)
    await subscriber.attach()
    return subscriber, nc, table


async def caught_up(subscriber: Subscriber, table: Table, ward: str, year: int, seq: int) -> None:
    async def there() -> bool:
        await subscriber.poll(timeout=0.2)
        return table.as_of_seq(ward, year) >= seq

    await wait_for(there, what=f"the subscriber to hold {ward} {year} at seq {seq}")


async def query(database_url: str, ward: str, year: int) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        return (await store.read_stats(conn, wards=[ward], year=year, period="calendar")).metrics
    finally:
        await conn.close()


async def test_the_subscriber_keeps_the_latest_figures_and_resumes_after_a_restart(
    stack: Stack, office: OfficeClient, projector: Projector, tmp_path: Path
) -> None:
    key = projector.update_key
    assert key is not None
    db = tmp_path / "figures.sqlite"
    subscriber, nc, table = await started(stack, db, key.public_key)
    try:
        model = f.model(day="2016-03-01", points=2)
        first = await submit(office, [f.session(attendance=30), f.tip(), model, f.session(ward="01456")])
        await caught_up(subscriber, table, "01447", 2018, first)
        assert table.figures("01447", 2018) == await query(stack.database_url, "01447", 2018)
        before = subscriber.received
        assert before > 0 and subscriber.refused == 0
    finally:
        table.close()
        await nc.close()  # stopped: the consumer stays, with what was acknowledged

    # while it is away: more figures, in a ward-year it holds and in a new one
    later = await submit(office, [f.session(attendance=12), f.pledge(ward="01456", day="2019-02-01")])
    subscriber, nc, table = await started(stack, db, key.public_key)
    try:
        await caught_up(subscriber, table, "01447", 2018, later)
        await caught_up(subscriber, table, "01456", 2019, later)
        # it went on from where it was: it received exactly the updates delivered since its first run
        info = await stack.js.consumer_info(UPDATES, "sub-dash-04")
        assert info.num_pending == 0 and info.num_ack_pending == 0
        assert subscriber.received == info.delivered.consumer_seq - before > 0
        for ward, year in (("01447", 2018), ("01456", 2018), ("01456", 2019), ("01447", 2016)):
            assert table.figures(ward, year) == await query(stack.database_url, ward, year), (ward, year)
        # a year the feed has sent nothing of yet: the stocks standing at the latest earlier year, flows zero,
        # which is what the query answers for it
        assert table.figures("01447", 2040) == await query(stack.database_url, "01447", 2040)
        assert table.figures("01447", 2040)["models_active"] == 1  # type: ignore[index]
        assert table.figures("01447", 2015) is None  # nothing known before the model's year

        # an update that does not verify (here: unsigned, as anyone may publish on the open stack) is refused
        forged = {
            "ward": "01447",
            "year": 2018,
            "period": "calendar",
            "metrics": {"sessions_held": 999},
            "as_of_seq": 10**9,
            "stale": False,
            "fold_version": 99,
            "province": "04",
        }
        await stack.js.publish(
            "antq.updates.stats.04.01447.2018", msgspec.json.encode(forged), stream=UPDATES
        )

        async def refused() -> bool:
            await subscriber.poll(timeout=0.2)
            return subscriber.refused == 1

        await wait_for(refused, what="the forged update to be refused")
        assert table.figures("01447", 2018) == await query(stack.database_url, "01447", 2018)
    finally:
        table.close()
        await nc.close()


async def test_the_example_runs_as_a_subscriber_identity_on_the_secure_stack_and_stops_on_sigterm(
    template: Servers, localities: Localities, tmp_path: Path
) -> None:
    generated = generate(tmp_path / "auth", ["ca-cao-bang"], subscribers={"dash": ["04"]})
    server = EmbeddedNats(tmp_path / "nats", sync_always=False, auth_conf=generated.server_conf)
    url = server.start()
    secure = AuthStack(generated, server)
    projector = Projector(
        nats_url=url,
        database_url=await fresh_database(template),
        localities=localities,
        nats_options=secure.options("projector"),
    )
    db = tmp_path / "figures.sqlite"
    try:
        await fill(secure, 3)  # three sessions in 01447 (2018), written as the gateway writes them
        await projector.start()
        key = projector.update_key
        assert key is not None
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ANTQ_")},
            "ANTQ_NATS_URL": url,
            "ANTQ_NATS_NKEY_SEED_FILE": str(secure.seed_file("subscriber-dash")),
        }
        args = ("-m", "examples.subscriber", "--province", "04", "--name", "dash", "--db", str(db))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, "--key", key.public_key, env=env, stderr=asyncio.subprocess.PIPE
        )
        try:

            async def stored() -> dict[str, int] | None:
                if not db.exists():
                    return None
                table = Table(db)
                try:
                    return table.figures("01447", 2018)
                finally:
                    table.close()

            figures = await wait_for(stored, what="the example's table to hold 01447 2018")
            assert (figures["sessions_held"], figures["session_attendance"]) == (3, 120)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = await asyncio.wait_for(proc.communicate(), 20)
            except TimeoutError:
                proc.kill()
                _, err = await proc.communicate()
                raise AssertionError(err.decode()) from None
        assert proc.returncode == 0, err.decode()
    finally:
        await projector.stop()
        for nc in secure.clients:
            await nc.close()
        server.stop()
