"""The clustered log: three nats-servers in one JetStream cluster on loopback, every stream at 3 replicas.

Fault 1: the node leading ANTQ_EVENTS is killed (SIGKILL) while 10 office clients send, then restarted: every
event acknowledged is in the stream once, every batch got an answer (retried with the same event ids after
``unavailable`` or a time-out: a duplicate, never counted twice), the projection's figures equal the count of the
accepted events, ``antq audit verify`` finds no difference and ``antq audit seals`` an intact chain.
Fault 6: a full disk on the stream leader, simulated by the stream's byte limit: ``unavailable``, nothing
half-written, the office keeps its events and their retry, once space is freed, is stored exactly once.
``antq dev up --cluster 3``: the ready line lists three URLs, every stream has 3 replicas, an office publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from typer.testing import CliRunner

from events.codec import decode_recorded
from events.intake import IntakeResult, RejectedRecord
from events.localities import Localities
from infra.auth import nats_connect_options
from infra.embedded import EmbeddedNatsCluster
from infra.nats_client import server_urls
from infra.seal_keys import generate_seed, signer_from_seed
from infra.settings import Settings, SettingsError
from infra.stream_reader import read_stream
from infra.streams import (
    EVENTS,
    REJECTED,
    SEALS,
    UPDATES,
    StreamLimits,
    StreamSetupError,
    ensure_streams,
    stream_configs,
)
from projections import store
from projections.service import Projector
from services.cli.audit import audit
from services.client import OfficeClient
from services.gateway.app import Gateway, GatewayConfig
from services.sealer.service import Sealer, SealerConfig
from tests import factories as f
from tests.conftest import FixedClock, Stack, wait_until_answering
from tests.servers import (
    Servers,
    cluster_servers,
    dev_up,
    fresh_database,
    fresh_streams,
    start_cluster,
    stop_cluster,
    wait_for,
)

pytestmark = pytest.mark.servers

R3 = StreamLimits(dedup_window_s=3600.0, replicas=3)
OFFICES = [f"office-{i}" for i in range(10)]  # tests/conftest.py's offices file: provinces 04 and 24
WARD = "01447"  # Cao Bằng (province 04)


def say(what: str) -> None:
    print(f"[cluster] {what}", flush=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedNatsCluster]:
    """Three nodes at the server's default sync, started once for the module (bounded: 60 s to a meta leader)."""
    started = time.monotonic()
    nodes = start_cluster(3, timeout=60)
    say(f"3-node cluster up in {time.monotonic() - started:.1f}s: {nodes.url}")
    try:
        yield nodes
    finally:
        stop_cluster(nodes)


@pytest.fixture
async def cstack(cluster: EmbeddedNatsCluster, template: Servers) -> AsyncIterator[Stack]:
    """The test stack on the cluster: fresh R3 streams, a fresh database (on the session's PostgreSQL)."""
    servers = await asyncio.to_thread(cluster_servers, cluster, template)
    nc = await nats.connect(server_urls(cluster.url), max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    await fresh_streams(js, R3)
    url = await fresh_database(template)
    yield Stack(servers, nc, js, url, R3)
    await nc.drain()


def gateway_of(stack: Stack, offices_file: Path, localities: Localities) -> Gateway:
    return Gateway(
        GatewayConfig(
            nats_url=stack.servers.nats_url,
            database_url=stack.database_url,
            offices_path=offices_file,
            limits=stack.limits,
            clock=FixedClock(),
            localities=localities,
            ack_timeout_s=4.0,
        )
    )


@contextlib.asynccontextmanager
async def gateway_on(stack: Stack, offices_file: Path, localities: Localities) -> AsyncIterator[Gateway]:
    gw = gateway_of(stack, offices_file, localities)
    async with gw.app:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        yield gw


@contextlib.asynccontextmanager
async def gateways_on(
    stack: Stack, offices_file: Path, localities: Localities, copies: int
) -> AsyncIterator[list[Gateway]]:
    """``copies`` gateways in one queue group, each with its own connections to every node."""
    async with contextlib.AsyncExitStack() as running:
        gateways = [gateway_of(stack, offices_file, localities) for _ in range(copies)]
        for gw in gateways:
            await running.enter_async_context(gw.app)
        await wait_until_answering(stack.nc, "antq.intake._probe")
        yield gateways


async def stream_leader(stack: Stack, stream: str = EVENTS, *, other_than: str | None = None) -> str:
    """The node leading ``stream`` (with ``other_than``: once another node leads it)."""

    async def leader() -> str | None:
        try:
            info = await asyncio.wait_for(stack.js.stream_info(stream), timeout=2)
        except (TimeoutError, nats.errors.Error):
            return None
        name = info.cluster.leader if info.cluster is not None else None
        return name if name != other_than else None

    return await wait_for(leader, timeout=30, what=f"a leader of {stream}")


async def all_replicas_current(stack: Stack, stream: str = EVENTS) -> bool:
    try:
        info = await stack.js.stream_info(stream)
    except (TimeoutError, nats.errors.Error):
        return False
    cl = info.cluster
    return bool(
        cl and cl.leader and cl.replicas and len(cl.replicas) == 2 and all(r.current for r in cl.replicas)
    )


async def stored_ids(stack: Stack) -> list[str]:
    """The event id of every record in ANTQ_EVENTS, in order (duplicates kept, so that they show)."""
    return [event_id for _, event_id in await stored(stack)]


async def stored(stack: Stack) -> list[tuple[int, str]]:
    """(seq, event id) of every record in ANTQ_EVENTS, in order."""
    out = []
    async for batch in read_stream(stack.js, EVENTS):
        out += [(m.seq, str(decode_recorded(m.data).event.event_id)) for m in batch]
    return out


class Office:
    """One office sending its batches until every event is answered ok, retrying with the same event ids."""

    def __init__(
        self,
        nc: Client,
        office_id: str,
        batches: list[list[dict[str, Any]]],
        gate: asyncio.Event | None = None,
    ) -> None:
        self.gate = gate
        """Before its last third of batches, the office waits for this (the node's restart): it sends while the
        node is down and again while the restarted node catches up."""
        self.client = OfficeClient(nc, office_id, timeout=8)
        self.office_id = office_id
        self.batches = batches
        self.accepted: dict[str, IntakeResult] = {}
        self.duplicates = 0  # answered ok as a duplicate: a retry of an event already stored
        self.retries = 0
        self.unavailable = 0  # events answered `unavailable` (each then sent again)
        self.answered_batches = 0
        self.other_refusals: list[IntakeResult] = []

    async def run(self) -> None:
        for number, batch in enumerate(self.batches):
            if self.gate is not None and number == 2 * len(self.batches) // 3:
                await self.gate.wait()
            pending = batch
            for attempt in range(60):  # bounded: the test fails rather than loop for ever
                try:
                    results = await self.client.submit(pending)
                except (
                    nats.errors.TimeoutError,
                    nats.errors.NoRespondersError,
                    nats.errors.ConnectionClosedError,
                ):
                    self.retries += 1
                    backoff = 0.05 * min(attempt + 1, 10)
                    await asyncio.sleep(backoff)  # wait-ok: an office's backoff between tries
                    continue
                again = []
                for doc, result in zip(pending, results, strict=True):
                    if result.ok:
                        assert result.event_id == doc["event_id"]
                        if result.duplicate:
                            self.duplicates += 1
                        self.accepted[doc["event_id"]] = result
                    elif result.error is not None and result.error.code == "unavailable":
                        self.unavailable += 1
                        again.append(doc)
                    else:
                        self.other_refusals.append(result)
                if not again:
                    self.answered_batches += 1
                    break
                self.retries += 1
                pending = again
                await asyncio.sleep(0.05 * min(attempt + 1, 10))  # wait-ok: an office's backoff between tries
            else:
                raise AssertionError(f"{self.office_id}: a batch still unanswered after 60 tries")


def seed_signer() -> Any:
    return signer_from_seed(generate_seed())


async def seal_all(stack: Stack, signer: Any) -> int:
    """Seal every stored event; return the number of seals made."""
    made = 0
    async with Sealer(
        SealerConfig(
            nats_url=stack.servers.nats_url, database_url=stack.database_url, signer=signer, every_events=1000
        )
    ) as sealer:
        while await sealer.seal_once() is not None:
            made += 1
    return made


def cli_audit(stack: Stack, *args: str) -> tuple[int, str]:
    env = {"ANTQ_NATS_URL": stack.servers.nats_url, "ANTQ_DATABASE_URL": stack.database_url}
    result = CliRunner().invoke(audit, list(args), env=env)
    return result.exit_code, result.stdout


@pytest.mark.faults
@pytest.mark.timeout(150)
async def test_fault1_the_events_leader_killed_during_ingest_from_10_offices_loses_and_doubles_nothing(
    cluster: EmbeddedNatsCluster, cstack: Stack, offices_file: Path, localities: Localities
) -> None:
    rng = random.Random(12)
    per_office, batch_size = 20, 25
    plans = {
        office: [
            [f.session(WARD, attendance=rng.randint(1, 90)) for _ in range(batch_size)]
            for _ in range(per_office)
        ]
        for office in OFFICES
    }
    every_doc = {doc["event_id"]: doc for batches in plans.values() for batch in batches for doc in batch}
    total = len(every_doc)
    projector = Projector(nats_url=cluster.url, database_url=cstack.database_url, localities=localities)
    async with gateways_on(cstack, offices_file, localities, copies=3) as gateways:
        await projector.start()
        try:
            restarted = asyncio.Event()
            offices = [Office(cstack.nc, office, plans[office], restarted) for office in OFFICES]
            sending = asyncio.gather(*(o.run() for o in offices))

            def accepted() -> int:
                return sum(len(o.accepted) for o in offices)

            async def accepted_at_least(n: int) -> bool:
                return accepted() >= n

            await wait_for(lambda: accepted_at_least(total // 3), timeout=60, what="a third of the events")
            leader = await stream_leader(cstack)
            victim = cluster.node_named(leader)
            at_kill = accepted()
            victim.kill()
            say(f"killed -9 {leader}, the {EVENTS} leader, after {at_kill} of {total} events accepted")
            new_leader = await stream_leader(cstack, other_than=leader)  # the survivors elect one of theirs
            say(f"{new_leader} leads {EVENTS} now")
            await wait_for(
                lambda: accepted_at_least(at_kill + 500),
                timeout=60,
                what="ingest to go on with one node down",
            )
            say(f"{accepted() - at_kill} more events accepted with {leader} down; restarting it")
            victim.start()
            await asyncio.to_thread(cluster.wait_ready, 30)
            at_restart = accepted()
            restarted.set()  # the offices send their last third while the restarted node catches up
            await asyncio.wait_for(sending, timeout=90)
            await wait_for(lambda: all_replicas_current(cstack), timeout=60, what="all 3 replicas current")
            say(f"{leader} is back and current; {total - at_restart} events were accepted after its restart")

            async def every_copy_whole() -> bool:
                counts = [await asyncio.to_thread(cluster.stored_messages, n, EVENTS) for n in cluster.nodes]
                return counts == [total] * 3

            await wait_for(every_copy_whole, timeout=30, what=f"each node's copy to hold the {total} events")
            say(f"each of the 3 nodes' copies of {EVENTS} holds {total} messages")
            durable = await cstack.js.consumer_info(EVENTS, f"{store.NAME}-1")
            assert durable.cluster is not None and len(durable.cluster.replicas or []) == 2
            say(f"the projection's durable {durable.name} has 3 replicas, as its stream")

            # every event acknowledged is in the stream exactly once
            ids = await stored_ids(cstack)
            acked = {eid for o in offices for eid in o.accepted}
            assert [r for o in offices for r in o.other_refusals] == []
            assert all(o.answered_batches == per_office for o in offices)
            assert acked == set(every_doc), "every event was answered ok in the end"
            assert len(ids) == len(set(ids)) == total, "each stored once"
            assert set(ids) == acked
            seq_of = {event_id: seq for seq, event_id in await stored(cstack)}
            answered = {eid: r.seq for o in offices for eid, r in o.accepted.items()}
            assert answered == seq_of, "every answer (a duplicate's too) names the seq the event is stored at"
            # every refusal is kept in ANTQ_REJECTED: those whose record could not be written during the
            # election are written later by the gateway that answered them (``rejected_later``)
            unavailable = sum(o.unavailable for o in offices)
            limited = sum(gw.counters.rate_limited for gw in gateways)  # not kept, by design (a flood)
            assert all(gw.counters.office_busy == 0 for gw in gateways)

            async def all_kept() -> list[RejectedRecord] | None:
                kept = [
                    msgspec.json.decode(m.data, type=RejectedRecord)
                    async for batch in read_stream(cstack.js, REJECTED)
                    for m in batch
                ]
                n = sum(1 for k in kept if k.error.code == "unavailable")
                return kept if n + limited >= unavailable else None

            kept = await wait_for(
                all_kept, timeout=60, what="every unavailable refusal kept in ANTQ_REJECTED"
            )
            late = sum(gw.counters.rejected_late.kept for gw in gateways)
            assert sum(1 for k in kept if k.error.code == "unavailable") + limited == unavailable
            assert all(gw.counters.rejected_late.lost == 0 for gw in gateways)
            say(
                f"{unavailable} events were answered unavailable ({limited} by the rate limit, not kept); "
                f"ANTQ_REJECTED keeps the other {unavailable - limited}, {late} of them written late"
            )
            retries = sum(o.retries for o in offices)
            duplicates = sum(o.duplicates for o in offices)
            say(
                f"stream holds {len(ids)} events, ids unique, = the {total} acknowledged; {retries} retries, "
                f"{duplicates} answered as duplicates (stored once)"
            )

            # an answer lost on its way (the office timed out) is answered again as a duplicate: >= total
            shares = [gw.counters.accepted + gw.counters.duplicate for gw in gateways]
            assert sum(shares) >= total and all(shares), shares  # the queue group spread the offices' batches
            say(f"3 gateway copies (one queue group) accepted {' + '.join(map(str, shares))} events")

            # the projection's figures equal the oracle's
            oracle = {
                "sessions_held": total,
                "session_attendance": sum(d["attendance"] for d in every_doc.values()),
            }
            conn = await asyncpg.connect(cstack.database_url)
            try:

                async def folded() -> bool:
                    return (await store.read_checkpoint(conn, 1)).seq >= total

                await wait_for(folded, timeout=60, what="the projection to fold every event")
                snap = await store.read_stats(conn, wards=[WARD], year=2018, period="calendar")
            finally:
                await conn.close()
            assert {k: snap.metrics.get(k) for k in oracle} == oracle
            say(f"projection figures {oracle} equal the oracle count of the accepted events")
        finally:
            await projector.stop()

    # antq audit verify and antq audit seals, against every node's URL
    sealed = await seal_all(cstack, seed_signer())
    code, out = await asyncio.to_thread(cli_audit, cstack, "verify")
    assert code == 0, out
    code, out = await asyncio.to_thread(cli_audit, cstack, "seals", "--format", "json")
    body = json.loads(out)
    assert code == 0 and body["ok"] is True, out
    say(f"antq audit verify: no difference; {sealed} seal(s) made, antq audit seals: chain intact")


@pytest.mark.timeout(60)
async def test_ensure_streams_brings_existing_streams_to_the_configured_replicas(cstack: Stack) -> None:
    await fresh_streams(cstack.js, StreamLimits(dedup_window_s=3600.0))  # as a one-node setup made them
    assert (await cstack.js.stream_info(EVENTS)).config.num_replicas == 1
    await ensure_streams(cstack.js, R3)

    async def replicated() -> bool:
        infos = [await cstack.js.stream_info(s) for s in (EVENTS, REJECTED, UPDATES, SEALS)]
        return all(
            i.config.num_replicas == 3 and i.cluster and len(i.cluster.replicas or []) == 2 for i in infos
        )

    await wait_for(replicated, timeout=30, what="every stream at 3 replicas")


@pytest.mark.timeout(60)
async def test_more_replicas_than_nodes_is_one_clear_error(cstack: Stack) -> None:
    with pytest.raises(StreamSetupError, match="5 replica"):
        await ensure_streams(cstack.js, StreamLimits(replicas=5))


def test_stream_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "ANTQ_STREAM_REPLICAS": "3",
            "ANTQ_STREAM_PLACEMENT_CLUSTER": "antq",
            "ANTQ_STREAM_PLACEMENT_TAGS": "ssd, hanoi",
            "ANTQ_DEDUP_WINDOW_S": "600",
        }
    )
    limits = StreamLimits.from_settings(settings)
    assert (limits.replicas, limits.dedup_window_s) == (3, 600.0)
    assert limits.placement is not None and limits.placement.cluster == "antq"
    assert limits.placement.tags == ["ssd", "hanoi"]
    configs = stream_configs(limits)
    assert {c.num_replicas for c in configs} == {3}
    assert all(c.placement == limits.placement for c in configs)
    assert StreamLimits.from_settings(Settings.from_env({})).placement is None
    with pytest.raises(SettingsError, match="ANTQ_STREAM_REPLICAS"):
        Settings.from_env({"ANTQ_STREAM_REPLICAS": "0"})
    with pytest.raises(ValueError, match="1 to 5"):
        StreamLimits(replicas=7)


def test_a_nats_url_may_list_every_node() -> None:
    assert server_urls("nats://a:1, nats://b:2,nats://c:3") == ["nats://a:1", "nats://b:2", "nats://c:3"]
    assert server_urls("nats://a:1") == ["nats://a:1"]
    with pytest.raises(ValueError, match="no NATS server URL"):
        server_urls(" , ")


async def stream_state(stack: Stack) -> tuple[int, int, int]:
    info = await stack.js.stream_info(EVENTS)
    return info.state.messages, info.state.bytes, info.state.last_seq


async def index_rows(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM event_index")
        return count
    finally:
        await conn.close()


@pytest.mark.faults
@pytest.mark.timeout(90)
async def test_fault6_a_full_store_on_the_leader_is_unavailable_nothing_half_written_and_a_retry_stored_once(
    cluster: EmbeddedNatsCluster, cstack: Stack, offices_file: Path, localities: Localities
) -> None:
    async with gateway_on(cstack, offices_file, localities):
        office = OfficeClient(cstack.nc, "office-0", timeout=20)
        first = [f.session(WARD, attendance=5) for _ in range(20)]
        assert all(r.ok for r in await office.submit(first))
        messages, size, last = await stream_state(cstack)
        assert messages == 20
        leader = await stream_leader(cstack)
        info = await cstack.js.stream_info(EVENTS)
        # the disk is full: the stream may hold no byte more than it holds now (on every replica, leader first)
        await cstack.js.update_stream(info.config.evolve(max_bytes=size))
        say(f"{EVENTS} (leader {leader}) capped at its {size} bytes: a full disk")

        kept = [f.session(WARD, attendance=7) for _ in range(15)]
        refused = await office.submit(kept)
        assert [r.error.code if r.error else "ok" for r in refused] == ["unavailable"] * len(kept)
        say(f"a batch of {len(kept)} sent on the full store: every event answered unavailable")
        assert await stream_state(cstack) == (messages, size, last), "nothing written"
        ids = await stored_ids(cstack)
        assert ids == [d["event_id"] for d in first], "the stream holds only whole accepted events"
        assert await index_rows(cstack.database_url) == messages, "the index names only stored events"
        say("stream unchanged (messages, bytes, last seq), index rows = stored events")

        await cstack.js.update_stream(info.config.evolve(max_bytes=-1))
        say("space freed (the cap lifted); the office sends the same events again")
        again = await office.submit(kept)
        assert all(r.ok and not r.duplicate for r in again), again
        assert len({r.seq for r in again}) == len(kept)
        once_more = await office.submit(kept)
        assert all(r.ok and r.duplicate for r in once_more)
        ids = await stored_ids(cstack)
        assert ids == [d["event_id"] for d in first + kept], "each retried event stored exactly once"
        assert await index_rows(cstack.database_url) == len(ids)
        say(f"retry accepted: {len(ids)} events stored, each once; a second retry answered duplicate")


# ---------------------------------------------------------------------------------------------------------
# antq dev up --cluster 3


@pytest.mark.timeout(150)
async def test_dev_up_cluster_3_lists_every_node_and_keeps_every_stream_at_3_replicas(tmp_path: Path) -> None:
    data = Path(tempfile.mkdtemp(prefix="antq-cluster-dev-"))
    try:
        with dev_up("--cluster", "3", "--data-dir", str(data / "d")) as (_, ready):
            urls = ready["nats_url"].split(",")
            assert len(urls) == 3 and len(set(urls)) == 3
            credentials = Path(ready["credentials_dir"])
            admin = nats_connect_options(Settings(credentials_dir=credentials, identity="admin"))
            for url in urls:  # every node has the same identities: the admin connects to each alone
                nc = await nats.connect(url, allow_reconnect=False, **admin)
                await nc.close()
            nc = await nats.connect(urls, **admin)
            try:
                js = nc.jetstream()
                replicas = {
                    s: (await js.stream_info(s)).config.num_replicas
                    for s in (EVENTS, REJECTED, UPDATES, SEALS)
                }
            finally:
                await nc.close()
            assert replicas == dict.fromkeys((EVENTS, REJECTED, UPDATES, SEALS), 3)
            events = tmp_path / "events.jsonl"
            events.write_text(json.dumps(f.session(attendance=7)) + "\n")
            env = {k: v for k, v in os.environ.items() if not k.startswith("ANTQ_")}
            env["ANTQ_NATS_URL"] = ready["nats_url"]
            published = await asyncio.to_thread(
                subprocess.run,
                [
                    sys.executable,
                    "-m",
                    "services.cli",
                    "--credentials-dir",
                    str(credentials),
                    "publish",
                    str(events),
                    "--office",
                    "ca-tra-linh",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert published.returncode == 0, published.stdout + published.stderr
            say(f"dev up --cluster 3: {ready['nats_url']}; streams at 3 replicas; an office published to it")

            kept_seed = tmp_path / "lost.nk"  # the key the office lost, as a thief would hold it
            shutil.copy(credentials / "office-ca-tra-linh.nk", kept_seed)
            revoked = await asyncio.to_thread(
                subprocess.run,
                [
                    sys.executable,
                    "-m",
                    "services.cli",
                    "auth",
                    "revoke",
                    "--office",
                    "ca-tra-linh",
                    "--out",
                    str(credentials),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert revoked.returncode == 0 and revoked.stdout.count("reloaded") == 3, (
                revoked.stdout + revoked.stderr
            )

            async def refused_by(url: str) -> bool:
                try:
                    nc = await nats.connect(url, nkeys_seed=str(kept_seed), allow_reconnect=False)
                except nats.errors.Error as exc:
                    return "authorization violation" in str(exc).lower()
                await nc.close()
                return False

            for url in urls:
                await wait_for(
                    functools.partial(refused_by, url), timeout=20, what=f"{url} to refuse the key"
                )
            say("antq auth revoke reloaded all 3 nodes: every node refuses the revoked office key")
    finally:
        shutil.rmtree(data, ignore_errors=True)
