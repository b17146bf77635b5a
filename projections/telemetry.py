"""Prometheus metrics of the statistics projection, read from the live runner at scrape time.

``ProjectionCollector`` is a custom collector: nothing is counted twice, the runner is not touched, and every
scrape reports what ``Projector.runner`` holds right then (its ``stats``, ``seq``, ``copy``, ``halted``). It is
registered on a ``CollectorRegistry`` the caller owns (never prometheus_client's global one), so a process or a
test may hold several. ``Exporter`` (``infra/metrics.py``, importable from here too) serves a registry on
``/metrics``.

Counters are totals for the collector's lifetime: when the projector replaces its runner (a restart after a
failure, following the active copy after a rebuild), the last values seen of the old runner are carried over,
so they do not go back to zero. A runner that came and went between two scrapes is not seen.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from infra.metrics import Exporter as Exporter  # served from here as before
from projections.metrics import FOLD_VERSION
from projections.runner import StatsRunner
from projections.store import NAME

HALTED = "antq_projection_halted"
HALTS = "antq_projection_halts"  # exposed as ..._total
CHECKPOINT_SEQ = "antq_projection_checkpoint_seq"
EVENTS_FOLDED = "antq_projection_events_folded"  # ..._total
COMMITS = "antq_projection_commits"  # ..._total
REDELIVERED_SKIPPED = "antq_projection_redelivered_skipped"  # ..._total
FOREIGN = "antq_projection_foreign_records"  # ..._total: set aside, never folded (events.stored)
COPY = "antq_projection_copy"
FOLD_VERSION_METRIC = "antq_projection_fold_version"


class HasRunner(Protocol):
    """What the collector reads: ``projections.service.Projector`` (its current runner, None before start)."""

    @property
    def runner(self) -> StatsRunner | None: ...


@dataclass
class _Totals:
    events: int = 0
    batches: int = 0
    redelivered_skipped: int = 0
    halts: int = 0
    foreign: int = 0

    def add(self, runner: StatsRunner) -> None:
        self.events += runner.stats.events
        self.batches += runner.stats.batches
        self.redelivered_skipped += runner.stats.redelivered_skipped
        self.halts += runner.stats.halts
        self.foreign += runner.stats.foreign


class ProjectionCollector:
    """Exports one projector's state; ``projection`` label: the read model's name (``stats``)."""

    def __init__(self, source: HasRunner, *, projection: str = NAME) -> None:
        self._source = source
        self._projection = projection
        self._lock = threading.Lock()  # scrapes run on the exporter's threads, possibly two at once
        self._seen: StatsRunner | None = None
        self._before = _Totals()
        """Final counts of the runners this projector replaced."""

    def _families(self) -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        labels = ["projection"]
        return {
            HALTED: GaugeMetricFamily(
                HALTED,
                "1 while the projection is halted on an event its fold cannot apply (figures reported stale)",
                labels=labels,
            ),
            HALTS: CounterMetricFamily(HALTS, "Halts of the projection", labels=labels),
            CHECKPOINT_SEQ: GaugeMetricFamily(
                CHECKPOINT_SEQ,
                "Stream sequence of ANTQ_EVENTS committed as the checkpoint (last event folded in)",
                labels=labels,
            ),
            EVENTS_FOLDED: CounterMetricFamily(
                EVENTS_FOLDED, "Stream sequences folded and committed", labels=labels
            ),
            COMMITS: CounterMetricFamily(COMMITS, "Batches committed to PostgreSQL", labels=labels),
            REDELIVERED_SKIPPED: CounterMetricFamily(
                REDELIVERED_SKIPPED, "Redelivered events skipped at or below the checkpoint", labels=labels
            ),
            FOREIGN: CounterMetricFamily(
                FOREIGN, "Foreign records of ANTQ_EVENTS set aside, never folded", labels=labels
            ),
            COPY: GaugeMetricFamily(COPY, "Read-model copy the runner builds", labels=labels),
            FOLD_VERSION_METRIC: GaugeMetricFamily(
                FOLD_VERSION_METRIC, "Version of the fold the runner applies", labels=labels
            ),
        }

    def describe(self) -> Iterable[Metric]:
        """Names only: lets the registry refuse a second collector exporting the same metrics."""
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        runner = self._source.runner
        with self._lock:
            if runner is not self._seen:
                if self._seen is not None:
                    self._before.add(self._seen)
                self._seen = runner
            totals = replace(self._before)
        if runner is not None:
            totals.add(runner)
        values: dict[str, float] = {
            HALTS: totals.halts,
            EVENTS_FOLDED: totals.events,
            COMMITS: totals.batches,
            REDELIVERED_SKIPPED: totals.redelivered_skipped,
            FOREIGN: totals.foreign,
        }
        if runner is not None and runner.ready.is_set():
            # before ready, the runner has not read its checkpoint yet: its seq and copy are not known
            values |= {
                HALTED: 1.0 if runner.halted is not None else 0.0,
                CHECKPOINT_SEQ: runner.seq,
                COPY: runner.copy,
                FOLD_VERSION_METRIC: FOLD_VERSION,
            }
        for name, value in values.items():
            families[name].add_metric([self._projection], value)
        return list(families.values())


def projection_registry(source: HasRunner) -> CollectorRegistry:
    """A new registry exporting ``source``'s projection metrics."""
    registry = CollectorRegistry()
    registry.register(ProjectionCollector(source))
    return registry
