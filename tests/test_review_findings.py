"""Findings of the review of issue 8 (hostile input, secure by default): each test reproduces one defect."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from events.codec import decode_event
from events.errors import EventError
from events.intake import IntakeResult
from events.localities import Localities
from events.subjects import QUERY_SUBJECT, query_subject
from infra.stream_reader import read_stream
from infra.streams import UPDATES
from infra.update_signing import MSG_ID, SIGNATURE, verify_update
from services.client import OfficeClient
from services.gateway.app import Gateway
from services.query.app import QueryService
from tests import factories as f
from tests.conftest import FixedClock, Stack, gateway_config, wait_until_answering
from tests.servers import wait_for
from tests.test_gateway_fairness import rated_gateway, rejected_records
from tests.test_hostile_query import FAR, PLAIN, ask, client
from tests.test_query_waiting import query_service
from tests.test_update_signatures import (
    EXAMPLE_MSG_ID,
    EXAMPLE_PAYLOAD,
    EXAMPLE_PUBLIC_KEY,
    EXAMPLE_SIGNATURE,
)

__all__ = ["rated_gateway"]  # a fixture of tests/test_gateway_fairness.py


# --- defect 8: the waiter bound per client is dodged by naming other reply prefixes ----------------------


async def flood_then_ask(
    stack: Stack, localities: Localities, subject: str, waits: int, per_prefix: int, expected: int
) -> dict[str, Any]:
    """One connection sends ``waits`` min_seq waits on ``subject``, naming a new reply prefix every
    ``per_prefix`` (nobody listens there); once ``expected`` wait, another client asks: its answer."""
    body = msgspec.json.encode({**PLAIN, "min_seq": FAR, "timeout_ms": 60_000})
    async with (
        client(stack) as attacker,
        client(stack) as victim,
        query_service(stack, localities) as service,
    ):
        for i in range(waits):
            await attacker.publish(subject, body, reply=f"_INBOX.dodge{i // per_prefix}.{i}")
        await attacker.flush()

        async def settled() -> bool:
            return service.waiting == expected

        await wait_for(settled, what=f"{expected} waiters of one connection")
        return await ask(victim, {**PLAIN, "min_seq": FAR, "timeout_ms": 100})


@pytest.mark.xfail(
    strict=True,
    reason="a client is whatever inbox prefix its request names: reply subjects are not authenticated (not even "
    "on the secure stack, where nats-server checks publish subjects only), so one connection naming 10 "
    "prefixes takes all 1,000 waiters and every other client is answered busy",
)
@pytest.mark.servers
@pytest.mark.timeout(120)
async def test_one_connection_naming_many_inbox_prefixes_cannot_make_others_busy(
    stack: Stack, localities: Localities
) -> None:
    theirs = await flood_then_ask(stack, localities, QUERY_SUBJECT, waits=1000, per_prefix=100, expected=1000)
    assert theirs["error"]["code"] == "timeout", theirs  # the victim waits, it is not turned away


@pytest.mark.servers
@pytest.mark.timeout(120)
async def test_on_an_identity_s_own_query_subject_many_inbox_prefixes_still_count_as_one_client(
    stack: Stack, localities: Localities
) -> None:
    """The mend on the secure stack: a query on ``antq.query.stats.<public key>`` is counted by that key,
    whatever reply prefixes it names (the server lets each identity publish only on its own key's subject:
    ``tests/test_secure_stack.py::test_a_reader_asks_only_on_its_own_query_subject``)."""
    # one identity, 10 made-up prefixes: held to the identity's share, 100, not 300
    theirs = await flood_then_ask(
        stack, localities, query_subject("UATTACKER"), waits=300, per_prefix=30, expected=100
    )
    assert theirs["error"]["code"] == "timeout", theirs  # the victim waits, it is not turned away


# --- 9 / rate limit: whole-body refusals are neither rate-limited nor bounded in ANTQ_REJECTED -------------


@pytest.mark.servers
@pytest.mark.timeout(120)
async def test_malformed_bodies_beyond_the_rate_are_not_kept_in_rejected(
    stack: Stack, rated_gateway: Gateway
) -> None:
    """An office at 10 events/s, burst 50, sends 80 malformed bodies at once (the clock does not move): a body
    refused whole costs a token like an event, so beyond its burst it is answered ``unavailable`` with
    ``retry_after_ms`` and not written to ANTQ_REJECTED. Before, every one was kept: an office could fill the
    stream (4 GiB, discard new, shared by every office) with body-less records at network speed."""
    flooder = OfficeClient(stack.nc, "office-1", timeout=20)
    replies = [await flooder.send_raw(b'[{"event_id": 1},') for _ in range(80)]
    codes = [r.error.code for r in replies if isinstance(r, IntakeResult) and r.error is not None]
    assert codes == ["malformed"] * 50 + ["unavailable"] * 30, codes
    assert all(isinstance(r, IntakeResult) and r.error and r.error.retry_after_ms for r in replies[50:])
    kept = [rec for rec in await rejected_records(stack) if rec.office == "office-1"]
    assert len(kept) == 50
    quiet = await OfficeClient(stack.nc, "office-2", timeout=20).send_raw(b"not json")
    assert isinstance(quiet, IntakeResult) and quiet.error and quiet.error.code == "malformed"


# --- secure by default / PostgreSQL: a database that does not answer must not hang the gateway ---------------


@pytest.mark.servers
@pytest.mark.timeout(120)
async def test_a_database_that_does_not_answer_is_unavailable_not_a_hang(
    stack: Stack, office: OfficeClient
) -> None:
    """PostgreSQL accepts connections but does not answer (a lock held by a migration or a VACUUM FULL, a
    stalled disk): the gateway's index lookup waited forever, the office got no answer at all, and the
    request held one of the office's two running slots for good. It must be answered ``unavailable``."""
    admin = await asyncpg.connect(stack.database_url)
    try:
        async with admin.transaction():
            await admin.execute("LOCK TABLE event_index IN ACCESS EXCLUSIVE MODE")
            doc = f.session()
            reply = await OfficeClient(stack.nc, "ca-cao-bang", timeout=60).submit_one(doc)
            assert not reply.ok and reply.error is not None and reply.error.code == "unavailable", reply
    finally:
        await admin.close()
    again = await office.submit_one(doc)
    assert again.ok, again


@pytest.mark.servers
@pytest.mark.timeout(120)
async def test_a_database_that_does_not_answer_is_unavailable_at_the_query_service(
    stack: Stack, query: QueryService
) -> None:
    admin = await asyncpg.connect(stack.database_url)
    try:
        async with admin.transaction():
            await admin.execute("LOCK TABLE projection_active IN ACCESS EXCLUSIVE MODE")
            reply = msgspec.json.decode(
                (await stack.nc.request(QUERY_SUBJECT, msgspec.json.encode(PLAIN), timeout=60)).data
            )
            assert reply["error"]["code"] == "unavailable", reply
    finally:
        await admin.close()
    assert "metrics" in await ask(stack.nc, PLAIN)


# --- defect 2 on the open stack: one forged record of an unknown type stops every gateway start -------------


@pytest.mark.servers
@pytest.mark.timeout(60)
async def test_a_forged_record_of_an_unknown_type_does_not_stop_the_gateway_start(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities
) -> None:
    await stack.js.publish("antq.events.04.01447.x", b'{"office": "x", "event": {"type": "no.such"}}')
    gw = Gateway(gateway_config(stack, offices_file, clock, localities))
    async with gw.app:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        reply = await OfficeClient(stack.nc, "ca-cao-bang", timeout=20).submit_one(f.session())
        assert reply.ok, reply
        assert gw.catch_up_counters.unknown_type == 1


# --- defect 6 on the open stack: forgeries evict the real updates of a subject --------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="ANTQ_UPDATES keeps the latest message of each subject (discard old): on the open stack one "
    "forged message on a ward's subject evicts the projection's signed update, which a subscriber can then "
    "never read, though it could tell the forgeries apart",
)
@pytest.mark.servers
@pytest.mark.timeout(60)
async def test_forged_updates_cannot_evict_the_projection_s_signed_update(stack: Stack) -> None:
    subject = "antq.updates.stats.04.01447.2018"
    await stack.js.publish(
        subject, EXAMPLE_PAYLOAD, headers={SIGNATURE: EXAMPLE_SIGNATURE, MSG_ID: EXAMPLE_MSG_ID}
    )
    for i in range(stack.limits.updates_per_subject):
        await stack.js.publish(
            subject, EXAMPLE_PAYLOAD.replace(b'"sessions_held":6', b'"sessions_held":%d' % i)
        )
    signed = []
    async for batch in read_stream(stack.js, UPDATES):
        signed += [
            m for m in batch if verify_update(m.data, m.headers, EXAMPLE_PUBLIC_KEY, subject=m.subject)
        ]
    assert len(signed) == 1


# --- defect 9: invisible format characters other than the listed zero-width ones ----------------------------


@pytest.mark.timeout(60)  # the last test of a run also stops the session's servers
@pytest.mark.parametrize(
    "char",
    ["\u00ad", "\u2062", "\u206b", "\u180e", "\U000e0001", "\U000e0041", "\U0001d173"],
    ids=[
        "soft-hyphen",
        "invisible-times",
        "activate-symmetric-swapping",
        "mongolian-vs",
        "tag",
        "tag-A",
        "music",
    ],
)
def test_invisible_format_characters_are_refused_in_free_text(char: str) -> None:
    """Tag characters (U+E0000-U+E007F) carry text nobody sees ("ASCII smuggling"); the soft hyphen, invisible
    operators and the other format characters (Unicode category Cf) hide text as the zero-width ones do."""
    doc = {**f.session(), "note": f"họp dân{char}ấp 3"}
    with pytest.raises(EventError, match="U\\+") as caught:
        decode_event(msgspec.json.encode(doc), today=dt.date(2026, 11, 22))
    assert caught.value.path == "$.note"
