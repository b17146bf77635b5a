"""The update feed fanned out to the pages: one ordered consumer of ``ANTQ_UPDATES`` (new updates only: the
``web`` role may create no other kind) per process, each update (verified against the pinned key when one is
given) handed to the pages watching its province, as a server-sent event."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DeliverPolicy

from events.subjects import UPDATES_PREFIX
from infra.streams import UPDATES
from infra.update_signing import verify_update

log = logging.getLogger(__name__)

QUEUE = 256
HEARTBEAT_S = 15.0


class Update(msgspec.Struct, frozen=True, kw_only=True):
    """The part of an update a page uses (the payload of ``antq.updates.stats.<P>.<W>.<Y>``)."""

    ward: str
    year: int
    period: str
    province: str
    metrics: dict[str, int]
    as_of_seq: int


_decode = msgspec.json.Decoder(Update)
_encode = msgspec.json.Encoder()


class Watcher:
    def __init__(self, provinces: frozenset[str] | None) -> None:
        self.provinces = provinces  # None: every province
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)
        self.missed = False


class Hub:
    def __init__(
        self, nc: Client, public_key: str | None, on_update: Callable[[str], None] | None = None
    ) -> None:
        self._nc = nc
        self._on_update = on_update
        self._key = public_key
        self._watchers: set[Watcher] = set()
        self._sub: Subscription | None = None
        self.received = 0
        self.refused = 0

    async def start(self) -> None:
        self._sub = await self._nc.jetstream().subscribe(
            f"{UPDATES_PREFIX}.>",
            stream=UPDATES,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            cb=self._on_msg,
        )

    async def stop(self) -> None:
        for watcher in list(self._watchers):
            self._close(watcher)
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # the connection may be closing already
                log.debug("unsubscribe from the update feed failed", exc_info=True)
            self._sub = None

    def _close(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)
        try:
            watcher.queue.put_nowait(None)
        except asyncio.QueueFull:
            watcher.queue.get_nowait()
            watcher.queue.put_nowait(None)

    async def _on_msg(self, msg: Msg) -> None:
        if self._key is not None and not verify_update(msg.data, msg.headers, self._key, subject=msg.subject):
            self.refused += 1
            log.warning("update on %s refused: no valid signature of the pinned key", msg.subject)
            return
        try:
            update = _decode.decode(msg.data)
        except msgspec.DecodeError:
            self.refused += 1
            return
        self.received += 1
        if self._on_update is not None:
            self._on_update(update.province)
        event = b"event: update\ndata: " + _encode.encode(update) + b"\n\n"
        for watcher in self._watchers:
            if watcher.provinces is None or update.province in watcher.provinces:
                try:
                    watcher.queue.put_nowait(event)
                except asyncio.QueueFull:
                    watcher.missed = True  # a page that cannot keep up asks again anyway

    def watch(self, provinces: frozenset[str] | None) -> Watcher:
        watcher = Watcher(provinces)
        self._watchers.add(watcher)
        return watcher

    async def stream(self, watcher: Watcher) -> AsyncIterator[bytes]:
        """The events of one page: ``ready`` first, then its updates, a comment every ``HEARTBEAT_S``."""
        try:
            yield b"event: ready\ndata: {}\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if event is None:
                    return
                yield event
        finally:
            self._watchers.discard(watcher)
