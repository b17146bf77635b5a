"""Wire codecs: intake bodies to validated events, stored records to and from bytes.

Decoders are built once. Every failure becomes an ``EventError`` with a stable code, a message a person can
act on, and the field path (JSONPath relative to the event).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata

import msgspec

from events.errors import EventError, Invalid, Malformed, TooLarge, UnknownType
from events.schema import TAGS, EntryRetracted, Event, Recorded

MAX_BATCH = 1000
MAX_EVENT_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
VIETNAM = dt.timezone(dt.timedelta(hours=7))
EARLIEST = dt.date(2000, 1, 1)

_event_decoder = msgspec.json.Decoder(Event)
_recorded_decoder = msgspec.json.Decoder(Recorded)
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_encoder = msgspec.json.Encoder()
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")


def vietnam_today(now: dt.datetime) -> dt.date:
    """The calendar date in Vietnam (UTC+7) at instant ``now`` (aware)."""
    return now.astimezone(VIETNAM).date()


def split_body(body: bytes) -> tuple[list[msgspec.Raw], bool]:
    """Split an intake body into raw event documents; the flag says whether it was an array."""
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge(f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    stripped = body.lstrip()
    if not stripped.startswith(b"["):
        return [msgspec.Raw(body)], False
    try:
        items = _raw_list_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise Malformed(f"body is not valid JSON: {exc}") from None
    if not items:
        raise Invalid("the array is empty: send one event or 1 to 1000 events", "$")
    if len(items) > MAX_BATCH:
        raise TooLarge(f"{len(items)} events in one request; send at most {MAX_BATCH}", "$")
    return items, True


def _validation_error(exc: msgspec.ValidationError) -> EventError:
    m = _AT.match(str(exc))
    assert m is not None
    msg, path = m.group("msg"), m.group("path") or "$"
    missing = _MISSING.match(msg)
    if missing:
        field = missing.group("field")
        path = f"{path}.{field}"
        if path == "$.type":
            return Invalid("the event has no `type`; give one of: " + ", ".join(sorted(TAGS)), path)
        return Invalid(f"required field `{field}` is missing", path)
    if path == "$.type" and msg.startswith("Invalid value"):
        return UnknownType(f"{msg}: known types are " + ", ".join(sorted(TAGS)), path)
    if path == "$" and msg.startswith("Expected `object`"):
        return Malformed(f"an event must be a JSON object ({msg})", path)
    return Invalid(msg, path)


def _nfc(text: str | None) -> str | None:
    return None if text is None else unicodedata.normalize("NFC", text)


def normalise(event: Event) -> Event:
    """NFC-normalise the free-text fields (Vietnamese typed on different keyboards compares equal)."""
    changes: dict[str, str | None] = {}
    for name in ("hamlet", "note", "reason"):
        value = getattr(event, name, None)
        if value is not None and not unicodedata.is_normalized("NFC", value):
            changes[name] = _nfc(value)
    return msgspec.structs.replace(event, **changes) if changes else event


def decode_event(raw: bytes, *, today: dt.date) -> Event:
    """Decode and validate one event document; ``today`` is the current date in Vietnam."""
    if len(raw) > MAX_EVENT_BYTES:
        raise TooLarge(f"event is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    try:
        event = _event_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise Malformed(f"not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec raises it (not DecodeError) for bad UTF-8 inside a string
        raise Malformed(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    if event.occurred_on > today:
        raise Invalid(
            f"occurred_on {event.occurred_on} is after today ({today}, Vietnam time)", "$.occurred_on"
        )
    if event.occurred_on < EARLIEST:
        raise Invalid(f"occurred_on {event.occurred_on} is before {EARLIEST}", "$.occurred_on")
    if isinstance(event, EntryRetracted) and event.target_event_id == event.event_id:
        raise Invalid("an entry cannot retract itself", "$.target_event_id")
    return normalise(event)


def body_hash(event: Event) -> bytes:
    """SHA-256 of the normalised event: what makes a retry 'the same body'."""
    return hashlib.sha256(_encoder.encode(event)).digest()


def encode_recorded(record: Recorded) -> bytes:
    return _encoder.encode(record)


def decode_recorded(data: bytes) -> Recorded:
    return _recorded_decoder.decode(data)


def encode(obj: object) -> bytes:
    return _encoder.encode(obj)
