"""The development stack: embedded servers (unless URLs are given), migrations, streams and every service."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats

from events.localities import Localities
from infra.db import migrate
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.settings import Settings
from infra.streams import StreamLimits, ensure_streams
from projections.service import Projector
from services.gateway.app import Gateway, GatewayConfig
from services.query.app import QueryConfig, QueryService
from services.sealer.app import build_sealer

DEMO_OFFICES = Path(__file__).resolve().parent.parent / "demo" / "offices.toml"


@dataclass(frozen=True)
class StackUrls:
    nats_url: str
    database_url: str
    data_dir: Path


@contextlib.contextmanager
def embedded_servers(settings: Settings, data_dir: Path | None) -> Iterator[StackUrls]:
    """Start whichever servers have no URL in the settings; stop them on exit."""
    base = data_dir or Path(tempfile.mkdtemp(prefix="antq-dev-"))
    started: list[EmbeddedNats | EmbeddedPostgres] = []
    try:
        nats_url = settings.nats_url
        if not nats_url:
            srv_n = EmbeddedNats(base / "nats")
            started.append(srv_n)
            nats_url = srv_n.start()
        db_url = settings.database_url
        if not db_url:
            srv_p = EmbeddedPostgres(base / "pg")
            started.append(srv_p)
            db_url = srv_p.start()
        yield StackUrls(nats_url, db_url, base)
    finally:
        for srv in reversed(started):
            srv.stop()


async def prepare(urls: StackUrls, limits: StreamLimits) -> list[str]:
    """Apply migrations and create the streams; return the migrations applied now."""
    conn = await asyncpg.connect(urls.database_url)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    nc = await nats.connect(urls.nats_url)
    try:
        await ensure_streams(nc.jetstream(), limits)
    finally:
        await nc.drain()
    return applied


@contextlib.asynccontextmanager
async def running_services(urls: StackUrls, settings: Settings, offices: Path) -> AsyncIterator[None]:
    """Gateway, projection and query service, in this process, for as long as the context lasts."""
    localities = Localities.load()
    limits = StreamLimits(dedup_window_s=settings.dedup_window_s)
    await prepare(urls, limits)
    gateway = Gateway(
        GatewayConfig(
            nats_url=urls.nats_url,
            database_url=urls.database_url,
            offices_path=offices,
            limits=limits,
            localities=localities,
        )
    )
    query = QueryService(
        QueryConfig(nats_url=urls.nats_url, database_url=urls.database_url, localities=localities)
    )
    projector = Projector(nats_url=urls.nats_url, database_url=urls.database_url)
    sealer = build_sealer(
        settings, nats_url=urls.nats_url, database_url=urls.database_url, data_dir=urls.data_dir
    )
    async with gateway.app, query.app:
        await projector.start()
        await sealer.start()
        try:
            yield
        finally:
            await sealer.stop()
            await projector.stop()
