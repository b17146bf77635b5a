"""The development stack: embedded servers (unless URLs are given), migrations, streams and every service."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats

from events.localities import Localities
from infra.auth import nats_connect_options
from infra.db import migrate
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.settings import Settings
from infra.streams import StreamLimits, ensure_streams
from infra.update_signing import resolve_update_key
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


async def prepare(
    urls: StackUrls, limits: StreamLimits, nats_options: Mapping[str, str] | None = None
) -> list[str]:
    """Apply migrations and create the streams; return the migrations applied now."""
    conn = await asyncpg.connect(urls.database_url)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    nc = await nats.connect(urls.nats_url, **(nats_options or {}))
    try:
        await ensure_streams(nc.jetstream(), limits)
    finally:
        await nc.drain()
    return applied


@contextlib.asynccontextmanager
async def running_services(urls: StackUrls, settings: Settings, offices: Path) -> AsyncIterator[None]:
    """Gateway, projection, query service and sealer, in this process, for as long as the context lasts.

    All connect as the one identity of the settings (ANTQ_NATS_NKEY_SEED_FILE or ANTQ_NATS_CREDS), if any: no
    single role of ``antq auth generate`` may do all their work, so with the generated auth each service runs
    as its own process under its own role's seed."""
    localities = Localities.load()
    limits = StreamLimits(dedup_window_s=settings.dedup_window_s)
    nats_options = nats_connect_options(settings)
    await prepare(urls, limits, nats_options)
    gateway = Gateway(
        GatewayConfig(
            nats_url=urls.nats_url,
            database_url=urls.database_url,
            offices_path=offices,
            limits=limits,
            localities=localities,
            ack_timeout_s=settings.ack_timeout_s,
            nats_options=nats_options,
        )
    )
    query = QueryService(
        QueryConfig(
            nats_url=urls.nats_url,
            database_url=urls.database_url,
            localities=localities,
            nats_options=nats_options,
        )
    )
    projector = Projector(
        nats_url=urls.nats_url,
        database_url=urls.database_url,
        nats_options=nats_options,
        update_key=resolve_update_key(settings.update_key_file, urls.data_dir),
    )
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
