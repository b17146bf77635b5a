"""``python -m bench.ingest``: events/s accepted through the gateway vs raw nats-py ``publish_async``.

Both on the same nats-server in the same run, once with ``sync_interval: always`` (the production setting:
an acknowledged event survives a power cut) and once with the server's default, to show what durability costs.
The gateway runs as two copies in their own processes (queue group); several publishers send batches of 500.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import nats
import nats.errors

from bench.common import (
    discard,
    prepare_stack,
    province_of,
    report,
    simple_events,
    start_servers,
    stop_all,
    wait_gateway,
)
from events.codec import decode_event, encode_recorded
from events.schema import Recorded, ward_of
from infra.streams import StreamLimits, events_config
from services.client import OfficeClient


async def through_gateway(url: str, n: int, publishers: int, batch: int) -> float:
    docs = [msgspec.json.encode(d) for d in simple_events(n, seed=1)]
    chunks = [docs[i : i + batch] for i in range(0, n, batch)]
    nc = await nats.connect(url)
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

    start = time.perf_counter()
    await asyncio.gather(*(publisher(k) for k in range(publishers)))
    elapsed = time.perf_counter() - start
    await nc.drain()
    if accepted != n:
        raise RuntimeError(f"only {accepted} of {n} accepted")
    return n / elapsed


async def raw_publish_async(url: str, n: int) -> float:
    """The floor: pre-encoded records straight into a stream configured like ANTQ_EVENTS."""
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=4000)
    await js.add_stream(events_config(StreamLimits(), name="BENCH_RAW", subjects=["bench.raw.>"]))
    payloads = []
    for doc in simple_events(n, seed=2):
        ev = decode_event(msgspec.json.encode(doc), today=dt.date(2100, 1, 1))
        payloads.append(
            (
                f"bench.raw.{province_of(ward_of(ev))}.{ward_of(ev)}",
                str(ev.event_id),
                encode_recorded(Recorded(office="raw", event=ev)),
            )
        )
    start = time.perf_counter()
    futures = [
        await js.publish_async(subj, data, headers={"Nats-Msg-Id": mid}) for subj, mid, data in payloads
    ]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - start
    await nc.drain()
    return n / elapsed


def spawn_gateways(env: dict[str, str], copies: int, log: Path) -> list[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        cmd = [sys.executable, "-m", "services.gateway"]
        return [subprocess.Popen(cmd, env=env, stdout=out, stderr=out) for _ in range(copies)]


async def one_mode(sync_always: bool, n: int, publishers: int, batch: int, copies: int) -> None:
    nats_srv, pg, base = start_servers(sync_always=sync_always)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = await prepare_stack(nats_srv, pg, base)
        procs = spawn_gateways(env, copies, base / "gateway.log")
        await wait_gateway(nats_srv.url)
        raw = await raw_publish_async(nats_srv.url, n)
        project = await through_gateway(nats_srv.url, n, publishers, batch)
        mode = "sync_interval=always" if sync_always else "sync default"
        report(
            f"ingest ({mode}, {copies} gateway copies, {publishers} publishers, batches of {batch}, {n} events)",
            project,
            raw,
        )
    finally:
        stop_all(procs, nats_srv, pg)
        discard(base)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--copies", type=int, default=2)
    args = parser.parse_args()
    for sync_always in (True, False):
        asyncio.run(one_mode(sync_always, args.events, args.publishers, args.batch, args.copies))


if __name__ == "__main__":
    main()
