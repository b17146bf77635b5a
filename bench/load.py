"""``python -m bench.load [--duration 600] [--offices 20] [--cluster 3]``: sustained mixed traffic.

Every event type of the catalogue (the history ``bench.projection`` generates: tips and their assessments,
sessions, pledges, mediations, weapons, models, safety units, youth, commendations, patrols, consultations,
broadcasts, campaigns, cases, corrections and retractions) from many office clients at once, each sending
batches one after another for the set time, through two gateway copies (queue group) to the log, folded by the
projection, read by the query service and sealed by the sealer, every service in its own process.

Printed: accepted events/s, acceptance latency (p50/p99 of a request's round trip: a batch is accepted when its
answer comes), projection lag (p50/p99 of the time from an event's acceptance to the projection's checkpoint
passing its sequence, sampled every 0.2 s; and its p99 in each fifth of the run, by acceptance time, so that a lag
that keeps growing shows), the RSS of every service process (and nats-server, PostgreSQL) sampled at ten points
of the run (growth after the warm-up, and over the second half: a leak keeps growing there, a working set
reached once does not), and the answers by code (``not_answered``: a request without an answer in time, sent
again).

By default every office sends its next batch as soon as the last is answered: the stack runs at saturation and
the figures are its capacity on this machine (every service, both nats-server and PostgreSQL share its cores, so
the projection gets only its share of them). ``--rate R`` offers R events/s in all (each office sends a batch on
its own schedule, at once when late): the steady state below capacity, where the lag and the memory of every
service should stay flat.

nats-server keeps the id of every event stored within ANTQ_EVENTS' dedup window in memory (24 h by default,
``ANTQ_DEDUP_WINDOW_S``), so its RSS grows with the events of the window until the window is full: at a
saturating load, for the whole of a run shorter than the window. ``--dedup-window S`` sets the window of the run
(the streams and the gateways': ``ANTQ_DEDUP_WINDOW_S``) to see nats-server's memory once its window is full.

``--cluster 3`` runs a three-node JetStream cluster (``infra.embedded.EmbeddedNatsCluster``) with every stream
at three replicas (``ANTQ_STREAM_REPLICAS``); one node is the default. ``--sync always|default``: nats-server's
``sync_interval`` on one node (default ``always``, the single-node production setting; a cluster runs at the
server's default sync, which replication makes durable).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.errors
from nats.aio.client import Client

from bench.common import discard, stop_all, wait_gateway
from bench.projection import realistic_events
from events.localities import Localities
from events.schema import Event
from events.subjects import QUERY_SUBJECT
from infra.db import migrate
from infra.embedded import EmbeddedNats, EmbeddedNatsCluster, EmbeddedPostgres
from infra.streams import StreamLimits, ensure_streams
from services.client import OfficeClient

ROOT = Path(__file__).resolve().parent.parent
PROVINCES = ("04", "24", "01", "38")
CHUNK = 1000  # events generated at a time per office (a fresh history, new ids; ~40 ms of the bench's CPU)


def offices_toml(n: int) -> str:
    """``n`` offices over the bench provinces, at a rate they never reach (this measures the stack)."""
    head = "rate = { events_per_second = 1_000_000, burst = 1_000_000 }\n\n"
    jurisdiction = ", ".join(f'"province:{p}"' for p in PROVINCES)
    return head + "".join(
        f'[[office]]\nid = "load-{i}"\nname = "Load {i}"\njurisdiction = [{jurisdiction}]\n\n'
        for i in range(n)
    )


def history(wards: Sequence[str], seed: int) -> Iterator[Event]:
    """An endless history for one office over its wards: chunks of ``realistic_events`` with fresh ids."""
    round_ = 0
    while True:
        yield from realistic_events(CHUNK, wards, seed=seed * 1_000 + round_)
        round_ += 1


@dataclass
class Measures:
    accepted: int = 0
    duplicates: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    waiting: list[tuple[int, float]] = field(default_factory=list)  # heap of (seq, accepted at)
    queries: Counter[str] = field(default_factory=Counter)
    lag_at: list[tuple[float, float]] = field(default_factory=list)
    """(seconds into the run the event was accepted, its lag)."""
    t0: float = 0.0


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def office(
    nc: Client, name: str, events: Iterator[Event], batch: int, until: float, m: Measures, every: float = 0.0
) -> None:
    """One office: a batch at a time until ``until`` (with ``every`` > 0, a new batch every ``every`` seconds,
    at once when late); events answered ``unavailable`` or not answered are sent again with the same ids (the
    office client's rule), so every id ends up stored once."""
    client = OfficeClient(nc, name, timeout=30)
    pending: list[Event] = []
    rnd = random.Random(name)
    due = time.monotonic() + rnd.uniform(0, every)  # the offices' schedules spread over one period
    while time.monotonic() < until:
        if every:
            await asyncio.sleep(max(0.0, due - time.monotonic()))  # wait-ok: the office's pace
            due += every
        while len(pending) < batch:
            pending.append(next(events))
        chunk, pending = pending[:batch], pending[batch:]
        start = time.monotonic()
        try:
            results = await client.submit(chunk)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            m.codes["not_answered"] += len(chunk)
            pending = chunk + pending
            await asyncio.sleep(rnd.uniform(0.05, 0.5))  # back-off before sending the same ids again
            continue
        done = time.monotonic()
        m.latencies.append(done - start)
        again = []
        for event, result in zip(chunk, results, strict=True):
            if result.ok:
                m.codes["duplicate" if result.duplicate else "accepted"] += 1
                if result.duplicate:
                    m.duplicates += 1
                else:
                    m.accepted += 1
                    if result.seq is not None:
                        heapq.heappush(m.waiting, (result.seq, done))
            else:
                code = result.error.code if result.error else "?"
                m.codes[code] += 1
                if code == "unavailable":
                    again.append(event)
        pending = again + pending
        if again:
            await asyncio.sleep(rnd.uniform(0.05, 0.3))  # back-off before the events answered unavailable


async def lag_sampler(database_url: str, sent: asyncio.Event, m: Measures) -> None:
    """Every 0.2 s: the projection's checkpoint; each accepted event at or below it has waited this long. Ends
    once the offices are done and every accepted event is folded (or 60 s after, whatever is left)."""
    conn = await asyncpg.connect(database_url)
    deadline = float("inf")
    try:
        while time.monotonic() < deadline and not (sent.is_set() and not m.waiting):
            if sent.is_set() and deadline == float("inf"):
                deadline = time.monotonic() + 60
            seq = await conn.fetchval(
                "SELECT c.seq FROM projection_checkpoint c JOIN projection_active a USING (name, copy)"
                " WHERE c.name = 'stats'"
            )
            now = time.monotonic()
            while m.waiting and m.waiting[0][0] <= (seq or 0):
                _, accepted_at = heapq.heappop(m.waiting)
                m.lags.append(now - accepted_at)
                m.lag_at.append((accepted_at - m.t0, now - accepted_at))
            await asyncio.sleep(0.2)  # the sampling period
    finally:
        await conn.close()


async def reader(nc: Client, wards: Sequence[str], until: float, m: Measures) -> None:
    """A dashboard asking the query service for a ward's year, twice a second."""
    rnd = random.Random(7)
    while time.monotonic() < until:
        body = f'{{"ward":"{rnd.choice(wards)}","year":{rnd.randint(2016, 2025)}}}'.encode()
        try:
            reply = await nc.request(QUERY_SUBJECT, body, timeout=10)
            m.queries["error" if b'"error"' in reply.data else "answered"] += 1
        except nats.errors.TimeoutError:
            m.queries["not_answered"] += 1
        await asyncio.sleep(0.5)  # the dashboard's pace


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def tree_pss_mb(pid: int) -> float:
    """A process and its children (PostgreSQL: the postmaster and its backends), by PSS: the shared buffers
    every backend maps are counted once, not once per process as RSS would."""
    total = float("nan")
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total = int(line.split()[1]) / 1024
                break
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(tree_pss_mb(int(c)) for c in children)


def rss_table(procs: dict[str, int]) -> dict[str, float]:
    return {name: (tree_pss_mb(pid) if name == "postgres" else rss_mb(pid)) for name, pid in procs.items()}


def start_nats(args: argparse.Namespace, base: Path) -> tuple[str, Any, dict[str, int]]:
    """(url or comma-separated urls, the server object to stop, its process ids by name)."""
    if args.cluster > 1:
        os.environ["ANTQ_STREAM_REPLICAS"] = str(args.cluster)
        cluster = EmbeddedNatsCluster(base / "nats", size=args.cluster)
        url = str(cluster.start())
        pids = {f"nats-{i}": node.proc.pid for i, node in enumerate(cluster.nodes) if node.proc is not None}
        return url, cluster, pids
    server = EmbeddedNats(base / "nats", sync_always=args.sync == "always")
    url = server.start()
    assert server.proc is not None
    return url, server, {"nats-server": server.proc.pid}


def spawn(module: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def run(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="antq-load-"))
    nats_url, nats_server, server_pids = start_nats(args, base)
    pg = EmbeddedPostgres(base / "pg", durable=True)
    pg.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = await prepare(nats_url, pg, base, args.offices)
        env["ANTQ_DATA_DIR"] = str(base / "data")
        (base / "data").mkdir()
        named = {
            "gateway-1": spawn("services.gateway", env),
            "gateway-2": spawn("services.gateway", env),
            "projection": spawn("projections", env),
            "query": spawn("services.query", env),
            "sealer": spawn("services.sealer", env, "--every-events", "10000", "--every-seconds", "30"),
        }
        procs = list(named.values())
        await wait_gateway(nats_url, "load-0")
        assert pg.proc is not None
        pids = {**server_pids, "postgres": pg.proc.pid, **{k: p.pid for k, p in named.items()}}
        localities = Localities.load()
        provinces = [p for p in localities.provinces() if p.code in PROVINCES]
        all_wards = [w for p in provinces for w in p.wards]
        nc = await nats.connect(servers=nats_url.split(","), pending_size=256 * 1024 * 1024)
        m = Measures()
        wards_per_office = max(1, min(40, len(all_wards) // args.offices))
        shuffled = random.Random(3).sample(all_wards, len(all_wards))
        mode = (
            f"a cluster of {args.cluster} (every stream R{args.cluster})"
            if args.cluster > 1
            else f"one nats-server (R1, sync {args.sync})"
        )
        print(
            f"stack: {mode}"
            f", PostgreSQL durable; 2 gateways, projection, query, sealer; {args.offices} offices x batches of"
            f" {args.batch} for {args.duration:g} s, dedup window"
            f" {float(os.environ.get('ANTQ_DEDUP_WINDOW_S') or 86_400.0):g} s, "
            + (
                f"offered {args.rate:,.0f} events/s in all"
                if args.rate
                else "each batch as soon as the last is answered"
            ),
            flush=True,
        )
        start_rss = rss_table(pids)
        load_start = os.getloadavg()[0]
        t0 = m.t0 = time.monotonic()
        until = t0 + args.duration
        every = args.batch * args.offices / args.rate if args.rate else 0.0
        tasks = [
            office(
                nc,
                f"load-{i}",
                history(shuffled[i * wards_per_office : (i + 1) * wards_per_office], seed=i),
                args.batch,
                until,
                m,
                every,
            )
            for i in range(args.offices)
        ]
        sent = asyncio.Event()
        sampler = asyncio.create_task(lag_sampler(pg.url, sent, m))
        warm_at = min(30.0, args.duration / 4)
        at = sorted({warm_at, *(args.duration * k / 10 for k in range(1, 10))})

        async def rss_samples() -> list[tuple[float, dict[str, float]]]:
            taken = []
            for when in at:
                await asyncio.sleep(max(0.0, t0 + when - time.monotonic()))  # wait-ok: the sampling times
                taken.append((when, rss_table(pids)))
            return taken

        sampling = asyncio.create_task(rss_samples())
        await asyncio.gather(*tasks, reader(nc, all_wards, until, m))
        samples = dict(await sampling)
        end_rss = rss_table(pids)
        warm_rss = samples[warm_at]
        half_rss = samples[min(at, key=lambda w: abs(w - args.duration / 2))]
        sent.set()
        await sampler
        elapsed = time.monotonic() - t0
        await nc.drain()
        print(
            f"accepted: {m.accepted:,} events in {args.duration:g} s = {m.accepted / args.duration:,.0f} events/s"
        )
        print(
            f"acceptance latency per request of {args.batch}: p50 {percentile(m.latencies, 50) * 1000:.0f} ms,"
            f" p99 {percentile(m.latencies, 99) * 1000:.0f} ms ({len(m.latencies):,} requests)"
        )
        print(
            f"projection lag: p50 {percentile(m.lags, 50):.2f} s, p99 {percentile(m.lags, 99):.2f} s"
            f" ({len(m.lags):,} events; the last folded {elapsed - args.duration:.1f} s after the load's end"
            + (f"; {len(m.waiting):,} not folded 60 s after the offices stopped" if m.waiting else "")
            + ")"
        )
        fifths = [
            [lag for when, lag in m.lag_at if k * args.duration / 5 <= when < (k + 1) * args.duration / 5]
            for k in range(5)
        ]
        print(
            "projection lag p99 by fifth of the run (events accepted then): "
            + ", ".join(f"{percentile(part, 99):.2f} s" for part in fifths)
        )
        print(f"answers by code: {dict(sorted(m.codes.items()))}; queries: {dict(m.queries)}")
        print(
            "RSS (MB; PostgreSQL: PSS of all its processes) at the load's start, then at "
            + ", ".join(f"{w:g}" for w in at)
            + f" s, and at the end; growth after the warm-up ({warm_at:g} s) and over the second half:"
        )
        for name in pids:
            series = " ".join(f"{samples[w][name]:.0f}" for w in at)
            print(
                f"  {name:12} {start_rss[name]:5.0f} | {series} | {end_rss[name]:5.0f}"
                f"  ({end_rss[name] - warm_rss[name]:+.0f}, {end_rss[name] - half_rss[name]:+.0f})"
            )
        print(
            f"load average (1 min): {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
            f" ({os.cpu_count()} cores; other processes on the machine count in it)"
        )
        dead = [name for name, p in named.items() if p.poll() is not None]
        if dead:
            print(f"services that exited during the run: {dead}")
    finally:
        stop_all(procs, *([nats_server] if hasattr(nats_server, "stop") else []), pg)
        discard(base)


async def prepare(nats_url: str, pg: EmbeddedPostgres, base: Path, offices: int) -> dict[str, str]:
    """Migrate, create the streams (their replicas: ANTQ_STREAM_REPLICAS, where the stream settings read it),
    write the offices file; the environment of the service processes."""
    conn = await asyncpg.connect(pg.url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    nc = await nats.connect(servers=nats_url.split(","))
    try:
        await ensure_streams(
            nc.jetstream(),
            StreamLimits(
                replicas=int(os.environ.get("ANTQ_STREAM_REPLICAS", "1")),
                dedup_window_s=float(os.environ.get("ANTQ_DEDUP_WINDOW_S") or 86_400.0),
            ),
        )
    finally:
        await nc.close()
    (base / "offices.toml").write_text(offices_toml(offices))
    return {
        **os.environ,
        "ANTQ_NATS_URL": nats_url,
        "ANTQ_DATABASE_URL": pg.url,
        "ANTQ_OFFICES": str(base / "offices.toml"),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--offices", type=int, default=20, help="office clients sending at once")
    parser.add_argument("--batch", type=int, default=50, help="events per request")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="events/s offered in all (default: as fast as answered)"
    )
    parser.add_argument("--cluster", type=int, default=1, help="JetStream nodes (3: every stream at R3)")
    parser.add_argument(
        "--sync", choices=("always", "default"), default=None, help="one node's sync_interval"
    )
    parser.add_argument(
        "--dedup-window",
        type=float,
        default=None,
        help="seconds of ANTQ_EVENTS' dedup window (default: the setting's, 24 h)",
    )
    args = parser.parse_args()
    if args.dedup_window is not None:
        os.environ["ANTQ_DEDUP_WINDOW_S"] = str(args.dedup_window)
    if args.sync is None:
        args.sync = "default" if args.cluster > 1 else "always"
    asyncio.run(run(args))


if __name__ == "__main__":
    cli()
