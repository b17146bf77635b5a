"""Read a JetStream stream in order, in batches, from a start sequence: for index catch-up, rebuilds and replay.

An ephemeral pull consumer with no acks; the end is the stream's last sequence when reading began (or a given
stop sequence), so a reader of a live stream always terminates. Like an ordered consumer, a read that finds
deliveries missing (a connection that died and came back while requests were open) or its consumer gone
(inactivity, a server restart) goes on from the message after the last one it handed out, with a new consumer;
after ``MAX_RESETS`` such resets in a row without a message handed out it raises ``StreamReadError``
(``resuming``, shared with the direct-get reader). With ``consumer_name`` (an auditor, whose permissions allow
that one name: ``infra/auth/permissions.py``) the consumer is created under that name, only if no consumer of
that name exists (one read at a time per name), and deleted at the end.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import NamedTuple

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy, ReplayPolicy

from infra.errors import InfraError
from infra.pull import BatchPuller, PullError, RawMsg


class StoredMsg(NamedTuple):
    """One stored message (a tuple: read loops build hundreds of thousands of them)."""

    seq: int
    subject: str
    data: bytes
    timestamp_ns: int
    headers: dict[str, str] | None

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.timestamp_ns / 1e9, tz=dt.UTC)


class AckInfo(NamedTuple):
    """What a JetStream ack subject says of the message it came with."""

    stream_seq: int
    consumer_seq: int  # the consumer's own numbering of its deliveries: 1, 2, 3, ...
    timestamp_ns: int  # when the stream stored the message
    pending: int  # messages left for the consumer after this one


def parse_ack_reply(reply: str) -> AckInfo:
    """Read a JetStream ack subject, in its v1 form (9 tokens) or v2 form (domain and account hash added)."""
    tokens = reply.split(".")
    base = 2 if len(tokens) == 9 else 4
    return AckInfo(int(tokens[base + 3]), int(tokens[base + 4]), int(tokens[base + 5]), int(tokens[base + 6]))


def to_stored(msg: Msg | RawMsg) -> StoredMsg:
    ack = parse_ack_reply(msg.reply)
    return StoredMsg(ack.stream_seq, msg.subject, msg.data, ack.timestamp_ns, msg.headers)


async def last_sequence(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    return int(info.state.last_seq)


MAX_RESETS = 3
"""New consumers a read may take in a row without handing out a message before it gives up."""

log = logging.getLogger(__name__)


class StreamReadError(InfraError):
    """The server stopped answering before the requested range was read: the read is incomplete."""


class ReadInterrupted(StreamReadError):
    """This read cannot go on (deliveries missing, consumer gone), but a new one from where it was can."""


async def resuming(
    read_from: Callable[[int, bool], AsyncIterator[Columns]], start: int
) -> AsyncIterator[Columns]:
    """The batches of ``read_from(start, resumed=False)``; when it is interrupted (``ReadInterrupted``), those of
    ``read_from(<after the last seq handed out>, resumed=True)``, up to ``MAX_RESETS`` times in a row."""
    next_seq, resets = start, 0
    while True:
        try:
            async for cols in read_from(next_seq, resets > 0):
                next_seq, resets = cols.seqs[-1] + 1, 0
                yield cols
            return
        except ReadInterrupted as exc:
            resets += 1
            if resets > MAX_RESETS:
                raise StreamReadError(f"{exc} (gave up after {MAX_RESETS} new reads in a row)") from None
            log.warning("%s; reading on from seq %d", exc, next_seq)


async def _forget(js: JetStreamContext, stream: str, consumer: str, *, wait: bool = False) -> None:
    """Delete an ephemeral consumer without waiting for the answer: it would expire by itself anyway. A named
    one (``wait``) is deleted before returning: the next read under that name creates it again."""
    with contextlib.suppress(Exception):
        if wait:
            await js.delete_consumer(stream, consumer)
        else:
            await js._nc.publish(f"$JS.API.CONSUMER.DELETE.{stream}.{consumer}", b"")


CONSUMER_EXISTS = 10148


async def _create_named(
    js: JetStreamContext, stream: str, name: str, config: ConsumerConfig, timeout: float
) -> ConsumerInfo:
    """Create consumer ``name`` on the named create subject (its filtered form with a filter), failing if it
    exists: ``"action": "create"`` and a description of its own, so a concurrent read under the same name
    is refused instead of sharing the consumer (and each getting part of the messages)."""
    config = config.evolve(name=name, description=f"antq read {secrets.token_hex(6)}")
    subject = f"$JS.API.CONSUMER.CREATE.{stream}.{name}"
    if config.filter_subject:
        subject += f".{config.filter_subject}"
    body = {"stream_name": stream, "config": config.as_dict(), "action": "create"}
    reply = json.loads((await js._nc.request(subject, json.dumps(body).encode(), timeout=timeout)).data)
    error = reply.get("error")
    if error is not None:
        if error.get("err_code") == CONSUMER_EXISTS:
            raise StreamReadError(
                f"{stream}: consumer {name} already exists: another read under this identity is running, or "
                "one was interrupted less than 30 s ago (one read at a time per identity)"
            )
        raise StreamReadError(f"{stream}: cannot create consumer {name}: {error.get('description')}")
    info: ConsumerInfo = ConsumerInfo.from_response(reply)
    return info


class Columns(NamedTuple):
    """A batch as parallel lists: what a replay needs, without an object per message."""

    seqs: list[int]
    bodies: list[bytes]
    msgs: Sequence[Msg | RawMsg]
    subjects: list[str]
    """The subject each message was stored on."""


async def read_stream(
    js: JetStreamContext,
    stream: str,
    *,
    start_seq: int = 1,
    stop_seq: int | None = None,
    subject: str | None = None,
    batch: int = 2000,
    timeout: float = 10.0,
    consumer_name: str | None = None,
) -> AsyncIterator[list[StoredMsg]]:
    """Yield batches of stored messages with start_seq <= seq <= stop (default: last seq at start).

    Raises ``StreamReadError`` rather than ending early when the server stops answering.
    """
    async for cols in read_columns(
        js,
        stream,
        start_seq=start_seq,
        stop_seq=stop_seq,
        subject=subject,
        batch=batch,
        timeout=timeout,
        consumer_name=consumer_name,
    ):
        yield [
            StoredMsg(seq, msg.subject, body, parse_ack_reply(msg.reply).timestamp_ns, msg.headers)
            for seq, body, msg in zip(cols.seqs, cols.bodies, cols.msgs, strict=True)
        ]


async def read_columns(
    js: JetStreamContext,
    stream: str,
    *,
    start_seq: int = 1,
    stop_seq: int | None = None,
    subject: str | None = None,
    batch: int = 1000,
    timeout: float = 10.0,
    depth: int = 2,
    consumer_name: str | None = None,
) -> AsyncIterator[Columns]:
    """``read_stream`` as columns; ``depth`` pull requests are kept in flight."""
    stop = stop_seq if stop_seq is not None else await last_sequence(js, stream)
    next_seq = max(start_seq, 1)
    if stop < next_seq:
        return

    def read_from(start: int, resumed: bool) -> AsyncIterator[Columns]:
        return _read_with_one_consumer(
            js, stream, start, stop, subject, batch, timeout, depth, consumer_name, resumed=resumed
        )

    async for cols in resuming(read_from, next_seq):
        yield cols


async def _read_with_one_consumer(
    js: JetStreamContext,
    stream: str,
    start: int,
    stop: int,
    subject: str | None,
    batch: int,
    timeout: float,
    depth: int,
    consumer_name: str | None,
    *,
    resumed: bool,
) -> AsyncIterator[Columns]:
    """Read ``start..stop`` with one consumer (a new one on each resume); ``ReadInterrupted`` when that
    consumer's read cannot go on."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=AckPolicy.NONE,
        replay_policy=ReplayPolicy.INSTANT,
        inactive_threshold=30.0,
        filter_subject=subject,
        max_waiting=depth + 4,
    )
    if consumer_name is None:
        info = await js.add_consumer(stream, config)
    else:
        info = await _create_named(js, stream, consumer_name, config, timeout)
    named = consumer_name is not None
    if info.num_pending == 0:
        await _forget(js, stream, str(info.name), wait=named)
        if resumed:  # messages were pending when the last consumer was interrupted
            raise StreamReadError(f"{stream}: nothing left to read from seq {start}, short of {stop}")
        return
    puller = BatchPuller(js._nc, stream, str(info.name))
    delivered = 0
    try:
        await puller.start()  # in the try: a failure here still deletes the consumer
        # Requests that wait (``expires``), not ``no_wait`` ones: the server answers a no_wait request made
        # while another is pending with "408 Requests Pending". The read ends at ``stop`` by sequence.
        for _ in range(depth):
            await puller.request(batch, expires=timeout, until_drained=True)
        while True:
            try:
                msgs = await puller.batch(timeout + 5.0)
            except PullError as exc:
                raise ReadInterrupted(f"{stream}: {exc}") from None
            if not msgs:
                # the server answered with a status and no message before the range was read: the consumer
                # is gone (inactivity, restart) or the stream changed; never end a read early in silence
                raise ReadInterrupted(f"{stream}: the read stopped before seq {stop} (consumer {info.name})")
            seqs: list[int] = []
            for msg in msgs:
                tokens = msg.reply.split(".")
                seqs.append(int(tokens[5 if len(tokens) == 9 else 7]))  # the stream sequence (v1, v2 forms)
            # a consumer without acks numbers its deliveries 1, 2, 3, ... and never redelivers: a batch whose
            # first and last deliveries are not ``delivered + 1`` and ``delivered + len`` lost messages on the
            # way (a connection that died and came back while requests were open)
            first, last = parse_ack_reply(msgs[0].reply), parse_ack_reply(msgs[-1].reply)
            if (first.consumer_seq, last.consumer_seq) != (delivered + 1, delivered + len(msgs)):
                raise ReadInterrupted(
                    f"{stream}: deliveries {first.consumer_seq}..{last.consumer_seq} came where"
                    f" {delivered + 1}..{delivered + len(msgs)} were due: messages were lost in transit"
                )
            delivered += len(msgs)
            done = seqs[-1] >= stop or last.pending == 0
            if seqs[-1] > stop:
                del seqs[bisect.bisect_right(seqs, stop) :]
            cols = Columns(seqs, [], msgs, [])
            if not done:
                # keeps ``depth`` requests in flight
                await puller.request(batch, expires=timeout, until_drained=True)
            if seqs:
                del msgs[len(seqs) :]
                cols.bodies.extend(msg.data for msg in msgs)
                cols.subjects.extend(msg.subject for msg in msgs)
                yield cols
            if done:
                return
    finally:
        await puller.stop()
        await _forget(js, stream, str(info.name), wait=named)
