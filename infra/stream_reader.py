"""Read a JetStream stream in order, in batches, from a start sequence: for index catch-up, rebuilds and replay.

An ephemeral pull consumer with no acks; the end is the stream's last sequence when reading began (or a given
stop sequence), so a reader of a live stream always terminates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ReplayPolicy


@dataclass(frozen=True, slots=True)
class StoredMsg:
    seq: int
    subject: str
    data: bytes
    timestamp_ns: int
    headers: dict[str, str] | None

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.timestamp_ns / 1e9, tz=dt.UTC)


def parse_ack_reply(reply: str) -> tuple[int, int, int]:
    """(stream sequence, timestamp ns, pending) from a JetStream ack subject (v1 and v2 forms)."""
    tokens = reply.split(".")
    base = 2 if len(tokens) == 9 else 4
    return int(tokens[base + 3]), int(tokens[base + 5]), int(tokens[base + 6])


def to_stored(msg: Msg) -> StoredMsg:
    seq, ts, _ = parse_ack_reply(msg.reply)
    return StoredMsg(seq, msg.subject, msg.data, ts, msg.headers)


async def last_sequence(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    return int(info.state.last_seq)


async def read_stream(
    js: JetStreamContext,
    stream: str,
    *,
    start_seq: int = 1,
    stop_seq: int | None = None,
    subject: str | None = None,
    batch: int = 1000,
) -> AsyncIterator[list[StoredMsg]]:
    """Yield batches of stored messages with start_seq <= seq <= stop (default: last seq at start)."""
    stop = stop_seq if stop_seq is not None else await last_sequence(js, stream)
    if stop < start_seq:
        return
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(start_seq, 1),
        ack_policy=AckPolicy.NONE,
        replay_policy=ReplayPolicy.INSTANT,
        inactive_threshold=30.0,
        max_waiting=1,
        filter_subject=subject,
    )
    sub = await js.pull_subscribe(
        subject or "", stream=stream, config=config, pending_msgs_limit=batch * 4, pending_bytes_limit=-1
    )
    try:
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=2.0)
            except (TimeoutError, nats.errors.TimeoutError):
                return
            out: list[StoredMsg] = []
            done = False
            for msg in msgs:
                seq, ts, pending = parse_ack_reply(msg.reply)
                if seq > stop:
                    done = True
                    break
                out.append(StoredMsg(seq, msg.subject, msg.data, ts, msg.headers))
                if seq == stop or pending == 0:
                    done = True
            if out:
                yield out
            if done:
                return
    finally:
        with contextlib.suppress(Exception):  # the consumer is ephemeral and expires by itself
            await sub.unsubscribe()
