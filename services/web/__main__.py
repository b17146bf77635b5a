"""``python -m services.web``: the dashboard, as the read-only ``web`` identity.

Settings: ``ANTQ_NATS_URL`` and the identity (``ANTQ_CREDENTIALS_DIR`` with ``ANTQ_IDENTITY``, default ``web``,
or ``ANTQ_NATS_NKEY_SEED_FILE``); ``--host`` (``ANTQ_WEB_HOST``, default 127.0.0.1: put it behind the
operator's reverse proxy and login to open it wider), ``--port`` (``ANTQ_WEB_PORT``, default 8700),
``--update-key N…`` (``ANTQ_WEB_UPDATE_KEY``: the projection's public key; updates not signed by it are not
shown), ``--metrics-port`` (``ANTQ_WEB_METRICS_PORT``: the process's metrics, CPU and memory, on ``/metrics``
of another port than the pages'). Exit 2 on a bad setting.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from infra.auth import AuthError, nats_connect_options
from infra.metrics import Exporter, service_registry
from infra.settings import Settings, SettingsError
from services.web.app import WebConfig, WebServer


async def serve(config: WebConfig, host: str, port: int) -> None:
    server = WebServer(config, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    print(f'{{"web_url": "{server.url}"}}', flush=True)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.web", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("ANTQ_WEB_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("ANTQ_WEB_PORT", "8700")))
    parser.add_argument("--update-key", default=os.environ.get("ANTQ_WEB_UPDATE_KEY") or None)
    parser.add_argument("--metrics-port", type=int, default=None, help="default: ANTQ_WEB_METRICS_PORT")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env().as_identity("web")
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    metrics_port = args.metrics_port if args.metrics_port is not None else settings.web_metrics_port
    if not settings.nats_url:
        print("ANTQ_NATS_URL is not set: start `antq dev up` and export the URL it prints", file=sys.stderr)
        return 2
    if args.update_key is not None and not args.update_key.startswith("N"):
        print("--update-key is the projection's public nkey (N…)", file=sys.stderr)
        return 2
    try:
        options = nats_connect_options(settings)
    except AuthError as exc:  # a seed or a TLS file that cannot be used
        print(exc, file=sys.stderr)
        return 2
    config = WebConfig(nats_url=settings.nats_url, nats_options=options, update_key=args.update_key)
    exporter = Exporter(service_registry(), metrics_port) if metrics_port is not None else None
    try:
        asyncio.run(serve(config, args.host, args.port))
    finally:
        if exporter is not None:
            exporter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
