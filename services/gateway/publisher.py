"""Publishing accepted events to ANTQ_EVENTS and refused submissions to ANTQ_REJECTED."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

from events.codec import encode
from events.intake import ErrorDetail, RejectedRecord
from events.subjects import REJECTED_PREFIX
from infra.js_publisher import (
    EXPECTED_LAST_SUBJECT_SEQ,
    EXPECTED_STREAM,
    HEADER_LINE,
    MSG_ID,
    JetStreamPublisher,
    Outcome,
    Pending,
)
from infra.streams import EVENTS, REJECTED, REJECTED_RAW_LIMIT
from services.gateway.rejected_later import PendingRecord, is_office_token

__all__ = ["MSG_ID", "IntakePublisher", "Outcome", "Pending"]


_EVENT_HEADERS = HEADER_LINE + f"{EXPECTED_STREAM}: {EVENTS}\r\n{MSG_ID}: ".encode() + b"%s\r\n\r\n"
_EVENT_HEADERS_EXPECTED = (
    HEADER_LINE
    + f"{EXPECTED_STREAM}: {EVENTS}\r\n{MSG_ID}: ".encode()
    + f"%s\r\n{EXPECTED_LAST_SUBJECT_SEQ}: ".encode()
    + b"%d\r\n\r\n"
)


class IntakePublisher(JetStreamPublisher):
    """The gateway's writes: events guarded by their entity subject, and refused submissions kept."""

    async def publish_event(
        self, subject: str, data: bytes, msg_id: str, expected_last: int | None
    ) -> Pending:
        """``msg_id`` is an event_id's text (a UUID: no line break); the header block is built in one step."""
        if expected_last is None:
            block = _EVENT_HEADERS % msg_id.encode()
        else:
            block = _EVENT_HEADERS_EXPECTED % (msg_id.encode(), expected_last)
        return await self.publish_block(subject, data, block)

    @staticmethod
    def rejected_record(
        office: str, raw: bytes, error: ErrorDetail, now: dt.datetime, *, keep_raw: bool = True
    ) -> PendingRecord:
        """A refusal's record for ANTQ_REJECTED; without its raw body when ``keep_raw`` is False (the office's
        quota is used up). Its ``Nats-Msg-Id`` is chosen once: a retry of the write is a duplicate."""
        kept = raw[:REJECTED_RAW_LIMIT] if keep_raw else b""
        record = RejectedRecord(
            office=office,
            received_at=now.astimezone(dt.UTC).isoformat(),
            error=error,
            sha256=hashlib.sha256(raw).hexdigest(),
            size=len(raw),
            truncated=len(raw) > len(kept),
            raw=kept,
            over_quota=not keep_raw,
        )
        token = office if is_office_token(office) else "_invalid"
        headers = {EXPECTED_STREAM: REJECTED, MSG_ID: f"rejected:{uuid.uuid4()}"}
        return PendingRecord(f"{REJECTED_PREFIX}.{token}", encode(record), headers)
