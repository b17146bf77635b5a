"""Pull requests for whole batches on one inbox, messages collected by a plain callback.

Cheaper per message than nats-py's ``fetch`` (which awaits each message with its own timer). The server
answers a consumer's pull requests in order on the inbox; a request ends when its count is reached or with a
status message (404 no messages, 408 request expired, 409 ...).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import NamedTuple

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from infra.errors import InfraError
from infra.nats_client import FastHeadersClient


class PullError(InfraError):
    """The server stopped answering pull requests, or ended them with an error status."""


def _nothing_pending(reply: str) -> bool:
    """The consumer has nothing more to deliver now: a waiting request would only wait for its expiry.

    Read from the ack subject's ``pending`` token: the last of the 9 tokens of the v1 form, the one before the
    trailing token in the 12-token v2 form (with a domain)."""
    dots = reply.count(".")
    if dots == 8:
        return reply.endswith(".0")
    return dots == 11 and reply.rsplit(".", 2)[1] == "0"


_HEADER_LINE = b"NATS/1.0"
_STATUS_AT = len(_HEADER_LINE)


class RawMsg(NamedTuple):
    """A message as the parser cut it (``FastHeadersClient.route_raw``): what an ordered read needs, and its
    headers parsed only when asked for (``headers``, as nats-py would have parsed them)."""

    subject: str
    reply: str
    data: bytes
    header_block: bytes | None

    @property
    def headers(self) -> dict[str, str] | None:
        return parse_block(self.header_block)


def parse_block(block: bytes | None) -> dict[str, str] | None:
    """A raw header block as nats-py parses it: its headers, and a status line's code and description as
    ``Status`` and ``Description``; None when there are none."""
    if not block:
        return None
    end = block.find(b"\r\n")
    if end < 0:
        return None
    out: dict[str, str] = {}
    status = status_of(block)
    if status is not None:
        out["Status"] = status[0]
        if status[1]:
            out["Description"] = status[1]
    out.update(FastHeadersClient._parse_header_lines(block[end + 2 :]))
    return out or None


class InboxCollector:
    """One inbox of a connection: the shared part of pull and direct-get readers.

    On a ``FastHeadersClient`` its messages are handed to ``_on_raw`` straight from the protocol parser (subject,
    reply, payload, raw header block: no ``Msg``, no header parsing, no task switch per message); with any other
    client nats-py delivers them to ``_on_msg``, which hands them on in the same raw form."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        nc = self._nc
        self._sub = await nc.subscribe(
            self._inbox, cb=self._on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1
        )
        if isinstance(nc, FastHeadersClient):
            nc.route_raw(self._sub._id, self._on_raw)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            if isinstance(self._nc, FastHeadersClient):
                self._nc.route_raw(sub._id, None)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:  # a client without raw routes
        self._on_raw(msg.subject.encode(), msg.reply.encode(), msg.data, _block_of(msg.headers))

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        raise NotImplementedError


class BatchPuller(InboxCollector):
    """Pull requests on one consumer. ``request`` + ``batch`` pipeline several requests (ordered reads);
    ``fetch`` waits for what is there now, or for the first message to come (a live consumer); ``ack``
    acknowledges a message (with ``AckPolicy.ALL``, every one before it too).

    On a ``FastHeadersClient`` each message of the inbox is kept as a ``RawMsg`` by a plain function called from
    the protocol parser (no ``Msg``, no header parsing, no task switch per message); with another client, by
    a callback per message."""

    def __init__(self, nc: Client, stream: str, consumer: str) -> None:
        super().__init__(nc)
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._queue: asyncio.Queue[list[RawMsg]] = asyncio.Queue()
        self._buf: list[RawMsg] = []
        self._wanted: collections.deque[tuple[int, bool]] = collections.deque()
        self.status: tuple[str, str] | None = None
        """The last status that ended a request: (code, description)."""

    async def request(self, batch: int, *, expires: float | None = None, until_drained: bool = False) -> None:
        """Ask for ``batch`` messages: at once (what is there), or waiting up to ``expires`` seconds.

        ``until_drained``: hand the messages out as soon as the consumer has nothing more pending, instead of
        at the request's end (for a reader that stops there: the request itself stays open at the server,
        and its late end would be taken for the end of the next one).
        """
        self._wanted.append((batch, until_drained))
        if expires is None:
            body = b'{"batch":%d,"no_wait":true}' % batch
        else:
            body = b'{"batch":%d,"expires":%d}' % (batch, int(expires * 1e9))
        await self._nc.publish(self._next, body, reply=self._inbox)

    async def ack(self, msg: RawMsg) -> None:
        """Acknowledge ``msg`` (an empty message on its reply subject, as nats-py's ``Msg.ack``)."""
        await self._nc.publish(msg.reply)

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        # a status ends a request, and comes without a reply subject: a stored message is delivered with its ack
        # subject, whatever its headers (one named ``Status`` is the message's own, not the server's)
        status = status_of(headers) if not data and not reply else None
        if status is not None:
            self.status = status
            self._hand_out()
            return
        # a subject is any bytes but whitespace to the server (a foreign record's may not be UTF-8): decoded as
        # the direct reader decodes ``Nats-Subject``, it is set aside as foreign, never an error in the parser
        self._keep(
            RawMsg(subject.decode("utf-8", "replace"), reply.decode("utf-8", "replace"), data, headers)
        )

    def _keep(self, msg: RawMsg) -> None:
        """One message of the open requests (the oldest one's, as the server answers them in order)."""
        self._buf.append(msg)
        if self._wanted:
            count, until_drained = self._wanted[0]
            if len(self._buf) >= count or (until_drained and _nothing_pending(msg.reply)):
                self._hand_out()

    def _hand_out(self) -> None:
        batch, self._buf = self._buf, []
        if self._wanted:
            self._wanted.popleft()
        self._queue.put_nowait(batch)

    async def batch(self, timeout: float) -> list[RawMsg]:
        """The messages of the oldest request still open, once it has ended."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            raise PullError(f"no answer from the server within {timeout}s") from None

    async def fetch(self, batch: int, timeout: float) -> list[RawMsg]:
        """Up to ``batch`` messages: those there now, else the first to come within ``timeout`` and those
        right behind it. An empty list when nothing came. One request at a time."""
        await self.request(batch)
        msgs = await self.batch(timeout + 5.0)
        if msgs:
            return msgs
        self._check_status()
        await self.request(1, expires=timeout)
        first = await self.batch(timeout + 5.0)
        if not first:
            self._check_status()
            return []
        if batch == 1:
            return first
        await self.request(batch - 1)
        return first + await self.batch(timeout + 5.0)

    def _check_status(self) -> None:
        if self.status is not None and self.status[0] not in ("404", "408"):
            code, description = self.status
            raise PullError(f"pull request ended with {code} {description}")


def status_of(block: bytes | None) -> tuple[str, str] | None:
    """The (code, description) of a status message's header block (``NATS/1.0 404 No Messages``), else None."""
    if not block or block[_STATUS_AT : _STATUS_AT + 1] != b" ":
        return None
    line = block[_STATUS_AT + 1 :].split(b"\r\n", 1)[0].decode("utf-8", "replace")
    code, _, description = line.strip().partition(" ")
    return code, description.strip()


def _block_of(headers: dict[str, str] | None) -> bytes | None:
    """Headers parsed by nats-py, written back as a header block (``RawMsg.headers`` and ``status_of`` read it
    again): its ``Status`` and ``Description`` (keyed by an enum member in nats-py) back on the first line."""
    if not headers:
        return None
    named = {str(getattr(k, "value", k)): v for k, v in headers.items()}
    status = named.pop("Status", None)
    description = named.pop("Description", "")
    first = f"NATS/1.0 {status} {description}".rstrip() if status else "NATS/1.0"
    lines = "".join(f"{k}: {v}\r\n" for k, v in named.items())
    return f"{first}\r\n{lines}\r\n".encode()
