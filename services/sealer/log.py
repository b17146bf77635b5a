"""The seals stream as read so far: one chain per sealed stream, read incrementally from ANTQ_SEALS."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from nats.js import JetStreamContext

from infra.reading import StreamReader
from infra.stream_reader import last_sequence
from services.sealer.chain import Seal, decode_seal


@dataclass(frozen=True)
class LoggedSeal:
    seals_seq: int  # its sequence in the seals stream
    seal: Seal


@dataclass
class SealLog:
    """Seals of ``events_stream`` found in ``seals_stream`` up to ``last_seq`` (every message read so far).
    ``reader``: how to read the seals stream (``infra.reading.audit_reader``; default: an unnamed consumer)."""

    js: JetStreamContext
    seals_stream: str
    events_stream: str
    reader: StreamReader = field(default_factory=StreamReader)
    last_seq: int = 0
    seals: list[LoggedSeal] = field(default_factory=list)
    malformed: list[int] = field(default_factory=list)

    async def refresh(self) -> None:
        """Read what was appended since the last refresh; afterwards ``last_seq`` is the stream's last seq."""
        stop = await last_sequence(self.js, self.seals_stream)
        if stop <= self.last_seq:
            self.last_seq = stop
            return
        async for batch in self.reader.messages(
            self.js, self.seals_stream, start_seq=self.last_seq + 1, stop_seq=stop
        ):
            for msg in batch:
                try:
                    seal = decode_seal(msg.data)
                except (msgspec.ValidationError, msgspec.DecodeError):
                    self.malformed.append(msg.seq)
                    continue
                if seal.stream == self.events_stream:
                    self.seals.append(LoggedSeal(msg.seq, seal))
        self.last_seq = stop

    @property
    def tip(self) -> Seal | None:
        return self.seals[-1].seal if self.seals else None
