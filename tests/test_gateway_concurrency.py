"""Several gateway copies in one queue group, many offices at once, against the real servers.

Races on one entity must have exactly one winner, and every event must be stored exactly once whatever
the interleaving of requests, copies and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest
from faststream.nats import NatsMessage

from events.codec import decode_recorded
from events.intake import IntakeResult
from events.localities import Localities
from events.schema import Recorded
from infra.stream_reader import read_stream
from infra.streams import EVENTS
from services.client import OfficeClient
from services.gateway.app import Gateway, GatewayConfig
from tests import factories as f
from tests.conftest import FixedClock, Stack, gateway_config, wait_until_answering

pytestmark = pytest.mark.servers


class CountingGateway(Gateway):
    """A gateway copy that counts the requests it answered (to prove both copies took part)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.served = 0
        super().__init__(config)

    async def _intake(self, msg: NatsMessage) -> bytes:
        self.served += 1
        return await super()._intake(msg)


@contextlib.asynccontextmanager
async def copies(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities, n: int = 2
) -> AsyncIterator[list[CountingGateway]]:
    config = gateway_config(stack, offices_file, clock, localities)
    gateways = [CountingGateway(config) for _ in range(n)]  # same config: same queue group
    async with contextlib.AsyncExitStack() as running:
        for gw in gateways:
            await running.enter_async_context(gw.app)
        await wait_until_answering(stack.nc, "antq.intake._probe")
        yield gateways


async def stored(stack: Stack) -> list[tuple[int, str, Recorded]]:
    out: list[tuple[int, str, Recorded]] = []
    async for batch in read_stream(stack.js, EVENTS):
        out.extend((m.seq, m.subject, decode_recorded(m.data)) for m in batch)
    return out


def ok_seq(result: IntakeResult) -> int:
    assert result.ok, result
    assert result.seq is not None
    return result.seq


def is_conflict(result: IntakeResult) -> bool:
    return not result.ok and result.error is not None and result.error.code == "conflict"


async def test_two_assessors_racing_on_one_tip_exactly_one_wins(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities
) -> None:
    tips_n, rounds = 20, 5
    async with copies(stack, offices_file, clock, localities) as gateways:
        racers = [OfficeClient(stack.nc, f"office-{i}", timeout=30) for i in range(2)]
        tips = [f.tip(ward="01447" if i % 2 else "09454") for i in range(tips_n)]
        versions = [ok_seq(r) for r in await racers[0].submit(tips)]
        winners: list[list[str]] = [[] for _ in tips]

        for round_no in range(rounds):
            # two offices, one request per assessment, both with the same expected_version
            pairs = [
                [f.assessment(tip, valuable=bool(k), expected_version=v) for k in range(2)]
                for tip, v in zip(tips, versions, strict=True)
            ]
            sends: list[Awaitable[IntakeResult | list[IntakeResult]]]
            if round_no < rounds - 1:
                sends = [racers[k].submit_one(pair[k]) for pair in pairs for k in range(2)]
            else:  # and as two racing batches of all tips at once
                sends = [racers[k].submit([pair[k] for pair in pairs]) for k in range(2)]
            replies = await asyncio.gather(*sends)
            flat: list[IntakeResult] = [
                r for reply in replies for r in (reply if isinstance(reply, list) else [reply])
            ]
            by_event = {r.event_id: r for r in flat}
            for t, pair in enumerate(pairs):
                results = [by_event[doc["event_id"]] for doc in pair]
                won = [r for r in results if r.ok]
                assert len(won) == 1, results
                assert sum(is_conflict(r) for r in results) == 1, results
                assert won[0].duplicate is False and won[0].version == won[0].seq
                assert won[0].seq is not None and won[0].seq > versions[t]
                versions[t] = won[0].seq
                winners[t].append(str(won[0].event_id))

        assert all(gw.served > 0 for gw in gateways), [gw.served for gw in gateways]

    log = await stored(stack)
    assert len(log) == tips_n * (1 + rounds)
    for t, tip in enumerate(tips):
        on_subject = [rec for _, subject, rec in log if subject.endswith(f".tip.{tip['tip_id']}")]
        assert [str(rec.event.event_id) for rec in on_subject] == [tip["event_id"], *winners[t]]


def office_batches(office_no: int, batches: int, size: int) -> list[list[dict[str, Any]]]:
    """Batches an office would send: plain events in two provinces, tips with their assessment, a
    mediation, and a retraction of an event earlier in the same batch."""
    wards = itertools.cycle(["01447", "01456", "09454"])
    out = []
    for _ in range(batches):
        batch: list[dict[str, Any]] = []
        while len(batch) < size:
            ward = next(wards)
            tip = f.tip(ward=ward)
            target = f.pledge(ward=ward, signatures=office_no + 1)
            batch += [
                f.session(ward=ward, attendance=len(batch)),
                tip,
                f.weapons(ward=ward),
                f.assessment(tip),
                target,
                f.mediation(ward=ward),
                f.retraction(target),
                f.session(ward=ward, level="hamlet"),
            ]
        out.append(batch[:size])
    return out


async def test_ten_offices_at_once_every_event_stored_exactly_once(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities
) -> None:
    offices = [f"office-{i}" for i in range(10)]
    plan = {office: office_batches(i, batches=4, size=100) for i, office in enumerate(offices)}
    replies: list[tuple[str, list[dict[str, Any]], list[IntakeResult]]] = []

    async def run_office(office: str) -> None:
        client = OfficeClient(stack.nc, office, timeout=60)
        batches = plan[office]

        async def send(batch: list[dict[str, Any]]) -> None:
            replies.append((office, batch, await client.submit(batch)))

        # batch 1 is sent twice at once (a retry overlapping the original, as after a lost reply)
        await asyncio.gather(*(send(b) for b in [batches[0], batches[1], batches[1], batches[2], batches[3]]))
        await send(batches[0])  # and batches 0 and 3 are retried once everything was answered
        await send(batches[3])

    async with copies(stack, offices_file, clock, localities) as gateways:
        await asyncio.gather(*(run_office(o) for o in offices))
        assert all(gw.served > 0 for gw in gateways), [gw.served for gw in gateways]

    sent: dict[str, str] = {}  # event_id -> office
    seq_of: dict[str, set[int]] = {}
    first_time: Counter[str] = Counter()
    for office, batch, results in replies:
        assert [r.event_id for r in results] == [d["event_id"] for d in batch]
        for doc, result in zip(batch, results, strict=True):
            assert result.ok, (office, result)
            sent[doc["event_id"]] = office
            seq_of.setdefault(doc["event_id"], set()).add(ok_seq(result))
            first_time[doc["event_id"]] += result.duplicate is False
    assert all(len(seqs) == 1 for seqs in seq_of.values())  # every answer for an event names one seq
    assert set(first_time.values()) == {1}  # exactly one answer per event says "stored now"

    log = await stored(stack)
    ids = [str(rec.event.event_id) for _, _, rec in log]
    assert len(ids) == len(set(ids)) == len(sent) == 10 * 4 * 100
    assert set(ids) == set(sent)
    for seq, _, rec in log:
        eid = str(rec.event.event_id)
        assert rec.office == sent[eid]
        assert seq_of[eid] == {seq}
