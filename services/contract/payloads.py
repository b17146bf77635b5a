"""The schema files of the contract, one per payload (``schema_documents``): each event type's, with its
description from the catalogue (``event_description``: summary, subject rule, links, figures), the event union,
the intake request and reply, the query request and reply, the update, the stored and the rejected record.
"""

from __future__ import annotations

from typing import Any

from events import codec, subjects
from events.catalogue import SPECS, ended_entities
from events.intake import IntakeResult, RejectedRecord
from events.schema import BaseEvent, Event, Recorded
from infra.streams import REJECTED_RAW_LIMIT
from projections.store import StatsUpdate
from services.contract.schemas import Components, event_tag
from services.query import request as query_request
from services.query.request import ErrorReply, StatsQuery, StatsReply

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
