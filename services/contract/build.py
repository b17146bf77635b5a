"""The contract documents, built from the code: pure (no I/O but ``write``), deterministic.

Every schema comes from ``msgspec.json.schema_components`` over the Structs the services decode and encode, so it
follows the code: an event type added to ``events.schema.EVENT_TYPES`` (and the ``Event`` union) gets its schema
file, its enums and its place in the union without a change here. The schemas are JSON Schema draft-07 (the
dialect AsyncAPI 3 requires tools to support; ``definitions`` rather than ``$defs``), made portable:

- patterns are ECMA-262, as JSON Schema specifies: Python's ``\\A`` and ``\\Z`` anchors become ``^`` and ``$``;
- what the gateway checks on a field beyond its type is added where JSON Schema can say it: no nil or max UUID
  in an id (``not``), and the characters free text may hold (``pattern``, computed from ``events.text``);
- the codes an error may carry are listed in the description of its ``code``.

Descriptions come from the code too: docstrings and ``Meta`` descriptions (msgspec), and the catalogue
(``events.catalogue``): each type's summary, subject and entity rule and figures, and the metric names.

What no schema can say (a date not after today, a ward that exists, the entity rules) is written in
``asyncapi.yaml``'s description, with the error each one gives.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from events import codec, subjects
from events.catalogue import CATALOGUE, SPECS, ended_entities, metric_names
from events.errors import EventError
from events.intake import MAX_MESSAGE, ErrorDetail, IntakeResult, RejectedRecord
from events.jsonscan import MAX_DEPTH
from events.schema import DATED_VALUES, EVENT_TYPES, BaseEvent, DatedValue, Event, Recorded, dated_values_of
from events.text import FORBIDDEN
from infra import update_signing
from infra.streams import REJECTED_RAW_LIMIT
from projections.store import StatsUpdate
from services.contract import yaml
from services.gateway.errors import GatewayError, OfficesFileError
from services.query import request as query_request
from services.query.errors import QueryError
from services.query.request import ErrorBody, ErrorReply, StatsQuery, StatsReply

DIALECT = "http://json-schema.org/draft-07/schema#"
SCHEMA_FORMAT = "application/schema+json;version=draft-07"
REF = "#/definitions/{name}"
SCHEMAS = "schemas"
NIL_UUID = str(uuid.UUID(int=0))
MAX_UUID = str(uuid.UUID(int=2**128 - 1))
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

INTAKE_CODES: Mapping[str, str] = {
    "malformed": "the body or an event is not JSON, not UTF-8, or an event is not a JSON object",
    "unknown_type": "`type` names no event type of the catalogue (the message lists the known ones)",
    "invalid": "the event does not match its schema (a field missing, unknown, of the wrong type or out of "
    "bounds, a key given twice, a date after today) or contradicts the log (a tip assessed in another ward)",
    "unknown_locality": "the locality is well formed but names no unit on that date",
    "unknown_office": "the intake subject names no registered office",
    "out_of_jurisdiction": "the event's ward is outside the office's jurisdiction",
    "unknown_target": "the tip, case or entry an event refers to is not in the log",
    "conflict": "`expected_version` is not the entity's latest version, or the entity exists already / has "
    "ended (a retraction of an entry already retracted)",
    "id_reused": "this `event_id` was stored with another body: choose a new id for a new event",
    "too_large": "a limit on size, count or nesting is exceeded (see the limits)",
    "unavailable": "not stored now, try again: the log did not answer, or the office's rate was exceeded "
    "(`retry_after_ms` says when)",
}
"""Every code the gateway's replies carry, with what it means. A test keeps it equal to the codes of the
exception classes of ``events.errors`` and ``services.gateway.errors``."""

QUERY_CODES: Mapping[str, str] = {
    "bad_request": "the request does not match its schema (path of the offending field; `$` for the body)",
    "unknown_locality": "a ward or province code that is no official 2025 code",
    "timeout": "the read model had not folded `min_seq` within `timeout_ms` (path `$.min_seq`)",
    "busy": "too many requests already wait for their `min_seq`: retry later",
    "unavailable": "the service cannot answer now (database away, stopping): retry",
}
"""Every code the query service's error replies carry (a test keeps it equal to ``services.query.errors``)."""


def wire_codes(*roots: type[Exception]) -> set[str]:
    """The ``code`` of every exception class under ``roots`` that can reach the wire."""
    found: set[str] = set()
    todo: list[type[Exception]] = list(roots)
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls is not OfficesFileError and cls.__module__.endswith(".errors"):
            found.add(str(getattr(cls, "code")))  # noqa: B009 - a ClassVar of every root
    return found


def intake_wire_codes() -> set[str]:
    return wire_codes(EventError, GatewayError)


def query_wire_codes() -> set[str]:
    return wire_codes(QueryError)


def event_tag(cls: type[msgspec.Struct]) -> str:
    return str(cls.__struct_config__.tag)


# --- making msgspec's schemas portable ------------------------------------------------------------------


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object in ``node`` (itself included), depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def _ecma_pattern(pattern: str) -> str:
    """Python's whole-string anchors as ECMA-262 ones (``$`` there never matches before a final newline)."""
    if pattern.startswith("\\A"):
        pattern = "^" + pattern[2:]
    if pattern.endswith("\\Z"):
        pattern = pattern[:-2] + "$"
    if "\\A" in pattern or "\\Z" in pattern:
        raise ValueError(f"pattern {pattern!r} has a Python-only anchor inside it")
    return pattern


def _portable(node: Any) -> None:
    for schema in walk(node):
        if isinstance(schema.get("pattern"), str):
            schema["pattern"] = _ecma_pattern(schema["pattern"])


def _ranges(chars: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for c in chars:
        if runs and runs[-1][1] == c - 1:
            runs[-1] = (runs[-1][0], c)
        else:
            runs.append((c, c))
    return runs


def _class_body(runs: list[tuple[int, int]]) -> str:
    def esc(c: int) -> str:
        if c > 0xFFFF:
            raise ValueError("free-text rule names a character beyond the BMP: extend _class_body")
        return f"\\u{c:04x}"

    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in runs)


def free_text_pattern() -> str:
    """The ECMA-262 pattern of what ``events.text`` lets free text hold: no forbidden character, and at least
    one that is not white space (text blank once trimmed is refused). Computed by asking ``FORBIDDEN`` about
    every code point, so it follows that rule whatever its regex looks like."""
    # the Basic Multilingual Plane only: a pattern without the ``u`` flag cannot name a character beyond it (the
    # invisible tag characters U+E0000–U+E007F are refused by the gateway all the same: said in the text below)
    forbidden = [c for c in range(0x10000) if FORBIDDEN.match(chr(c))]
    body = _class_body(_ranges(forbidden))
    return f"^[^{body}]*[^{body}\\s][^{body}]*$"


def _event_rules(definitions: dict[str, Any], names: set[str], text_pattern: str) -> None:
    """What the gateway checks beyond msgspec's types, on the definitions ``names`` (the events' own)."""
    for name in names:
        for schema in walk(definitions[name]):
            if schema.get("type") != "string":
                continue
            if schema.get("format") == "uuid":
                schema["pattern"] = UUID_PATTERN
                schema["not"] = {"enum": [NIL_UUID, MAX_UUID]}
                schema.setdefault(
                    "description", "a UUID in its hyphenated form, not the nil UUID nor the max UUID"
                )
            elif not {"enum", "pattern", "format", "contentEncoding"} & schema.keys():
                schema["pattern"] = text_pattern
                schema.setdefault(
                    "description",
                    "free text: no control characters but newline and tab, no bidirectional controls, no "
                    "zero-width characters, not blank (NFC-normalised when stored)",
                )


def date_pattern(day: dt.date, *, after: bool) -> str:
    """An ECMA-262 pattern of the ISO dates (``YYYY-MM-DD``) on or after ``day`` (``after``), or on or before it:
    for strings of one fixed shape the order of the text is the order of the dates, so each alternative keeps a
    prefix of ``day`` and then takes a greater (or smaller) digit."""
    text = day.isoformat()
    options = []
    for i, c in enumerate(text):
        if not c.isdigit():
            continue
        low, high = (int(c) + 1, 9) if after else (0, int(c) - 1)
        if low <= high:
            digits = str(low) if low == high else f"[{low}-{high}]"
            options.append(re.escape(text[:i]).replace("\\-", "-") + digits)
    options.append(text)
    return "^(" + "|".join(options) + ")"


def dated_value_rule(rule: DatedValue) -> dict[str, Any]:
    """``if`` the field holds the value, ``then`` ``occurred_on`` lies within its dates."""
    patterns: list[dict[str, Any]] = []
    if rule.valid_from is not None:
        patterns.append({"pattern": date_pattern(rule.valid_from, after=True)})
    if rule.valid_to is not None:
        patterns.append({"pattern": date_pattern(rule.valid_to, after=False)})
    return {
        "if": {"properties": {rule.field: {"const": rule.value}}, "required": [rule.field]},
        "then": {"properties": {"occurred_on": {"allOf": patterns}}},
    }


def dated_value_text(rule: DatedValue) -> str:
    since = f" from {rule.valid_from}" if rule.valid_from else ""
    until = f" until {rule.valid_to}" if rule.valid_to else ""
    return f"`{rule.field}` = `{rule.value}` only for `occurred_on`{since}{until} ({rule.why})"


def _links_unique(definitions: dict[str, Any], event_types: tuple[type[BaseEvent], ...]) -> None:
    """A list naming entities (``EventSpec.links``) names each once (the gateway refuses an id given twice)."""
    for cls in event_types:
        links = SPECS[cls].links
        if links is not None:
            definitions[cls.__name__]["properties"][links.field]["uniqueItems"] = True


def _dated_values(definitions: dict[str, Any], event_types: tuple[type[BaseEvent], ...]) -> None:
    """Each value tied to a date (``events.schema.DATED_VALUES``), on the definition of every type that has it."""
    for cls in event_types:
        rules = dated_values_of(cls)
        if rules:
            definitions[cls.__name__]["allOf"] = [dated_value_rule(r) for r in rules]


def _describe_codes(definitions: dict[str, Any], name: str, codes: Mapping[str, str]) -> None:
    code = definitions[name]["properties"]["code"]
    listed = "; ".join(f"`{c}`: {meaning}" for c, meaning in sorted(codes.items()))
    code["description"] = (
        "a stable code (new codes may be added: treat one you do not know as a refusal). " + listed
    )


def _reachable(definitions: Mapping[str, Any], root: Any) -> set[str]:
    seen: set[str] = set()
    todo = [root]
    while todo:
        for schema in walk(todo.pop()):
            ref = schema.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/definitions/"):
                name = ref.removeprefix("#/definitions/")
                if name not in seen:
                    seen.add(name)
                    todo.append(definitions[name])
    return seen


class Components:
    """The schemas of every wire type, sharing one set of definitions (names are the Structs' names)."""

    def __init__(self) -> None:
        self.event_types: tuple[type[BaseEvent], ...] = tuple(EVENT_TYPES)
        extra: tuple[Any, ...] = (
            Event,
            Recorded,
            IntakeResult,
            RejectedRecord,
            StatsQuery,
            StatsReply,
            ErrorReply,
            StatsUpdate,
        )
        roots, definitions = msgspec.json.schema_components((*self.event_types, *extra), ref_template=REF)
        self.roots: dict[Any, Any] = dict(zip((*self.event_types, *extra), roots, strict=True))
        self.definitions: dict[str, Any] = definitions
        _portable(self.definitions)
        _portable(self.roots)
        event_names = _reachable(definitions, [self.roots[t] for t in self.event_types])
        _event_rules(definitions, event_names, free_text_pattern())
        _dated_values(definitions, self.event_types)
        _links_unique(definitions, self.event_types)
        _describe_codes(definitions, ErrorDetail.__name__, INTAKE_CODES)
        _describe_codes(definitions, ErrorBody.__name__, QUERY_CODES)
        _describe_metrics(definitions, StatsReply.__name__, StatsUpdate.__name__)
        definitions["Event"] = self.roots[Event]

    def document(self, root: Any, *, title: str, description: str) -> dict[str, Any]:
        """A self-contained schema file: ``root`` with the definitions it uses (inlined when it is one)."""
        doc: dict[str, Any] = copy.deepcopy(root)
        ref = doc.get("$ref")
        if isinstance(ref, str) and set(doc) == {"$ref"}:
            doc = copy.deepcopy(self.definitions[ref.removeprefix("#/definitions/")])
        names = _reachable(self.definitions, doc)
        if names:
            doc["definitions"] = {name: copy.deepcopy(self.definitions[name]) for name in sorted(names)}
        doc["$schema"] = DIALECT
        doc["title"] = title
        given = doc.get("description")
        doc["description"] = description if not given else f"{description}\n\n{given}"
        return doc


# --- the documents ------------------------------------------------------------------------------------


def links_rule(cls: type[BaseEvent]) -> str:
    """What the catalogue says of the entities a type names in a list field (``EventSpec.links``)."""
    links = SPECS[cls].links
    if links is None:
        return ""
    return (
        f" Each of `{links.field}` names a {links.name} already in the log (not retracted), of the event's own "
        f"ward, given once (`invalid` at `$.{links.field}[i]` otherwise)."
    )


def subject_rule(cls: type[BaseEvent]) -> str:
    """What the catalogue says of the type's subject and entity, as a sentence for a client."""
    spec = SPECS[cls]
    entity = spec.entity
    if entity is None:
        return f"Plain: stored on `…{spec.subject}`, independent of other events.{links_rule(cls)}"
    where = f"stored on `…{entity.name}.{{{entity.field}}}`"
    if entity.role == "creates":
        text = (
            f"Creates the {entity.name} `{entity.field}` ({where}): a second event creating it is `conflict`."
        )
    elif entity.role == "refers":
        text = (
            f"Refers to the {entity.name} `{entity.field}` ({where}), which must be in the log, in the same ward "
            "(`invalid` otherwise)."
        )
        if entity.name in ended_entities():
            text += f" A {entity.name} that was ended is `conflict` (until its end is retracted)."
    elif entity.role == "ends":
        text = (
            f"Ends the {entity.name} `{entity.field}` ({where}), which must be in the log, in the same ward "
            f"(`invalid` otherwise): its stocks no longer count from `occurred_on` on. One end stands at a time: "
            "another is `conflict` until that one is retracted."
        )
    else:
        text = (
            f"Retracts the entry `{entity.field}` ({where}): its contribution is removed; an entry is retracted "
            "at most once (`conflict`)."
        )
    if entity.versioned:
        text += (
            " `expected_version`, when given, must be the entity's latest sequence (`conflict` otherwise)."
        )
    return text


def event_description(cls: type[BaseEvent]) -> str:
    spec = SPECS[cls]
    metrics = spec.metrics()
    counted = f" Figures it changes: {', '.join(f'`{m}`' for m in metrics)}." if metrics else ""
    return (
        f"`{event_tag(cls)}`: {spec.summary}. As an office sends it on `{subjects.INTAKE_PREFIX}.{{office}}` "
        "(one event, or one item of a batch). Unknown fields are refused (`invalid`, at their path). "
        f"{subject_rule(cls)}{counted}"
    )


def _describe_metrics(definitions: dict[str, Any], *names: str) -> None:
    totals = metric_names()
    breakdowns = [m for spec in CATALOGUE for m in spec.metrics() if m not in totals]
    text = (
        "figures by metric name. Totals: "
        + ", ".join(f"`{m}`" for m in totals)
        + ". Breakdowns (`<metric>.<value>`): "
        + ", ".join(f"`{m}`" for m in breakdowns)
        + ". New metrics may be added: ignore a name you do not know."
    )
    for name in names:
        definitions[name]["properties"]["metrics"]["description"] = text


def schema_documents(parts: Components) -> dict[str, dict[str, Any]]:
    """File name (under ``schemas/``) to JSON Schema."""
    docs: dict[str, dict[str, Any]] = {}
    for cls in parts.event_types:
        docs[f"{event_tag(cls)}.json"] = parts.document(
            parts.roots[cls], title=event_tag(cls), description=event_description(cls)
        )
    event_ref = {"$ref": "#/definitions/Event"}
    docs["event.json"] = parts.document(
        parts.roots[Event],
        title="event",
        description="Any event of the catalogue, told apart by `type` (the discriminator).",
    )
    docs["intake-request.json"] = parts.document(
        {
            "anyOf": [
                event_ref,
                {"type": "array", "items": event_ref, "minItems": 1, "maxItems": codec.MAX_BATCH},
            ]
        },
        title="intake request",
        description=f"The body of a request on `{subjects.INTAKE_PREFIX}.{{office}}`: one event, or an array "
        f"of 1 to {codec.MAX_BATCH} events (at most {codec.MAX_BODY_BYTES} bytes in all, "
        f"{codec.MAX_EVENT_BYTES} per event).",
    )
    result_ref = {"$ref": f"#/definitions/{IntakeResult.__name__}"}
    docs["intake-reply.json"] = parts.document(
        {"anyOf": [result_ref, {"type": "array", "items": result_ref}]},
        title="intake reply",
        description="The gateway's answer: one result for a request of one event, an array of results in the "
        'order of the events for an array. `{"ok": true, "event_id", "seq", "duplicate"[, "version"]}`: stored '
        '(or stored before: `duplicate`); `{"ok": false, "event_id", "error": {"code", "message", "path"}}`: '
        "refused, nothing stored. `path` is relative to the event (`$.items[0].kind`); the array position "
        "says which event. `event_id` is null when the event's id could not be read.",
    )
    docs["query-request.json"] = parts.document(
        parts.roots[StatsQuery],
        title="query request",
        description=f"The body of a request on `{subjects.QUERY_SUBJECT}`: exactly one of `ward`, `province` "
        f"or `wards` (a null counts as not given), at most {query_request.MAX_BODY_BYTES} bytes. Unknown "
        "fields are refused (`bad_request`).",
    )
    # the "exactly one of" rule of services.query.request.parse_query, as JSON Schema can say it
    docs["query-request.json"]["oneOf"] = [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
        for name in ("ward", "province", "wards")
    ]
    docs["query-reply.json"] = parts.document(
        {
            "anyOf": [
                {"$ref": f"#/definitions/{StatsReply.__name__}"},
                {"$ref": f"#/definitions/{ErrorReply.__name__}"},
            ]
        },
        title="query reply",
        description="The query service's answer: the figures (with `ward`, `province` or `wards` as asked), or "
        '`{"error": {"code", "message", "path"}}`.',
    )
    docs["update.json"] = parts.document(
        parts.roots[StatsUpdate],
        title="stats update",
        description=f"The payload of an update on `{subjects.UPDATES_PREFIX}.{{province}}.{{ward}}.{{year}}`: "
        "the figures of one ward-year (calendar) after a committed change, shaped like the query reply. Keep, "
        "per subject, the update with the highest `as_of_seq` (per `fold_version`).",
    )
    docs["stored-record.json"] = parts.document(
        parts.roots[Recorded],
        title="stored record",
        description=f"What `ANTQ_EVENTS` stores on `{subjects.EVENTS_PREFIX}.{{province}}.{{ward}}.{{rest}}`: "
        "the event as sent (free text NFC-normalised) and the office, taken from the intake subject.",
    )
    docs["rejected-record.json"] = parts.document(
        parts.roots[RejectedRecord],
        title="rejected record",
        description=f"What `ANTQ_REJECTED` keeps of a refused submission, on `{subjects.REJECTED_PREFIX}."
        f"{{office}}`: `raw` is the body as received (base64), at most {REJECTED_RAW_LIMIT} bytes.",
    )
    return docs


# --- examples and subjects, derived from the schemas -----------------------------------------------------


def example_of(schema: Mapping[str, Any], definitions: Mapping[str, Any], name: str = "") -> Any:
    """A small valid value of ``schema``: required properties only, the first enum value, the lower bound."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return example_of(definitions[ref.removeprefix("#/definitions/")], definitions, name)
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return example_of(schema["anyOf"][0], definitions, name)
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {
            key: example_of(props[key], definitions, f"{name}.{key}") for key in schema.get("required", [])
        }
    if kind == "array":
        return [example_of(schema["items"], definitions, name)] * max(1, schema.get("minItems", 0))
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if schema.get("format") == "uuid":
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"antq-contract-example:{name}"))
    if schema.get("format") == "date":
        return "2018-05-10"
    digits = re.fullmatch(r"\^\[0-9\]\{(\d+)\}\$", schema.get("pattern", ""))
    if digits:
        size = int(digits.group(1))
        return {5: "01447", 2: "04"}.get(size, "1" * size)
    return "example"


def entity_rest(cls: type[msgspec.Struct], example: Mapping[str, Any]) -> str:
    """The ``rest`` of the event's subject, with the value of the id it names replaced by ``{field}``."""
    event = msgspec.convert(example, Event)
    rest = subjects.rest_of(event)
    for key, value in example.items():
        if isinstance(value, str) and value in rest and key != "type":
            rest = rest.replace(value, "{" + key + "}")
    return rest


# --- AsyncAPI -------------------------------------------------------------------------------------------


def _payload(file: str) -> dict[str, Any]:
    return {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": f"{SCHEMAS}/{file}"}}


def _codes_text(codes: Mapping[str, str]) -> str:
    return "\n".join(f"- `{code}`: {meaning}" for code, meaning in sorted(codes.items()))


def asyncapi(parts: Components, examples: Mapping[str, Any], rests: Mapping[str, str]) -> dict[str, Any]:
    nil, top = NIL_UUID, MAX_UUID
    description = f"""The subjects of ANTQ Ledger on NATS, and what travels on them. Every payload is JSON (UTF-8);
each message's schema is a JSON Schema draft-07 file under `schemas/`.

## Answers go only to inboxes
The gateway and the query service answer on the request's NATS reply subject, and only when it is an inbox:
`_INBOX.` followed by one or more tokens, none empty, none a wildcard (`*`, `>`), no white space (an identity's
own is `_INBOX.<public key>.…`). A request with any other reply subject, or none, is dropped unanswered:
nothing is stored, nothing kept in `ANTQ_REJECTED`. Use your NATS client's request/reply.

## Intake limits (`{subjects.INTAKE_PREFIX}.{{office}}`)
- a body of at most {codec.MAX_BODY_BYTES} bytes; one event at most {codec.MAX_EVENT_BYTES} bytes (`too_large`);
- 1 to {codec.MAX_BATCH} events per request (an empty array is `invalid`, more is `too_large`);
- nesting at most {MAX_DEPTH} deep (`too_large`), counted before any decoding;
- a key given twice in one object: `invalid` at the second one;
- error messages are at most {MAX_MESSAGE} characters; `path` is a JSONPath relative to the event;
- per office: a rate limit (events beyond it are answered `unavailable` with `retry_after_ms`) and a daily
  quota of raw bodies kept in `ANTQ_REJECTED` (beyond it a refusal is kept without its body, `over_quota`).

## What the schemas cannot say (the gateway checks it)
- `occurred_on` is not after today in Vietnam (UTC+7) and not before {codec.EARLIEST} (`invalid`);
- the locality names a unit that exists on `occurred_on` (`unknown_locality`), inside the office's
  jurisdiction (`out_of_jurisdiction`);
- ids are UUIDs, never `{nil}` nor `{top}` (the schemas say it too);
- values tied to a date are refused outside their dates (`invalid` at the field's path; the schemas say it
  too, with `if`/`then` on `occurred_on`): {"; ".join(dated_value_text(r) for r in DATED_VALUES)};
- free text holds no invisible format character beyond the Basic Multilingual Plane either (the tag characters
  U+E0000–U+E007F; the schemas' patterns list those of the BMP);
- integers are written as integers: `1.0` or `1e2` is refused where an integer is expected;
- `entry.corrected`: the copy in `corrected` carries the correction's own `locality`, an `event_id` of its own
  (neither the correction's nor the target's), no `expected_version`, and the target's type and entity; the
  target is the entry's latest version (`conflict` otherwise);
- {"; ".join(f"`{event_tag(c)}`: {links_rule(c).strip().rstrip('.')}" for c in EVENT_TYPES if SPECS[c].links is not None)};
- an event referring to an entity (a tip, a case, an entry) needs it in the log (`unknown_target`), and
  `expected_version`, when given, must be its latest version (`conflict`);
- an `event_id` is the idempotency key: the same event sent again is answered with its first `seq` and
  `duplicate: true`; the same id with another body is `id_reused`.

## Gateway error codes
{_codes_text(INTAKE_CODES)}

## Query error codes
{_codes_text(QUERY_CODES)}

## Query limits (`{subjects.QUERY_SUBJECT}`)
- a body of at most {query_request.MAX_BODY_BYTES} bytes, nesting at most {MAX_DEPTH} deep (`bad_request`);
- `wards`: 1 to 1000 codes; `timeout_ms` at most 60000 (waiting for `min_seq`; then `timeout`);
- too many requests waiting for their `min_seq` at once: `busy`.

## Update signatures
Every update carries `{update_signing.SIGNATURE}`: the standard base64 (padded) of the Ed25519 signature of the
payload bytes exactly as received, by the projection's key; `{update_signing.SIGNING_KEY}` names that key
(an nkey, `N…`: base32 of a prefix byte, the 32-byte Ed25519 public key and a CRC-16) for information only.
Verify against a key you pinned, and check that the payload's `province`, `ward` and `year` are the
subject's last three tokens."""
    tags = sorted(rests.items())
    rest_text = ", ".join(f"`{rest}` ({tag})" for tag, rest in tags)
    messages: dict[str, Any] = {
        "intakeRequest": {
            "name": "intakeRequest",
            "title": "Events sent by an office",
            "contentType": "application/json",
            "payload": _payload("intake-request.json"),
            "examples": [{"name": tag, "payload": examples[tag]} for tag, _ in tags],
        },
        "intakeReply": {
            "name": "intakeReply",
            "title": "The gateway's answer",
            "contentType": "application/json",
            "payload": _payload("intake-reply.json"),
        },
        "queryRequest": {
            "name": "queryRequest",
            "title": "A statistics query",
            "contentType": "application/json",
            "payload": _payload("query-request.json"),
            "examples": [{"name": "one ward", "payload": {"ward": "01447", "year": 2018}}],
        },
        "queryReply": {
            "name": "queryReply",
            "title": "The figures, or an error",
            "contentType": "application/json",
            "payload": _payload("query-reply.json"),
        },
        "statsUpdate": {
            "name": "statsUpdate",
            "title": "The figures of one ward-year after a change",
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "required": [update_signing.MSG_ID, update_signing.SIGNATURE, update_signing.SIGNING_KEY],
                "properties": {
                    update_signing.MSG_ID: {
                        "type": "string",
                        "description": "`<ward>:<year>:<seq>:<copy>:<tag>`: the natural id of the update "
                        "and a tag only the projection can compute (a re-publish is a duplicate)",
                    },
                    update_signing.SIGNATURE: {
                        "type": "string",
                        "description": "standard base64 (padded) of the 64-byte Ed25519 signature of the "
                        "payload bytes",
                    },
                    update_signing.SIGNING_KEY: {
                        "type": "string",
                        "description": "the signing key's public nkey (`N…`); trust only a key you pinned",
                    },
                },
            },
            "payload": _payload("update.json"),
        },
        "storedRecord": {
            "name": "storedRecord",
            "title": "An event as the log stores it",
            "contentType": "application/json",
            "payload": _payload("stored-record.json"),
        },
        "rejectedRecord": {
            "name": "rejectedRecord",
            "title": "What is kept of a refused submission",
            "contentType": "application/json",
            "payload": _payload("rejected-record.json"),
        },
    }

    def param(text: str) -> dict[str, str]:
        return {"description": text}

    def msg(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/messages/{name}"}

    inbox = (
        "The request's reply subject, an inbox (`_INBOX.…`): answers go nowhere else (see the description)."
    )
    channels: dict[str, Any] = {
        "intake": {
            "address": f"{subjects.INTAKE_PREFIX}.{{office}}",
            "title": "Intake",
            "description": "Offices send events here, as request/reply. The office is the subject's last "
            "token, never a field of the payload.",
            "parameters": {"office": param("the office's id in the offices registry")},
            "messages": {"intakeRequest": msg("intakeRequest")},
        },
        "intakeReply": {
            "address": None,
            "description": inbox,
            "messages": {"intakeReply": msg("intakeReply")},
        },
        "query": {
            "address": subjects.QUERY_SUBJECT,
            "title": "Statistics query",
            "description": "Request/reply: the figures of a ward, a province or a list of wards for a year.",
            "messages": {"queryRequest": msg("queryRequest")},
        },
        "queryReply": {
            "address": None,
            "description": inbox,
            "messages": {"queryReply": msg("queryReply")},
        },
        "updates": {
            "address": f"{subjects.UPDATES_PREFIX}.{{province}}.{{ward}}.{{year}}",
            "title": "Update feed (stream ANTQ_UPDATES)",
            "description": "Every committed change of a ward-year (calendar year), signed; at least the last "
            "100 messages per subject are kept. Attach a durable consumer filtered by province or ward.",
            "parameters": {
                "province": param("2-digit 2025 GSO province code"),
                "ward": param("5-digit 2025 GSO ward code"),
                "year": param("the calendar year, 4 digits"),
            },
            "messages": {"statsUpdate": msg("statsUpdate")},
        },
        "events": {
            "address": f"{subjects.EVENTS_PREFIX}.{{province}}.{{ward}}.{{rest}}",
            "title": "The event log (stream ANTQ_EVENTS)",
            "description": "Written only by the gateway; read with consumers or direct gets. Province and "
            f"ward are 2025 codes. `rest` depends on the type, one or more tokens: {rest_text}. A record whose "
            "type a reader does not know was written by a newer gateway: stop reading, do not skip it.",
            "parameters": {
                "province": param("2-digit 2025 GSO province code"),
                "ward": param("5-digit 2025 GSO ward code"),
                "rest": param("the type's part of the subject (one or more tokens, see the channel)"),
            },
            "messages": {"storedRecord": msg("storedRecord")},
        },
        "rejected": {
            "address": f"{subjects.REJECTED_PREFIX}.{{office}}",
            "title": "Refused submissions (stream ANTQ_REJECTED)",
            "description": "One record per refused submission: nothing an office sent is lost.",
            "parameters": {"office": param("the office's id, as in its intake subject")},
            "messages": {"rejectedRecord": msg("rejectedRecord")},
        },
    }

    def ref(channel: str, message: str | None = None) -> dict[str, str]:
        path = f"#/channels/{channel}"
        return {"$ref": f"{path}/messages/{message}" if message else path}

    operations: dict[str, Any] = {
        "receiveEvents": {
            "action": "receive",
            "title": "The gateway records events",
            "channel": ref("intake"),
            "messages": [ref("intake", "intakeRequest")],
            "reply": {"channel": ref("intakeReply"), "messages": [ref("intakeReply", "intakeReply")]},
        },
        "answerQuery": {
            "action": "receive",
            "title": "The query service answers",
            "channel": ref("query"),
            "messages": [ref("query", "queryRequest")],
            "reply": {"channel": ref("queryReply"), "messages": [ref("queryReply", "queryReply")]},
        },
        "publishUpdate": {
            "action": "send",
            "title": "The projection publishes the figures of a changed ward-year",
            "channel": ref("updates"),
            "messages": [ref("updates", "statsUpdate")],
        },
        "storeEvent": {
            "action": "send",
            "title": "The gateway stores an accepted event",
            "channel": ref("events"),
            "messages": [ref("events", "storedRecord")],
        },
        "keepRejected": {
            "action": "send",
            "title": "The gateway keeps a refused submission",
            "channel": ref("rejected"),
            "messages": [ref("rejected", "rejectedRecord")],
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ANTQ Ledger",
            "version": "1.0.0",
            "description": description,
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


# --- files ----------------------------------------------------------------------------------------------


def _json(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class Contract(msgspec.Struct, frozen=True, kw_only=True):
    """The documents of the contract, before they are written."""

    schemas: dict[str, dict[str, Any]]
    """File name under ``schemas/`` to JSON Schema."""
    asyncapi: dict[str, Any]


def contract() -> Contract:
    parts = Components()
    docs = schema_documents(parts)
    examples: dict[str, Any] = {}
    rests: dict[str, str] = {}
    for cls in parts.event_types:
        tag = event_tag(cls)
        schema = docs[f"{tag}.json"]
        examples[tag] = example_of(schema, schema.get("definitions", {}), tag)
        rests[tag] = entity_rest(cls, examples[tag])
    return Contract(schemas=docs, asyncapi=asyncapi(parts, examples, rests))


ASYNCAPI_FILE = "asyncapi.yaml"


def build() -> dict[str, str]:
    """Relative path to file content, for every file of the contract."""
    documents = contract()
    files = {f"{SCHEMAS}/{name}": _json(doc) for name, doc in documents.schemas.items()}
    files[ASYNCAPI_FILE] = yaml.dump(documents.asyncapi)
    return dict(sorted(files.items()))


def write(out: Path, files: Mapping[str, str] | None = None) -> list[Path]:
    """Write the contract under ``out``; a schema file there that the contract no longer has is removed (only
    ``*.json`` under ``schemas/``). Returns the files written."""
    files = build() if files is None else files
    written: list[Path] = []
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    schemas = out / SCHEMAS
    for stale in sorted(schemas.glob("*.json")):
        if f"{SCHEMAS}/{stale.name}" not in files:
            stale.unlink()
    return written


# --- the README's list of enum values ------------------------------------------------------------------


def enum_fields(schema: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
    """Every field of ``schema`` (a schema file) with an enum: its path (``locality.scheme``,
    ``items[].kind``) and its values, in the order of the file."""
    definitions: Mapping[str, Any] = schema.get("definitions", {})
    found: list[tuple[str, list[Any]]] = []

    def visit(node: Mapping[str, Any], path: str, seen: frozenset[str]) -> None:
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.removeprefix("#/definitions/")
            if name not in seen:
                visit(definitions[name], path, seen | {name})
            return
        if "enum" in node and path:
            found.append((path, list(node["enum"])))
        for key in ("anyOf", "oneOf"):
            for option in node.get(key, []):
                visit(option, path, seen)
        if isinstance(node.get("items"), Mapping):
            visit(node["items"], f"{path}[]", seen)
        for name, prop in sorted(node.get("properties", {}).items()):
            visit(prop, f"{path}.{name}" if path else name, seen)

    visit(schema, "", frozenset())
    merged: dict[str, list[Any]] = {}  # a field of several options (a union of Structs) lists them all
    for path, values in found:
        known = merged.setdefault(path, [])
        known.extend(v for v in values if v not in known)
    return list(merged.items())


README_BASE = "docs/contract/"
"""Where the README links the files from (it is at the root of the repository)."""
OTHER_DOCUMENTS = (
    "intake-reply.json",
    "query-request.json",
    "query-reply.json",
    "update.json",
    "rejected-record.json",
)
"""The schema files besides the events' whose enums the README lists too."""


def enum_table(files: Mapping[str, str] | None = None) -> str:
    """A Markdown table of every enum value of every event type beside its field (for the README): the fields
    every type has alike first, once, then each type's own."""
    files = build() if files is None else files
    per_type: list[tuple[str, list[tuple[str, list[Any]]]]] = []
    for cls in EVENT_TYPES:
        tag = event_tag(cls)
        fields = enum_fields(json.loads(files[f"{SCHEMAS}/{tag}.json"]))
        per_type.append((tag, [(path, values) for path, values in fields if path != "type"]))
    common = [row for row in per_type[0][1] if all(row in fields for _, fields in per_type)]
    rows = ["| event type | field | values |", "|---|---|---|"]

    def row(who: str, path: str, values: list[Any]) -> str:
        return f"| {who} | `{path}` | {', '.join(f'`{v}`' for v in values)} |"

    rows.extend(row("every type", path, values) for path, values in common)
    for tag, fields in per_type:
        rows.extend(row(f"`{tag}`", path, values) for path, values in fields if (path, values) not in common)
    for name in OTHER_DOCUMENTS:
        fields = enum_fields(json.loads(files[f"{SCHEMAS}/{name}"]))
        rows.extend(
            row(f"[{name.removesuffix('.json')}]({README_BASE}{SCHEMAS}/{name})", p, v) for p, v in fields
        )
    return "\n".join(rows) + "\n"
