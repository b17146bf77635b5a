"""``python -m bench.replay``: auditors' full replay of 1,000,000 events against a raw ordered-consumer read.

Preloads N realistic events into ANTQ_EVENTS (in chunks, so this process stays small), then runs, each in a
fresh subprocess so that its peak RSS is its own: (1) a raw nats-py ordered consumer reading every message,
(2) ``antq audit replay``'s engine (ordered pull read in one process, decode and the live fold in memory in
its child process), (3) the same engine reading with batched direct gets (``ANTQ_READ_MODE=direct``, no consumer:
how the generated auditor identity reads). Prints events/s of each, the ratios and the replays' peak RSS
(reader + fold process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import nats
from nats.aio.msg import Msg

from bench.common import discard, report, report_rounds, start_servers
from bench.projection import preload, realistic_events
from events.localities import Localities
from infra.nats_client import connect
from infra.reading import StreamReader
from infra.stream_reader import last_sequence
from infra.streams import EVENTS, StreamLimits, ensure_streams
from services.audit.replay import ReplayScope, replay


async def load(url: str, n: int, chunk: int = 100_000) -> int:
    localities = Localities.load()
    wards = [w for p in ("04", "24", "38") for w in localities.wards_of(p)][:300]
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_streams(js, StreamLimits(dedup_window_s=60.0))
    done = 0
    started = time.perf_counter()
    while done < n:
        size = min(chunk, n - done)
        events = realistic_events(size, wards, seed=1 + done // chunk)
        await preload(nc, localities, events)
        done += size
        print(f"  preloaded {done:,} events ({done / (time.perf_counter() - started):,.0f}/s)", flush=True)
    last = await last_sequence(js, EVENTS)
    await nc.close()
    return last


async def child_raw(url: str) -> dict[str, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    last = await last_sequence(js, EVENTS)
    done = asyncio.Event()
    seen = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal seen
        seen += 1
        if seen >= last:
            done.set()

    t0 = time.perf_counter()
    sub = await js.subscribe(
        "antq.events.>", stream=EVENTS, ordered_consumer=True, cb=on_msg, pending_msgs_limit=-1
    )
    await done.wait()
    elapsed = time.perf_counter() - t0
    await sub.unsubscribe()
    await nc.close()
    return {"events": float(seen), "seconds": elapsed}


async def child_replay(url: str, mode: str) -> dict[str, float]:
    """The replay engine as ``antq audit replay`` runs it: ``consumer`` or ``direct`` reads."""
    nc = await connect(url)
    reader = StreamReader("direct") if mode == "direct" else StreamReader()
    t0 = time.perf_counter()
    result = await replay(nc, ReplayScope(), Localities.load(), reader=reader)
    elapsed = time.perf_counter() - t0
    await nc.close()
    return {
        "events": float(result.replay.events),
        "seconds": elapsed,
        "figures": float(len(result.replay.figures)),
    }


def run_child(mode: str, url: str) -> dict[str, float]:
    """Run one side in a fresh process; adds the peak, sampled every 20 ms, of the RSS summed over that process
    and its children (the replay's fold process), as ``tree_rss_mb``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.replay", "--child", mode, "--url", url],
        stdout=subprocess.PIPE,
        text=True,
    )
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_mb(proc.pid))
        time.sleep(0.02)  # sampling interval of the memory probe
    out, _ = proc.communicate()
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    result["tree_rss_mb"] = peak
    return result


def _status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (Linux), 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_rss_mb(pid: int) -> float:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return sum(_status_kb(p, "VmRSS") for p in (pid, *map(int, children))) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.replay")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--child", choices=("raw", "replay", "direct"))
    parser.add_argument("--url")
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw / replay rounds")
    args = parser.parse_args()
    if args.child:
        body = asyncio.run(child_raw(args.url) if args.child == "raw" else child_replay(args.url, args.child))
        # VmHWM, not ru_maxrss: ru_maxrss keeps the peak of the forked image of the (large) benchmark process
        body["rss_mb"] = _status_kb(os.getpid(), "VmHWM") / 1024
        print(msgspec.json.encode(body).decode())
        return
    nats_srv, pg, base = start_servers(sync_always=False, durable_pg=False)
    try:
        last = asyncio.run(load(nats_srv.url, args.events))
        raw = run_child("raw", nats_srv.url)
        rep = run_child("replay", nats_srv.url)
        direct = run_child("direct", nats_srv.url)
        measured = [(rep["events"] / rep["seconds"], raw["events"] / raw["seconds"])]
        for _ in range(1, args.rounds):  # alternate raw and replay again
            again_raw = run_child("raw", nats_srv.url)
            again = run_child("replay", nats_srv.url)
            measured.append((again["events"] / again["seconds"], again_raw["events"] / again_raw["seconds"]))
        assert raw["events"] == rep["events"] == direct["events"] == last, (raw, rep, direct, last)
        assert direct["figures"] == rep["figures"], (rep, direct)
        raw_rate = raw["events"] / raw["seconds"]
        report(f"replay of {last:,} events (consumer reads)", rep["events"] / rep["seconds"], raw_rate)
        report(f"replay of {last:,} events (direct gets)", direct["events"] / direct["seconds"], raw_rate)
        if args.rounds > 1:
            report_rounds(f"replay of {last:,} events (consumer reads) vs raw ordered consumer", measured)
        for name, side in (("replay", rep), ("direct replay", direct)):
            print(
                f"{name} peak RSS {side['tree_rss_mb']:.0f} MB (reader and fold process together, sampled; the"
                f" reader's own peak {side['rss_mb']:.0f} MB; the raw reader's {raw['rss_mb']:.0f} MB);"
                f" {side['figures']:,.0f} figures",
                flush=True,
            )
    finally:
        nats_srv.stop()
        pg.stop()
        discard(base)


if __name__ == "__main__":
    main()
