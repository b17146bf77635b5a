"""``python -m projections --nats-url URL --database-url URL``: the statistics projection in the foreground.

Runs until SIGTERM/SIGINT. A halt (an event the fold cannot apply) stops consuming but keeps the process up,
so the halt stays visible (logs, ``stale`` in replies, ``antq_projection_halted 1``) until an operator acts;
an unexpected error exits 1. With ``--metrics-port`` (or ``ANTQ_METRICS_PORT``) Prometheus metrics are served
on ``/metrics`` (``projections/telemetry.py``). With a server that requires auth it connects as the identity
of ``ANTQ_NATS_NKEY_SEED_FILE`` (the projector's seed) or ``ANTQ_NATS_CREDS``. Updates are signed with the key
of ``ANTQ_UPDATE_KEY_FILE``, else ``$ANTQ_DATA_DIR/updates.nk`` (created on first use), else an ephemeral key
(``infra/update_signing.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from prometheus_client import CollectorRegistry, ProcessCollector

from infra.auth import AuthError, nats_connect_options
from infra.seal_keys import SealKeyError
from infra.settings import Settings
from infra.update_signing import resolve_update_key
from projections.service import Projector
from projections.telemetry import Exporter, ProjectionCollector

log = logging.getLogger("projections")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m projections", description=__doc__)
    parser.add_argument("--nats-url", default=os.environ.get("ANTQ_NATS_URL"), required=False)
    parser.add_argument("--database-url", default=os.environ.get("ANTQ_DATABASE_URL"), required=False)
    parser.add_argument("--copy", type=int, default=None, help="copy to build (default: the active one)")
    parser.add_argument("--no-publish", action="store_true", help="publish no updates (for rebuilds)")
    parser.add_argument("--batch", type=int, default=16_000)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=Settings.from_env().metrics_port,
        help="serve Prometheus metrics on this port (default: ANTQ_METRICS_PORT; none when unset)",
    )
    args = parser.parse_args(argv)
    if not args.nats_url or not args.database_url:
        parser.error("--nats-url and --database-url (or ANTQ_NATS_URL / ANTQ_DATABASE_URL) are required")
    try:
        settings = Settings.from_env().as_identity("projector")  # its seed in ANTQ_CREDENTIALS_DIR, if given
        args.nats_options = nats_connect_options(settings)
        args.update_key = (
            None if args.no_publish else resolve_update_key(settings.update_key_file, settings.data_dir)
        )
    except (AuthError, SealKeyError, OSError) as exc:
        parser.error(str(exc))
    return args


async def _main(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    projector = Projector(
        nats_url=args.nats_url,
        database_url=args.database_url,
        copy=args.copy,
        publish=False if args.no_publish else None,
        batch=args.batch,
        nats_options=args.nats_options,
        update_key=args.update_key,
    )
    exporter = None
    if args.metrics_port is not None:
        registry = CollectorRegistry()
        registry.register(ProjectionCollector(projector))
        ProcessCollector(registry=registry)
        exporter = Exporter(registry, args.metrics_port)
        log.info("Prometheus metrics on port %d at /metrics", exporter.port)
    try:
        return await _run(projector, stop)
    finally:
        if exporter is not None:
            await asyncio.to_thread(exporter.close)


async def _run(projector: Projector, stop: asyncio.Event) -> int:
    await projector.start()
    runner_done = asyncio.create_task(projector.wait())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({runner_done, stopped}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if runner_done.done() and runner_done.exception() is not None:
        code = 1
    elif projector.halted is not None and not stop.is_set():
        log.error("halted; waiting for SIGTERM: %s", projector.halted)
        await stopped
    stopped.cancel()
    await projector.stop()
    return code


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_main(_parse(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
