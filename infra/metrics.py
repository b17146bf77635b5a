"""Prometheus exporter plumbing shared by the services: a registry of the caller's served on ``/metrics``.

Each service builds a ``CollectorRegistry`` of its own (never prometheus_client's global one) with collectors
that read the service's state at scrape time (``services/gateway/telemetry.py``,
``projections/telemetry.py``, ``services/query/telemetry.py``, ``services/sealer/telemetry.py``) and serves it
with ``Exporter``; ``service_registry`` adds the process metrics (CPU, memory, open files) to such a registry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.metrics_core import Metric


class Collector(Protocol):
    def describe(self) -> Iterable[Metric]: ...

    def collect(self) -> Iterable[Metric]: ...


def service_registry(*collectors: Collector, process: bool = True) -> CollectorRegistry:
    """A new registry holding ``collectors`` (and the process metrics, unless ``process`` is False)."""
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    if process:
        ProcessCollector(registry=registry)
    return registry


class Exporter:
    """``/metrics`` of one registry over HTTP, served by prometheus_client on a daemon thread."""

    def __init__(self, registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> None:
        self._server: WSGIServer
        self._server, self._thread = start_http_server(port, addr=addr, registry=registry)

    @property
    def port(self) -> int:
        """The bound port (the one chosen by the system when started with 0)."""
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
