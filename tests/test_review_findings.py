"""Findings of the review of issue 8 (hostile input, secure by default): each test reproduces one defect."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from events.localities import Localities
from events.subjects import QUERY_SUBJECT
from tests.conftest import Stack
from tests.servers import wait_for
from tests.test_hostile_query import FAR, PLAIN, ask, client, query_service

pytestmark = pytest.mark.servers


# --- defect 8: the waiter bound per client is dodged by naming other reply prefixes ----------------------


@pytest.mark.xfail(
    strict=True,
    reason="a client is whatever inbox prefix its request names: reply subjects are not authenticated (not even "
    "on the secure stack, where nats-server checks publish subjects only), so one connection naming 10 "
    "prefixes takes all 1,000 waiters and every other client is answered busy",
)
@pytest.mark.timeout(120)
async def test_one_connection_naming_many_inbox_prefixes_cannot_make_others_busy(
    stack: Stack, localities: Localities
) -> None:
    waits: dict[str, Any] = {**PLAIN, "min_seq": FAR, "timeout_ms": 60_000}
    body = msgspec.json.encode(waits)
    async with client(stack) as attacker, client(stack) as victim:
        async with query_service(stack, localities) as service:
            for i in range(1000):  # one connection; nobody listens on these inboxes
                await attacker.publish(QUERY_SUBJECT, body, reply=f"_INBOX.dodge{i // 100}.{i}")
            await attacker.flush()

            async def full() -> bool:
                return service.waiting == 1000

            await wait_for(full, what="1,000 waiters of one connection")
            theirs = await ask(victim, {**PLAIN, "min_seq": FAR, "timeout_ms": 100})
            assert theirs["error"]["code"] == "timeout", theirs  # the victim waits, it is not turned away
