"""The query service's errors: one root; ``code`` goes on the wire."""

from __future__ import annotations


class QueryError(Exception):
    """Root of the query service's errors; ``code`` goes on the wire."""

    code = "bad_request"

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class BadRequest(QueryError):
    code = "bad_request"


class UnknownLocality(QueryError):
    code = "unknown_locality"


class NotCaughtUp(QueryError):
    code = "timeout"


class Busy(QueryError):
    """Too many requests already wait for their ``min_seq``."""

    code = "busy"


class Unavailable(QueryError):
    code = "unavailable"
