"""Batched direct gets read exactly what a consumer reads (sequence, subject, bytes, timestamp ns, headers)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.js.api import StreamConfig, StreamSource

from infra.direct_reader import _Answers, read_direct, read_direct_columns
from infra.nats_client import FastHeadersClient, connect
from infra.pull import parse_block
from infra.stream_reader import MAX_RESETS, StoredMsg, StreamReadError, read_stream
from infra.streams import EVENTS, SEALS, StreamLimits, ensure_streams, events_config
from tests.conftest import Stack
from tests.servers import until_store_created, wait_for

pytestmark = pytest.mark.servers

STREAM = "DIRECT_T"
N = 300


@pytest.fixture
async def filled(stack: Stack) -> AsyncIterator[Client]:
    """A stream of N messages on three subjects, some with headers, one with an empty body; a client with the
    fast header parser on the same server."""
    await stack.js.add_stream(StreamConfig(name=STREAM, subjects=["direct.>"], allow_direct=True))
    for i in range(N):
        headers = {"Nats-Msg-Id": f"m{i}", "X-Office": f"office-{i % 5}"} if i % 3 else None
        body = b"" if i == 7 else f"event {i} ".encode() * (1 + i % 11)
        await stack.js.publish(f"direct.{'abc'[i % 3]}.{i}", body, headers=headers)
    nc = await connect(stack.servers.nats_url)
    try:
        yield nc
    finally:
        await nc.close()
        with contextlib.suppress(Exception):
            await stack.js.delete_stream(STREAM)


async def by_consumer(stack: Stack, **kw: object) -> list[StoredMsg]:
    return [m async for batch in read_stream(stack.js, STREAM, **kw) for m in batch]  # type: ignore[arg-type]


async def direct(nc: Client, **kw: object) -> list[StoredMsg]:
    return [m async for batch in read_direct(nc, STREAM, **kw) for m in batch]  # type: ignore[arg-type]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("batch", [7, 100, 10_000])
async def test_the_direct_reader_returns_what_a_consumer_reads(
    stack: Stack, filled: Client, batch: int
) -> None:
    whole = await by_consumer(stack)
    assert [m.seq for m in whole] == list(range(1, N + 1))
    assert await direct(filled, batch=batch) == whole
    assert whole[7].data == b"" and whole[1].headers == {"Nats-Msg-Id": "m1", "X-Office": "office-1"}
    assert whole[0].headers is None
    window = await by_consumer(stack, start_seq=50, stop_seq=180)
    assert await direct(filled, start_seq=50, stop_seq=180, batch=batch) == window
    assert [m.seq for m in window] == list(range(50, 181))
    only_b = await by_consumer(stack, subject="direct.b.*", start_seq=20, stop_seq=250)
    assert await direct(filled, subject="direct.b.*", start_seq=20, stop_seq=250, batch=batch) == only_b
    assert [m.seq for m in only_b] == [s for s in range(20, 251) if (s - 1) % 3 == 1]


@pytest.mark.timeout(60)
async def test_columns_carry_the_same_sequences_and_bodies(stack: Stack, filled: Client) -> None:
    seqs: list[int] = []
    bodies: list[bytes] = []
    async for cols in read_direct_columns(filled, STREAM, subject="direct.a.>", batch=13):
        assert len(cols.seqs) == len(cols.bodies) == len(cols.msgs)
        seqs += cols.seqs
        bodies += cols.bodies
    want = await by_consumer(stack, subject="direct.a.>")
    assert seqs == [m.seq for m in want] and bodies == [m.data for m in want]


@pytest.mark.timeout(60)
async def test_empty_ranges_and_a_stop_beyond_the_end(stack: Stack, filled: Client) -> None:
    assert await direct(filled, start_seq=200, stop_seq=199) == []
    assert await direct(filled, start_seq=N + 1) == []  # stop defaults to the last seq: nothing to read
    assert await direct(filled, subject="direct.nothing.>") == []
    assert await direct(filled, start_seq=N + 1, stop_seq=N + 50) == []  # 404 from the first request
    beyond = await direct(filled, start_seq=290, stop_seq=10_000, batch=4)
    assert [m.seq for m in beyond] == list(range(290, N + 1))
    assert beyond == await by_consumer(stack, start_seq=290, stop_seq=N)
    # a filter whose last match comes before the stop: the server's "nothing pending" ends the read
    tail = await direct(filled, subject="direct.a.0", stop_seq=N)
    assert [m.seq for m in tail] == [1]


@pytest.mark.timeout(60)
async def test_a_stream_without_direct_gets_fails_loudly(stack: Stack) -> None:
    await stack.js.add_stream(StreamConfig(name="DIRECT_OFF", subjects=["directoff.>"]))
    await stack.js.publish("directoff.x", b"x")
    with pytest.raises(StreamReadError, match="allow_direct"):
        async for _ in read_direct(stack.nc, "DIRECT_OFF", timeout=5.0):
            pass
    await stack.js.delete_stream("DIRECT_OFF")


@pytest.mark.timeout(60)
async def test_a_mirror_answering_direct_gets_never_passes_for_the_stream(stack: Stack) -> None:
    """Mirrors with mirror_direct join the stream's direct-get queue group; a filtered (or lagging) mirror's
    answers are consistent with themselves, so only the answering stream's name tells them apart."""
    await stack.js.add_stream(StreamConfig(name="DIRECT_SP", subjects=["directsp.>"], allow_direct=True))
    for i in range(300):
        await stack.js.publish("directsp.b" if i % 30 == 0 else "directsp.a", b"%d" % i)
    await stack.js.add_stream(
        StreamConfig(
            name="DIRECT_MIR",
            mirror=StreamSource(name="DIRECT_SP", filter_subject="directsp.b"),
            mirror_direct=True,
        )
    )

    async def mirrored() -> bool:
        return (await stack.js.stream_info("DIRECT_MIR")).state.messages == 10

    await wait_for(mirrored, what="the mirror to catch up")
    outcomes = []
    for _ in range(12):
        try:
            seqs = [m.seq async for batch in read_direct(stack.nc, "DIRECT_SP", batch=50) for m in batch]
        except StreamReadError as exc:
            outcomes.append(str(exc))
        else:
            assert seqs == list(range(1, 301))  # never a mirror's partial answer taken for the whole
            outcomes.append("read")
    # each read either got the whole stream or said a mirror answered
    assert all(o == "read" or "(a mirror)" in o for o in outcomes), outcomes
    await stack.js.delete_stream("DIRECT_MIR")
    await stack.js.delete_stream("DIRECT_SP")


@pytest.mark.timeout(60)
async def test_existing_streams_get_direct_gets_in_place(stack: Stack) -> None:
    """ensure_streams turns direct gets on for an ANTQ_EVENTS / ANTQ_SEALS created before; nothing else changes."""
    await stack.js.delete_stream(EVENTS)
    await stack.js.delete_stream(SEALS)
    old = events_config(stack.limits)
    old.allow_direct = False
    await until_store_created(lambda: stack.js.add_stream(old))
    old_seals = StreamConfig(name=SEALS, subjects=["antq.seals"], deny_delete=True, deny_purge=True)
    await until_store_created(lambda: stack.js.add_stream(old_seals))
    await stack.js.publish("antq.events.04.01447.session", b"{}")
    created = (await stack.js.stream_info(EVENTS)).created
    await ensure_streams(stack.js, StreamLimits(dedup_window_s=3600.0))
    events = await stack.js.stream_info(EVENTS)
    seals = await stack.js.stream_info(SEALS)
    assert events.config.allow_direct and seals.config.allow_direct
    assert events.created == created and events.state.messages == 1  # updated, not recreated
    assert events.config.deny_delete and events.config.deny_purge and not events.config.allow_rollup_hdrs
    assert seals.config.deny_delete and seals.config.deny_purge


_NAME = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_LINE = st.one_of(
    st.tuples(_NAME, st.text(max_size=20)).map(lambda kv: f"{kv[0]}:{kv[1]}".encode()),
    st.tuples(st.sampled_from(["Nats-Sequence", " X-A ", "X B", "Ä", ""]), st.text(max_size=8)).map(
        lambda kv: f"{kv[0]}: {kv[1]} ".encode()
    ),
    st.binary(max_size=20).map(lambda b: b.replace(b"\r\n", b"")),
)


@given(st.lists(_LINE, max_size=8))
def test_the_fast_header_parser_parses_as_nats_py_does(lines: list[bytes]) -> None:
    raw = b"\r\n".join(lines) + b"\r\n\r\n"
    assert FastHeadersClient._parse_header_lines(raw) == Client._parse_header_lines(raw)


@pytest.mark.timeout(60)
async def test_a_direct_read_that_misses_a_message_reads_on_from_there_and_skips_nothing(
    stack: Stack, filled: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One answer lost on the way: the batch is read again from the message after the last one handed out.
    An answer lost every time: ``StreamReadError`` after ``MAX_RESETS`` new reads, never a short read."""
    whole = [(m.seq, m.data) async for batch in read_direct(filled, STREAM, batch=40) for m in batch]
    assert [seq for seq, _ in whole] == list(range(1, N + 1))
    collect = _Answers._on_raw  # both ways in (the raw route, nats-py's delivery) end there
    lost: list[int] = []

    def losing(always: bool) -> Callable[[_Answers, bytes, bytes, bytes, bytes | None], None]:
        def on_raw(self: _Answers, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
            seq = (parse_block(headers) or {}).get("Nats-Sequence")
            if seq == "57" and (always or not lost):
                lost.append(57)
                return
            collect(self, subject, reply, data, headers)

        return on_raw

    monkeypatch.setattr(_Answers, "_on_raw", losing(always=False))
    again = [(m.seq, m.data) async for batch in read_direct(filled, STREAM, batch=40) for m in batch]
    assert lost == [57] and again == whole

    monkeypatch.setattr(_Answers, "_on_raw", losing(always=True))
    seen: list[int] = []

    async def read_all() -> None:
        async for batch in read_direct(filled, STREAM, batch=40):
            seen.extend(m.seq for m in batch)

    with pytest.raises(StreamReadError, match=f"lost in transit.*gave up after {MAX_RESETS}"):
        await read_all()
    assert seen == list(range(1, 41))  # the batch before the loss, once


@pytest.mark.timeout(60)
async def test_a_direct_read_whose_whole_answer_is_lost_asks_again(
    stack: Stack, filled: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that drops loses an answer's tail and its end-of-batch status together: the read waits its
    timeout, then asks again from the message after the last one handed out; nothing skipped or repeated."""
    whole = [(m.seq, m.data) async for batch in read_direct(filled, STREAM, batch=40) for m in batch]
    collect = _Answers._on_raw
    dropping: list[bool] = []

    def lose_the_second_answer(
        self: _Answers, subject: bytes, reply: bytes, data: bytes, block: bytes | None
    ) -> None:
        headers = parse_block(block) or {}
        if headers.get("Nats-Sequence") == "41" and not dropping:
            dropping.append(True)  # from the second answer's first message …
        if dropping == [True]:
            if "Nats-Sequence" not in headers and "Status" in headers:
                dropping.append(False)  # … to its end-of-batch status, both included
            return
        collect(self, subject, reply, data, block)

    monkeypatch.setattr(_Answers, "_on_raw", lose_the_second_answer)
    again = [
        (m.seq, m.data) async for batch in read_direct(filled, STREAM, batch=40, timeout=1.0) for m in batch
    ]
    assert dropping == [True, False] and again == whole
