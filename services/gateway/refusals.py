"""The gateway's refusals, as a mixin of ``IntakePipeline``: the answer to a refused event (``_refuse``),
events beyond their office's rate (``_rate_limited``), and every refusal's record kept in ANTQ_REJECTED
(``_keep_rejected``), with its raw body while the office's daily quota of those bytes lasts (``_within_quota``).
"""

from __future__ import annotations

import datetime as dt
import logging

from events.errors import EventError
from events.intake import ErrorDetail, IntakeResult, refused
from infra.streams import REJECTED_RAW_LIMIT
from services.gateway.candidates import guess_event_id
from services.gateway.counters import IntakeCounters
from services.gateway.errors import GatewayError, RateLimited
from services.gateway.index import EventIndex
from services.gateway.offices import Office, OfficeRegistry
from services.gateway.publisher import IntakePublisher
from services.gateway.rejected_later import RejectedLater

log = logging.getLogger("antq.gateway")


class Refusals:
    """The refusals of ``IntakePipeline`` (which sets these attributes)."""

    _publisher: IntakePublisher
    _index: EventIndex
    _offices: OfficeRegistry
    counters: IntakeCounters
    rejected_later: RejectedLater

    def _rate_limited(self, office: Office, raws: list[bytes], retry_after_ms: int) -> list[IntakeResult]:
        rate = office.rate
        err = RateLimited(
            f"office {office.id} sent more events than its rate ({rate.events_per_second:g} events/s, "
            f"burst {rate.burst}); send these again in {retry_after_ms} ms",
            retry_after_ms,
        )
        self.counters.rate_limited += len(raws)
        detail = ErrorDetail(code=err.code, message=err.message, path=None, retry_after_ms=retry_after_ms)
        return [IntakeResult(ok=False, event_id=guess_event_id(raw), error=detail) for raw in raws]

    @staticmethod
    def _refuse(exc: EventError | GatewayError, event_id: str | None) -> IntakeResult:
        return refused(exc.code, exc.message, exc.path, event_id)

    async def _keep_rejected(
        self, office: str, items: list[tuple[bytes, IntakeResult]], now: dt.datetime
    ) -> None:
        if not items:
            return
        keep_raw = await self._within_quota(office, [raw for raw, _ in items], now)
        records = []
        for (raw, result), keep in zip(items, keep_raw, strict=True):
            assert result.error is not None
            records.append(self._publisher.rejected_record(office, raw, result.error, now, keep_raw=keep))
        futures = [await self._publisher.publish(r.subject, r.data, r.headers) for r in records]
        for record, outcome in zip(records, await self._publisher.settle(futures), strict=True):
            if outcome.seq is None:  # no stream leader (an election), the stream away: kept later
                log.warning("could not keep a rejected submission yet: %s", outcome.failure)
                await self.rejected_later.keep(record)

    async def _within_quota(self, office: str, raws: list[bytes], now: dt.datetime) -> list[bool]:
        """Which refusals keep their raw body: those within the office's daily quota of ANTQ_REJECTED bytes.

        Counted in PostgreSQL (shared by every copy, kept across restarts). When it cannot be counted (the
        database is down) the bodies are kept: nothing is lost, and the stream's own byte limit still holds."""
        key, quota = self._offices.rejected_quota(office)
        sizes = [min(len(raw), REJECTED_RAW_LIMIT) for raw in raws]
        try:
            used = await self._index.count_rejected_bytes(key, now.astimezone(dt.UTC).date(), sum(sizes))
        except Exception:
            log.warning("could not count ANTQ_REJECTED bytes of %s; keeping the bodies", key, exc_info=True)
            return [True] * len(raws)
        keep = []
        for size in sizes:
            used += size
            keep.append(used <= quota)
        self.counters.rejected_raw_dropped += keep.count(False)
        return keep
