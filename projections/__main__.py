"""``python -m projections --nats-url URL --database-url URL``: the statistics projection in the foreground.

Runs until SIGTERM/SIGINT. A halt (an event the fold cannot apply) stops consuming but keeps the process up,
so the halt stays visible (logs, ``stale`` in replies, ``antq_projection_halted 1``) until an operator acts;
an unexpected error exits 1. With ``--metrics-port`` (or ``ANTQ_METRICS_PORT``) Prometheus metrics are served
on ``/metrics`` (``projections/telemetry.py``). With a server that requires auth it connects as the identity
of ``ANTQ_NATS_NKEY_SEED_FILE`` (the projector's seed) or ``ANTQ_NATS_CREDS``. Updates are signed with the key
of ``ANTQ_UPDATE_KEY_FILE``, else ``$ANTQ_DATA_DIR/updates.nk`` (created on first use), else an ephemeral key
(``infra/update_signing.py``).

With ``--workers N`` (or ``ANTQ_PROJECTION_WORKERS``) above 1, this process starts N worker processes, one per
partition (``--partition K``: the provinces of partition K, ``projections/partitions.py``), forwards SIGTERM and
SIGINT to them, restarts one that dies (a crash, a ``kill -9``) after a back-off, and exits when all have
ended. Worker K serves its metrics on ``--metrics-port`` + K. With an ephemeral update key the workers share
one, written to a private temporary file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from infra.settings import Settings

if TYPE_CHECKING:
    from projections.service import Projector

# The parent of N workers imports no more than it needs (the workers start sooner); a worker imports the rest.
MAX_WORKERS = 34  # projections.partitions.MAX_PARTS: one partition per province at most

log = logging.getLogger("projections")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m projections", description=__doc__)
    try:
        env = Settings.from_env()
    except ValueError as exc:
        parser.error(str(exc))
    parser.add_argument("--nats-url", default=os.environ.get("ANTQ_NATS_URL"), required=False)
    parser.add_argument("--database-url", default=os.environ.get("ANTQ_DATABASE_URL"), required=False)
    parser.add_argument("--copy", type=int, default=None, help="copy to build (default: the active one)")
    parser.add_argument("--no-publish", action="store_true", help="publish no updates (for rebuilds)")
    parser.add_argument("--batch", type=int, default=16_000)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes, one per partition of the provinces (default: ANTQ_PROJECTION_WORKERS, else 1)",
    )
    parser.add_argument(
        "--partition",
        type=int,
        default=None,
        help="run as worker K (0-based) of --workers (started by the parent)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=env.metrics_port,
        help="serve Prometheus metrics on this port (default: ANTQ_METRICS_PORT; none when unset)",
    )
    args = parser.parse_args(argv)
    args.workers = args.workers if args.workers is not None else env.projection_workers
    if not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers is from 1 to {MAX_WORKERS}, not {args.workers}")
    if args.partition is not None and not 0 <= args.partition < args.workers:
        parser.error(f"--partition is from 0 to {args.workers - 1} with --workers {args.workers}")
    if not args.nats_url or not args.database_url:
        parser.error("--nats-url and --database-url (or ANTQ_NATS_URL / ANTQ_DATABASE_URL) are required")
    if args.workers > 1 and args.partition is None:
        return args  # the parent: each worker reads its identity and its key
    from infra.auth import AuthError, nats_connect_options
    from infra.seal_keys import SealKeyError
    from infra.update_signing import resolve_update_key

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
    if args.workers > 1 and args.partition is None:
        return await _supervise(args)
    from prometheus_client import CollectorRegistry, ProcessCollector

    from projections.partitions import Part
    from projections.service import Projector
    from projections.telemetry import Exporter, ProjectionCollector

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
        part=Part(parts=args.workers, part=args.partition) if args.partition is not None else None,
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


def _worker_argv(args: argparse.Namespace, k: int) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "projections",
        "--nats-url",
        args.nats_url,
        "--database-url",
        args.database_url,
    ]
    argv += ["--batch", str(args.batch), "--workers", str(args.workers), "--partition", str(k)]
    if args.copy is not None:
        argv += ["--copy", str(args.copy)]
    if args.no_publish:
        argv.append("--no-publish")
    if args.metrics_port is not None:
        argv += ["--metrics-port", str(args.metrics_port + k if args.metrics_port else 0)]
    return argv


async def _supervise(args: argparse.Namespace) -> int:
    """Run one worker process per partition until SIGTERM/SIGINT (forwarded) or until all have ended; a worker
    that dies of a signal or exits non-zero while not stopping is started again after a back-off."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="antq-projection-") as tmp:
        settings = Settings.from_env()
        if not args.no_publish and settings.update_key_file is None and settings.data_dir is None:
            from infra.update_signing import load_or_create_update_key

            key_file = Path(tmp) / "updates.nk"  # one ephemeral key for every worker
            load_or_create_update_key(key_file)
            env["ANTQ_UPDATE_KEY_FILE"] = str(key_file)
        codes = await asyncio.gather(*(_keep_running(args, k, env, stop) for k in range(args.workers)))
    return max(codes)


async def _keep_running(args: argparse.Namespace, k: int, env: dict[str, str], stop: asyncio.Event) -> int:
    delay = 0.5
    while True:
        proc = await asyncio.create_subprocess_exec(*_worker_argv(args, k), env=env)
        log.info("projection worker %d of %d started (pid %d)", k, args.workers, proc.pid)
        stopping = asyncio.create_task(stop.wait())
        ended = asyncio.create_task(proc.wait())
        await asyncio.wait({stopping, ended}, return_when=asyncio.FIRST_COMPLETED)
        if not ended.done():
            proc.send_signal(signal.SIGTERM)
            code = await ended
            stopping.cancel()
            return code if code >= 0 else 0
        stopping.cancel()
        code = ended.result()
        if stop.is_set() or code == 0:
            return max(code, 0)
        log.error("projection worker %d exited with %d; starting it again in %.1fs", k, code, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return 0
        except TimeoutError:
            delay = min(delay * 2, 10.0)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_main(_parse(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
