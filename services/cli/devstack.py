"""The development stack: embedded servers (unless URLs are given), migrations, streams and every service.

Secure by default: the identities of ``antq auth generate`` are written into ``<data dir>/credentials`` on the
first start (kept on later starts), nats-server refuses anonymous connections, every service connects as its
own role and uses its own PostgreSQL role. ``secure=False`` (``antq dev up --insecure``) is the open stack.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats

from events.localities import Localities
from infra.auth import nats_connect_options
from infra.auth.credentials import generate
from infra.auth.pg_roles import PG_SERVICE_ROLE, pg_password, role_database_url
from infra.db import migrate
from infra.embedded import EmbeddedNats, EmbeddedNatsCluster, EmbeddedPostgres
from infra.metrics import Exporter
from infra.nats_client import server_urls
from infra.settings import Settings
from infra.streams import StreamLimits, ensure_streams
from infra.update_signing import resolve_update_key
from projections.service import Projector
from services.cli.auth_cmd import offices_in
from services.gateway.app import Gateway, GatewayConfig
from services.query.app import QueryConfig, QueryService
from services.query.telemetry import query_registry
from services.sealer.app import build_sealer
from services.sealer.telemetry import sealer_registry
from services.web.app import WebConfig, WebServer

DEMO_OFFICES = Path(__file__).resolve().parent.parent / "demo" / "offices.toml"
CREDENTIALS = "credentials"
INSECURE_WARNING = (
    "WARNING: open stack (--insecure): nats-server accepts anonymous connections, so anyone who reaches it can "
    "publish well-formed forged events on antq.events.> (they are stored and counted), forge updates on "
    "antq.updates.>, and read everything. Use it for experiments only."
)


@dataclass(frozen=True)
class StackUrls:
    nats_url: str
    database_url: str  # the owner's (development); services use their own roles (``service_database_url``)
    data_dir: Path
    credentials_dir: Path | None = None  # None: the open stack, no identities

    def settings_of(self, settings: Settings, identity: str) -> Settings:
        """``settings`` of a process running as ``identity`` (its seed in the credentials directory)."""
        if self.credentials_dir is None:
            return settings
        return dataclasses.replace(
            settings, credentials_dir=self.credentials_dir, identity=identity, nats_nkey_seed_file=None
        )

    def nats_options(self, settings: Settings, identity: str) -> dict[str, str]:
        return nats_connect_options(self.settings_of(settings, identity))

    def service_database_url(self, service: str) -> str:
        """The database URL of a service under its own PostgreSQL role (the owner's on the open stack)."""
        if self.credentials_dir is None:
            return self.database_url
        role = PG_SERVICE_ROLE[service]
        return role_database_url(self.database_url, role, pg_password(self.credentials_dir, role))


@contextlib.contextmanager
def embedded_servers(
    settings: Settings,
    data_dir: Path | None,
    *,
    secure: bool = False,
    offices: Path | None = None,
    cluster: int = 1,
) -> Iterator[StackUrls]:
    """Start whichever servers have no URL in the settings; stop them on exit.

    Without ``data_dir`` everything lives in a temporary directory, removed on exit. ``secure``: identities
    for the roles and the offices of ``offices`` in ``settings.credentials_dir`` or ``<data dir>/credentials``
    (generated on the first start, kept after), and an embedded nats-server that requires them. ``cluster``
    above 1: that many nats-servers in one JetStream cluster (``<data dir>/nats/n1`` …, each at the server's
    default sync, every node with the same identities), and the URL lists every node, comma-separated; the
    streams' replicas are the settings' (``antq dev up --cluster 3`` sets them to 3).
    """
    temporary = data_dir is None
    base = data_dir or Path(tempfile.mkdtemp(prefix="antq-dev-"))
    started: list[EmbeddedNats | EmbeddedNatsCluster | EmbeddedPostgres] = []
    try:
        credentials: Path | None = None
        if secure:
            credentials = settings.credentials_dir or base / CREDENTIALS
            generate(credentials, offices_in(offices) if offices is not None else [])
        nats_url = settings.nats_url
        if not nats_url:
            auth_conf = credentials / "auth.conf" if credentials is not None else None
            srv_n: EmbeddedNats | EmbeddedNatsCluster
            if cluster > 1:
                srv_n = EmbeddedNatsCluster(base / "nats", size=cluster, auth_conf=auth_conf)
            else:
                srv_n = EmbeddedNats(base / "nats", auth_conf=auth_conf)
            started.append(srv_n)
            nats_url = srv_n.start()
        db_url = settings.database_url
        if not db_url:
            srv_p = EmbeddedPostgres(base / "pg")
            started.append(srv_p)
            db_url = srv_p.start()
        yield StackUrls(nats_url, db_url, base, credentials)
    finally:
        for srv in reversed(started):
            srv.stop()
        if temporary:
            shutil.rmtree(base, ignore_errors=True)


async def prepare(
    urls: StackUrls, limits: StreamLimits, nats_options: Mapping[str, str] | None = None
) -> list[str]:
    """Apply migrations (and, on the secure stack, the services' PostgreSQL roles) and create the streams;
    return the migrations applied now."""
    conn = await asyncpg.connect(urls.database_url)
    try:
        applied = await migrate(conn)
        if urls.credentials_dir is not None:
            await conn.execute((urls.credentials_dir / "postgres_roles.sql").read_text())
    finally:
        await conn.close()
    nc = await nats.connect(server_urls(urls.nats_url), **(nats_options or {}))
    try:
        await ensure_streams(nc.jetstream(), limits)
    finally:
        await nc.drain()
    return applied


@contextlib.asynccontextmanager
async def running_services(
    urls: StackUrls, settings: Settings, offices: Path, *, web: bool = False
) -> AsyncIterator[str | None]:
    """Gateway, projection, query service and sealer, in this process, for as long as the context lasts.

    On the secure stack (``urls.credentials_dir``) each connects as its own identity and its own PostgreSQL
    role; the streams are created by the admin. On the open stack all connect as the one identity of the
    settings (ANTQ_NATS_NKEY_SEED_FILE or ANTQ_NATS_CREDS), if any, with the owner's database URL. With
    ANTQ_QUERY_METRICS_PORT / ANTQ_SEALER_METRICS_PORT the query service's and the sealer's metrics are served.
    With ``web``, the dashboard too (``services/web``, as the ``web`` identity, on 127.0.0.1:ANTQ_WEB_PORT or
    8700, else a free port); yields its URL (None without ``web``)."""
    localities = Localities.load()
    limits = StreamLimits.from_settings(settings)
    await prepare(urls, limits, urls.nats_options(settings, "admin"))
    gateway = Gateway(
        GatewayConfig(
            nats_url=urls.nats_url,
            database_url=urls.service_database_url("gateway"),
            offices_path=offices,
            limits=limits,
            localities=localities,
            ack_timeout_s=settings.ack_timeout_s,
            nats_options=urls.nats_options(settings, "gateway"),
        )
    )
    query = QueryService(
        QueryConfig(
            nats_url=urls.nats_url,
            database_url=urls.service_database_url("query"),
            localities=localities,
            nats_options=urls.nats_options(settings, "query"),
        )
    )
    update_key = resolve_update_key(settings.update_key_file, urls.data_dir)
    projector_key = update_key.public_key
    projector = Projector(
        nats_url=urls.nats_url,
        database_url=urls.service_database_url("projector"),
        nats_options=urls.nats_options(settings, "projector"),
        update_key=update_key,
    )
    sealer = build_sealer(
        urls.settings_of(settings, "sealer"),
        nats_url=urls.nats_url,
        database_url=urls.service_database_url("sealer"),
        data_dir=urls.data_dir,
    )
    with contextlib.ExitStack() as exporters:
        if settings.query_metrics_port is not None:
            exporters.callback(Exporter(query_registry(query), settings.query_metrics_port).close)
        if settings.sealer_metrics_port is not None:
            exporters.callback(Exporter(sealer_registry(sealer), settings.sealer_metrics_port).close)
        async with gateway.app, query.app:
            await projector.start()
            await sealer.start()
            dashboard = await start_web(urls, settings, projector_key) if web else None
            try:
                yield dashboard.url if dashboard is not None else None
            finally:
                if dashboard is not None:
                    await dashboard.stop()
                await sealer.stop()
                await projector.stop()


async def start_web(urls: StackUrls, settings: Settings, update_key: str) -> WebServer:
    """The dashboard of the development stack, reading as the ``web`` identity, updates checked against the
    projection's key."""
    config = WebConfig(
        nats_url=urls.nats_url, nats_options=urls.nats_options(settings, "web"), update_key=update_key
    )
    port = int(os.environ.get("ANTQ_WEB_PORT") or 8700)
    try:
        server = WebServer(config, "127.0.0.1", port)
    except OSError:  # taken: any free port (the ready line says which)
        server = WebServer(config, "127.0.0.1", 0)
    await server.start()
    return server
