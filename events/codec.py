"""Wire codecs: intake bodies to validated events, stored records to and from bytes.

Decoders are built once. Every failure becomes an ``EventError`` with a stable code, a message a person can
act on, and the field path (JSONPath relative to the event).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import unicodedata
import uuid

import msgspec

from events.errors import EventError, Invalid, Malformed, TooLarge, UnknownType
from events.jsonscan import MAX_DEPTH, duplicate_key, too_deep
from events.schema import (
    EVENT_TYPES,
    FREE_TEXT_FIELDS,
    ID_FIELDS,
    ID_LIST_FIELDS,
    TAGS,
    DatedValue,
    EntryCorrected,
    EntryRetracted,
    Event,
    Recorded,
    SafetyAssessed,
    SafetyRegistered,
    dated_values_of,
)
from events.text import text_problem

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
_PLAIN_KEY = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")
_NIL_UUID = uuid.UUID(int=0)
_MAX_UUID = uuid.UUID(int=2**128 - 1)
# per event type, the id and free-text fields it has (looked up once, not tried by name on every event)
_IDS_OF = {t: tuple(n for n in ID_FIELDS if n in t.__struct_fields__) for t in EVENT_TYPES}
_ID_LISTS_OF = {t: tuple(n for n in ID_LIST_FIELDS if n in t.__struct_fields__) for t in EVENT_TYPES}
_TEXTS_OF = {t: tuple(n for n in FREE_TEXT_FIELDS if n in t.__struct_fields__) for t in EVENT_TYPES}
_DATED_OF: dict[type, tuple[DatedValue, ...]] = {t: dated_values_of(t) for t in EVENT_TYPES}


def vietnam_today(now: dt.datetime) -> dt.date:
    """The calendar date in Vietnam (UTC+7) at instant ``now`` (aware)."""
    return now.astimezone(VIETNAM).date()


def split_body(body: bytes) -> tuple[list[msgspec.Raw], bool]:
    """Split an intake body into raw event documents; the flag says whether it was an array."""
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge(f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    _check_depth(body)
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


def _check_depth(body: bytes) -> None:
    """Refuse a body nested deeper than ``MAX_DEPTH`` before any recursive decoder sees it (msgspec and
    Python's json raise ``RecursionError`` at about 1,000, which no handler expects)."""
    depth = too_deep(body)
    if depth is not None:
        raise TooLarge(f"the body is nested {depth} deep; the limit is {MAX_DEPTH}", "$")


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
    unknown = _UNKNOWN.match(msg)
    if unknown:
        field = unknown.group("field")
        return Invalid(
            f"unknown field `{field}`: it is not part of this event (misspelt?); nothing was stored",
            f"{path}.{field}" if _PLAIN_KEY.match(field) else f"{path}[{json.dumps(field)}]",
        )
    if path == "$.type" and msg.startswith("Invalid value"):
        return UnknownType(f"{msg}: known types are " + ", ".join(sorted(TAGS)), path)
    if path == "$" and msg.startswith("Expected `object`"):
        return Malformed(f"an event must be a JSON object ({msg})", path)
    return Invalid(msg, path)


def _check_ids(event: Event, at: str = "$") -> None:
    for name in _IDS_OF[type(event)]:
        _check_id(name, getattr(event, name), f"{at}.{name}", "is")
    for name in _ID_LISTS_OF[type(event)]:
        seen: set[uuid.UUID] = set()
        for i, value in enumerate(getattr(event, name)):
            _check_id(name, value, f"{at}.{name}[{i}]", "holds")
            if value in seen:
                raise Invalid(f"{value} is given twice in {name}: name each once", f"{at}.{name}[{i}]")
            seen.add(value)


def _check_id(name: str, value: uuid.UUID, path: str, verb: str) -> None:
    if value.int in (0, _MAX_UUID.int):
        which = "nil" if value == _NIL_UUID else "max"
        raise Invalid(
            f"{name} {verb} the {which} UUID {value}, which is no identifier: use a random one", path
        )


def _check_text(event: Event, at: str = "$") -> None:
    for name in _TEXTS_OF[type(event)]:
        value = getattr(event, name)
        if value is not None:
            problem = text_problem(value)
            if problem is not None:
                raise Invalid(f"{name} {problem}", f"{at}.{name}")


def _check_dates(event: Event, today: dt.date, at: str = "$") -> None:
    if event.occurred_on > today:
        raise Invalid(
            f"occurred_on {event.occurred_on} is after today ({today}, Vietnam time)", f"{at}.occurred_on"
        )
    if event.occurred_on < EARLIEST:
        raise Invalid(f"occurred_on {event.occurred_on} is before {EARLIEST}", f"{at}.occurred_on")


def _check_dated_values(event: Event, at: str = "$") -> None:
    """A value tied to a date (``events.schema.DATED_VALUES``) outside its dates: ``invalid`` at its field."""
    for rule in _DATED_OF[type(event)]:
        if getattr(event, rule.field) != rule.value:
            continue
        day = event.occurred_on
        if rule.valid_from is not None and day < rule.valid_from:
            raise Invalid(
                f"{rule.field} `{rule.value}` exists only from {rule.valid_from} ({rule.why}); this event "
                f"occurred on {day}",
                f"{at}.{rule.field}",
            )
        if rule.valid_to is not None and day > rule.valid_to:
            raise Invalid(
                f"{rule.field} `{rule.value}` exists only until {rule.valid_to} ({rule.why}); this event "
                f"occurred on {day}",
                f"{at}.{rule.field}",
            )


def _check_standard_year(event: Event, at: str = "$") -> None:
    """A registration for the "An toàn về ANTT" standard lies in its year; an assessment in its year or
    before 1 April of the next (units are assessed at year end)."""
    if isinstance(event, SafetyRegistered) and event.occurred_on.year != event.year:
        raise Invalid(
            f"a registration for the standard of {event.year} is made in {event.year}, not on {event.occurred_on}",
            f"{at}.occurred_on",
        )
    if isinstance(event, SafetyAssessed) and not (
        dt.date(event.year, 1, 1) <= event.occurred_on < dt.date(event.year + 1, 4, 1)
    ):
        raise Invalid(
            f"the assessment for the standard of {event.year} is made in {event.year} or before "
            f"{event.year + 1}-04-01, not on {event.occurred_on}",
            f"{at}.occurred_on",
        )


def _check_correction(event: EntryCorrected, today: dt.date) -> None:
    """The corrected copy is validated like any event, at ``$.corrected.…`` paths, and carries the
    correction's own locality and an event_id of its own."""
    inner = event.corrected
    _check_ids(inner, "$.corrected")
    _check_text(inner, "$.corrected")
    _check_dates(inner, today, "$.corrected")
    _check_dated_values(inner, "$.corrected")
    _check_standard_year(inner, "$.corrected")
    if inner.locality != event.locality:
        raise Invalid(
            "the corrected event's locality differs from the correction's: both carry the target's locality",
            "$.corrected.locality",
        )
    if getattr(inner, "expected_version", None) is not None:
        raise Invalid(
            "a correction is not checked against its tip's version (it does not change it): leave "
            "expected_version out of the corrected event",
            "$.corrected.expected_version",
        )
    if inner.event_id in (event.event_id, event.target_event_id):
        raise Invalid(
            "the corrected event needs an event_id of its own (not the correction's, not the target's)",
            "$.corrected.event_id",
        )


def _nfc(text: str | None) -> str | None:
    return None if text is None else unicodedata.normalize("NFC", text)


def normalise(event: Event) -> Event:
    """NFC-normalise the free-text fields (Vietnamese typed on different keyboards compares equal)."""
    changes: dict[str, object] = {}
    for name in _TEXTS_OF[type(event)]:
        value = getattr(event, name)
        if value is not None and not unicodedata.is_normalized("NFC", value):
            changes[name] = _nfc(value)
    if isinstance(event, EntryCorrected):
        inner = normalise(event.corrected)
        if inner is not event.corrected:
            changes["corrected"] = inner
    return msgspec.structs.replace(event, **changes) if changes else event


def decode_event(raw: bytes, *, today: dt.date) -> Event:
    """Decode and validate one event document; ``today`` is the current date in Vietnam."""
    return decode_event_encoded(raw, today=today)[0]


def decode_event_encoded(raw: bytes, *, today: dt.date) -> tuple[Event, bytes]:
    """``decode_event``, with the normalised event's encoding: what ``body_hash`` hashes and the stored record
    holds (``recorded_bytes``), made once. The same encoding tells, by counting quotes, that no key was given
    twice (``duplicate_key``)."""
    if len(raw) > MAX_EVENT_BYTES:
        raise TooLarge(f"event is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    _check_depth(raw)
    try:
        event = _event_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise Malformed(f"not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec raises it (not DecodeError) for bad UTF-8 inside a string
        raise Malformed(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    encoded = _encoder.encode(event)
    duplicate = duplicate_key(raw, encoded)
    if duplicate is not None:
        raise Invalid("this key is given twice in the same object: give each key once", duplicate)
    _check_ids(event)
    _check_text(event)
    _check_dates(event, today)
    _check_dated_values(event)
    _check_standard_year(event)
    if isinstance(event, EntryRetracted) and event.target_event_id == event.event_id:
        raise Invalid("an entry cannot retract itself", "$.target_event_id")
    if isinstance(event, EntryCorrected):
        if event.target_event_id == event.event_id:
            raise Invalid("an entry cannot correct itself", "$.target_event_id")
        _check_correction(event, today)
    normalised = normalise(event)
    if normalised is not event:
        encoded = _encoder.encode(normalised)
    return normalised, encoded


def body_hash(event: Event) -> bytes:
    """SHA-256 of the normalised event: what makes a retry 'the same body'."""
    return hash_of_encoded(_encoder.encode(event))


def hash_of_encoded(encoded: bytes) -> bytes:
    """``body_hash`` of an event from its encoding (``decode_event_encoded``)."""
    return hashlib.sha256(encoded).digest()


def recorded_bytes(office: str, encoded: bytes) -> bytes:
    """``encode_recorded(Recorded(office=office, event=event))`` from the event's encoding, without encoding
    it again: the record's two fields in their declared order (``tests/test_codec.py`` holds them equal)."""
    return b'{"office":%s,"event":%s}' % (_encoder.encode(office), encoded)


def encode_recorded(record: Recorded) -> bytes:
    return _encoder.encode(record)


def decode_recorded(data: bytes) -> Recorded:
    return _recorded_decoder.decode(data)


def encode(obj: object) -> bytes:
    return _encoder.encode(obj)
