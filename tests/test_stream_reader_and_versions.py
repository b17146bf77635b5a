"""A read of the log never ends early in silence; a runner never folds into a copy built by another fold."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from events.localities import Localities
from infra.stream_reader import StreamReadError, read_stream
from projections.runner import FoldVersionMismatch, RunnerConfig, StatsRunner
from tests.conftest import Stack

pytestmark = pytest.mark.servers


async def test_a_read_whose_consumer_vanishes_goes_on_with_a_new_one(stack: Stack) -> None:
    await stack.js.add_stream(name="READER_T", subjects=["reader.>"])
    for i in range(50):
        await stack.js.publish(f"reader.{i % 3}", b"x")
    reader = read_stream(stack.js, "READER_T", batch=10, timeout=3.0)
    first = await anext(reader)
    assert [m.seq for m in first] == list(range(1, 11))
    for name in await stack.js.consumers_info("READER_T"):
        await stack.js.delete_consumer("READER_T", name.name)
    rest = [m.seq async for batch in reader for m in batch]
    assert rest == list(range(11, 51))  # from where it was, nothing twice, nothing skipped
    await stack.js.delete_stream("READER_T")


async def test_a_read_resumed_on_a_stream_that_lost_its_messages_raises(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new consumer that finds nothing where messages were pending: the read raises, never ends short."""
    await stack.js.add_stream(name="READER_V", subjects=["readv.>"])
    for _ in range(300):  # far more than the requests in flight can hold (3 x 10): most are still unread
        await stack.js.publish("readv.x", b"x")
    reader = read_stream(stack.js, "READER_V", batch=10, timeout=3.0)
    assert [m.seq for m in await anext(reader)] == list(range(1, 11))
    await stack.js.purge_stream("READER_V")  # the rest vanishes (ANTQ_EVENTS denies purges; this one may)
    for name in await stack.js.consumers_info("READER_V"):
        await stack.js.delete_consumer("READER_V", name.name)
    with pytest.raises(StreamReadError, match=r"nothing left to read from seq \d+, short of 300"):
        async for _ in reader:
            pass
    await stack.js.delete_stream("READER_V")


async def test_a_whole_read_returns_every_message_in_order(stack: Stack) -> None:
    await stack.js.add_stream(name="READER_U", subjects=["readu.>"])
    for i in range(45):
        await stack.js.publish(f"readu.{i % 2}", b"x")
    seqs = [m.seq async for batch in read_stream(stack.js, "READER_U", batch=10) for m in batch]
    assert seqs == list(range(1, 46))
    only = [
        m.seq
        async for batch in read_stream(stack.js, "READER_U", subject="readu.1", stop_seq=20)
        for m in batch
    ]
    assert only == list(range(2, 21, 2))
    await stack.js.delete_stream("READER_U")


async def test_a_copy_built_by_another_fold_version_is_refused(stack: Stack, localities: Localities) -> None:
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(
            "INSERT INTO projection_checkpoint (name, copy, seq, fold_version) VALUES ('stats', 1, 0, 999)"
        )
    finally:
        await conn.close()
    runner = StatsRunner(stack.nc, RunnerConfig(database_url=stack.database_url, localities=localities))
    with pytest.raises(FoldVersionMismatch):
        await runner.run(asyncio.Event())
