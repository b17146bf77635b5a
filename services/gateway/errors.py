"""Why the gateway refuses an event beyond its shape. One root; each cause has a stable wire code."""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    code: ClassVar[str] = "unavailable"

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class UnknownOffice(GatewayError):
    code = "unknown_office"


class OutOfJurisdiction(GatewayError):
    code = "out_of_jurisdiction"


class UnknownTarget(GatewayError):
    code = "unknown_target"


class Conflict(GatewayError):
    code = "conflict"


class IdReused(GatewayError):
    code = "id_reused"


class Unavailable(GatewayError):
    code = "unavailable"


class RateLimited(Unavailable):
    """An office sent more events than its rate allows: ``unavailable`` with ``retry_after_ms``."""

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class GatewayInvalid(GatewayError):
    """A well-formed event that contradicts the log (wire code ``invalid``)."""

    code = "invalid"


class OfficesFileError(GatewayError):
    """The offices registry file is unreadable or inconsistent (raised at start, never on the wire).

    Its message is one line naming the file and the problem: print it and exit 2, no traceback.
    """

    code = "unavailable"
