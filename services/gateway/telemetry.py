"""Prometheus metrics of one gateway copy, read from ``Gateway.counters`` at scrape time.

Per event answered: ``antq_gateway_events_accepted_total``, ``antq_gateway_events_duplicate_total``,
``antq_gateway_events_rejected_total{code}``; and ``antq_gateway_requests_total``; per request dropped
unanswered because its reply subject is missing or not an inbox (``services.replies``),
``antq_gateway_requests_dropped_total{reason}`` (``no_reply``, ``not_inbox``). Totals of this process (each
copy of the queue group exports its own; sum them in Prometheus). Registered on a ``CollectorRegistry`` the
caller owns, never prometheus_client's global one.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from services.gateway.pipeline import IntakeCounters
from services.replies import DroppedRequests

REQUESTS = "antq_gateway_requests"  # exposed as ..._total
ACCEPTED = "antq_gateway_events_accepted"
DUPLICATE = "antq_gateway_events_duplicate"
REJECTED = "antq_gateway_events_rejected"
DROPPED = "antq_gateway_requests_dropped"
DROP_REASONS = ("no_reply", "not_inbox")


class GatewayCollector:
    def __init__(self, counters: IntakeCounters, dropped: DroppedRequests | None = None) -> None:
        self._counters = counters
        self._dropped = dropped

    @staticmethod
    def _families() -> tuple[
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
    ]:
        return (
            CounterMetricFamily(REQUESTS, "Intake requests answered (one event or an array)"),
            CounterMetricFamily(ACCEPTED, "Events accepted and stored"),
            CounterMetricFamily(DUPLICATE, "Events answered as duplicates of one already stored"),
            CounterMetricFamily(REJECTED, "Events refused, by error code", labels=["code"]),
            CounterMetricFamily(
                DROPPED,
                "Requests dropped unprocessed: no reply subject, or one that is not an inbox",
                labels=["reason"],
            ),
        )

    def describe(self) -> Iterable[Metric]:
        """Names only: lets the registry refuse a second collector exporting the same metrics."""
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        requests, accepted, duplicate, rejected, dropped = self._families()
        counters = self._counters
        requests.add_metric([], counters.requests)
        accepted.add_metric([], counters.accepted)
        duplicate.add_metric([], counters.duplicate)
        # dict.copy is atomic under the GIL: the event loop may add a code while a scrape thread reads
        for code, count in sorted(counters.rejected.copy().items()):
            rejected.add_metric([code], count)
        counts = self._dropped.counts.copy() if self._dropped is not None else {}
        for reason in DROP_REASONS:
            dropped.add_metric([reason], counts.get(reason, 0))
        return [requests, accepted, duplicate, rejected, dropped]


def gateway_registry(counters: IntakeCounters, dropped: DroppedRequests | None = None) -> CollectorRegistry:
    """A new registry exporting one gateway copy's counters (``Gateway.counters``, ``Gateway.dropped``)."""
    registry = CollectorRegistry()
    registry.register(GatewayCollector(counters, dropped))
    return registry
