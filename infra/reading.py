"""Which reader the audit commands read a stream with: a consumer of their own, or batched direct gets.

``ANTQ_READ_MODE`` (``Settings.read_mode``): ``consumer`` (the default: an ephemeral consumer, or the named one of
``ANTQ_READ_CONSUMER`` / the nkey seed) or ``direct`` (no consumer at all: what the generated auditor identity
may do, ``infra/auth/permissions.py``). ``audit_reader(settings)`` is called once by a composition root and
handed down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.js import JetStreamContext

from infra.auth.identities import read_consumer
from infra.direct_reader import DIRECT_BATCH, read_direct_columns, stored
from infra.settings import ReadMode, Settings
from infra.stream_reader import Columns, StoredMsg, read_columns, to_stored

CONSUMER_BATCH = 500
"""Messages per pull request of a consumer read (the replay's batch, with two requests in flight)."""


@dataclass(frozen=True)
class StreamReader:
    """Reads a stream in order from ``start_seq`` to ``stop_seq`` (default: the last seq when reading began), in
    batches of ``batch`` (default: the mode's own), ``StreamReadError`` rather than an early end."""

    mode: ReadMode = "consumer"
    consumer_name: str | None = None  # consumer mode: the one name an identity may use; None: unnamed

    def columns(
        self,
        js: JetStreamContext,
        stream: str,
        *,
        start_seq: int = 1,
        stop_seq: int | None = None,
        subject: str | None = None,
        batch: int | None = None,
    ) -> AsyncIterator[Columns]:
        if self.mode == "direct":
            return read_direct_columns(
                js._nc,
                stream,
                start_seq=start_seq,
                stop_seq=stop_seq,
                subject=subject,
                batch=batch or DIRECT_BATCH,
            )
        return read_columns(
            js,
            stream,
            start_seq=start_seq,
            stop_seq=stop_seq,
            subject=subject,
            batch=batch or CONSUMER_BATCH,
            consumer_name=self.consumer_name,
        )

    async def messages(
        self,
        js: JetStreamContext,
        stream: str,
        *,
        start_seq: int = 1,
        stop_seq: int | None = None,
        subject: str | None = None,
    ) -> AsyncIterator[list[StoredMsg]]:
        """``columns`` as stored messages (subject, timestamp and headers included)."""
        convert = stored if self.mode == "direct" else to_stored
        async for cols in self.columns(js, stream, start_seq=start_seq, stop_seq=stop_seq, subject=subject):
            yield [convert(msg) for msg in cols.msgs]


def audit_reader(settings: Settings) -> StreamReader:
    """The reader of the settings' ``read_mode``; in consumer mode, under the identity's consumer name."""
    if settings.read_mode == "direct":
        return StreamReader("direct")
    return StreamReader("consumer", read_consumer(settings))
