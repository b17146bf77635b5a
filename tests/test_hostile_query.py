"""Hostile requests at the query service (issue 8, defects 1, 4, 8 and duplicate keys), on real servers.

- A request whose reply subject is not an inbox, or that has none, is not processed: nothing is published to
  that subject, nothing is stored in any stream, it is counted (``dropped_reply_subject``).
- Every request is answered from its raw bytes: with a ``content-type: application/json`` header, with a body
  nested 1,000 deep, with a key given twice.
- Waiters are bounded per client (its reply inbox prefix): one client filling its share is answered ``busy``
  while another still waits and gets its answer; ``min_seq`` is at most 2^63 - 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
import nats
import pytest
from nats.aio.client import Client

from events.jsonscan import MAX_DEPTH
from events.localities import Localities
from events.subjects import QUERY_SUBJECT
from projections.metrics import FOLD_VERSION
from services.query.app import QueryConfig, QueryService
from services.query.request import MAX_BODY_BYTES
from tests.conftest import Stack
from tests.servers import settle, wait_for
from tests.test_hostile_intake import JSON_HEADERS, NOT_INBOXES, WILDCARD, stream_counts
from tests.test_query_waiting import query_service

pytestmark = pytest.mark.servers

PLAIN = {"ward": "01447", "year": 2018}
FAR = 1_000_000_000


async def ask(nc: Client, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else msgspec.json.encode(body)
    reply = await nc.request(QUERY_SUBJECT, data, timeout=20, headers=headers)
    result: dict[str, Any] = msgspec.json.decode(reply.data)
    return result


@asynccontextmanager
async def client(stack: Stack) -> AsyncIterator[Client]:
    """Another connection: another default inbox prefix (``_INBOX.<random>``), so another client."""
    nc = await nats.connect(stack.servers.nats_url)
    try:
        yield nc
    finally:
        await nc.close()


# --- 1. reply subjects ------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("reply", NOT_INBOXES)
async def test_a_query_whose_reply_subject_is_not_an_inbox_is_dropped_unprocessed(
    stack: Stack, query: QueryService, reply: str
) -> None:
    async with client(stack) as listener:
        received: list[bytes] = []

        async def keep(msg: Any) -> None:
            received.append(msg.data)

        if not any(w in reply for w in WILDCARD) and reply.strip(".") == reply and ".." not in reply:
            await listener.subscribe(reply, cb=keep)
            await settle(listener)  # listening before the request is sent
        before = await stream_counts(stack)
        dropped_before = query.dropped_reply_subject
        await stack.nc.publish(QUERY_SUBJECT, msgspec.json.encode(PLAIN), reply=reply)
        await stack.nc.publish(QUERY_SUBJECT, b"{nope", reply=reply)  # answered bad_request today
        await stack.nc.flush()

        async def both_dropped() -> bool:
            return query.dropped_reply_subject == dropped_before + 2

        await wait_for(both_dropped, what="two queries dropped")
        assert "metrics" in await ask(stack.nc, PLAIN)  # a proper request is still answered
        await listener.flush()
        assert received == []
        assert await stream_counts(stack) == before
        assert query.dropped.counts.get("not_inbox") == query.dropped_reply_subject


@pytest.mark.timeout(60)
async def test_a_query_without_a_reply_subject_is_counted_and_not_processed(
    stack: Stack, query: QueryService
) -> None:
    await stack.nc.publish(QUERY_SUBJECT, msgspec.json.encode(PLAIN))
    await stack.nc.flush()

    async def dropped() -> bool:
        return query.dropped.counts.get("no_reply") == 1

    await wait_for(dropped, what="a publish dropped")
    assert "metrics" in await ask(stack.nc, PLAIN)


# --- 4. every request is answered -------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("headers", [None, JSON_HEADERS], ids=["no-header", "json-header"])
@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b"{nope", None),
        (b"", None),
        (b"\xff", None),
        (b"[" * 1000 + b"]" * 1000, "$"),
        (b'{"ward":' * 1000 + b'"01447"' + b"}" * 1000, "$"),
        (b'{"ward": "01447", "year": 2018, "x": ' + b"[" * 65 + b"]" * 65 + b"}", "$"),
        (b"[" * 10_000, "$"),
        (b"[" * 100_000, "$"),
    ],
    ids=[
        "not-json",
        "empty",
        "not-utf8",
        "arrays-1000",
        "objects-1000",
        "65-inside",
        "unclosed",
        "too-large",
    ],
)
async def test_a_bad_body_is_answered_bad_request_with_or_without_a_json_content_type(
    stack: Stack, query: QueryService, body: bytes, path: str | None, headers: dict[str, str] | None
) -> None:
    reply = await ask(stack.nc, body, headers)
    assert (reply["error"]["code"], reply["error"]["path"]) == ("bad_request", path), reply
    if path == "$":
        limit = MAX_BODY_BYTES if len(body) > MAX_BODY_BYTES else MAX_DEPTH
        assert f"the limit is {limit}" in reply["error"]["message"]
    assert "metrics" in await ask(stack.nc, PLAIN, JSON_HEADERS)  # a good body with the header: answered


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"ward": "01447", "year": 2018, "ward": "01456"}', "$.ward"),
        (b'{"year": 2018, "ward": "01447", "year": 2019}', "$.year"),
        (b'{"ward": "01447", "year": 2018, "min_seq": 5, "\\u006din_seq": 0}', "$.min_seq"),
    ],
)
async def test_a_key_given_twice_is_a_bad_request(
    stack: Stack, query: QueryService, body: bytes, path: str
) -> None:
    reply = await ask(stack.nc, body)
    assert (reply["error"]["code"], reply["error"]["path"]) == ("bad_request", path), reply
    assert "twice" in reply["error"]["message"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("min_seq", [2**63, 2**64, 10**30])
async def test_min_seq_above_bigint_is_a_bad_request(stack: Stack, query: QueryService, min_seq: int) -> None:
    reply = await ask(stack.nc, {**PLAIN, "min_seq": min_seq, "timeout_ms": 100})
    assert (reply["error"]["code"], reply["error"]["path"]) == ("bad_request", "$.min_seq"), reply
    top = await ask(stack.nc, {**PLAIN, "min_seq": 2**63 - 1})  # the bound itself is a valid request
    assert (top["error"]["code"], top["error"]["path"]) == ("timeout", "$.min_seq"), top


# --- 8. waiters per client --------------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_one_client_filling_its_waiters_leaves_room_for_another(
    stack: Stack, localities: Localities
) -> None:
    per_client = QueryConfig.max_waiters_per_client
    assert per_client == 100
    waits = {**PLAIN, "min_seq": FAR, "timeout_ms": 60_000}
    async with client(stack) as a, client(stack) as b:
        async with query_service(stack, localities) as service:
            mine = [asyncio.create_task(ask(a, waits)) for _ in range(per_client)]

            async def all_waiting() -> bool:
                return service.waiting == per_client

            await wait_for(all_waiting, what=f"{per_client} waiters of client A")
            busy = await ask(a, waits)
            assert (busy["error"]["code"], busy["error"]["path"]) == ("busy", "$.min_seq"), busy
            assert "this client" in busy["error"]["message"] and "retry" in busy["error"]["message"]
            # client B still waits, and gets its answer once the projection is there
            theirs = asyncio.create_task(ask(b, {**PLAIN, "min_seq": 1, "timeout_ms": 30_000}))

            async def b_waiting() -> bool:
                return service.waiting == per_client + 1

            await wait_for(b_waiting, what="client B waiting")
            conn = await asyncpg.connect(stack.database_url)
            try:  # the projection reaches seq 1 (no projector runs: its checkpoint, written directly)
                await conn.execute(
                    "INSERT INTO projection_checkpoint (name, copy, seq, fold_version)"
                    " VALUES ('stats', 1, 1, $1)",
                    FOLD_VERSION,
                )
            finally:
                await conn.close()
            answer = await theirs
            assert answer["as_of_seq"] == 1 and "metrics" in answer, answer
            assert not any(task.done() for task in mine)  # A's waiters still wait for their far seq
            plain = await ask(a, PLAIN)  # and A is still served without min_seq
            assert "metrics" in plain
        # the service stopped: A's waiters are answered, not left to their NATS timeout
        for reply in await asyncio.gather(*mine):
            assert reply["error"]["code"] == "unavailable", reply


@pytest.mark.timeout(60)
async def test_the_per_client_bound_is_configurable(stack: Stack, localities: Localities) -> None:
    waits = {**PLAIN, "min_seq": FAR, "timeout_ms": 2_000}
    async with (
        client(stack) as a,
        client(stack) as b,
        query_service(stack, localities, max_waiters_per_client=2) as service,
    ):
        mine = [asyncio.create_task(ask(a, waits)) for _ in range(2)]

        async def two_waiting() -> bool:
            return service.waiting == 2

        await wait_for(two_waiting, what="two waiters of client A")
        assert (await ask(a, waits))["error"]["code"] == "busy"
        theirs = await ask(b, {**waits, "timeout_ms": 100})
        assert theirs["error"]["code"] == "timeout", theirs  # B waited (and timed out), not busy
        for reply in await asyncio.gather(*mine):
            assert reply["error"]["code"] == "timeout"
        again = await ask(a, {**waits, "timeout_ms": 100})
        assert again["error"]["code"] == "timeout"  # A's share is free again


# --- 5. the pre-2025 request shapes (issue 9, part 4) ----------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("request_", "code", "path"),
    [
        ({"scheme": "gso-pre2025", "district": "46", "year": 2018}, "bad_request", "$.district"),
        ({"scheme": "gso-pre2025", "district": "0466", "year": 2018}, "bad_request", "$.district"),
        ({"scheme": "gso-pre2025", "commune": "1471", "year": 2018}, "bad_request", "$.commune"),
        ({"scheme": "gso-pre2025", "province": "4", "year": 2018}, "bad_request", "$.province"),
        (
            {"scheme": "gso-pre2025", "district": "046", "ward": "01447", "year": 2018},
            "bad_request",
            "$.ward",
        ),
        ({"scheme": "gso-pre2025", "wards": ["01447"], "year": 2018}, "bad_request", "$.wards"),
        ({"scheme": "gso-pre2025", "district": "046", "commune": "01471", "year": 2018}, "bad_request", "$"),
        ({"scheme": "gso-pre2025", "year": 2018}, "bad_request", "$"),
        ({"district": "046", "year": 2018}, "bad_request", "$.district"),
        ({"commune": "01471", "year": 2018}, "bad_request", "$.commune"),
        ({"ward": "01447", "district": "046", "year": 2018}, "bad_request", "$.district"),
        ({"scheme": "gso-2024", "ward": "01447", "year": 2018}, "bad_request", "$.scheme"),
        (
            {"scheme": "gso-pre2025", "district": "046", "year": 2018, "hamlet": "x"},
            "bad_request",
            "$.hamlet",
        ),
        ({"scheme": "gso-pre2025", "district": "999", "year": 2018}, "unknown_locality", "$.district"),
        ({"scheme": "gso-pre2025", "commune": "99999", "year": 2018}, "unknown_locality", "$.commune"),
        ({"scheme": "gso-pre2025", "province": "99", "year": 2018}, "unknown_locality", "$.province"),
    ],
)
async def test_a_bad_pre2025_request_is_refused_with_its_path(
    stack: Stack, query: QueryService, request_: dict[str, object], code: str, path: str
) -> None:
    reply = await ask(stack.nc, msgspec.json.encode(request_))
    assert (reply["error"]["code"], reply["error"]["path"]) == (code, path), reply
    good = {"scheme": "gso-pre2025", "district": "046", "year": 2018}
    assert (await ask(stack.nc, msgspec.json.encode(good)))["district"] == "046"
