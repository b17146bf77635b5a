"""The ingest gateway's reply shape, shared by the gateway and the office client."""

from __future__ import annotations

import msgspec


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    code: str
    message: str
    path: str | None
    retry_after_ms: int | None = None
    """With ``unavailable`` from the rate limit: wait this long before sending the refused events again."""


class IntakeResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``{"ok": true, "event_id", "seq", "duplicate"[, "version"][, "ward"[, "approximate"]]}`` or
    ``{"ok": false, "event_id", "error"}``."""

    ok: bool
    event_id: str | None
    seq: int | None = None
    duplicate: bool | None = None
    version: int | None = None
    error: ErrorDetail | None = None
    ward: str | None = None
    """A pre-2025 locality: the 2025 ward it was resolved to (and stored under)."""
    approximate: bool | None = None
    """True when that ward is approximate: a commune split over several 2025 wards, resolved to its default
    ward because the locality gave no ``ward``."""


MAX_MESSAGE = 300
"""Error messages may quote the bad value; capped so that a reply to 1,000 bad events stays small."""


def refused(code: str, message: str, path: str | None = None, event_id: str | None = None) -> IntakeResult:
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    path = path if path is None or len(path) <= MAX_MESSAGE else path[:MAX_MESSAGE]
    return IntakeResult(ok=False, event_id=event_id, error=ErrorDetail(code=code, message=message, path=path))


class RejectedRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What ``ANTQ_REJECTED`` keeps of a refused submission: nothing an office sent is lost."""

    office: str
    received_at: str
    error: ErrorDetail
    sha256: str
    size: int
    truncated: bool
    raw: bytes
    over_quota: bool = False
    """The raw body was not kept (``raw`` is empty): the office's daily ``ANTQ_REJECTED`` quota was used up."""


decode_results = msgspec.json.Decoder(IntakeResult | list[IntakeResult]).decode
