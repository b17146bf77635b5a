"""The AsyncAPI 3 document (``asyncapi``): the subjects of ANTQ Ledger on NATS, the messages on each (their
payloads are the schema files), and in its text what no schema can say (the rules the gateway checks, the
error codes, the limits); with the examples and subject tails derived from the schemas (``example_of``,
``entity_rest``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from events import codec, subjects
from events.catalogue import SPECS
from events.intake import MAX_MESSAGE
from events.jsonscan import MAX_DEPTH
from events.schema import DATED_VALUES, EVENT_TYPES, Event
from infra import update_signing
from infra.streams import StreamLimits
from services.contract.codes import INTAKE_CODES, QUERY_CODES
from services.contract.payloads import links_rule
from services.contract.schemas import MAX_UUID, NIL_UUID, SCHEMAS, Components, dated_value_text, event_tag
from services.query import request as query_request

SCHEMA_FORMAT = "application/schema+json;version=draft-07"


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
            "description": "Every committed change of a ward-year (calendar year), signed, with every figure of "
            "the ward-year. The stream keeps the latest update of each subject (max_msgs_per_subject "
            f"{StreamLimits().updates_per_subject}): deliver-last-per-subject reads the current figures of every "
            "ward-year, then follows. Attach a durable consumer filtered by province or ward.",
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
