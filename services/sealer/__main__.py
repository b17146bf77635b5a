"""Run the sealer: ``python -m services.sealer`` (URLs from ANTQ_NATS_URL / ANTQ_DATABASE_URL).

With ``--metrics-port`` (or ``ANTQ_SEALER_METRICS_PORT``) its Prometheus metrics are served on ``/metrics``
(``services/sealer/telemetry.py``). With ANTQ_CREDENTIALS_DIR it connects as ``sealer.nk`` there.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from infra.auth import AuthError
from infra.metrics import Exporter
from infra.settings import Settings
from services.sealer.app import SealerSetupError, build_sealer
from services.sealer.telemetry import sealer_registry


async def serve(args: argparse.Namespace, settings: Settings) -> None:
    sealer = build_sealer(
        settings,
        nats_url=args.nats_url,
        database_url=args.database_url,
        seed_file=args.seed_file,
        data_dir=args.data_dir,
        every_events=args.every_events,
        every_seconds=args.every_seconds,
    )
    exporter = None
    if args.metrics_port is not None:
        exporter = Exporter(sealer_registry(sealer), args.metrics_port)
        logging.getLogger("antq.sealer").info("Prometheus metrics on port %d at /metrics", exporter.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sealer.start()
        await stop.wait()
    finally:
        await sealer.stop()
        if exporter is not None:
            exporter.close()


def main() -> None:
    settings = Settings.from_env().as_identity("sealer")  # its seed in ANTQ_CREDENTIALS_DIR, if given
    parser = argparse.ArgumentParser(prog="python -m services.sealer")
    parser.add_argument("--nats-url", default=settings.nats_url)
    parser.add_argument("--database-url", default=settings.database_url)
    parser.add_argument(
        "--seed-file", type=Path, default=None, help="nkey seed (default: ANTQ_SEAL_SEED_FILE)"
    )
    parser.add_argument("--data-dir", type=Path, default=settings.data_dir, help="where to generate a seed")
    parser.add_argument("--every-events", type=int, default=10_000)
    parser.add_argument("--every-seconds", type=float, default=60.0)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=settings.sealer_metrics_port,
        help="serve Prometheus metrics on this port (default: ANTQ_SEALER_METRICS_PORT; none when unset)",
    )
    args = parser.parse_args()
    if not (args.nats_url and args.database_url):
        parser.error("need --nats-url and --database-url (or ANTQ_NATS_URL, ANTQ_DATABASE_URL)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args, settings))
    except (SealerSetupError, AuthError) as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
