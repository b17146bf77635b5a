"""A nats-py client cheap enough for long reads: cheap header parsing, and inboxes whose messages skip nats-py's
per-message machinery.

nats-py 2.16 parses every header line with a generator over the characters of its name; a direct get
(``infra/direct_reader.py``) answers each stored message with its own headers plus six ``Nats-*`` ones, and that
loop then costs more than the rest of the read. ``FastHeadersClient`` parses the same lines the same way (same
names kept, same values: ``tests/test_direct_reader.py`` compares both on random header blocks), with the name
checked by one regular expression. The reader works with any ``Client``; this one only makes it faster.

``route_raw`` hands the messages of one subscription straight to a plain function, as the parser cut them
(subject, reply, payload, header block): no ``Msg`` object, no header parsing, no queue and no task switch per
message. An ordered read of a whole stream (``infra.pull.RawPuller``) spends most of its time there otherwise.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.aio.client import Client

_CRLF = b"\r\n"
_SPACE = re.compile(rb"[\t-\r\x1c- ]")
"""The ASCII characters ``str.isspace`` accepts (a header name holding any of them is dropped, as nats-py does)."""


@functools.lru_cache(maxsize=1024)
def _header_name(raw: bytes) -> str | None:
    """A header name as nats-py keeps it, or None when it drops the line (not ASCII, or with whitespace)."""
    name = raw.strip()
    if not name.isascii() or _SPACE.search(name):
        return None
    return name.decode("ascii")


RawHandler = Callable[[bytes, bytes, bytes, bytes | None], None]
"""Called with (subject, reply, payload, header block or None) for each message of a routed subscription."""


class FastHeadersClient(Client):
    def __init__(self) -> None:
        super().__init__()
        self._raw_routes: dict[int, RawHandler] = {}

    def route_raw(self, sid: int, handler: RawHandler | None) -> None:
        """Hand the messages of subscription ``sid`` to ``handler`` (None: back to nats-py's own delivery)."""
        if handler is None:
            self._raw_routes.pop(sid, None)
        else:
            self._raw_routes[sid] = handler

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        handler = self._raw_routes.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        stats = self.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            handler(subject, reply, data, headers)
        except Exception as exc:
            # raised into the parser it would end nats-py's read loop: the whole connection deaf (every
            # subscription, every publish ack) while still 'connected'. Reported as nats-py reports an error
            # in a subscription's callback; the message is dropped (ordered readers notice the gap).
            await self._error_cb(exc)

    async def send_frame(self, frame: bytes, payload_size: int) -> None:
        """Queue one protocol frame built by the caller (an ``HPUB`` of ``infra.js_publisher``) as
        ``Client.publish`` queues its own: the same refusals (closed, draining, buffer full while reconnecting,
        payload over the server's maximum), the same statistics, the same flush. What ``publish`` does besides,
        building the frame from a header dict with a regular expression per name, is the caller's, once.
        ``payload_size``: what the server holds against its maximum (an HPUB's headers and payload)."""
        if self.is_closed:
            raise nats.errors.ConnectionClosedError
        if self.is_draining_pubs:
            raise nats.errors.ConnectionDrainingError
        if not self.is_connected and (
            self._max_pending_size <= 0 or payload_size + self._pending_data_size > self._max_pending_size
        ):
            raise nats.errors.OutboundBufferLimitError
        if payload_size > self._max_payload:
            raise nats.errors.MaxPayloadError
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        await self._send_command(frame)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in raw.split(_CRLF):
            name, sep, value = line.partition(b":")
            if sep and (key := _header_name(name)) is not None:
                out[key] = value.strip().decode("utf-8", "replace")
        return out


def server_urls(url: str) -> list[str]:
    """The servers of a NATS URL setting: one URL, or several comma-separated (every node of a cluster, as
    ``antq dev up --cluster 3`` prints them). nats-py takes a list (``servers=[...]``): given one string holding
    commas it refuses it. With every node listed, a client connects, and reconnects, to whichever answers."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise ValueError(f"no NATS server URL in {url!r}")
    return urls


async def connect(url: str, **options: Any) -> Client:
    """``nats.connect`` with a ``FastHeadersClient``; ``url`` may list several servers (``server_urls``)."""
    nc = FastHeadersClient()
    await nc.connect(server_urls(url), **options)
    return nc
