"""Prometheus metrics of one gateway copy, read from the gateway's counters at scrape time.

Per event answered: ``antq_gateway_events_accepted_total``, ``antq_gateway_events_duplicate_total``,
``antq_gateway_events_rejected_total{code}``; and ``antq_gateway_requests_total``; per request dropped
unanswered because its reply subject is missing or not an inbox (``services.replies``),
``antq_gateway_requests_dropped_total{reason}`` (``no_reply``, ``not_inbox``); the fairness counters
(``antq_gateway_events_rate_limited_total``, ``antq_gateway_requests_office_busy_total``,
``antq_gateway_rejected_bodies_dropped_total``, ``antq_gateway_index_catch_ups_total``); and the foreign
records the index catch-up passed over, ``antq_gateway_foreign_records_total``. Totals of this process (each
copy of the queue group exports its own; sum them in Prometheus). Registered on a ``CollectorRegistry`` the
caller owns, never prometheus_client's global one.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from services.gateway.catch_up import CatchUpCounters
from services.gateway.counters import IntakeCounters
from services.replies import DroppedRequests

REQUESTS = "antq_gateway_requests"  # exposed as ..._total
ACCEPTED = "antq_gateway_events_accepted"
DUPLICATE = "antq_gateway_events_duplicate"
REJECTED = "antq_gateway_events_rejected"
DROPPED = "antq_gateway_requests_dropped"
DROP_REASONS = ("no_reply", "not_inbox")
RATE_LIMITED = "antq_gateway_events_rate_limited"
OFFICE_BUSY = "antq_gateway_requests_office_busy"
BODIES_DROPPED = "antq_gateway_rejected_bodies_dropped"
CATCH_UPS = "antq_gateway_index_catch_ups"
FOREIGN = "antq_gateway_foreign_records"
UNKNOWN_TYPE = "antq_gateway_unknown_type_records"
PASSED_OVER = "antq_gateway_index_catch_up_passed_over"
REJECTED_KEPT_LATE = "antq_gateway_rejected_kept_late"
REJECTED_LOST = "antq_gateway_rejected_records_lost"
REJECTED_RECOVERED = "antq_gateway_rejected_recovered"
REJECTED_IN_MEMORY = "antq_gateway_rejected_waited_in_memory"

_HELP = {
    REQUESTS: "Intake requests answered (one event or an array)",
    ACCEPTED: "Events accepted and stored",
    DUPLICATE: "Events answered as duplicates of one already stored",
    RATE_LIMITED: "Events answered unavailable (retry_after_ms) by the office's rate limit",
    OFFICE_BUSY: "Requests answered unavailable at once: their office had too many in progress here",
    BODIES_DROPPED: "Refusals kept in ANTQ_REJECTED without their raw body (the office's daily quota was used)",
    CATCH_UPS: "Index catch-ups run to decide a 'wrong last sequence'",
    FOREIGN: "Foreign records in ANTQ_EVENTS passed over by the index catch-up",
    UNKNOWN_TYPE: "Records of a type this gateway does not know, passed over by the index catch-up (ERROR)",
    PASSED_OVER: "Events the index catch-up did not read again: the request path had indexed them already",
    REJECTED_KEPT_LATE: "Refusals' records ANTQ_REJECTED took only on a later try (no stream leader at first)",
    REJECTED_LOST: "Refusals' records never kept in ANTQ_REJECTED (too many waiting, or left at shutdown)",
    REJECTED_RECOVERED: "Refusals' records another gateway process left waiting in PostgreSQL, kept by this one",
    REJECTED_IN_MEMORY: "Refusals' records that waited in memory: PostgreSQL could not take them either",
}


class GatewayCollector:
    def __init__(
        self,
        counters: IntakeCounters,
        dropped: DroppedRequests | None = None,
        catching_up: CatchUpCounters | None = None,
    ) -> None:
        self._counters = counters
        self._dropped = dropped
        self._catching_up = catching_up or CatchUpCounters()

    @staticmethod
    def _families() -> dict[str, CounterMetricFamily]:
        families = {name: CounterMetricFamily(name, text) for name, text in _HELP.items()}
        families[REJECTED] = CounterMetricFamily(REJECTED, "Events refused, by error code", labels=["code"])
        families[DROPPED] = CounterMetricFamily(
            DROPPED,
            "Requests dropped unprocessed: no reply subject, or one that is not an inbox",
            labels=["reason"],
        )
        return families

    def describe(self) -> Iterable[Metric]:
        """Names only: lets the registry refuse a second collector exporting the same metrics."""
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        c = self._counters
        for name, value in (
            (REQUESTS, c.requests),
            (ACCEPTED, c.accepted),
            (DUPLICATE, c.duplicate),
            (RATE_LIMITED, c.rate_limited),
            (OFFICE_BUSY, c.office_busy),
            (BODIES_DROPPED, c.rejected_raw_dropped),
            (CATCH_UPS, c.index_catch_ups),
            (FOREIGN, self._catching_up.foreign),
            (UNKNOWN_TYPE, self._catching_up.unknown_type),
            (PASSED_OVER, self._catching_up.passed_over),
            (REJECTED_KEPT_LATE, c.rejected_late.kept),
            (REJECTED_LOST, c.rejected_late.lost),
            (REJECTED_RECOVERED, c.rejected_late.recovered),
            (REJECTED_IN_MEMORY, c.rejected_late.in_memory),
        ):
            families[name].add_metric([], value)
        # dict.copy is atomic under the GIL: the event loop may add a code while a scrape thread reads
        for code, count in sorted(c.rejected.copy().items()):
            families[REJECTED].add_metric([code], count)
        counts = self._dropped.counts.copy() if self._dropped is not None else {}
        for reason in DROP_REASONS:
            families[DROPPED].add_metric([reason], counts.get(reason, 0))
        return list(families.values())


def gateway_registry(
    counters: IntakeCounters,
    dropped: DroppedRequests | None = None,
    catching_up: CatchUpCounters | None = None,
) -> CollectorRegistry:
    """A new registry exporting one gateway copy's counters (``Gateway.counters``, ``Gateway.dropped``,
    ``Gateway.catch_up_counters``)."""
    registry = CollectorRegistry()
    registry.register(GatewayCollector(counters, dropped, catching_up))
    return registry
