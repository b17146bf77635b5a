"""``python -m services.web``: the dashboard, as the read-only ``web`` identity.

Settings: ``ANTQ_NATS_URL`` and the identity (``ANTQ_CREDENTIALS_DIR`` with ``ANTQ_IDENTITY``, default ``web``,
or ``ANTQ_NATS_NKEY_SEED_FILE``); ``--host`` (``ANTQ_WEB_HOST``, default 127.0.0.1: put it behind the
operator's reverse proxy and login to open it wider), ``--port`` (``ANTQ_WEB_PORT``, default 8700),
``--update-key N…`` (``ANTQ_WEB_UPDATE_KEY``: the projection's public key; updates not signed by it are not
shown). Exit 2 on a bad setting.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from infra.auth import nats_connect_options
from infra.settings import Settings
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
    args = parser.parse_args(argv)
    settings = Settings.from_env().as_identity("web")
    if not settings.nats_url:
        print("ANTQ_NATS_URL is not set: start `antq dev up` and export the URL it prints", file=sys.stderr)
        return 2
    if args.update_key is not None and not args.update_key.startswith("N"):
        print("--update-key is the projection's public nkey (N…)", file=sys.stderr)
        return 2
    config = WebConfig(
        nats_url=settings.nats_url, nats_options=nats_connect_options(settings), update_key=args.update_key
    )
    asyncio.run(serve(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
