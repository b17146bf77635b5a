"""Read-your-writes waits (``min_seq`` + ``timeout_ms``) hold no worker: other queries are answered meanwhile,
waiters are released when the projection gets there or time out, their number is capped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest

from events.localities import Localities
from events.subjects import QUERY_SUBJECT
from projections.service import Projector
from services.client import OfficeClient
from services.query.app import QueryConfig, QueryService
from tests import factories as f
from tests.conftest import Stack, wait_until_answering
from tests.servers import wait_for

pytestmark = pytest.mark.servers

FAR = 1_000_000_000  # a seq the projection will not reach during a test
WORKERS = QueryConfig.workers


async def ask(stack: Stack, body: Any) -> dict[str, Any]:
    reply = await stack.nc.request(QUERY_SUBJECT, msgspec.json.encode(body), timeout=40)
    result: dict[str, Any] = msgspec.json.decode(reply.data)
    return result


def start_waiters(stack: Stack, n: int, timeout_ms: int) -> list[asyncio.Task[dict[str, Any]]]:
    body = {"ward": "01447", "year": 2018, "min_seq": FAR, "timeout_ms": timeout_ms}
    return [asyncio.create_task(ask(stack, body)) for _ in range(n)]


async def until_waiting(service: QueryService, n: int) -> None:
    async def probe() -> bool:
        return service.waiting == n

    await wait_for(probe, what=f"{n} requests waiting for their min_seq")


@asynccontextmanager
async def query_service(
    stack: Stack, localities: Localities, **overrides: Any
) -> AsyncIterator[QueryService]:
    service = QueryService(
        QueryConfig(
            nats_url=stack.servers.nats_url,
            database_url=stack.database_url,
            localities=localities,
            **overrides,
        )
    )
    async with service.app:
        await wait_until_answering(stack.nc, QUERY_SUBJECT)
        yield service


@pytest.mark.timeout(60)
async def test_waiters_beyond_the_worker_count_do_not_hold_up_other_queries_and_then_time_out(
    stack: Stack, query: QueryService
) -> None:
    waiters = start_waiters(stack, WORKERS + 2, timeout_ms=5000)
    await until_waiting(query, WORKERS + 2)
    plain = await ask(stack, {"ward": "01447", "year": 2018})
    assert plain["as_of_seq"] == 0 and "metrics" in plain, plain
    # answered while every waiter still waits: waiting holds no worker (it used to: 8 waits held everyone 5 s)
    assert not any(w.done() for w in waiters)
    province = await ask(stack, {"province": "04", "year": 2018, "min_seq": 0, "timeout_ms": 5000})
    assert province["as_of_seq"] == 0  # already there: answered at once, never counted as a waiter
    assert not any(w.done() for w in waiters)
    for reply in await asyncio.gather(*waiters):
        assert (reply["error"]["code"], reply["error"]["path"]) == ("timeout", "$.min_seq"), reply
        assert f"not yet {FAR}" in reply["error"]["message"]
    assert query.waiting == 0


@pytest.mark.timeout(90)
async def test_a_waiter_is_released_when_the_projection_reaches_its_min_seq_and_stopping_answers_the_rest(
    stack: Stack, office: OfficeClient, localities: Localities
) -> None:
    results = await office.submit(
        [f.session(ward="01447", attendance=10), f.pledge(ward="01447", signatures=4)]
    )
    last = max(r.seq or 0 for r in results)
    async with query_service(stack, localities) as service:
        mine = asyncio.create_task(
            ask(stack, {"ward": "01447", "year": 2018, "min_seq": last, "timeout_ms": 30_000})
        )
        await until_waiting(service, 1)  # nothing folds yet: no projector runs
        others = start_waiters(stack, WORKERS, timeout_ms=30_000)
        await until_waiting(service, WORKERS + 1)
        plain = await ask(stack, {"ward": "01447", "year": 2018})
        assert plain["as_of_seq"] == 0
        assert not mine.done() and not any(w.done() for w in others)
        projector = Projector(
            nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
        )
        await projector.start()
        try:
            reply = await mine
        finally:
            await projector.stop()
        assert reply["as_of_seq"] >= last, reply
        assert (reply["metrics"]["session_attendance"], reply["metrics"]["pledge_signatures"]) == (10, 4)
        assert not any(w.done() for w in others)  # their seq is far off: they keep waiting
        assert service.waiting == WORKERS
    # the service stopped: the requests still waiting are answered, not left to their NATS timeout
    for other in await asyncio.gather(*others):
        assert (other["error"]["code"], other["error"]["path"]) == ("unavailable", None), other
        assert "retry" in other["error"]["message"]


@pytest.mark.timeout(60)
async def test_waiters_beyond_the_cap_are_answered_busy(stack: Stack, localities: Localities) -> None:
    async with query_service(stack, localities, max_waiters=2) as service:
        waiters = start_waiters(stack, 2, timeout_ms=5000)
        await until_waiting(service, 2)
        busy = await ask(stack, {"ward": "01447", "year": 2018, "min_seq": FAR, "timeout_ms": 5000})
        assert (busy["error"]["code"], busy["error"]["path"]) == ("busy", "$.min_seq"), busy
        assert "retry" in busy["error"]["message"]
        assert "metrics" in await ask(stack, {"ward": "01447", "year": 2018})  # a plain query is still served
        assert not any(w.done() for w in waiters)
        for reply in await asyncio.gather(*waiters):
            assert reply["error"]["code"] == "timeout"
        assert service.waiting == 0
        again = await ask(stack, {"ward": "01447", "year": 2018, "min_seq": FAR, "timeout_ms": 100})
        assert again["error"]["code"] == "timeout"  # room again once the waiters are gone
