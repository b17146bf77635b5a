"""A flood of refusals while ANTQ_REJECTED is away (an office sending garbage during an election): the records
waiting in the gateway stay bounded, the overflow is counted lost, and what waits is written in order, once,
when the stream is back. No servers: a publisher that fails until told otherwise."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from infra.js_publisher import JetStreamPublisher, Outcome
from services.gateway.rejected_later import LateCounts, PendingRecord, PendingTable, RejectedLater
from tests.servers import wait_for


class StreamAway:
    """A JetStream publisher whose stream has no leader until ``back`` is set."""

    def __init__(self) -> None:
        self.back = False
        self.stored: list[bytes] = []
        self.tries = 0

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> asyncio.Future[Outcome]:
        self.tries += 1
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if self.back:
            self.stored.append(data)
            future.set_result(Outcome(seq=len(self.stored)))
        else:
            future.set_result(Outcome(failure="no responders: no stream leader"))
        return future

    async def settle(self, futures: list[asyncio.Future[Outcome]]) -> list[Outcome]:
        return [await f for f in futures]


def record(n: int) -> PendingRecord:
    return PendingRecord("antq.rejected.flooder", str(n).encode(), {"Nats-Msg-Id": f"rejected:{n}"})


@pytest.mark.timeout(30)
async def test_a_flood_of_refusals_while_the_stream_is_away_stays_bounded_and_is_kept_in_order() -> None:
    away = StreamAway()
    counts = LateCounts()
    later = RejectedLater(
        cast(JetStreamPublisher, away), counts, max_records=100, first_delay_s=0.01, max_delay_s=0.02
    )
    for n in range(150):
        later.add(record(n))
    assert later.pending == 100 and counts.lost == 50  # the overflow is dropped and counted, never queued

    async def retried() -> bool | None:
        return away.tries >= 3 or None

    await wait_for(retried, timeout=10, what="retries")
    assert away.stored == [] and later.pending == 100  # still refused: nothing lost, nothing written
    away.back = True

    async def drained() -> bool | None:
        return later.pending == 0 or None

    await wait_for(drained, timeout=10, what="the waiting records to be written")
    assert away.stored == [str(n).encode() for n in range(100)]  # in order, each once
    assert counts.kept == 100 and counts.lost == 50
    await later.stop()


@pytest.mark.timeout(30)
async def test_records_still_waiting_at_a_stop_are_counted_lost() -> None:
    away = StreamAway()
    counts = LateCounts()
    later = RejectedLater(cast(JetStreamPublisher, away), counts, first_delay_s=0.01, max_delay_s=0.02)
    later.add(record(1))
    await later.stop(drain_timeout=0.1)
    assert later.pending == 0 and counts.lost == 1 and counts.kept == 0


class _DatabaseAway:
    """A table whose PostgreSQL refuses every statement until ``back`` is set; then it keeps what it is given."""

    def __init__(self) -> None:
        self.back = False
        self.rows: list[PendingRecord] = []
        self.owner = "this-copy"

    async def put(self, record: PendingRecord, max_records: int, max_bytes: int) -> bool:
        if not self.back:
            raise OSError("connection refused")
        self.rows.append(record)
        return True

    async def waiting(self) -> tuple[int, int]:
        raise OSError("connection refused")

    async def offices(self) -> list[str]:
        if not self.back:
            raise OSError("connection refused")
        return []


@pytest.mark.timeout(30)
async def test_with_postgresql_away_too_a_record_waits_in_memory_and_is_counted() -> None:
    away = StreamAway()
    counts = LateCounts()
    later = RejectedLater(cast(JetStreamPublisher, away), counts, first_delay_s=0.01, max_delay_s=0.02)
    table = _DatabaseAway()
    later.attach(cast(PendingTable, table))
    await later.keep(record(1))
    assert later.pending == 1 and counts.in_memory == 1 and counts.lost == 0
    away.back = True

    async def kept() -> bool | None:
        return counts.kept == 1 or None

    await wait_for(kept, timeout=10, what="the record waiting in memory to be written")
    assert away.stored == [b"1"] and later.pending == 0
    await later.stop(drain_timeout=0.1)


@pytest.mark.timeout(30)
async def test_at_a_stop_records_waiting_in_memory_move_to_the_table_once_postgresql_is_back() -> None:
    away = StreamAway()
    counts = LateCounts()
    later = RejectedLater(cast(JetStreamPublisher, away), counts, first_delay_s=0.01, max_delay_s=0.02)
    table = _DatabaseAway()
    later.attach(cast(PendingTable, table))
    await later.keep(record(1))
    await later.keep(record(2))
    table.back = True
    await later.stop(drain_timeout=0.1)
    assert [r.data for r in table.rows] == [b"1", b"2"] and counts.lost == 0 and counts.in_memory == 2
