"""``python -m bench.web``: the dashboard's province-year page at the 200,000-event benchmark size.

Starts embedded servers, preloads N realistic events (``bench.projection``: the same generator and preload)
over wards of four provinces, projects them, starts the query service and the dashboard, then alternates, for
``--rounds`` rounds: the page ``/province/<P>?year=<Y>`` fetched over HTTP (its whole HTML: the province, the
previous year, every ward (one request: ``"by": "ward"``), ten years for the chart) cold (the figure cache emptied, as after an update of the
province) and warm (kept: ``services/web/cache.py``), the same figures gathered without HTML
(``services.web.gather.page_data``), and the raw query of the same run (one ``{"province", "year"}`` request to
the query service over nats-py). Prints each median and the ratios. Not a timing assertion: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from typing import Any

import msgspec
import nats

from bench.common import discard, start_servers
from bench.projection import preload, project, realistic_events
from events.localities import Localities
from events.subjects import QUERY_SUBJECT
from infra.db import migrate
from infra.streams import StreamLimits, ensure_streams
from services.query.app import QueryConfig, QueryService
from services.web.app import WebConfig, WebServer
from services.web.gather import page_data
from services.web.view import parse


async def http_get(host: str, port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"GET {path}: {head[:200]!r}")
    return body


async def main(n: int, wards_n: int, rounds: int, provinces: list[str], year: int) -> None:
    import asyncpg

    nats_srv, pg, base = start_servers(sync_always=False, durable_pg=False)
    try:
        conn = await asyncpg.connect(pg.url)
        await migrate(conn)
        await conn.close()
        nc = await nats.connect(nats_srv.url, pending_size=256 * 1024 * 1024)
        await ensure_streams(nc.jetstream(), StreamLimits())
        localities = Localities.load()
        chosen = [p for p in localities.provinces() if p.code in ("04", "24", "01", "38")]
        all_wards = [w for p in chosen for w in p.wards]
        wards = random.Random(7).sample(all_wards, min(wards_n, len(all_wards)))
        last = await preload(nc, localities, realistic_events(n, wards))
        proj_s, _ = await project(nc, pg.url, localities, last, 16_000)
        print(f"preloaded and projected {last:,} events over {len(wards)} wards (projection {proj_s:.1f}s)")
        query = QueryService(QueryConfig(nats_url=nats_srv.url, database_url=pg.url, localities=localities))
        async with query.app:
            web = WebServer(WebConfig(nats_url=nats_srv.url, localities=localities))
            await web.start()
            host, port = web.sock.getsockname()[:2]

            async def ask(request: dict[str, Any]) -> dict[str, Any]:
                reply = await nc.request(QUERY_SUBJECT, msgspec.json.encode(request), timeout=30)
                out: dict[str, Any] = msgspec.json.decode(reply.data)
                return out

            try:
                for province in provinces:
                    path = f"/province/{province}?year={year}"
                    view = parse("province", province, "gso-2025", {"year": str(year)})
                    await http_get(host, port, path)  # warm-up: connections, caches, the localities
                    page_ms, warm_ms, data_ms, raw_ms = [], [], [], []
                    cache = web.app.state.dashboard.cache
                    for _ in range(rounds):
                        cache.clear()  # cold: as after an update of the province
                        t0 = time.perf_counter()
                        size = len(await http_get(host, port, path))
                        page_ms.append((time.perf_counter() - t0) * 1000)
                        t0 = time.perf_counter()
                        await http_get(host, port, path)  # kept until the feed brings an update of it
                        warm_ms.append((time.perf_counter() - t0) * 1000)
                        t0 = time.perf_counter()
                        data = await page_data(ask, view, localities)
                        data_ms.append((time.perf_counter() - t0) * 1000)
                        t0 = time.perf_counter()
                        await ask({"province": province, "year": year})
                        raw_ms.append((time.perf_counter() - t0) * 1000)
                    page, warm, gathered, raw = (
                        statistics.median(x) for x in (page_ms, warm_ms, data_ms, raw_ms)
                    )
                    requests = 2 + len(data.series)  # the province with its wards, the year before, the chart
                    print(
                        f"province {province} {year} ({len(data.rows)} wards, {requests} query requests, "
                        f"{size:,} bytes of HTML), median of {rounds} rounds:"
                    )
                    print(
                        f"  page over HTTP, figures gathered (cold): {page:.1f} ms "
                        f"(rounds: {', '.join(f'{x:.0f}' for x in page_ms)})"
                    )
                    print(f"  page over HTTP, figures kept since the last update (warm): {warm:.1f} ms")
                    print(f"  its figures without HTML (page_data): {gathered:.1f} ms")
                    print(f"  raw query of the province (one request): {raw:.1f} ms")
                    print(
                        f"  ratio cold page / raw query: {page / raw:.1f}; warm page / raw query: "
                        f"{warm / raw:.2f}; cold page / its figures: {page / gathered:.2f}"
                    )
            finally:
                await web.stop()
        await nc.drain()
    finally:
        nats_srv.stop()
        pg.stop()
        discard(base)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.web")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--wards", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--year", type=int, default=2020)
    parser.add_argument("--province", action="append", help="default: 04 and 01 (the largest, 126 wards)")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.wards, args.rounds, args.province or ["04", "01"], args.year))


if __name__ == "__main__":
    cli()
