"""Reading a record stored in ``ANTQ_EVENTS``: the one rule every reader of the log applies.

Every reader — the projection, a rebuild, a replay, verify, the gateway's index catch-up, ``antq audit
foreign`` — turns a stored message into one of three things, by ``StoredRecords.read``:

- a ``Recorded``: what the gateway stored, on the subject the gateway would have chosen for it;
- a ``Foreign`` record: something the gateway did not store. Either it does not decode as a stored record
  envelope (``{"office", "event": {"type", …}}``) of a known type, or its subject does not agree with its content
  (type, ward, entity; a pre-2025 locality may lie on any 2025 ward its commune went to). Readers set it aside: never counted, never halting, counted in each reader's metric
  and listed by ``antq audit foreign``. On the secure stack only the gateway may publish on ``antq.events.>``,
  so a foreign record there means a gateway bug; on the open stack anyone can publish one;
- ``UnknownEventType`` raised: a well-formed envelope whose event type this code does not know (written by a
  newer gateway). Readers halt on it, loudly: deploy readers before the gateway.

The decision depends only on the stored subject and bytes (and the 2025 ward list), so every reader decides
alike, and a replay filtered by subject counts exactly what the live projection counts.
"""

from __future__ import annotations

import msgspec

from events.codec import decode_recorded
from events.errors import EventError
from events.localities import Localities
from events.schema import TAGS, EntryCorrected, LegacyLocality, Recorded
from events.subjects import EVENTS_PREFIX, rest_of

HEAD_BYTES = 64
"""How many leading bytes of a foreign record are kept to show it."""


class UnknownEventType(EventError):
    """A stored record with a well-formed envelope whose type (or one of whose fields) this code does not know:
    a newer gateway wrote it. The reader halts: run the newer readers first (the README's deploy order)."""

    code = "unknown_type"

    def __init__(self, message: str, *, seq: int, event_type: str) -> None:
        super().__init__(message)
        self.seq = seq
        self.event_type = event_type


class Foreign(msgspec.Struct, frozen=True, kw_only=True):
    """A stored record the gateway did not store: set aside by every reader."""

    seq: int
    subject: str
    why: str
    head: bytes
    """The record's first ``HEAD_BYTES`` bytes."""


class _TypeOnly(msgspec.Struct, frozen=True, kw_only=True):
    type: str


class _Envelope(msgspec.Struct, frozen=True, kw_only=True):
    office: str
    event: _TypeOnly


_envelope = msgspec.json.Decoder(_Envelope)


class StoredRecords:
    """Classifies stored records (see the module's text). Built once per reader: it holds ward → province."""

    __slots__ = ("_province", "_successors")

    def __init__(self, localities: Localities) -> None:
        self._province: dict[str, str] = {code: p.code for p in localities.provinces() for code in p.wards}
        self._successors = localities.successors

    def read(self, seq: int, subject: str, data: bytes) -> Recorded | Foreign:
        """The record stored at ``seq`` on ``subject``; raises ``UnknownEventType`` (halt)."""
        try:
            record = decode_recorded(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            return self._undecodable(seq, subject, data, exc)
        event = record.event
        locality = event.locality
        if isinstance(locality, LegacyLocality):
            return self._read_legacy(seq, subject, data, record, locality)
        ward = locality.ward
        province = self._province.get(ward)
        if province is None:
            return self.foreign(seq, subject, data, f"ward {ward} is not an official 2025 ward code")
        if not record.office:
            return self.foreign(seq, subject, data, "the record names no office")
        if isinstance(event, EntryCorrected) and event.corrected.locality != event.locality:
            return self.foreign(seq, subject, data, "a correction whose corrected event has another locality")
        expected = f"{EVENTS_PREFIX}.{province}.{ward}.{rest_of(event)}"
        if subject != expected:
            return self.foreign(
                seq, subject, data, f"stored on {subject}, but its content belongs on {expected}"
            )
        return record

    def _read_legacy(
        self, seq: int, subject: str, data: bytes, record: Recorded, locality: LegacyLocality
    ) -> Recorded | Foreign:
        """A pre-2025 locality: the gateway stored it on its resolved 2025 ward, the ``ward`` given or one of the
        commune's successors. Any successor over every period the mapping knows is accepted, so that a later
        correction of the mapping (a rebuild resolves anew) never sets an honest record aside."""
        event = record.event
        if not record.office:
            return self.foreign(seq, subject, data, "the record names no office")
        if isinstance(event, EntryCorrected) and event.corrected.locality != locality:
            return self.foreign(seq, subject, data, "a correction whose corrected event has another locality")
        parts = subject.split(".", 4)
        ward = parts[3] if len(parts) == 5 else ""
        allowed = (locality.ward,) if locality.ward is not None else self._successors(locality.commune)
        province = self._province.get(ward)
        if ward not in allowed or province is None:
            return self.foreign(
                seq,
                subject,
                data,
                f"stored on {subject}, but pre-2025 commune {locality.commune} went to none of that subject's ward",
            )
        expected = f"{EVENTS_PREFIX}.{province}.{ward}.{rest_of(event)}"
        if subject != expected:
            return self.foreign(
                seq, subject, data, f"stored on {subject}, but its content belongs on {expected}"
            )
        return record

    @staticmethod
    def foreign(seq: int, subject: str, data: bytes, why: str) -> Foreign:
        return Foreign(seq=seq, subject=subject, why=why, head=bytes(data[:HEAD_BYTES]))

    def _undecodable(self, seq: int, subject: str, data: bytes, exc: Exception) -> Foreign:
        try:
            envelope = _envelope.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return self.foreign(seq, subject, data, f"not a stored record envelope: {exc}")
        kind = envelope.event.type
        text = str(exc)
        # a field, or a locality scheme, this code does not know: a newer gateway wrote it (never foreign)
        unknown_field = text.startswith("Object contains unknown field") or (
            text.startswith("Invalid value") and text.endswith("locality.scheme`")
        )
        if kind not in TAGS or unknown_field:
            what = f"event type {kind!r}" if kind not in TAGS else f"a field of {kind} ({exc})"
            raise UnknownEventType(
                f"seq {seq}: {what} is unknown to this reader (a newer gateway wrote it); "
                "upgrade this reader: readers are deployed before the gateway",
                seq=seq,
                event_type=kind,
            )
        return self.foreign(seq, subject, data, f"not a valid {kind} record: {exc}")
