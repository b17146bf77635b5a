"""Session-wide real servers and per-test isolation (fresh streams, a fresh database cloned from a template)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from hypothesis import HealthCheck, settings
from nats.aio.client import Client
from nats.js import JetStreamContext

from events.localities import Localities
from events.subjects import QUERY_SUBJECT
from infra.streams import StreamLimits
from services.client import OfficeClient
from services.gateway.app import Gateway, GatewayConfig
from services.query.app import QueryConfig, QueryService
from tests.servers import Servers, fresh_database, fresh_streams, prepare_template, start_servers, wait_for

settings.register_profile(
    "ci", max_examples=40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile("dev", max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile("ci" if os.environ.get("CI") else "dev")

OFFICES_TOML = """
# Tests send as fast as they can on a clock that does not move: a rate they never reach (the rate limit's own
# tests, tests/test_gateway_fairness.py, write offices files of their own).
rate = { events_per_second = 1_000_000, burst = 1_000_000 }

[[office]]
id = "ca-tra-linh"
name = "Công an xã Trà Lĩnh"
jurisdiction = ["ward:01447"]

[[office]]
id = "ca-cao-bang"
name = "Công an tỉnh Cao Bằng"
jurisdiction = ["province:04"]

[[office]]
id = "ca-bac-ninh"
name = "Công an tỉnh Bắc Ninh"
jurisdiction = ["province:24"]
""" + "".join(
    f'\n[[office]]\nid = "office-{i}"\nname = "Office {i}"\njurisdiction = ["province:04", "province:24"]\n'
    for i in range(10)
)


SERVER_FIXTURES = frozenset({"servers", "template", "offices_file", "stack", "gateway", "office", "query"})
"""Fixtures that start or use the real servers: a test requesting one (directly or through another fixture) must
be marked ``servers``, so that ``pytest -m "not servers"`` stays a fast run that starts no server."""


def unmarked_server_tests(items: list[pytest.Item]) -> list[str]:
    return [
        item.nodeid
        for item in items
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("servers") is None
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = unmarked_server_tests(items)
    if unmarked:
        raise pytest.UsageError(
            "these tests use the real servers but are not marked `servers` (add `pytestmark = pytest.mark.servers`"
            " to their file): " + ", ".join(unmarked)
        )


@dataclass
class FixedClock:
    """An injectable clock; tests move it instead of waiting."""

    now: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC))

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Stack:
    servers: Servers
    nc: Client
    js: JetStreamContext
    database_url: str
    limits: StreamLimits


@pytest.fixture(scope="session", autouse=True)
def _data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``antq publish`` keeps its outbox under ``$XDG_DATA_HOME/antq`` by default: in the tests (their
    subprocesses inherit it), a temporary one, never the user's."""
    saved = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data-home"))
    yield
    if saved is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = saved


@pytest.fixture(scope="session")
def localities() -> Localities:
    return Localities.load()


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    srv = start_servers()
    try:
        yield srv
    finally:
        if srv.nats:
            srv.nats.stop()
        if srv.postgres:
            srv.postgres.stop()
        # a run leaves gigabytes of stream and database files: removed by a detached process, so that a slow
        # disk never holds the last test's teardown past its timeout
        subprocess.Popen(
            ["rm", "-rf", str(srv.workdir)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


@pytest.fixture(scope="session")
async def template(servers: Servers) -> Servers:
    await prepare_template(servers)
    return servers


@pytest.fixture(scope="session")
def offices_file(servers: Servers) -> Path:
    path = servers.workdir / "offices.toml"
    path.write_text(OFFICES_TOML, encoding="utf-8")
    return path


@pytest.fixture
async def stack(template: Servers) -> AsyncIterator[Stack]:
    nc = await nats.connect(template.nats_url)
    js = nc.jetstream()
    limits = StreamLimits(dedup_window_s=3600.0)
    await fresh_streams(js, limits)
    url = await fresh_database(template)
    yield Stack(template, nc, js, url, limits)
    await nc.drain()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


def gateway_config(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities, **overrides: Any
) -> GatewayConfig:
    """The gateway of a test's stack: its servers, offices, clock and stream limits."""
    return GatewayConfig(
        nats_url=stack.servers.nats_url,
        database_url=stack.database_url,
        offices_path=offices_file,
        limits=stack.limits,
        clock=clock,
        localities=localities,
        **overrides,
    )


@pytest.fixture
async def gateway(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities
) -> AsyncIterator[Gateway]:
    gw = Gateway(gateway_config(stack, offices_file, clock, localities))
    async with gw.app:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        yield gw


async def wait_until_answering(nc: Client, subject: str) -> None:
    """A subscription is live once the server routes a request to it (its SUB may still be in flight)."""

    async def probe() -> bool:
        try:
            await nc.request(subject, b"{}", timeout=1.0)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return False
        return True

    await wait_for(probe, what=f"a responder on {subject}")


@pytest.fixture
def office(stack: Stack, gateway: Gateway) -> OfficeClient:
    return OfficeClient(stack.nc, "ca-cao-bang", timeout=20)


@pytest.fixture
async def query(stack: Stack, localities: Localities) -> AsyncIterator[QueryService]:
    """The query service on the test stack, answering on antq.query.stats."""
    service = QueryService(
        QueryConfig(nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities)
    )
    async with service.app:
        await wait_until_answering(stack.nc, QUERY_SUBJECT)
        yield service
