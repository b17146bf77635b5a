"""``python -m bench.fairness``: a quiet office's p99 latency while another office floods the gateway.

The quiet office sends one event every 20 ms (well within its rate) and times each reply. Rounds alternate
between the quiet office alone and the quiet office beside a flooder (several senders, batches of 100, as fast
as replies come), in alternating order, so that both are measured in the same run on the same warm stack. The
flooder is held to its rate (``rate`` in the offices registry; the built-in default, 200 events/s, burst
1,000): beyond it each event is answered ``unavailable`` with ``retry_after_ms`` without being examined. Prints
the quiet office's p99 alone and flooded (median over rounds, with the spread), and their ratio;
``--flood-rate 1000000`` shows the same flood with the limit out of the way.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import nats

from bench.common import discard, prepare_stack, simple_events, start_servers, stop_all, wait_gateway
from services.client import OfficeClient

QUIET, FLOODER = "bench-quiet", "bench-flood"


def offices_toml(flood_rate: float, flood_burst: int) -> str:
    return (
        "[[office]]\n"
        f'id = "{QUIET}"\nname = "Quiet office"\njurisdiction = ["province:04", "province:24"]\n'
        "rate = { events_per_second = 200, burst = 1000 }\n\n"
        "[[office]]\n"
        f'id = "{FLOODER}"\nname = "Flooding office"\njurisdiction = ["province:04", "province:24"]\n'
        f"rate = {{ events_per_second = {flood_rate:g}, burst = {flood_burst} }}\n"
    )


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def events(seed: int) -> Iterator[dict[str, Any]]:
    return simple_events(10**9, seed=seed)


@dataclass
class FloodCount:
    accepted: int = 0
    limited: int = 0
    other: dict[str, int] = field(default_factory=dict)


async def quiet_round(url: str, seconds: float, interval: float, seed: int) -> list[float]:
    """Latencies (ms) of the quiet office's requests, one event each, paced at ``interval``."""
    nc = await nats.connect(url)
    client = OfficeClient(nc, QUIET, timeout=120)
    docs = events(seed)
    latencies: list[float] = []
    refused = 0
    start = time.perf_counter()
    tick = 0
    try:
        while time.perf_counter() - start < seconds:
            doc = next(docs)
            sent = time.perf_counter()
            result = await client.submit_one(doc)
            latencies.append(1000 * (time.perf_counter() - sent))
            refused += not result.ok
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * interval - time.perf_counter()))  # pacing
    finally:
        await nc.drain()
    if refused:
        print(f"  (the quiet office had {refused} of {len(latencies)} events refused)", flush=True)
    return latencies


async def flood(url: str, ready: Any, stop: Any, senders: int, batch: int, seed: int) -> FloodCount:
    """Flood until ``stop`` (a multiprocessing event) is set; count the answers.

    Bodies are encoded before the flood starts (50 requests per sender, then sent again in a cycle: far more
    new events than the rate lets through), so that the flooder's own CPU goes to sending, as an attacker's
    would, not to building events on the cores the gateway needs."""
    count = FloodCount()
    pools = []
    for k in range(senders):
        docs = events(seed * 1000 + k)
        pools.append(
            [
                b"[" + b",".join(msgspec.json.encode(next(docs)) for _ in range(batch)) + b"]"
                for _ in range(50)
            ]
        )
    nc = await nats.connect(url)
    client = OfficeClient(nc, FLOODER, timeout=120)
    ready.set()

    async def sender(k: int) -> None:
        sent = 0
        while not stop.is_set():
            results = await client.send_raw(pools[k][sent % len(pools[k])])
            sent += 1
            for result in results if isinstance(results, list) else [results]:
                if result.ok:
                    count.accepted += 1
                elif result.error is not None and result.error.retry_after_ms is not None:
                    count.limited += 1
                else:
                    code = result.error.code if result.error else "?"
                    count.other[code] = count.other.get(code, 0) + 1

    try:
        await asyncio.gather(*(sender(k) for k in range(senders)))
    finally:
        await nc.drain()
    return count


def flood_process(url: str, ready: Any, stop: Any, senders: int, batch: int, seed: int, out: Any) -> None:
    """The flooder runs in a process of its own: its client-side work must not delay the quiet office's
    replies in the measuring process's event loop (it still shares the machine's cores, as every process)."""
    out.put(asyncio.run(flood(url, ready, stop, senders, batch, seed)))


async def flooded_round(
    url: str, seconds: float, interval: float, seed: int, senders: int, batch: int, count: FloodCount
) -> list[float]:
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    out = ctx.Queue()
    flooder = ctx.Process(target=flood_process, args=(url, ready, stop, senders, batch, seed, out))
    flooder.start()
    if not await asyncio.to_thread(ready.wait, 120):
        raise RuntimeError("the flooder did not start")
    await asyncio.sleep(0.2)  # the flood is under way before the quiet office is timed
    try:
        return await quiet_round(url, seconds, interval, seed + 1)
    finally:
        stop.set()
        counted: FloodCount = await asyncio.to_thread(out.get, True, 120)
        await asyncio.to_thread(flooder.join, 30)
        count.accepted += counted.accepted
        count.limited += counted.limited
        for code, n in counted.other.items():
            count.other[code] = count.other.get(code, 0) + n


def spawn_gateways(env: dict[str, str], copies: int, log: Path) -> list[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        cmd = [sys.executable, "-m", "services.gateway"]
        return [subprocess.Popen(cmd, env=env, stdout=out, stderr=out) for _ in range(copies)]


def line(label: str, p99s: list[float]) -> str:
    return f"  {label:<9} p99 median {statistics.median(p99s):7.1f} ms (spread {min(p99s):.1f}-{max(p99s):.1f} ms)"


async def run(args: argparse.Namespace) -> None:
    nats_srv, pg, base = start_servers(sync_always=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = await prepare_stack(nats_srv, pg, base)
        offices = base / "fairness.toml"
        offices.write_text(offices_toml(args.flood_rate, args.flood_burst), encoding="utf-8")
        env["ANTQ_OFFICES"] = str(offices)
        procs = spawn_gateways(env, args.copies, base / "gateway.log")
        await wait_gateway(nats_srv.url)
        interval = 0.02
        alone: list[float] = []
        flooded: list[float] = []
        count = FloodCount()
        for r in range(args.rounds):
            order = ("alone", "flooded") if r % 2 == 0 else ("flooded", "alone")
            for mode in order:
                seed = 10 * r + (1 if mode == "alone" else 5)
                if mode == "alone":
                    alone.append(p99(await quiet_round(nats_srv.url, args.seconds, interval, seed)))
                else:
                    lat = await flooded_round(
                        nats_srv.url, args.seconds, interval, seed, args.senders, args.batch, count
                    )
                    flooded.append(p99(lat))
            print(
                f"  round {r + 1}: alone p99 {alone[-1]:.1f} ms, flooded p99 {flooded[-1]:.1f} ms", flush=True
            )
        ratios = [f / a for f, a in zip(flooded, alone, strict=True)]
        print(
            f"fairness ({args.copies} gateway cop{'y' if args.copies == 1 else 'ies'}, sync_interval=always; "
            f"quiet office: 1 event every {interval * 1000:.0f} ms; flooder: {args.senders} senders x batches of "
            f"{args.batch}, rate {args.flood_rate:g} events/s burst {args.flood_burst}; "
            f"{args.rounds} rounds of {args.seconds:g} s each way, alternating)",
            flush=True,
        )
        print(line("alone", alone), flush=True)
        print(line("flooded", flooded), flush=True)
        print(
            f"  ratio flooded/alone: median {statistics.median(ratios):.2f} "
            f"(spread {min(ratios):.2f}-{max(ratios):.2f})",
            flush=True,
        )
        other = ", ".join(f"{k} {v:,}" for k, v in sorted(count.other.items())) or "none"
        print(
            f"  flooder: {count.accepted:,} events accepted, {count.limited:,} answered unavailable "
            f"with retry_after_ms, other refusals: {other}",
            flush=True,
        )
    finally:
        stop_all(procs, nats_srv, pg)
        discard(base)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each round")
    parser.add_argument("--senders", type=int, default=8, help="the flooder's concurrent requests")
    parser.add_argument("--batch", type=int, default=100, help="events per flooding request")
    parser.add_argument("--copies", type=int, default=1, help="gateway copies (processes)")
    parser.add_argument("--flood-rate", type=float, default=200.0, help="the flooder's events per second")
    parser.add_argument("--flood-burst", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
