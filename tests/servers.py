"""Real servers for the test session: the embedded nats-server and PostgreSQL, or ANTQ_NATS_URL/ANTQ_DATABASE_URL."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ServerError

from infra.db import migrate
from infra.embedded import EmbeddedNats, EmbeddedNatsCluster, EmbeddedPostgres
from infra.streams import EVENTS, REJECTED, SEALS, UPDATES, StreamLimits, ensure_streams

TEMPLATE_DB = "antq_template"
_db_counter = itertools.count(1)
T = TypeVar("T")


@dataclass
class Servers:
    nats_url: str
    database_url: str
    workdir: Path
    nats: EmbeddedNats | None = None
    postgres: EmbeddedPostgres | None = None
    cluster: EmbeddedNatsCluster | None = None
    """Set when ``nats_url`` lists the nodes of an embedded cluster (``cluster_servers``)."""

    def database(self, name: str) -> str:
        base, _, _ = self.database_url.rpartition("/")
        return f"{base}/{name}"


def start_servers() -> Servers:
    workdir = Path(tempfile.mkdtemp(prefix="antq-test-"))
    nats_url = os.environ.get("ANTQ_NATS_URL")
    db_url = os.environ.get("ANTQ_DATABASE_URL")
    nats_srv = pg_srv = None
    if not nats_url:
        nats_srv = EmbeddedNats(workdir / "nats", sync_always=False)
        nats_url = nats_srv.start()
    if not db_url:
        pg_srv = EmbeddedPostgres(workdir / "pg", durable=False)
        db_url = pg_srv.start()
    return Servers(nats_url, db_url, workdir, nats_srv, pg_srv)


def start_cluster(size: int = 3, timeout: float = 60.0) -> EmbeddedNatsCluster:
    """An embedded JetStream cluster of ``size`` nodes at the default sync, in a temporary directory, started
    (bounded: ``timeout`` seconds to a meta leader). ``stop_cluster`` stops it and removes its files."""
    nodes = EmbeddedNatsCluster(Path(tempfile.mkdtemp(prefix="antq-cluster-test-")), size=size)
    nodes.start(timeout=timeout)
    return nodes


def stop_cluster(nodes: EmbeddedNatsCluster) -> None:
    nodes.stop()
    shutil.rmtree(nodes.data_dir, ignore_errors=True)


def cluster_servers(nodes: EmbeddedNatsCluster, servers: Servers) -> Servers:
    """The session's PostgreSQL with the cluster as NATS (its URL lists every node); every node running again
    (a test may have left one down) and agreeing on a meta leader."""
    for node in nodes.nodes:
        if node.proc is None:
            node.start()
    nodes.wait_ready(30)
    return Servers(nodes.url, servers.database_url, servers.workdir, postgres=servers.postgres, cluster=nodes)


async def prepare_template(servers: Servers) -> None:
    conn = await asyncpg.connect(servers.database_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await conn.close()
    conn = await asyncpg.connect(servers.database(TEMPLATE_DB))
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def fresh_database(servers: Servers, template: str = TEMPLATE_DB) -> str:
    """A new database cloned from the migrated template (or from ``template``: ``template0`` gives an empty one)."""
    name = f"antq_t{os.getpid()}_{next(_db_counter)}"
    conn = await asyncpg.connect(servers.database_url)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await conn.close()
    return servers.database(name)


async def drop_streams(js: JetStreamContext) -> None:
    for name in (EVENTS, REJECTED, UPDATES, SEALS):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name)


STORE_NOT_CREATED = 10049  # nats-server: "error creating store for stream"


async def until_store_created(create: Callable[[], Awaitable[object]]) -> None:
    """Run ``create``, retried while nats-server still clears the files of a stream just deleted.

    Deleting a stream returns before nats-server's background removal of its old files is done; a stream of the
    same name created in that moment is refused with 10049 (seen once in CI). The tests delete and recreate the
    same streams for every test, so they wait for the server instead of failing on its housekeeping.
    """

    async def created() -> bool:
        try:
            await create()
        except ServerError as exc:
            if exc.err_code != STORE_NOT_CREATED:
                raise
            return False
        return True

    await wait_for(created, timeout=15, what="nats-server to create the stream again")


def keeping_update_history(limits: StreamLimits, per_subject: int = 100) -> StreamLimits:
    """The limits with ANTQ_UPDATES keeping many updates per ward-year, for a test that reads back every update
    the projection published (the stream keeps only the latest: ``StreamLimits.updates_per_subject``)."""
    return dataclasses.replace(limits, updates_per_subject=per_subject)


async def create_streams(js: JetStreamContext, limits: StreamLimits) -> None:
    await until_store_created(lambda: ensure_streams(js, limits))


async def fresh_streams(js: JetStreamContext, limits: StreamLimits) -> None:
    """Empty streams for a test: the old ones deleted, new ones created, and seen to be empty.

    nats-server removes a deleted stream's files after it answers; a stream of the same name created in that
    moment can load the old message blocks and go on from the old sequence (CI, 2026-12-04: a test's first
    publish was acknowledged as seq 7, the previous test's four records still before it). Such a stream is
    deleted and created again until it starts at sequence 1.
    """

    async def empty() -> bool:
        await drop_streams(js)
        await create_streams(js, limits)
        for name in (EVENTS, REJECTED, UPDATES, SEALS):
            state = (await js.stream_info(name)).state
            if state.messages or state.last_seq:
                return False
        return True

    await wait_for(empty, timeout=30, what="empty streams (nats-server still removing the old files)")


async def wait_for(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 20.0, what: str = "") -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        await asyncio.sleep(delay)  # wait-ok: back-off between polls of a condition
        delay = min(delay * 2, 0.1)


async def settle(nc: Client) -> None:
    """Return once the server has every subscription ``nc`` has sent, so that a message another connection
    publishes next is delivered to it. One ``flush()`` is not enough: nats-py (2.16) writes the flush's PING
    straight to the socket while a new SUB still waits in the client's pending buffer for its flusher task, so
    the PONG can come back before the server has the SUB, and a message published right after goes nowhere
    (/tmp experiment, subscribe + flush + publish from another connection: lost in 1 to 5 rounds of 400 with one
    flush, in about 1 of 10 on a busy machine; never in 800 with two, on fresh and on long-lived connections).
    By the first PONG the flusher has written the SUB, so the second PING goes after it."""
    await nc.flush()
    await nc.flush()


async def outbox_empty(database_url: str) -> bool:
    """Whether the projection has published every committed update (its outbox holds no row)."""
    conn = await asyncpg.connect(database_url)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM stats_outbox") == 0)
    finally:
        await conn.close()


@contextlib.contextmanager
def dev_up(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """``antq dev up`` in a subprocess until its ready line; stopped with SIGTERM (exit status checked)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANTQ_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "dev", "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**base, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until ready (pytest's timeout bounds it)
        assert line, proc.stderr.read() if proc.stderr else b""
        yield proc, json.loads(line)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
