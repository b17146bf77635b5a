"""Run one gateway copy: ``python -m services.gateway [--offices FILE]`` (URLs from ANTQ_NATS_URL / ANTQ_DATABASE_URL).

With ``ANTQ_METRICS_PORT`` (or ``--metrics-port``) its Prometheus metrics are served on ``/metrics``. With a
server that requires auth it connects as the identity of ``ANTQ_NATS_NKEY_SEED_FILE`` (the gateway's seed).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import sys
from pathlib import Path

from prometheus_client import ProcessCollector

from infra.auth import AuthError, nats_connect_options
from infra.settings import Settings
from infra.streams import StreamLimits
from projections.telemetry import Exporter
from services.gateway.app import Gateway, GatewayConfig
from services.gateway.errors import OfficesFileError
from services.gateway.telemetry import gateway_registry


def main() -> None:
    settings = Settings.from_env().as_identity("gateway")  # its seed in ANTQ_CREDENTIALS_DIR, if given
    parser = argparse.ArgumentParser(prog="python -m services.gateway")
    parser.add_argument("--nats-url", default=settings.nats_url)
    parser.add_argument("--database-url", default=settings.database_url)
    parser.add_argument("--offices", type=Path, default=settings.offices_path)
    parser.add_argument("--metrics-port", type=int, default=settings.metrics_port)
    args = parser.parse_args()
    if not (args.nats_url and args.database_url and args.offices):
        parser.error(
            "need --nats-url, --database-url and --offices (or ANTQ_NATS_URL, ANTQ_DATABASE_URL, ANTQ_OFFICES)"
        )
    if not (math.isfinite(settings.ack_timeout_s) and settings.ack_timeout_s > 0):
        parser.error(f"ANTQ_ACK_TIMEOUT_S must be a positive number of seconds, not {settings.ack_timeout_s}")
    try:
        nats_options = nats_connect_options(settings)
    except AuthError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = GatewayConfig(
        nats_url=args.nats_url,
        database_url=args.database_url,
        offices_path=args.offices,
        limits=StreamLimits.from_settings(settings),
        ack_timeout_s=settings.ack_timeout_s,
        nats_options=nats_options,
    )
    try:
        gateway = Gateway(config)  # reads the offices file: a bad one stops here, before any connection
    except OfficesFileError as exc:
        print(f"antq gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    # the localities and offices loaded above live as long as the process: no collection need walk them again
    gc.freeze()
    exporter = None
    if args.metrics_port is not None:
        registry = gateway_registry(gateway.counters, gateway.dropped, gateway.catch_up_counters)
        ProcessCollector(registry=registry)
        exporter = Exporter(registry, args.metrics_port)
        logging.getLogger("antq.gateway").info("Prometheus metrics on port %d at /metrics", exporter.port)
    try:
        asyncio.run(gateway.app.run())
    finally:
        if exporter is not None:
            exporter.close()


if __name__ == "__main__":
    main()
