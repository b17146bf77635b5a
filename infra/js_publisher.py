"""Pipelined JetStream publishes: one reply inbox per connection, a future per publish, one deadline per set.

We do not use nats-py's ``publish_async``: in nats-py 2.16 an error ack (e.g. 10071 'wrong last sequence')
raises inside its reply callback and the future is never resolved, so a conflict would surface as a time-out.
On a ``FastHeadersClient`` the acks are taken straight from the protocol parser (``route_raw``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from infra.nats_client import FastHeadersClient

MSG_ID = "Nats-Msg-Id"
EXPECTED_STREAM = "Nats-Expected-Stream"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST_SEQUENCE = 10071


class _ApiError(msgspec.Struct, frozen=True, kw_only=True):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct, frozen=True, kw_only=True):
    stream: str | None = None
    seq: int | None = None
    duplicate: bool = False
    error: _ApiError | None = None


_ack_decoder = msgspec.json.Decoder(_PubAck)


def _outcome(data: bytes, status: str | None) -> Outcome:
    """An ack's outcome from its body and its status code (None: no status line)."""
    if status == "503":
        # one server: the stream does not exist; a cluster: also while the stream's nodes elect a new leader
        return Outcome(
            failure="no stream answers on this subject: the event log is not set up, or (on a cluster) it is "
            "electing a new leader; retry the same request"
        )
    try:
        ack = _ack_decoder.decode(data)
    except msgspec.DecodeError:
        return Outcome(failure="the event log sent an unreadable acknowledgement")
    if ack.error is not None:
        if ack.error.err_code == WRONG_LAST_SEQUENCE:
            return Outcome(wrong_last_seq=True)
        return Outcome(failure=f"the event log refused the write: {ack.error.description}")
    if ack.seq is None:
        return Outcome(failure="the event log sent an acknowledgement without a sequence")
    return Outcome(seq=ack.seq, duplicate=ack.duplicate)


_STATUS_AT = len(b"NATS/1.0")


def _status_of(headers: bytes | None) -> str | None:
    """The status code of a raw header block (``NATS/1.0 503\\r\\n...``), None when it has none."""
    if not headers or headers[_STATUS_AT : _STATUS_AT + 1] != b" ":
        return None
    return headers[_STATUS_AT + 1 :].split(b"\r\n", 1)[0].strip().split(b" ", 1)[0].decode("ascii", "replace")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A publish result: a stored sequence, a 'wrong last sequence' (stale expectation), or an outage."""

    seq: int | None = None
    duplicate: bool = False
    wrong_last_seq: bool = False
    failure: str | None = None


class JetStreamPublisher:
    """Pipelined JetStream publishes over one connection: one reply inbox, a future per publish.

    ``settle`` waits for a whole set of acks at once with one deadline, instead of one timer per message.
    """

    def __init__(self, nc: Client, *, max_pending: int = 4000, ack_timeout: float = 10.0) -> None:
        self._nc = nc
        self._slots = asyncio.Semaphore(max_pending)
        self._ack_timeout = ack_timeout
        self._pending: dict[str, asyncio.Future[Outcome]] = {}
        self._prefix = ""
        self._counter = 0
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._prefix = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)
        if isinstance(self._nc, FastHeadersClient):  # acks straight from the parser: no Msg, no task switch
            self._nc.route_raw(self._sub._id, self._on_raw_reply)

    async def stop(self) -> None:
        if self._sub is not None:
            if isinstance(self._nc, FastHeadersClient):
                self._nc.route_raw(self._sub._id, None)
            await self._sub.unsubscribe()
        for future in self._pending.values():
            if not future.done():
                future.set_result(Outcome(failure="the gateway is stopping"))
        self._pending.clear()

    async def _on_reply(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        self._settled(msg.subject.rpartition(".")[2], msg.data, status)

    def _on_raw_reply(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        self._settled(subject.rpartition(b".")[2].decode("ascii", "replace"), data, _status_of(headers))

    def _settled(self, token: str, data: bytes, status: str | None) -> None:
        future = self._pending.pop(token, None)
        if future is None or future.done():
            return
        self._slots.release()
        future.set_result(_outcome(data, status))

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> asyncio.Future[Outcome]:
        if self._sub is None:
            await self.start()
        await self._slots.acquire()
        self._counter += 1
        token = str(self._counter)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            await self._nc.publish(subject, data, reply=f"{self._prefix}.{token}", headers=headers)
        except nats.errors.Error as exc:
            self._pending.pop(token, None)
            self._slots.release()
            future.set_result(Outcome(failure=f"the event log cannot be reached ({type(exc).__name__})"))
        return future

    async def settle(self, futures: list[asyncio.Future[Outcome]]) -> list[Outcome]:
        """Wait for every ack, with one deadline; a publish not acked by then is an outage."""
        if futures:
            await asyncio.wait(futures, timeout=self._ack_timeout)
        outcomes = []
        for future in futures:
            if future.done():
                outcomes.append(future.result())
            else:
                for token, pending in list(self._pending.items()):
                    if pending is future:
                        del self._pending[token]
                        self._slots.release()
                outcomes.append(Outcome(failure="the event log did not acknowledge in time"))
        return outcomes
