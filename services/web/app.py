"""The dashboard's composition root: config, routes, start and stop.

Starlette (routing, responses, server-sent events as a streaming response) served by uvicorn: the small,
well-kept ASGI pair; the app has no write path at all (GET routes only), asks the query service as its own
read-only identity and reads the update feed with an ordered consumer.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from events.localities import Localities
from infra.nats_client import server_urls
from services.cli.stats_view import QueryFailed, query_stats
from services.report.document import build
from services.report.errors import ReportError, UnknownUnit
from services.report.provenance import provenance
from services.report.render import render
from services.web import page
from services.web.cache import FigureCache
from services.web.errors import BadView, NotServed
from services.web.gather import PageData, page_data
from services.web.live import Hub
from services.web.view import FORMATS, View, parse

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
SEAL_NOTE = "bảng điều khiển không đọc dấu niêm phong: chạy `antq audit seals` (hoặc `antq report`)"
MEDIA = {
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}


@dataclass(frozen=True)
class WebConfig:
    nats_url: str
    nats_options: Mapping[str, str] = field(default_factory=dict)
    update_key: str | None = None
    """The projection's public nkey (``N…``): updates not signed by it are not shown. None: not checked."""
    localities: Localities = field(default_factory=Localities.load)
    query_timeout_s: float = 10.0


class Dashboard:
    """The running app's state: one NATS connection (query requests and the update feed)."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.nc: Client | None = None
        self.hub: Hub | None = None
        self.cache = FigureCache()

    async def start(self) -> None:
        async def lost() -> (
            None
        ):  # updates may be missed while disconnected: figures kept are no longer known
            self.cache.clear()

        options: dict[str, Any] = {
            **self.config.nats_options,
            "disconnected_cb": lost,
            "reconnected_cb": lost,
        }
        self.nc = await nats.connect(server_urls(self.config.nats_url), **options)
        self.hub = Hub(self.nc, self.config.update_key, on_update=self.cache.changed)
        await self.hub.start()

    async def stop(self) -> None:
        if self.hub is not None:
            await self.hub.stop()
        if self.nc is not None:
            await self.nc.close()

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.nc is not None
        return await query_stats(self.nc, request, timeout=self.config.query_timeout_s)

    async def data(self, view: View) -> PageData:
        localities = self.config.localities
        wanted = page.live_provinces(view, localities)
        provinces = None if wanted == "*" else frozenset(wanted.split(","))
        try:
            return await self.cache.get(view, provinces, lambda: page_data(self.ask, view, localities))
        except UnknownUnit as exc:
            raise BadView(str(exc), field="path", status=404) from None
        except QueryFailed as exc:
            raise BadView(str(exc), field="query") from None
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise NotServed(
                f"the query service did not answer ({type(exc).__name__}): is it running?"
            ) from None


def _error(exc: BadView | NotServed) -> Response:
    if isinstance(exc, BadView):
        body = {"error": {"code": "bad_view", "message": str(exc), "path": f"$.{exc.field}"}}
        return JSONResponse(body, status_code=exc.status)
    body = {"error": {"code": "unavailable", "message": str(exc), "path": "$"}}
    return JSONResponse(body, status_code=503)


def build_app(config: WebConfig) -> Starlette:
    dash = Dashboard(config)

    async def view_page(request: Request, kind: str, code: str, scheme: str) -> Response:
        query = dict(request.query_params)
        try:
            view = parse(kind, code, scheme, query)
            fmt = query.get("format")
            if fmt is not None and fmt not in FORMATS:
                raise BadView(f"format={fmt!r}: one of {', '.join(FORMATS)}", field="format")
            data = await dash.data(view)
        except (BadView, NotServed) as exc:
            return _error(exc)
        if fmt is not None:
            return download(data, fmt)
        if query.get("fragment") == "1":
            return HTMLResponse(page.content(data))
        return HTMLResponse(page.html_page(data, config.localities))

    def download(data: PageData, fmt: str) -> Response:
        if data.figures is None:
            return _error(BadView("the country has no report: download a province's", field="format"))
        try:
            body = render(build(data.figures, provenance(data.figures, None, SEAL_NOTE)), fmt)
        except ReportError as exc:
            return _error(BadView(str(exc), field="format"))
        v = data.view
        years = str(v.span.last) if v.span.single else f"{v.span.first}-{v.span.last}"
        name = f"antq-{v.kind}-{v.code}-{years}-{v.span.period}.{fmt}"
        # HTML opens as a page (the download links carry the ``download`` attribute); the rest download
        disposition = "inline" if fmt == "html" else "attachment"
        headers = {"Content-Disposition": f'{disposition}; filename="{name}"'}
        return Response(body, media_type=MEDIA[fmt], headers=headers)

    async def country(request: Request) -> Response:
        return await view_page(request, "country", "", "gso-2025")

    async def country_pre(request: Request) -> Response:
        return await view_page(request, "country", "", "gso-pre2025")

    async def unit(request: Request) -> Response:
        return await view_page(request, request.path_params["kind"], request.path_params["code"], "gso-2025")

    async def unit_pre(request: Request) -> Response:
        return await view_page(
            request, request.path_params["kind"], request.path_params["code"], "gso-pre2025"
        )

    async def updates(request: Request) -> Response:
        assert dash.hub is not None
        wanted = request.query_params.get("provinces", "*")
        provinces = None if wanted == "*" else frozenset(p for p in wanted.split(",") if p)
        watcher = dash.hub.watch(provinces)
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(dash.hub.stream(watcher), media_type="text/event-stream", headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await dash.start()
        try:
            yield
        finally:
            await dash.stop()

    app = Starlette(
        routes=[
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            Route("/", country),
            Route("/pre2025", country_pre),
            Route("/pre2025/{kind}/{code}", unit_pre),
            Route("/updates", updates),
            Route("/{kind}/{code}", unit),
        ],
        lifespan=lifespan,
    )
    app.state.dashboard = dash
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: one the system picks; ``sock.getsockname()`` tells which)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class WebServer:
    """The app under uvicorn in the running event loop (``antq dev up``, tests, the bench)."""

    def __init__(self, config: WebConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.app = build_app(config)
        self.sock = bind(host, port)

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # the process's own handlers stay (antq dev up)
                yield

        self.server = Server(
            uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=1, lifespan="on")
        )
        self._task: Any = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        import asyncio

        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the web server stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task
        self.sock.close()
