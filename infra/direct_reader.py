"""Read a stream in order with batched direct gets: no consumer at all (an auditor needs no CONSUMER.* right).

The stream must have ``allow_direct``. One request on ``$JS.API.DIRECT.GET.<stream>`` with
``{"seq": N, "batch": B, "next_by_subj": F}`` is answered on the reply inbox with up to B stored messages matching
F from sequence N on, each carrying its ``Nats-Sequence``, ``Nats-Subject``, ``Nats-Time-Stamp`` (RFC 3339, ns),
``Nats-Num-Pending`` (matching messages after it) and ``Nats-Last-Sequence`` (the previous one of this batch,
0 for the first), then a ``204 EOB`` status (whose ``Nats-Last-Sequence`` is the batch's last sequence).
A request from beyond the last matching message is answered ``404``; a stream without direct gets has no
responder (``503``). Measured on nats-server 2.15.1 (``tests/test_direct_reader.py``).

Same contract as ``infra.stream_reader``: batches in stream order from ``start_seq`` to ``stop`` (default: the
last sequence when reading began), ``StreamReadError`` rather than an early end, and never a skipped message:
within a batch each message names its predecessor, the end of batch names the last one, sequences only go up,
and a message's pending count may only fall by one from the one before it (a stream only grows). The read
ends at ``stop`` or where the server says nothing more matches (pending 0, or 404 right after a batch that said
so). One request in flight: the next is sent as soon as a batch has ended, before that batch is handed out.
A batch found incomplete is not handed out: the read goes on from the message after the last one it handed out
(``infra.stream_reader.resuming``), and gives up with ``StreamReadError`` after a few tries in a row.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from collections.abc import AsyncIterator
from typing import NamedTuple

from nats.aio.client import Client
from nats.aio.msg import Msg

from infra.pull import InboxCollector, RawMsg, parse_block
from infra.stream_reader import Columns, ReadInterrupted, StoredMsg, StreamReadError, last_sequence, resuming
from infra.timestamps import parse_rfc3339_ns

DIRECT_BATCH = 10_000
"""Messages per request by default (a round trip per batch: large batches keep the read from being latency-bound)."""

SEQUENCE = "Nats-Sequence"
SUBJECT = "Nats-Subject"
TIME_STAMP = "Nats-Time-Stamp"
PENDING = "Nats-Num-Pending"
LAST_SEQUENCE = "Nats-Last-Sequence"
STREAM = "Nats-Stream"
ADDED_HEADERS = frozenset({STREAM, SUBJECT, SEQUENCE, TIME_STAMP, PENDING, LAST_SEQUENCE})
"""What a direct get adds to a stored message's own headers."""


class _Answer(NamedTuple):
    """One stored message of a direct get, its headers parsed once."""

    msg: RawMsg
    headers: dict[str, str] | None


class _Answers(InboxCollector):
    """The answers of direct-get requests on one inbox: each request's messages, handed out at its status."""

    def __init__(self, nc: Client, stream: str) -> None:
        super().__init__(nc)
        self._stream = stream
        self._subject = f"$JS.API.DIRECT.GET.{stream}"
        self._buf: list[_Answer] = []
        self._queue: asyncio.Queue[tuple[list[_Answer], dict[str, str]]] = asyncio.Queue()

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        parsed = parse_block(headers)
        if parsed is not None and SEQUENCE not in parsed and "Status" in parsed:
            batch, self._buf = self._buf, []
            self._queue.put_nowait((batch, parsed))
            return
        self._buf.append(_Answer(RawMsg(subject.decode(), reply.decode(), data, headers), parsed))

    async def request(self, seq: int, batch: int, subject: str | None) -> None:
        request: dict[str, object] = {"seq": seq, "batch": batch}
        if subject is not None:  # unfiltered batches cost the server about 15% less without a subject
            request["next_by_subj"] = subject
        body = json.dumps(request).encode()
        await self._nc.publish(self._subject, body, reply=self._inbox)

    async def answer(self, timeout: float) -> tuple[list[_Answer], dict[str, str]]:
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            raise StreamReadError(
                f"{self._stream}: no answer to a direct get within {timeout}s (a request this identity may not "
                "make is never answered: see any permissions violation)"
            ) from None


def _description(status: dict[str, str]) -> str:
    for key, value in status.items():  # nats-py keys the description with an enum member
        if str(getattr(key, "value", key)) == "Description":
            return value
    return ""


async def read_direct_columns(
    nc: Client,
    stream: str,
    *,
    start_seq: int = 1,
    stop_seq: int | None = None,
    subject: str | None = None,
    batch: int = DIRECT_BATCH,
    timeout: float = 10.0,
) -> AsyncIterator[Columns]:
    """Batches of ``start_seq <= seq <= stop`` (default: last seq at start) as columns; ``subject`` filters.

    A batch found incomplete (lost in transit, or answered by a mirror) is read again from the message after the
    last one handed out (``resuming``, as the consumer reader does)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    stop = stop_seq if stop_seq is not None else await last_sequence(nc.jetstream(), stream)
    first = max(start_seq, 1)
    if stop < first:
        return

    def read_from(start: int, resumed: bool) -> AsyncIterator[Columns]:
        return _read_direct_from(nc, stream, start, stop, subject, batch, timeout, resumed=resumed)

    async for cols in resuming(read_from, first):
        yield cols


async def _read_direct_from(
    nc: Client,
    stream: str,
    start: int,
    stop: int,
    wanted: str | None,
    batch: int,
    timeout: float,
    *,
    resumed: bool,
) -> AsyncIterator[Columns]:
    answers = _Answers(nc, stream)
    await answers.start()
    try:
        await answers.request(start, batch, wanted)
        prev_seq = start - 1
        prev_pending: int | None = None  # matching messages after ``prev_seq``, as the server last said
        answered = False
        while True:
            try:
                got, status = await answers.answer(timeout)
            except StreamReadError as exc:
                if answered or resumed:  # it answered this read before: an answer lost on the way
                    raise ReadInterrupted(str(exc)) from None
                raise  # never answered (no right to read, no server): no point asking again
            answered = True
            code = status.get("Status", "")
            if code == "404" and not got:
                if prev_pending is None:
                    if resumed:  # messages were pending when the last read was interrupted
                        raise StreamReadError(
                            f"{stream}: nothing left to read from seq {start}, short of {stop}"
                        )
                    return  # nothing matches from ``start`` on
                raise StreamReadError(
                    f"{stream}: nothing found after seq {prev_seq}, though {prev_pending} more were pending"
                )
            if code == "503":
                raise StreamReadError(f"{stream}: no direct gets on this stream (it needs allow_direct)")
            if code == "204" and not got:  # the end of a batch whose messages were lost on the way
                raise ReadInterrupted(
                    f"{stream}: a direct get from seq {prev_seq + 1} ended without its messages"
                )
            if code != "204":
                raise StreamReadError(
                    f"{stream}: a direct get from seq {prev_seq + 1} ended with {code} {_description(status)}"
                    f" after {len(got)} message(s)"
                )
            seqs: list[int] = []
            before = 0  # each message names the one before it in its batch (0 for the first)
            if status.get(STREAM, stream) != stream:
                raise ReadInterrupted(f"{stream}: a batch was closed by {status.get(STREAM)} (a mirror)")
            for _, headers in got:
                if (
                    not headers
                    or SEQUENCE not in headers
                    or PENDING not in headers
                    or LAST_SEQUENCE not in headers
                ):
                    raise StreamReadError(
                        f"{stream}: a direct get answered with a message without its headers"
                    )
                if headers.get(STREAM) != stream:
                    # mirrors with mirror_direct answer in the same queue group, each consistent with itself
                    # but possibly behind or filtered: only the stream's own answers count
                    raise ReadInterrupted(
                        f"{stream}: a direct get was answered by {headers.get(STREAM)} (a mirror)"
                    )
                seq = int(headers[SEQUENCE])
                pending = int(headers[PENDING])
                if int(headers[LAST_SEQUENCE]) != before or seq <= prev_seq:
                    raise ReadInterrupted(
                        f"{stream}: direct get returned seq {seq} after {prev_seq} (it names {headers[LAST_SEQUENCE]}"
                        " as its predecessor): messages were lost in transit"
                    )
                if prev_pending is not None and pending < prev_pending - 1:
                    raise ReadInterrupted(
                        f"{stream}: {prev_pending - 1 - pending} message(s) skipped before seq {seq}"
                    )
                seqs.append(seq)
                before = prev_seq = seq
                prev_pending = pending
            if int(status.get(LAST_SEQUENCE, "-1")) != prev_seq:
                raise ReadInterrupted(
                    f"{stream}: the batch ending at seq {prev_seq} was closed at {status.get(LAST_SEQUENCE)}:"
                    " messages were lost in transit"
                )
            done = prev_seq >= stop or prev_pending == 0
            if not done:
                await answers.request(prev_seq + 1, batch, wanted)  # in flight while this batch is used
            if seqs[-1] > stop:
                del seqs[bisect.bisect_right(seqs, stop) :]
                del got[len(seqs) :]
            if seqs:
                yield Columns(
                    seqs,
                    [a.msg.data for a in got],
                    [a.msg for a in got],
                    [(a.headers or {})[SUBJECT] for a in got],
                )
            if done:
                return
    finally:
        await answers.stop()


def stored(msg: Msg | RawMsg) -> StoredMsg:
    """A direct get's answer as the stored message: its own headers only (None when it had none)."""
    headers = msg.headers or {}
    own = {k: v for k, v in headers.items() if k not in ADDED_HEADERS}
    return StoredMsg(
        int(headers[SEQUENCE]), headers[SUBJECT], msg.data, parse_rfc3339_ns(headers[TIME_STAMP]), own or None
    )


async def read_direct(
    nc: Client,
    stream: str,
    *,
    start_seq: int = 1,
    stop_seq: int | None = None,
    subject: str | None = None,
    batch: int = DIRECT_BATCH,
    timeout: float = 10.0,
) -> AsyncIterator[list[StoredMsg]]:
    """``read_stream`` with direct gets: batches of stored messages, ``start_seq <= seq <= stop``."""
    async for cols in read_direct_columns(
        nc, stream, start_seq=start_seq, stop_seq=stop_seq, subject=subject, batch=batch, timeout=timeout
    ):
        yield [stored(msg) for msg in cols.msgs]
