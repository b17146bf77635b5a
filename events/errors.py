"""Why an event is refused. One root exception; each subclass carries a stable wire code."""

from __future__ import annotations

from typing import ClassVar


class EventError(Exception):
    """Root of every error raised by the ``events`` package."""

    code: ClassVar[str] = "invalid"

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class Malformed(EventError):
    code = "malformed"


class UnknownType(EventError):
    code = "unknown_type"


class Invalid(EventError):
    code = "invalid"


class UnknownLocality(EventError):
    code = "unknown_locality"


class TooLarge(EventError):
    code = "too_large"
