"""A downstream service that keeps its own table of the latest figures of one province, fed by ANTQ_UPDATES.

What it shows (README: "Update feed", "Signed updates", "Stocks"):

- a **durable pull consumer** ``sub-<name>-<province>`` on ``ANTQ_UPDATES``, filtered to
  ``antq.updates.stats.<province>.>`` (on the secure stack, the identity ``subscriber-<name>`` may create exactly
  this consumer and no other); the server remembers what was acknowledged, so after a restart (or a crash) the
  service goes on from the first update it had not acknowledged, without reading the feed again;
- each update **verified** (when a key is pinned): an Ed25519 signature by the projection's key and the payload's
  province, ward and year equal to the subject's (``infra.update_signing.verify_update``);
- its own table (SQLite): one row per ward-year holding the update with the highest ``(fold_version,
  as_of_seq)``; an older or repeated update (a redelivery after a crash, a replayed message) changes nothing, so
  the row is written, committed, and only then acknowledged;
- reading a **stock** in a year the feed has not sent yet: what stood at the end of the latest earlier year
  (flows are zero until an update of that year comes).

Run it against ``antq dev up``::

    python -m examples.subscriber --province 04 --name dash --db figures.sqlite \\
        --key N...   # the projection's public key (Antq-Update-Key of any update; pin it once)

with ``ANTQ_NATS_URL`` and, on the secure stack, ``ANTQ_NATS_NKEY_SEED_FILE`` set to the subscriber's seed.
``--insecure-no-verify`` accepts updates without checking their signature (the open development stack only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from events.catalogue import stock_metrics
from infra.update_signing import verify_update

STREAM = "ANTQ_UPDATES"

SCHEMA = """
CREATE TABLE IF NOT EXISTS figures (
    ward TEXT NOT NULL,
    year INTEGER NOT NULL,
    province TEXT NOT NULL,
    fold_version INTEGER NOT NULL,
    as_of_seq INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (ward, year)
)
"""


class Table:
    """The service's own table: the latest update per ward-year."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute(SCHEMA)
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def keep(self, update: dict[str, Any]) -> bool:
        """Store the update unless the row holds a newer one; True when it was stored."""
        row = self.db.execute(
            "SELECT fold_version, as_of_seq FROM figures WHERE ward = ? AND year = ?",
            (update["ward"], update["year"]),
        ).fetchone()
        if row is not None and (row[0], row[1]) >= (update["fold_version"], update["as_of_seq"]):
            return False
        self.db.execute(
            "INSERT OR REPLACE INTO figures VALUES (?, ?, ?, ?, ?, ?)",
            (
                update["ward"],
                update["year"],
                update["province"],
                update["fold_version"],
                update["as_of_seq"],
                json.dumps(update["metrics"], sort_keys=True),
            ),
        )
        self.db.commit()
        return True

    def figures(self, ward: str, year: int) -> dict[str, int] | None:
        """The ward's figures in ``year`` as the query answers them: that year's update, or, when none came
        yet, the stocks standing at the end of the latest earlier year (flows zero). None: nothing known."""
        row = self.db.execute(
            "SELECT year, metrics FROM figures WHERE ward = ? AND year <= ? ORDER BY year DESC LIMIT 1",
            (ward, year),
        ).fetchone()
        if row is None:
            return None
        metrics: dict[str, int] = json.loads(row[1])
        if row[0] == year:
            return metrics
        stocks = stock_metrics()
        return {name: (value if name in stocks else 0) for name, value in metrics.items()}

    def as_of_seq(self, ward: str, year: int) -> int:
        row = self.db.execute(
            "SELECT as_of_seq FROM figures WHERE ward = ? AND year = ?", (ward, year)
        ).fetchone()
        return int(row[0]) if row else 0


class Subscriber:
    """One province's updates into a ``Table``, through the durable consumer ``sub-<name>-<province>``."""

    def __init__(self, nc: Client, *, name: str, province: str, table: Table, pinned_key: str | None) -> None:
        self.nc, self.table, self.pinned_key = nc, table, pinned_key
        self.consumer = f"sub-{name}-{province}"
        self.filter = f"antq.updates.stats.{province}.>"
        self.received = 0  # updates handled by this process (stored or not)
        self.refused = 0  # updates whose signature or subject did not verify (acknowledged, never stored)
        self._sub: Any = None

    async def attach(self) -> None:
        """Create the durable consumer (or find it as the last run left it) and bind to it."""
        js = self.nc.jetstream()
        config = ConsumerConfig(
            name=self.consumer,
            durable_name=self.consumer,
            filter_subject=self.filter,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_ack_pending=1000,
        )
        await js.add_consumer(STREAM, config)  # named create with the filter in the subject: the
        # only form the secure stack grants a subscriber
        self._sub = await js.pull_subscribe_bind(durable=self.consumer, stream=STREAM)

    async def handle(self, msg: Msg) -> None:
        self.received += 1
        if self.pinned_key is not None and not verify_update(
            msg.data, msg.headers, self.pinned_key, subject=msg.subject
        ):
            self.refused += 1
        else:
            self.table.keep(json.loads(msg.data))
        await msg.ack()  # after the commit: a crash before this line redelivers it, which changes nothing

    async def poll(self, batch: int = 100, timeout: float = 1.0) -> int:
        """Fetch and handle what is waiting (at most ``batch``); the number handled."""
        assert self._sub is not None, "attach() first"
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout)
        except nats.errors.TimeoutError:
            return 0
        for msg in msgs:
            await self.handle(msg)
        return len(msgs)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--province", required=True, help="2025 province code, e.g. 04")
    parser.add_argument("--name", required=True, help="this service's name (consumer sub-<name>-<province>)")
    parser.add_argument("--db", type=Path, required=True, help="the SQLite file of the table")
    parser.add_argument("--key", help="the projection's pinned public key (N…)")
    parser.add_argument("--insecure-no-verify", action="store_true", help="accept unsigned updates")
    args = parser.parse_args(argv)
    if args.key is None and not args.insecure_no_verify:
        parser.error("pin the projection's key with --key (or, on the open stack, --insecure-no-verify)")
    options: dict[str, Any] = {}
    seed = os.environ.get("ANTQ_NATS_NKEY_SEED_FILE")
    if seed:
        from infra.auth import nats_connect_options
        from infra.settings import Settings

        options = nats_connect_options(Settings(nats_nkey_seed_file=Path(seed)))
    nc = await nats.connect(os.environ.get("ANTQ_NATS_URL", "nats://127.0.0.1:4222"), **options)
    table = Table(args.db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        subscriber = Subscriber(nc, name=args.name, province=args.province, table=table, pinned_key=args.key)
        await subscriber.attach()
        await subscriber.run(stop)
    finally:
        table.close()
        with contextlib.suppress(Exception):
            await nc.flush(timeout=2)  # the last acks
        await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
