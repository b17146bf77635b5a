"""``python -m bench.ingest``: events/s accepted through the gateway vs raw nats-py ``publish_async``.

Both on the same nats-server in the same run, once with ``sync_interval: always`` (the production setting:
an acknowledged event survives a power cut) and once with the server's default, to show what durability costs.
The gateway runs as two copies in their own processes (queue group); 8 publishers (office clients) send
batches of 500, each waiting for its answer before the next. Both sides get the same window of unacknowledged
events: raw ``publish_async`` may have publishers × batch (4,000) pending, as many as the 8 batches in flight.

``--cluster 3``: the same ingest on a three-node JetStream cluster (every stream at 3 replicas, the servers'
default sync) against one node (1 replica, default sync), both up at once, rounds alternated (R1, R3, R1, …):
each round's R3/R1 ratio, through the gateway and raw, then the median and its spread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import msgspec
import nats
import nats.errors

from bench.common import (
    BENCH_OFFICE_COUNT,
    BENCH_OFFICES,
    discard,
    prepare_stack,
    province_of,
    report,
    report_rounds,
    simple_events,
    start_servers,
    stop_all,
    wait_gateway,
)
from events.codec import decode_event, encode_recorded
from events.schema import Recorded, ward_of
from infra.db import migrate
from infra.embedded import EmbeddedNats, EmbeddedNatsCluster, EmbeddedPostgres
from infra.nats_client import server_urls
from infra.streams import StreamLimits, ensure_streams, events_config
from services.client import OfficeClient


async def through_gateway(
    url: str, n: int, publishers: int, batch: int, seed: int = 1, meter: CpuMeter | None = None
) -> float:
    docs = [msgspec.json.encode(d) for d in simple_events(n, seed=seed)]
    chunks = [docs[i : i + batch] for i in range(0, n, batch)]
    nc = await nats.connect(server_urls(url))
    queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)
    accepted = 0

    async def publisher(k: int) -> None:
        nonlocal accepted
        client = OfficeClient(nc, f"bench-{k}", timeout=120)
        while not queue.empty():
            chunk = queue.get_nowait()
            results = await client.send_raw(b"[" + b",".join(chunk) + b"]")
            assert isinstance(results, list)
            accepted += sum(1 for r in results if r.ok)

    with meter or contextlib.nullcontext():
        start = time.perf_counter()
        await asyncio.gather(*(publisher(k) for k in range(publishers)))
        elapsed = time.perf_counter() - start
    await nc.drain()
    if accepted != n:
        raise RuntimeError(f"only {accepted} of {n} accepted")
    return n / elapsed


async def raw_publish_async(
    url: str,
    n: int,
    *,
    limits: StreamLimits | None = None,
    stream: str = "BENCH_RAW",
    seed: int = 2,
    meter: CpuMeter | None = None,
    window: int = 4000,
) -> float:
    """The floor: pre-encoded records straight into a stream configured like ANTQ_EVENTS, at most ``window``
    unacknowledged at once (the gateway path's window is its publishers × batch: the same by default)."""
    nc = await nats.connect(server_urls(url))
    js = nc.jetstream(publish_async_max_pending=window)
    await js.add_stream(events_config(limits or StreamLimits(), name=stream, subjects=["bench.raw.>"]))
    payloads = []
    for doc in simple_events(n, seed=seed):
        ev = decode_event(msgspec.json.encode(doc), today=dt.date(2100, 1, 1))
        payloads.append(
            (
                f"bench.raw.{province_of(ward_of(ev))}.{ward_of(ev)}",
                str(ev.event_id),
                encode_recorded(Recorded(office="raw", event=ev)),
            )
        )
    with meter or contextlib.nullcontext():
        start = time.perf_counter()
        futures = [
            await js.publish_async(subj, data, headers={"Nats-Msg-Id": mid}) for subj, mid, data in payloads
        ]
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - start
    await js.delete_stream(stream)  # the next round's raw stream takes the same subjects
    await nc.drain()
    return n / elapsed


def spawn_gateways(env: dict[str, str], copies: int, log: Path) -> list[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        cmd = [sys.executable, "-m", "services.gateway"]
        return [subprocess.Popen(cmd, env=env, stdout=out, stderr=out) for _ in range(copies)]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a live process, from /proc (None: gone, or no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and its live descendants (PostgreSQL's backends are its children)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = st
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo += [child for child, (parent, _) in stats.items() if parent == pid]
    return total


class CpuMeter:
    """CPU seconds per process group over one measured run: where an ingest spends the machine's cores."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start: dict[str, float] = {}
        self.client = 0.0
        self.used: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self.start = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}
        self.client = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = {
            name: sum(cpu_seconds(p) for p in pids) - self.start[name] for name, pids in self.groups.items()
        }
        self.used["bench client"] = time.process_time() - self.client

    def line(self, n: int) -> str:
        parts = [f"{name} {1000 * used / n * 1000:,.0f}" for name, used in self.used.items()]
        return (
            f"CPU µs per event: {' | '.join(parts)} | total {1000 * sum(self.used.values()) / n * 1000:,.0f}"
        )


async def one_mode(
    sync_always: bool,
    n: int,
    publishers: int,
    batch: int,
    copies: int,
    rounds: int = 3,
    raw_window: int | None = None,
) -> None:
    """Raw and gateway alternated over ``rounds`` rounds on one server (each round its own event ids): each
    round's figures and CPU per event, then the median ratio and its spread."""
    nats_srv, pg, base = start_servers(sync_always=sync_always)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = await prepare_stack(nats_srv, pg, base)
        procs = spawn_gateways(env, copies, base / "gateway.log")
        await wait_gateway(nats_srv.url)
        assert nats_srv.proc is not None and pg.proc is not None
        groups = {
            "nats-server": [nats_srv.proc.pid],
            "PostgreSQL": [pg.proc.pid],
            "gateways": [p.pid for p in procs],
        }
        mode = "sync_interval=always" if sync_always else "sync default"
        window = raw_window or publishers * batch
        title = (
            f"ingest ({mode}, {copies} gateway copies, {publishers} publishers, batches of {batch}, {n} events, "
            f"raw window {window})"
        )
        measured: list[tuple[float, float]] = []
        for i in range(max(1, rounds)):
            raw_cpu, gateway_cpu = CpuMeter(groups), CpuMeter(groups)  # each over its timed window only
            raw = await raw_publish_async(nats_srv.url, n, seed=2 + 2 * i, meter=raw_cpu, window=window)
            project = await through_gateway(
                nats_srv.url, n, publishers, batch, seed=1 + 2 * i, meter=gateway_cpu
            )
            measured.append((project, raw))
            report(f"{title}, round {i + 1}", project, raw)
            print(f"  raw publish_async: {raw_cpu.line(n)}")
            print(f"  through the gateway: {gateway_cpu.line(n)}", flush=True)
        if len(measured) > 1:
            report_rounds(title, measured)
    finally:
        stop_all(procs, nats_srv, pg)
        discard(base)


def report_ratios(title: str, rounds: list[tuple[float, float]], a: str, b: str) -> None:
    """Each round's a/b ratio, then the median and its spread (min..max): the figure to quote on a shared machine."""
    ratios = sorted(x / y for x, y in rounds if y)
    for i, (x, y) in enumerate(rounds, 1):
        print(f"  {title}, round {i}: {a} {x:,.0f} events/s | {b} {y:,.0f} events/s | ratio {x / y:.2f}")
    if ratios:
        print(
            f"{title}: median ratio {statistics.median(ratios):.2f} over {len(ratios)} rounds "
            f"(spread {ratios[0]:.2f}..{ratios[-1]:.2f})",
            flush=True,
        )


async def prepare_replicated(
    url: str, pg: EmbeddedPostgres, database: str, replicas: int, base: Path
) -> dict[str, str]:
    """A database of its own on the bench's PostgreSQL, the streams at ``replicas``; the gateways' environment."""
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute(f"CREATE DATABASE {database}")
    finally:
        await conn.close()
    db_url = pg.url.rpartition("/")[0] + f"/{database}"
    conn = await asyncpg.connect(db_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    nc = await nats.connect(server_urls(url))
    try:
        await ensure_streams(nc.jetstream(), StreamLimits(replicas=replicas))
    finally:
        await nc.close()
    offices = base / "offices.toml"
    offices.write_text(BENCH_OFFICES)
    return {
        **os.environ,
        "ANTQ_NATS_URL": url,
        "ANTQ_DATABASE_URL": db_url,
        "ANTQ_OFFICES": str(offices),
        "ANTQ_STREAM_REPLICAS": str(replicas),
    }


async def replicated(
    size: int, n: int, publishers: int, batch: int, copies: int, rounds: int, raw_window: int | None = None
) -> None:
    """R``size`` on a cluster of ``size`` nodes against R1 on one node, both at the servers' default sync,
    rounds alternated."""
    base = Path(tempfile.mkdtemp(prefix="antq-bench-"))
    single = EmbeddedNats(base / "nats1", sync_always=False)
    cluster = EmbeddedNatsCluster(base / "cluster", size=size)
    pg = EmbeddedPostgres(base / "pg")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        urls = {1: single.start(), size: cluster.start()}
        pg.start()
        assert single.proc is not None and pg.proc is not None
        servers = {1: [single.proc.pid], size: [n.proc.pid for n in cluster.nodes if n.proc is not None]}
        groups: dict[int, dict[str, list[int]]] = {}
        for replicas, url in urls.items():
            env = await prepare_replicated(url, pg, f"bench_r{replicas}", replicas, base)
            started = spawn_gateways(env, copies, base / f"gateway-r{replicas}.log")
            procs += started
            groups[replicas] = {
                f"nats-server{'s' if replicas > 1 else ''}": servers[replicas],
                "PostgreSQL": [pg.proc.pid],
                "gateways": [p.pid for p in started],
            }
            await wait_gateway(server_urls(url)[0])
        gateway: list[tuple[float, float]] = []
        raw: list[tuple[float, float]] = []
        for r in range(rounds):
            measured: dict[int, tuple[float, float]] = {}
            for replicas in (1, size) if r % 2 == 0 else (size, 1):  # alternated: neither always goes first
                url = urls[replicas]
                seed = 10 + 2 * r
                through_cpu, floor_cpu = CpuMeter(groups[replicas]), CpuMeter(groups[replicas])
                through = await through_gateway(url, n, publishers, batch, seed=seed, meter=through_cpu)
                floor = await raw_publish_async(
                    url,
                    n,
                    limits=StreamLimits(replicas=replicas),
                    stream=f"BENCH_RAW_{r}",
                    seed=seed + 1,
                    meter=floor_cpu,
                    window=raw_window or publishers * batch,
                )
                measured[replicas] = (through, floor)
                print(
                    f"  round {r + 1}, R{replicas}: gateway {through:,.0f} events/s | raw publish_async "
                    f"{floor:,.0f} events/s | ratio {through / floor:.2f}\n"
                    f"    gateway: {through_cpu.line(n)}\n    raw: {floor_cpu.line(n)}",
                    flush=True,
                )
            gateway.append((measured[size][0], measured[1][0]))
            raw.append((measured[size][1], measured[1][1]))
        title = (
            f"{copies} gateway copies, {publishers} publishers, batches of {batch}, {n} events, default sync"
        )
        report_ratios(f"ingest through the gateway, R{size} / R1 ({title})", gateway, f"R{size}", "R1")
        report_ratios(f"raw publish_async, R{size} / R1 ({n} events, default sync)", raw, f"R{size}", "R1")
        report_ratios(
            f"gateway / raw publish_async on R{size}",
            [(g[0], f[0]) for g, f in zip(gateway, raw, strict=True)],
            "gateway",
            "raw",
        )
    finally:
        stop_all(procs, single, pg)
        cluster.stop()
        discard(base)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument(
        "--publishers",
        type=int,
        default=8,
        help="concurrent office clients, one batch in flight each; publishers × batch is also raw's window",
    )
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument(
        "--cluster",
        type=int,
        default=0,
        help="compare a cluster of this many nodes (every stream at that many replicas) against one node",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="raw and gateway (or R1 and R3) alternated rounds"
    )
    parser.add_argument(
        "--raw-window",
        type=int,
        default=None,
        help="raw publish_async's most unacknowledged events (default: publishers × batch, the gateway path's)",
    )
    args = parser.parse_args()
    if not 1 <= args.publishers <= BENCH_OFFICE_COUNT:
        parser.error(f"--publishers must be 1 to {BENCH_OFFICE_COUNT} (the bench's offices)")
    shape = (args.events, args.publishers, args.batch, args.copies, args.rounds, args.raw_window)
    if args.cluster > 1:
        asyncio.run(replicated(args.cluster, *shape))
        return
    for sync_always in (True, False):
        asyncio.run(one_mode(sync_always, *shape))


if __name__ == "__main__":
    main()
