"""The error codes of the contract: every ``code`` the gateway's replies (``INTAKE_CODES``) and the query
service's error replies (``QUERY_CODES``) carry, with what each means, and the codes the exception classes
can put on the wire (``wire_codes``; a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Mapping

from events.errors import EventError
from services.gateway.errors import GatewayError, OfficesFileError
from services.query.errors import QueryError

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
