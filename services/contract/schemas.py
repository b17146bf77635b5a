"""The JSON Schemas of the wire types, made portable: ``Components`` runs ``msgspec.json.schema_components`` over
every event type and the other wire Structs (one shared set of definitions) and adds what the gateway checks
beyond the types where JSON Schema can say it (ECMA-262 patterns, no nil or max UUID, the free-text pattern
computed from ``events.text``, values tied to dates, ids named once, the codes an error may carry, the metric
names); ``Components.document`` cuts a self-contained schema file out of them.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from events.catalogue import CATALOGUE, SPECS, metric_names
from events.intake import ErrorDetail, IntakeResult, RejectedRecord
from events.schema import EVENT_TYPES, BaseEvent, DatedValue, Event, Recorded, dated_values_of
from events.text import FORBIDDEN
from projections.store import StatsUpdate
from services.contract.codes import INTAKE_CODES, QUERY_CODES
from services.query.request import ErrorBody, ErrorReply, StatsQuery, StatsReply

DIALECT = "http://json-schema.org/draft-07/schema#"
REF = "#/definitions/{name}"
SCHEMAS = "schemas"
NIL_UUID = str(uuid.UUID(int=0))
MAX_UUID = str(uuid.UUID(int=2**128 - 1))
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


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
