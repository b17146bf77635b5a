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

This module assembles and writes the files (``build``, ``write``) and the README's enum table; the parts are
in ``services.contract.codes`` (the error codes), ``services.contract.schemas`` (the portable schemas of the wire
types), ``services.contract.payloads`` (one schema file per payload) and ``services.contract.asyncapi`` (the
AsyncAPI document).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from events.schema import EVENT_TYPES
from services.contract import yaml
from services.contract.asyncapi import asyncapi, entity_rest, example_of
from services.contract.codes import INTAKE_CODES, QUERY_CODES, intake_wire_codes, query_wire_codes
from services.contract.payloads import schema_documents
from services.contract.schemas import MAX_UUID, NIL_UUID, SCHEMAS, Components, event_tag, walk

__all__ = [  # the files of the contract, and the names others import from here
    "ASYNCAPI_FILE",
    "INTAKE_CODES",
    "MAX_UUID",
    "NIL_UUID",
    "OTHER_DOCUMENTS",
    "QUERY_CODES",
    "README_BASE",
    "SCHEMAS",
    "Contract",
    "build",
    "contract",
    "enum_fields",
    "enum_table",
    "event_tag",
    "intake_wire_codes",
    "query_wire_codes",
    "walk",
    "write",
]

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
