"""Pipelined JetStream publishes: one reply inbox per connection, a future per publish, one deadline per set.

We do not use nats-py's ``publish_async``: in nats-py 2.16 an error ack (e.g. 10071 'wrong last sequence')
raises inside its reply callback and the future is never resolved, so a conflict would surface as a time-out.
On a ``FastHeadersClient`` the acks are taken straight from the protocol parser (``route_raw``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re

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


class Outcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A publish result: a stored sequence, a 'wrong last sequence' (stale expectation), or an outage."""

    seq: int | None = None
    duplicate: bool = False
    wrong_last_seq: bool = False
    failure: str | None = None


class Pending:
    """One publish waiting for its ack: ``outcome`` is set when the ack (or a failure) comes in."""

    __slots__ = ("outcome", "token", "waiter")

    def __init__(self, token: bytes, outcome: Outcome | None = None) -> None:
        self.token = token
        self.outcome = outcome
        self.waiter: _Waiter | None = None


class _Waiter:
    """Publishes awaited together (``settle``): one future, set when the last of them has its outcome."""

    __slots__ = ("future", "left")

    def __init__(self, left: int, future: asyncio.Future[None]) -> None:
        self.left = left
        self.future = future


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""What nats-py accepts as a header name (RFC 7230 token)."""
_NOT_IN_VALUE = re.compile(r"[\r\n]")
_NOT_IN_SUBJECT = re.compile(r"[ \t\r\n]")
"""What nats-py refuses in a published subject: a line break would inject protocol commands."""
HEADER_LINE = b"NATS/1.0\r\n"


def header_block(headers: dict[str, str]) -> bytes:
    """Headers as the protocol carries them (``NATS/1.0``, one ``Name: value`` line each, a blank line).

    A name outside RFC 7230's token characters, or a value holding a line break, is refused (``ValueError``):
    it would end the block early and inject lines of its own."""
    lines = [HEADER_LINE]
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or _NOT_IN_VALUE.search(value):
            raise ValueError(f"header {name!r}: {value!r} cannot be sent")
        lines.append(b"%s: %s\r\n" % (name.encode(), value.strip().encode()))
    lines.append(b"\r\n")
    return b"".join(lines)


class JetStreamPublisher:
    """Pipelined JetStream publishes over one connection: one reply inbox, a ``Pending`` per publish.

    ``settle`` waits for a whole set of acks at once, with one future and one deadline, instead of a future and
    a timer per message. On a ``FastHeadersClient`` each publish is one protocol frame built here and handed to
    the client's write buffer (``FastHeadersClient.send_frame``), and each ack is taken from the parser.
    """

    def __init__(self, nc: Client, *, max_pending: int = 4000, ack_timeout: float = 10.0) -> None:
        self._nc = nc
        self._fast = nc if isinstance(nc, FastHeadersClient) else None
        self._max_pending = max_pending
        self._room = asyncio.Event()
        """Set when a publish waiting for room (``max_pending`` acks outstanding) may look again."""
        self._ack_timeout = ack_timeout
        self._pending: dict[bytes, Pending] = {}
        self._prefix = ""
        self._reply_head = b""
        self._counter = 0
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._prefix = self._nc.new_inbox()
        self._reply_head = f"{self._prefix}.".encode()
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)
        if self._fast is not None:  # acks straight from the parser: no Msg, no task switch
            self._fast.route_raw(self._sub._id, self._on_raw_reply)

    async def stop(self) -> None:
        if self._sub is not None:
            if self._fast is not None:
                self._fast.route_raw(self._sub._id, None)
            with contextlib.suppress(
                nats.errors.Error
            ):  # a closed connection: its publishes still fail below
                await self._sub.unsubscribe()
        for token in list(self._pending):
            self._settled(token, Outcome(failure="the gateway is stopping"))
        self._pending.clear()

    async def _on_reply(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        self._acked(msg.subject.rpartition(".")[2].encode(), msg.data, status)

    def _on_raw_reply(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        self._acked(subject.rpartition(b".")[2], data, _status_of(headers))

    def _acked(self, token: bytes, data: bytes, status: str | None) -> None:
        if token in self._pending:  # an answer to no publish of ours (late, or forged) is not even decoded
            self._settled(token, _outcome(data, status))

    def _settled(self, token: bytes, outcome: Outcome) -> None:
        pending = self._pending.pop(token, None)
        if pending is None or pending.outcome is not None:
            return
        if not self._room.is_set():
            self._room.set()
        pending.outcome = outcome
        waiter = pending.waiter
        if waiter is not None:
            waiter.left -= 1
            if not waiter.left and not waiter.future.done():
                waiter.future.set_result(None)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> Pending:
        """Publish with these headers; the returned ``Pending`` gets its outcome when the ack comes in."""
        return await self.publish_block(subject, data, header_block(headers))

    async def publish_block(self, subject: str, data: bytes, block: bytes) -> Pending:
        """Publish with a header block already built (``header_block``, or a fixed one with values that
        cannot hold a line break)."""
        if self._sub is None:
            await self.start()
        while len(self._pending) >= self._max_pending:  # at most so many acks outstanding
            self._room.clear()
            await self._room.wait()
        self._counter += 1
        token = b"%d" % self._counter
        pending = self._pending[token] = Pending(token)
        try:
            if _NOT_IN_SUBJECT.search(subject) or not subject:
                raise nats.errors.BadSubjectError
            if self._fast is not None:
                frame = b"HPUB %s %s%s %d %d\r\n%s%s\r\n" % (
                    subject.encode(),
                    self._reply_head,
                    token,
                    len(block),
                    len(block) + len(data),
                    block,
                    data,
                )
                # the server counts the headers in its maximum (nats-py's own check leaves them out, and the
                # server then closes the connection)
                await self._fast.send_frame(frame, len(block) + len(data))
            else:
                headers = FastHeadersClient._parse_header_lines(block[len(HEADER_LINE) :])
                await self._nc.publish(
                    subject, data, reply=f"{self._prefix}.{token.decode()}", headers=headers
                )
        except nats.errors.Error as exc:
            self._settled(token, Outcome(failure=f"the event log cannot be reached ({type(exc).__name__})"))
        return pending

    async def settle(self, pendings: list[Pending]) -> list[Outcome]:
        """Wait for every ack, with one deadline; a publish not acked by then is an outage."""
        left = [p for p in pendings if p.outcome is None]
        if left:
            waiter = _Waiter(len(left), asyncio.get_running_loop().create_future())
            for pending in left:
                pending.waiter = waiter
            try:
                await asyncio.wait_for(asyncio.shield(waiter.future), self._ack_timeout)
            except TimeoutError:
                for pending in left:
                    self._settled(pending.token, Outcome(failure="the event log did not acknowledge in time"))
        outcomes = []
        for pending in pendings:
            assert pending.outcome is not None
            outcomes.append(pending.outcome)
        return outcomes
