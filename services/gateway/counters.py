"""What one gateway copy answered, per event and per cause (read at scrape time by
``services/gateway/telemetry.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from events.intake import IntakeResult
from services.gateway.rejected_later import LateCounts


@dataclass
class IntakeCounters:
    """Answers given, per event (read at scrape time by ``services/gateway/telemetry.py``)."""

    requests: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    """Per error code."""
    rate_limited: int = 0
    """Events answered ``unavailable`` by the office's rate limit (also counted in ``rejected``)."""
    rejected_raw_dropped: int = 0
    """Refusals recorded in ANTQ_REJECTED without their raw body: the office's daily quota was used up."""
    index_catch_ups: int = 0
    """Index catch-ups run to decide a 'wrong last sequence' (the entity's last event was beyond the index)."""
    office_busy: int = 0
    """Requests answered ``unavailable`` at once: their office had too many requests in progress here."""
    rejected_late: LateCounts = field(default_factory=LateCounts)
    """Refusals' records ANTQ_REJECTED took only on a later try, or never (``rejected_later``)."""

    def record(self, results: Sequence[IntakeResult]) -> None:
        self.requests += 1
        for result in results:
            if result.ok:
                if result.duplicate:
                    self.duplicate += 1
                else:
                    self.accepted += 1
            else:
                code = result.error.code if result.error is not None else "unknown"
                self.rejected[code] = self.rejected.get(code, 0) + 1
