"""``python -m bench.live_lag``: lag from the gateway's acceptance of an event to the update on ANTQ_UPDATES.

A steady 2,000 events/s through the gateway for 30 s (batches every 50 ms); the gateway and the projection run
as their own processes. For each accepted event: the time from its reply to the first update of its ward-year
whose ``as_of_seq`` covers it. Prints p50 / p99 / max (aim: p99 < 500 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgspec
import nats
from nats.aio.msg import Msg

from bench.common import discard, prepare_stack, start_servers, stop_all, wait_gateway
from services.client import OfficeClient

WARDS = ("01447", "01456", "01465", "09454", "09466", "09469", "09475", "09487")


class Update(msgspec.Struct, frozen=True, kw_only=True):
    ward: str
    year: int
    as_of_seq: int


def spawn(env: dict[str, str], log: Path) -> list[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        return [
            subprocess.Popen([sys.executable, "-m", module], env=env, stdout=out, stderr=out)
            for module in ("services.gateway", "projections")
        ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, rate: int, seconds: float) -> list[float]:
    nc = await nats.connect(url)
    accepted: dict[tuple[str, int], list[tuple[int, float]]] = {}  # (ward, year) -> [(seq, t)]
    seen: dict[tuple[str, int], int] = {}
    lags: list[float] = []
    decoder = msgspec.json.Decoder(Update)

    async def on_update(msg: Msg) -> None:
        now = time.perf_counter()
        update = decoder.decode(msg.data)
        key = (update.ward, update.year)
        waiting = accepted.get(key, [])
        keep = []
        for seq, t in waiting:
            if seq <= update.as_of_seq:
                lags.append(now - t)
            else:
                keep.append((seq, t))
        accepted[key] = keep
        seen[key] = max(seen.get(key, 0), update.as_of_seq)

    await nc.subscribe("antq.updates.stats.>", cb=on_update)
    client = OfficeClient(nc, "bench-0", timeout=30)
    per_tick = rate // 20
    start = time.perf_counter()
    sent = 0
    tick = 0
    while time.perf_counter() - start < seconds:
        docs = []
        for k in range(per_tick):
            i = sent + k
            docs.append(
                {
                    "type": "session.held",
                    "event_id": str(uuid.uuid4()),
                    "occurred_on": "2026-03-01",
                    "locality": {"scheme": "gso-2025", "ward": WARDS[i % len(WARDS)]},
                    "level": "hamlet",
                    "topics": ["law"],
                    "attendance": 10,
                }
            )
        results = await client.submit(docs)
        t = time.perf_counter()
        for doc, result in zip(docs, results, strict=True):
            assert result.ok and result.seq is not None
            ward = str(doc["locality"]["ward"])  # type: ignore[index]
            if seen.get((ward, 2026), 0) >= result.seq:
                # the update came before the office had its reply (the gateway still wrote its index)
                lags.append(0.0)
                continue
            accepted.setdefault((ward, 2026), []).append((result.seq, t))
        sent += per_tick
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * 0.05 - time.perf_counter()))  # pacing to the rate
    deadline = time.perf_counter() + 10
    while any(accepted.values()) and time.perf_counter() < deadline:  # noqa: ASYNC110 - bounded wait
        await asyncio.sleep(0.01)
    missing = sum(len(v) for v in accepted.values())
    await nc.drain()
    print(f"sent {sent:,} events in {time.perf_counter() - start:.1f}s; {missing} never seen in an update")
    return lags


async def run(rate: int, seconds: float) -> None:
    nats_srv, pg, base = start_servers(sync_always=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = await prepare_stack(nats_srv, pg, base)
        procs = spawn(env, base / "services.log")
        await wait_gateway(nats_srv.url)
        lags = await measure(nats_srv.url, rate, seconds)
        ms = [1000 * v for v in lags]
        print(
            f"live lag at {rate:,} events/s for {seconds:.0f}s (sync_interval=always, durable PostgreSQL): "
            f"p50 {percentile(ms, 0.5):.0f} ms, p99 {percentile(ms, 0.99):.0f} ms, max {max(ms):.0f} ms "
            f"over {len(ms):,} events",
            flush=True,
        )
    finally:
        stop_all(procs, nats_srv, pg)
        discard(base)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.live_lag")
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(run(args.rate, args.seconds))


if __name__ == "__main__":
    main()
