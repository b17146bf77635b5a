"""Prometheus metrics: a halt of the projection is visible as ``antq_projection_halted 1``, in the registry, over
HTTP, and from ``python -m projections`` started with ``ANTQ_METRICS_PORT``; the gateway counts its answers."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import DuplicateTimeseries

from events.localities import Localities
from events.schema import Event, TipAssessed
from infra.settings import Settings
from projections.metrics import FOLD_VERSION
from projections.runner import RunnerConfig, StatsRunner
from projections.service import Projector
from projections.telemetry import Exporter, ProjectionCollector, projection_registry
from services.client import OfficeClient
from services.gateway.app import Gateway
from services.gateway.telemetry import gateway_registry
from tests import factories as f
from tests.conftest import Stack, wait_until_answering
from tests.servers import wait_for
from tests.test_projection import as_event, checkpoint, local, publish_events

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parent.parent
LABELS = {"projection": "stats"}


def stray_assessment() -> Event:
    """An assessment of a tip that was never received: the fold cannot apply it (the gateway would refuse it)."""
    return TipAssessed(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2018, 5, 1),
        locality=local(),
        tip_id=uuid.uuid4(),
        valuable=True,
    )


def sessions(n: int) -> list[Event]:
    return [as_event(f.session(attendance=10)) for _ in range(n)]


def sample(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, LABELS)


def parse(text: str) -> dict[str, float]:
    """The samples of a /metrics page labelled ``projection="stats"``, by sample name."""
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels == LABELS
    }


async def fetch_metrics(port: int) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            body: bytes = reply.read()
            return body.decode()

    return await asyncio.to_thread(get)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.timeout(60)
async def test_a_halt_shows_in_the_registry_and_on_the_http_endpoint(
    stack: Stack, localities: Localities
) -> None:
    good = await publish_events(stack.nc, localities, sessions(3))
    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities, batch=10
    )
    registry = projection_registry(projector)
    assert sample(registry, "antq_projection_halted") is None  # nothing to report before the start
    await projector.start()
    try:

        async def folded() -> bool:
            return sample(registry, "antq_projection_checkpoint_seq") == good

        await wait_for(folded, what=f"antq_projection_checkpoint_seq to reach {good}")
        assert (await checkpoint(stack.database_url)).seq == good  # the committed checkpoint, not a guess
        assert sample(registry, "antq_projection_halted") == 0
        assert sample(registry, "antq_projection_halts_total") == 0
        assert sample(registry, "antq_projection_events_folded_total") == 3
        commits = sample(registry, "antq_projection_commits_total")
        assert commits is not None and commits >= 1
        assert sample(registry, "antq_projection_copy") == 1
        assert sample(registry, "antq_projection_fold_version") == FOLD_VERSION

        bad = await publish_events(stack.nc, localities, [stray_assessment()])
        await publish_events(stack.nc, localities, sessions(2))

        async def halted() -> bool:
            return sample(registry, "antq_projection_halted") == 1

        await wait_for(halted, what="antq_projection_halted to become 1")
        assert projector.halted is not None and "UnknownTip" in projector.halted
        assert sample(registry, "antq_projection_halts_total") == 1
        assert sample(registry, "antq_projection_checkpoint_seq") == bad - 1 == good  # nothing after it
        assert sample(registry, "antq_projection_events_folded_total") == 3

        exporter = Exporter(registry, 0, addr="127.0.0.1")
        try:
            scraped = parse(await fetch_metrics(exporter.port))
        finally:
            await asyncio.to_thread(exporter.close)
        assert scraped["antq_projection_halted"] == 1
        assert scraped["antq_projection_halts_total"] == 1
        assert scraped["antq_projection_checkpoint_seq"] == good
    finally:
        await projector.stop()


@pytest.mark.timeout(90)
async def test_python_m_projections_serves_metrics_on_antq_metrics_port(
    stack: Stack, localities: Localities
) -> None:
    good = await publish_events(stack.nc, localities, sessions(2))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANTQ_METRICS_PORT": str(port)}
    args = ["--nats-url", stack.servers.nats_url, "--database-url", stack.database_url]
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "projections", *args, cwd=ROOT, env=env)
    try:

        async def scrape() -> dict[str, float] | None:
            assert proc.returncode is None, "python -m projections exited"
            try:
                return parse(await fetch_metrics(port))
            except (urllib.error.URLError, ConnectionError):
                return None  # not listening yet

        async def at(seq: int) -> dict[str, float] | None:
            page = await scrape()
            return page if page and page.get("antq_projection_checkpoint_seq") == seq else None

        page = await wait_for(lambda: at(good), timeout=40, what=f"/metrics to show checkpoint {good}")
        assert page["antq_projection_halted"] == 0
        assert page["antq_projection_events_folded_total"] == 2

        await publish_events(stack.nc, localities, [stray_assessment()])

        async def halted() -> dict[str, float] | None:
            page = await scrape()
            return page if page and page.get("antq_projection_halted") == 1 else None

        page = await wait_for(halted, timeout=30, what="/metrics to show the halt")
        assert page["antq_projection_halts_total"] == 1
        assert page["antq_projection_checkpoint_seq"] == good
        assert proc.returncode is None  # a halted projection stays up, so the halt stays visible
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
    assert code == 0


@dataclass
class Holder:
    """Stands in for a Projector: the collector only reads ``runner``."""

    runner: StatsRunner | None = None


@pytest.mark.timeout(30)
async def test_counters_carry_over_when_the_projector_replaces_its_runner(
    stack: Stack, localities: Localities
) -> None:
    config = RunnerConfig(database_url=stack.database_url, localities=localities)
    holder = Holder()
    registry = projection_registry(holder)

    def runner(events: int, batches: int, seq: int) -> StatsRunner:
        r = StatsRunner(stack.nc, config)  # never run: its fields are set as a run would have
        r.stats.events, r.stats.batches, r.seq, r.copy = events, batches, seq, 1
        r.ready.set()
        return r

    holder.runner = runner(events=10, batches=2, seq=10)
    assert sample(registry, "antq_projection_events_folded_total") == 10
    holder.runner.stats.events, holder.runner.seq = 15, 15  # folds more after this scrape
    holder.runner = runner(events=4, batches=1, seq=19)  # restarted after a failure
    assert sample(registry, "antq_projection_events_folded_total") == 15 + 4
    assert sample(registry, "antq_projection_commits_total") == 2 + 1
    assert sample(registry, "antq_projection_checkpoint_seq") == 19  # a gauge: the current runner's only

    holder.runner = StatsRunner(stack.nc, config)  # not ready: has not read its checkpoint yet
    assert sample(registry, "antq_projection_checkpoint_seq") is None
    assert sample(registry, "antq_projection_halted") is None
    assert sample(registry, "antq_projection_events_folded_total") == 19  # totals stay


def test_registries_are_independent_and_refuse_a_second_collector() -> None:
    first, second = Holder(), Holder()
    a = projection_registry(first)
    projection_registry(second)  # a second registry: it would raise here if both shared a global one
    with pytest.raises(DuplicateTimeseries):  # one registry exports one projector
        a.register(ProjectionCollector(second))


def test_metrics_port_comes_from_the_environment() -> None:
    assert Settings.from_env({"ANTQ_METRICS_PORT": "9464"}).metrics_port == 9464
    assert Settings.from_env({}).metrics_port is None
    assert Settings.from_env({"ANTQ_METRICS_PORT": ""}).metrics_port is None


def gateway_samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """(sample name, code label or "") -> value."""
    return {
        (s.name, s.labels.get("code", "")): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name.endswith("_total")
    }


@pytest.mark.timeout(60)
async def test_the_gateway_counts_accepted_duplicate_and_rejected_per_code(
    gateway: Gateway, office: OfficeClient, localities: Localities
) -> None:
    registry = gateway_registry(gateway.counters)
    before = gateway_samples(registry)  # the fixture's readiness probes were answered already
    first = [f.session(), f.pledge(), f.tip()]
    assert all(r.ok for r in await office.submit(first))
    results = await office.submit(
        [
            first[0],  # resent: a duplicate
            f.session(ward="99999"),  # unknown_locality
            f.session(attendance=20_000_000),  # invalid
            f.session(ward=localities.wards_of("24")[0]),  # Bắc Ninh: out of Cao Bằng's jurisdiction
        ]
    )
    assert [r.duplicate if r.ok else r.error and r.error.code for r in results] == [
        True,
        "unknown_locality",
        "invalid",
        "out_of_jurisdiction",
    ]
    after = gateway_samples(registry)
    delta = {key: value - before.get(key, 0) for key, value in after.items()}
    assert {key: value for key, value in delta.items() if value} == {
        ("antq_gateway_requests_total", ""): 2,
        ("antq_gateway_events_accepted_total", ""): 3,
        ("antq_gateway_events_duplicate_total", ""): 1,
        ("antq_gateway_events_rejected_total", "unknown_locality"): 1,
        ("antq_gateway_events_rejected_total", "invalid"): 1,
        ("antq_gateway_events_rejected_total", "out_of_jurisdiction"): 1,
    }


@pytest.mark.timeout(90)
async def test_python_m_services_gateway_serves_metrics_on_antq_metrics_port(
    stack: Stack, offices_file: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ANTQ_NATS_URL": stack.servers.nats_url,
        "ANTQ_DATABASE_URL": stack.database_url,
        "ANTQ_OFFICES": str(offices_file),
        "ANTQ_METRICS_PORT": str(port),
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.gateway", cwd=ROOT, env=env)
    try:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        office = OfficeClient(stack.nc, "ca-cao-bang", timeout=20)
        assert (await office.submit_one(f.session())).ok

        async def counted() -> dict[str, float] | None:
            assert proc.returncode is None, "python -m services.gateway exited"
            try:
                text = await fetch_metrics(port)
            except (urllib.error.URLError, ConnectionError):
                return None
            page = {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples}
            return page if page.get("antq_gateway_events_accepted_total") == 1 else None

        page = await wait_for(counted, timeout=30, what="/metrics to count the accepted event")
        assert page["antq_gateway_events_duplicate_total"] == 0
        assert "process_resident_memory_bytes" in page or sys.platform != "linux"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
    assert code == 0
