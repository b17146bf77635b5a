"""Prometheus metrics of one query service copy, read from the service at scrape time.

``antq_query_requests_total{code}``: requests answered, by answer (``ok`` for figures, else the error code), when
the service counts them (``QueryService.requests_by_code``, a mapping of code to count); ``antq_query_waiting``:
requests waiting for their ``min_seq`` right now; ``antq_query_dropped_reply_subject_total``: requests dropped
unanswered because their reply subject is missing or not an inbox (``QueryService.dropped_reply_subject``, or
the total of ``QueryService.dropped``). What the service does not count is exported as 0. Totals of this process:
each copy of the queue group exports its own; sum them in Prometheus.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from infra.metrics import service_registry

REQUESTS = "antq_query_requests"  # exposed as ..._total
WAITING = "antq_query_waiting"
DROPPED = "antq_query_dropped_reply_subject"  # ..._total


def _count(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def dropped_reply_subject(service: object) -> int:
    """Requests the service dropped for their reply subject: its ``dropped_reply_subject`` counter, else the
    ``total`` of its ``dropped`` record, else 0."""
    value = getattr(service, "dropped_reply_subject", None)
    if value is None:
        value = getattr(getattr(service, "dropped", None), "total", 0)
    return _count(value)


class QueryCollector:
    def __init__(self, service: object) -> None:
        self._service = service

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, GaugeMetricFamily, CounterMetricFamily]:
        return (
            CounterMetricFamily(
                REQUESTS, "Statistics requests answered, by answer code (ok or an error)", labels=["code"]
            ),
            GaugeMetricFamily(WAITING, "Requests waiting for their min_seq right now"),
            CounterMetricFamily(
                DROPPED, "Requests dropped unanswered: no reply subject, or one that is not an inbox"
            ),
        )

    def describe(self) -> Iterable[Metric]:
        """Names only: lets the registry refuse a second collector exporting the same metrics."""
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        requests, waiting, dropped = self._families()
        by_code = getattr(self._service, "requests_by_code", None)
        if isinstance(by_code, Mapping):
            # dict.copy is atomic under the GIL: the event loop may add a code while a scrape thread reads
            for code, count in sorted(dict(by_code).items()):
                requests.add_metric([str(code)], _count(count))
        waiting.add_metric([], _count(getattr(self._service, "waiting", 0)))
        dropped.add_metric([], dropped_reply_subject(self._service))
        return [requests, waiting, dropped]


def query_registry(service: object, *, process: bool = True) -> CollectorRegistry:
    """A new registry exporting one query service copy's metrics (and the process's)."""
    return service_registry(QueryCollector(service), process=process)
