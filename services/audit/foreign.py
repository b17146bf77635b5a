"""``antq audit foreign``: the records of ANTQ_EVENTS that every reader sets aside (``events.stored``).

Read from the log alone, with the same rule as the projection, rebuilds, replays, verify and the gateway's
index catch-up, so the list is exactly what they all passed over. A record of a type this code does not know
(which halts the readers) is listed too, with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client

from events.localities import Localities
from events.stored import Foreign, StoredRecords, UnknownEventType
from infra.reading import StreamReader
from infra.streams import EVENTS


@dataclass(frozen=True)
class ForeignScan:
    records: list[Foreign]
    unknown_types: list[Foreign]
    """Records whose type this code does not know: the readers halt on them (not foreign)."""
    read: int
    """Sequences read."""


async def scan_foreign(
    nc: Client,
    localities: Localities,
    *,
    reader: StreamReader | None = None,
    start_seq: int = 1,
    stop_seq: int | None = None,
    stream: str = EVENTS,
) -> ForeignScan:
    reader = reader or StreamReader()
    stored = StoredRecords(localities)
    found: list[Foreign] = []
    unknown: list[Foreign] = []
    read = 0
    js = nc.jetstream()
    async for cols in reader.columns(js, stream, start_seq=start_seq, stop_seq=stop_seq):
        read += len(cols.seqs)
        for seq, subject, body in zip(cols.seqs, cols.subjects, cols.bodies, strict=True):
            try:
                got = stored.read(seq, subject, body)
            except UnknownEventType as exc:
                unknown.append(stored.foreign(seq, subject, body, exc.message))
                continue
            if isinstance(got, Foreign):
                found.append(got)
    return ForeignScan(found, unknown, read)
