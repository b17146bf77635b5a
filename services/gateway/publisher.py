"""Publishing accepted events to ANTQ_EVENTS and refused submissions to ANTQ_REJECTED.

Publishes are pipelined: each is a request whose reply (the JetStream ack) is awaited later. We do not use
nats-py's ``publish_async`` here: in nats-py 2.16 an error ack (e.g. 10071 'wrong last sequence') raises inside
its reply callback and the future is never resolved, so a conflict would surface as a time-out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.aio.client import Client

from events.codec import encode
from events.intake import ErrorDetail, RejectedRecord
from events.subjects import REJECTED_PREFIX
from infra.streams import EVENTS, REJECTED, REJECTED_RAW_LIMIT

MSG_ID = "Nats-Msg-Id"
EXPECTED_STREAM = "Nats-Expected-Stream"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST_SEQUENCE = 10071


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    stream: str | None = None
    seq: int | None = None
    duplicate: bool = False
    error: _ApiError | None = None


_ack_decoder = msgspec.json.Decoder(_PubAck)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A publish result: a stored sequence, a 'wrong last sequence' (stale expectation), or an outage."""

    seq: int | None = None
    duplicate: bool = False
    wrong_last_seq: bool = False
    failure: str | None = None


class JetStreamPublisher:
    """Pipelined JetStream publishes over one connection, bounded by ``max_pending``."""

    def __init__(self, nc: Client, *, max_pending: int = 4000, ack_timeout: float = 10.0) -> None:
        self._nc = nc
        self._slots = asyncio.Semaphore(max_pending)
        self._ack_timeout = ack_timeout

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> asyncio.Task[Outcome]:
        await self._slots.acquire()
        task = asyncio.ensure_future(self._request(subject, data, headers))
        task.add_done_callback(lambda _: self._slots.release())
        return task

    async def _request(self, subject: str, data: bytes, headers: dict[str, str]) -> Outcome:
        try:
            reply = await self._nc.request(subject, data, timeout=self._ack_timeout, headers=headers)
        except nats.errors.NoRespondersError:
            return Outcome(failure="no stream answers on this subject: the event log is not set up")
        except (TimeoutError, nats.errors.Error) as exc:
            return Outcome(failure=f"the event log did not acknowledge in time ({type(exc).__name__})")
        try:
            ack = _ack_decoder.decode(reply.data)
        except msgspec.DecodeError:
            return Outcome(failure="the event log sent an unreadable acknowledgement")
        if ack.error is not None:
            if ack.error.err_code == WRONG_LAST_SEQUENCE:
                return Outcome(wrong_last_seq=True)
            return Outcome(failure=f"the event log refused the write: {ack.error.description}")
        if ack.seq is None:
            return Outcome(failure="the event log sent an acknowledgement without a sequence")
        return Outcome(seq=ack.seq, duplicate=ack.duplicate)

    async def publish_event(
        self, subject: str, data: bytes, msg_id: str, expected_last: int | None
    ) -> asyncio.Task[Outcome]:
        headers = {MSG_ID: msg_id, EXPECTED_STREAM: EVENTS}
        if expected_last is not None:
            headers[EXPECTED_LAST_SUBJECT_SEQ] = str(expected_last)
        return await self.publish(subject, data, headers)

    async def keep_rejected(
        self, office: str, raw: bytes, error: ErrorDetail, now: dt.datetime
    ) -> asyncio.Task[Outcome]:
        record = RejectedRecord(
            office=office,
            received_at=now.astimezone(dt.UTC).isoformat(),
            error=error,
            sha256=hashlib.sha256(raw).hexdigest(),
            size=len(raw),
            truncated=len(raw) > REJECTED_RAW_LIMIT,
            raw=raw[:REJECTED_RAW_LIMIT],
        )
        token = office if office.replace("-", "").replace("_", "").isalnum() else "_invalid"
        headers = {EXPECTED_STREAM: REJECTED}
        return await self.publish(f"{REJECTED_PREFIX}.{token}", encode(record), headers)
