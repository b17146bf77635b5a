"""Prometheus metrics of one sealer, read from ``Sealer`` at scrape time.

``antq_sealer_seals_total``: seals this sealer made; ``antq_sealer_last_sealed_seq``: the last sequence of the
log the chain has sealed (by this sealer or another); ``antq_sealer_halted``: 1 while sealing is halted (the two
stores disagree, the stream was recreated, a range has holes: see the log and `antq audit seals`);
``antq_sealer_halts_total``; ``antq_sealer_conflicts_total``: appends another sealer won;
``antq_sealer_stream_last_seq``: the stream's last sequence as the sealer last saw it (every poll, about a
second): seals behind is its difference with the last sealed, and the projection's lag its difference with
``antq_projection_checkpoint_seq`` (``deploy/prometheus/alerts.yml``). Label ``stream``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from infra.metrics import service_registry
from services.sealer.service import Sealer

SEALS = "antq_sealer_seals"  # ..._total
LAST_SEALED_SEQ = "antq_sealer_last_sealed_seq"
HALTED = "antq_sealer_halted"
HALTS = "antq_sealer_halts"  # ..._total
CONFLICTS = "antq_sealer_conflicts"  # ..._total
STREAM_LAST_SEQ = "antq_sealer_stream_last_seq"


class SealerCollector:
    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer

    @staticmethod
    def _families() -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
        labels = ["stream"]
        return {
            SEALS: CounterMetricFamily(SEALS, "Seals made by this sealer", labels=labels),
            LAST_SEALED_SEQ: GaugeMetricFamily(
                LAST_SEALED_SEQ, "Last sequence of the stream covered by a seal", labels=labels
            ),
            HALTED: GaugeMetricFamily(
                HALTED, "1 while sealing is halted until an operator acts", labels=labels
            ),
            HALTS: CounterMetricFamily(HALTS, "Times sealing halted", labels=labels),
            CONFLICTS: CounterMetricFamily(CONFLICTS, "Seal appends another sealer won", labels=labels),
            STREAM_LAST_SEQ: GaugeMetricFamily(
                STREAM_LAST_SEQ, "Last sequence of the stream when the sealer last looked", labels=labels
            ),
        }

    def describe(self) -> Iterable[Metric]:
        """Names only: lets the registry refuse a second collector exporting the same metrics."""
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        sealer = self._sealer
        values = {
            SEALS: sealer.sealed,
            LAST_SEALED_SEQ: sealer.last_sealed_seq,
            HALTED: 1 if sealer.halted is not None else 0,
            HALTS: sealer.halts,
            CONFLICTS: sealer.conflicts,
            STREAM_LAST_SEQ: sealer.stream_last_seq,
        }
        for name, value in values.items():
            families[name].add_metric([sealer.config.stream], value)
        return list(families.values())


def sealer_registry(sealer: Sealer, *, process: bool = True) -> CollectorRegistry:
    """A new registry exporting one sealer's metrics (and the process's)."""
    return service_registry(SealerCollector(sealer), process=process)
