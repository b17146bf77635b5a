"""Shared pieces of the benchmarks: embedded servers in a temp dir, event generators, RSS, printing."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.errors

from infra.db import migrate
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.streams import StreamLimits, ensure_streams

WARDS = ("01447", "01456", "01465", "09454", "09466", "09469", "09475", "09487")
PROVINCE_OF = {"01447": "04", "01456": "04", "01465": "04"}


def province_of(ward: str) -> str:
    return PROVINCE_OF.get(ward, "24")


def start_servers(
    *, sync_always: bool, durable_pg: bool = True
) -> tuple[EmbeddedNats, EmbeddedPostgres, Path]:
    base = Path(tempfile.mkdtemp(prefix="antq-bench-"))
    nats_srv = EmbeddedNats(base / "nats", sync_always=sync_always)
    nats_srv.start()
    pg = EmbeddedPostgres(base / "pg", durable=durable_pg)
    pg.start()
    return nats_srv, pg, base


def simple_events(n: int, *, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Independent events (sessions, pledges, weapons, tips) over the bench wards, 2024."""
    for i in range(n):
        ward = WARDS[i % len(WARDS)]
        doc: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=(seed << 64) | i | (1 << 127))),
            "occurred_on": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "locality": {"scheme": "gso-2025", "ward": ward},
        }
        match i % 4:
            case 0:
                doc.update(type="session.held", level="hamlet", topics=["law"], attendance=30 + i % 50)
            case 1:
                doc.update(type="pledge.signed", signer="household", signatures=1 + i % 9)
            case 2:
                doc.update(type="weapons.surrendered", items=[{"kind": "support_tool", "quantity": 1}])
            case _:
                tip_id = str(uuid.UUID(int=(seed << 64) | i | (1 << 126)))
                doc.update(
                    type="tip.received", tip_id=tip_id, channel="phone", category="drugs", source="resident"
                )
        yield doc


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def report_rounds(title: str, rounds: list[tuple[float, float]], unit: str = "events/s") -> None:
    """Rounds of (project, raw) measured alternately in one run: each round's ratio, then the median ratio
    and its spread (min..max), the figure to quote on a noisy shared machine."""
    ratios = sorted(p / r for p, r in rounds if r)
    for i, (p, r) in enumerate(rounds, 1):
        print(f"  {title}, round {i}: project {p:,.0f} {unit} | raw {r:,.0f} {unit} | ratio {p / r:.2f}")
    if ratios:
        mid = len(ratios) // 2
        median = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
        print(
            f"{title}: median ratio {median:.2f} over {len(ratios)} rounds (spread {ratios[0]:.2f}..{ratios[-1]:.2f})",
            flush=True,
        )


def report(title: str, project: float, raw: float, unit: str = "events/s") -> None:
    ratio = project / raw if raw else float("nan")
    print(f"{title}: project {project:,.0f} {unit} | raw {raw:,.0f} {unit} | ratio {ratio:.2f}", flush=True)


BENCH_OFFICE_COUNT = 64
"""Offices ``bench-0`` … ``bench-63``: as many concurrent publishers as a bench may run."""

BENCH_OFFICES = (
    # the benchmarks measure throughput, not the per-office rate limit (bench/fairness.py measures that)
    "rate = { events_per_second = 1_000_000, burst = 1_000_000 }\n\n"
) + "".join(
    f'[[office]]\nid = "bench-{i}"\nname = "Bench {i}"\njurisdiction = ["province:04", "province:24"]\n\n'
    for i in range(BENCH_OFFICE_COUNT)
)


async def prepare_stack(nats_srv: EmbeddedNats, pg: EmbeddedPostgres, base: Path) -> dict[str, str]:
    """Migrate, create the streams, write the bench offices; the environment for service subprocesses."""
    conn = await asyncpg.connect(pg.url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    nc = await nats.connect(nats_srv.url)
    try:
        await ensure_streams(nc.jetstream(), StreamLimits())
    finally:
        await nc.close()
    offices = base / "offices.toml"
    offices.write_text(BENCH_OFFICES)
    return {
        **os.environ,
        "ANTQ_NATS_URL": nats_srv.url,
        "ANTQ_DATABASE_URL": pg.url,
        "ANTQ_OFFICES": str(offices),
    }


async def wait_gateway(url: str, office: str = "bench-0") -> None:
    """Until a gateway answers on the intake subject (service subprocesses start in their own time). ``url``:
    one server, or a cluster's comma-separated URLs."""
    nc = await nats.connect(servers=url.split(","))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                await nc.request(f"antq.intake.{office}", b"[]", timeout=1)
                return
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                await asyncio.sleep(0.1)  # polling a starting subprocess
        raise RuntimeError("gateway did not start")
    finally:
        await nc.close()


def discard(base: Path) -> None:
    """Remove a benchmark's server files (a 1M-event run leaves gigabytes)."""
    shutil.rmtree(base, ignore_errors=True)


def stop_all(procs: list[subprocess.Popen[bytes]], *servers: EmbeddedNats | EmbeddedPostgres) -> None:
    """Terminate service subprocesses (killed if they take over 10 s), then the servers, whatever happens."""
    try:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                print(f"{proc.args!r} did not stop within 10 s of SIGTERM: killed", flush=True)
                proc.kill()
                proc.wait()
    finally:
        for server in servers:
            server.stop()
