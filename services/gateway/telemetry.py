"""Prometheus metrics of one gateway copy, read from ``Gateway.counters`` at scrape time.

Per event answered: ``antq_gateway_events_accepted_total``, ``antq_gateway_events_duplicate_total``,
``antq_gateway_events_rejected_total{code}``; and ``antq_gateway_requests_total``. Totals of this process (each
copy of the queue group exports its own; sum them in Prometheus). Registered on a ``CollectorRegistry`` the
caller owns, never prometheus_client's global one.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from services.gateway.catch_up import CatchUpCounters
from services.gateway.pipeline import IntakeCounters

REQUESTS = "antq_gateway_requests"  # exposed as ..._total
ACCEPTED = "antq_gateway_events_accepted"
DUPLICATE = "antq_gateway_events_duplicate"
REJECTED = "antq_gateway_events_rejected"
FOREIGN = "antq_gateway_foreign_records"  # ..._total: passed over by the index catch-up


class GatewayCollector:
    def __init__(self, counters: IntakeCounters, catching_up: CatchUpCounters | None = None) -> None:
        self._counters = counters
        self._catching_up = catching_up or CatchUpCounters()

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, ...]:
        return (
            CounterMetricFamily(REQUESTS, "Intake requests answered (one event or an array)"),
            CounterMetricFamily(ACCEPTED, "Events accepted and stored"),
            CounterMetricFamily(DUPLICATE, "Events answered as duplicates of one already stored"),
            CounterMetricFamily(REJECTED, "Events refused, by error code", labels=["code"]),
            CounterMetricFamily(FOREIGN, "Foreign records in ANTQ_EVENTS passed over by the index catch-up"),
        )

    def describe(self) -> Iterable[Metric]:
        """Names only: lets the registry refuse a second collector exporting the same metrics."""
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        requests, accepted, duplicate, rejected, foreign = self._families()
        counters = self._counters
        requests.add_metric([], counters.requests)
        accepted.add_metric([], counters.accepted)
        duplicate.add_metric([], counters.duplicate)
        # dict.copy is atomic under the GIL: the event loop may add a code while a scrape thread reads
        for code, count in sorted(counters.rejected.copy().items()):
            rejected.add_metric([code], count)
        foreign.add_metric([], self._catching_up.foreign)
        return [requests, accepted, duplicate, rejected, foreign]


def gateway_registry(
    counters: IntakeCounters, catching_up: CatchUpCounters | None = None
) -> CollectorRegistry:
    """A new registry exporting one gateway copy's counters."""
    registry = CollectorRegistry()
    registry.register(GatewayCollector(counters, catching_up))
    return registry
