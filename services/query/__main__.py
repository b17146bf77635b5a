"""Run one query service copy: ``python -m services.query`` (URLs from ANTQ_NATS_URL / ANTQ_DATABASE_URL).

Copies share the queue group ``antq-query``. With a server that requires auth it connects as the identity of
``ANTQ_NATS_NKEY_SEED_FILE`` (the query service's seed) or ``query.nk`` in ANTQ_CREDENTIALS_DIR. With
``--metrics-port`` (or ``ANTQ_QUERY_METRICS_PORT``) its Prometheus metrics are served on ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from infra.auth import AuthError, nats_connect_options
from infra.metrics import Exporter
from infra.settings import Settings
from services.query.app import QueryConfig, QueryService
from services.query.telemetry import query_registry


def main() -> None:
    settings = Settings.from_env().as_identity("query")  # its seed in ANTQ_CREDENTIALS_DIR, if given
    parser = argparse.ArgumentParser(prog="python -m services.query")
    parser.add_argument("--nats-url", default=settings.nats_url)
    parser.add_argument("--database-url", default=settings.database_url)
    parser.add_argument("--metrics-port", type=int, default=settings.query_metrics_port)
    args = parser.parse_args()
    if not (args.nats_url and args.database_url):
        parser.error("need --nats-url and --database-url (or ANTQ_NATS_URL, ANTQ_DATABASE_URL)")
    try:
        nats_options = nats_connect_options(settings)
    except AuthError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    service = QueryService(
        QueryConfig(nats_url=args.nats_url, database_url=args.database_url, nats_options=nats_options)
    )
    exporter = Exporter(query_registry(service), args.metrics_port) if args.metrics_port is not None else None
    try:
        asyncio.run(service.app.run())
    finally:
        if exporter is not None:
            exporter.close()


if __name__ == "__main__":
    main()
