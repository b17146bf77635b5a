"""Shared pieces of the fault and backup tests: office traffic that retries with the same ids, service
subprocesses, and the checks every fault ends with (the log holds every accepted event exactly once, `antq audit
verify` is clean, the seal chain is intact, every refusal is in ANTQ_REJECTED)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import msgspec
import nats
import nats.errors
from nats.aio.client import Client

from bench.projection import realistic_events
from events.codec import decode_recorded
from events.intake import RejectedRecord
from events.localities import Localities
from events.schema import Event, ward_of
from infra.seal_keys import generate_seed, signer_from_seed
from infra.stream_reader import read_stream
from infra.streams import EVENTS, REJECTED
from projections import store
from services.client import OfficeClient
from services.sealer.service import Sealer, SealerConfig
from tests.servers import wait_for

ROOT = Path(__file__).resolve().parent.parent
OFFICES = tuple(f"office-{i}" for i in range(10))  # tests/conftest.py's offices file: provinces 04 and 24


def say(message: str) -> None:
    """What a fault test did or checked (shown with ``pytest -s``)."""
    print(f"[fault] {message}", flush=True)


def traffic(
    localities: Localities, n: int, *, seed: int, offices: Sequence[str] = OFFICES
) -> dict[str, list[Event]]:
    """A realistic mixed history (every type of the catalogue, dependent events after their causes) over wards
    of provinces 04 and 24, split by ward among ``offices``: each ward's events go to one office, in order."""
    wards = [*localities.wards_of("04")[:15], *localities.wards_of("24")[:15]]
    by_office: dict[str, list[Event]] = {office: [] for office in offices}
    for event in realistic_events(n, wards, seed=seed):
        by_office[offices[wards.index(ward_of(event)) % len(offices)]].append(event)
    return by_office


@dataclass
class Told:
    """What the offices were told, event by event: the last definitive answer (never ``unavailable``)."""

    ok: dict[str, str] = field(default_factory=dict)  # event id -> "accepted" | "duplicate"
    refused: dict[str, str] = field(default_factory=dict)  # event id -> error code

    def summary(self) -> str:
        codes = Counter(self.refused.values())
        return (
            f"{len(self.ok)} stored, {len(self.refused)} refused {dict(codes)}, {self.retries} sent again, "
            f"{self.unanswered} requests unanswered"
        )

    retries: int = 0  # requests or events sent again (timeouts, no responder, ``unavailable``)
    unanswered: int = 0  # requests that got no answer in time


async def office_sends(
    nc: Client,
    office: str,
    events: Sequence[Event],
    told: Told,
    *,
    batch: int = 25,
    timeout: float = 5.0,
    rnd: random.Random | None = None,
    stop: asyncio.Event | None = None,
    pace: float = 0.0,
) -> None:
    """Send ``events`` in batches until each has a definitive answer; an unanswered request or an ``unavailable``
    event is sent again with the same event ids after a jittered back-off. ``stop`` ends it before the next
    batch (events left unsent are simply never sent); ``pace``: at most this many seconds (jittered) between two
    batches, so that traffic lasts."""
    client = OfficeClient(nc, office, timeout=timeout)
    rnd = rnd or random.Random(office)
    pending = list(events)
    backoff = 0.05
    while pending and not (stop is not None and stop.is_set()):
        chunk, rest = pending[:batch], pending[batch:]
        try:
            results = await client.submit(chunk)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError):
            told.unanswered += 1
            told.retries += 1
            await asyncio.sleep(rnd.uniform(0, backoff))  # wait-ok: retry back-off with jitter
            backoff = min(backoff * 2, 1.0)
            continue
        again = []
        for event, result in zip(chunk, results, strict=True):
            event_id = str(event.event_id)
            if result.ok:
                told.ok[event_id] = "duplicate" if result.duplicate else "accepted"
            elif result.error is not None and result.error.code == "unavailable":
                again.append(event)
            else:
                told.refused[event_id] = result.error.code if result.error else "?"
        pending = again + rest
        if again:
            told.retries += len(again)
            await asyncio.sleep(rnd.uniform(0, backoff))  # wait-ok: retry back-off with jitter
            backoff = min(backoff * 2, 1.0)
        else:
            backoff = 0.05
            if pace:
                await asyncio.sleep(rnd.uniform(pace / 2, pace))  # wait-ok: an office's pace


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def start_projection(
    nats_url: str, database_url: str, key_file: Path, *, batch: int = 100
) -> subprocess.Popen[bytes]:
    """``python -m projections`` as its own process (a fixed update key: a restart keeps the update ids)."""
    args = ["--nats-url", nats_url, "--database-url", database_url, "--batch", str(batch)]
    return subprocess.Popen(
        [sys.executable, "-m", "projections", *args],
        cwd=ROOT,
        env=child_env(ANTQ_UPDATE_KEY_FILE=str(key_file)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def start_gateway(nats_url: str, database_url: str, offices: Path) -> subprocess.Popen[bytes]:
    """``python -m services.gateway``: one copy in the queue group ``antq-gateway``."""
    args = ["--nats-url", nats_url, "--database-url", database_url, "--offices", str(offices)]
    return subprocess.Popen(
        [sys.executable, "-m", "services.gateway", *args],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


async def checkpoint_seq(database_url: str) -> int:
    """The active copy's checkpoint; 0 before the projection opened it or while the database is away."""
    try:
        conn = await asyncpg.connect(database_url, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return 0
    try:
        return (await store.read_checkpoint(conn, 1)).seq
    except (LookupError, asyncpg.PostgresError):
        return 0
    finally:
        await conn.close()


async def last_seq(nc: Client, stream: str = EVENTS) -> int:
    return int((await nc.jetstream().stream_info(stream)).state.last_seq)


async def wait_caught_up(nc: Client, database_url: str, *, timeout: float = 60) -> int:
    last = await last_seq(nc)

    async def reached() -> bool:
        return await checkpoint_seq(database_url) >= last

    await wait_for(reached, timeout=timeout, what=f"the projection's checkpoint to reach {last}")
    return last


async def antq(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """``python -m services.cli …`` (the ``antq`` command): (exit status, stdout + stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        cwd=ROOT,
        env=child_env(COLUMNS="200", **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


@dataclass(frozen=True, kw_only=True)
class LogContents:
    event_ids: list[str]
    refusals: set[tuple[str | None, str]]  # (event id read from the kept body, code)


async def read_log(nc: Client) -> LogContents:
    js = nc.jetstream()
    ids = [str(decode_recorded(m.data).event.event_id) async for b in read_stream(js, EVENTS) for m in b]
    refusals: set[tuple[str | None, str]] = set()
    if await last_seq(nc, REJECTED):
        async for batch in read_stream(js, REJECTED):
            for msg in batch:
                record = msgspec.json.decode(msg.data, type=RejectedRecord)
                try:
                    event_id = msgspec.json.decode(record.raw).get("event_id")
                except (msgspec.DecodeError, AttributeError):
                    event_id = None
                refusals.add((event_id, record.error.code))
    return LogContents(event_ids=ids, refusals=refusals)


async def check_ledger(
    nc: Client, nats_url: str, database_url: str, told: Told, *, seal_seed: bytes | None = None
) -> None:
    """The checks after every fault (the projection must be running, to catch up); the sealer signs with
    ``seal_seed`` (the one that signed the chain so far, if any)."""
    log = await read_log(nc)
    assert len(log.event_ids) == len(set(log.event_ids)), "an event id is stored twice"
    stored = set(log.event_ids)
    missing = set(told.ok) - stored
    assert not missing, f"{len(missing)} events the offices were told accepted/duplicate are not in the log"
    untold = stored - set(told.ok)
    assert not untold, f"{len(untold)} stored events were never confirmed to their office"
    say(
        f"checked: ANTQ_EVENTS holds {len(stored)} events, each id once, exactly the {len(told.ok)} the offices "
        f"were told accepted/duplicate ({sum(v == 'duplicate' for v in told.ok.values())} duplicates)"
    )
    not_kept = {(i, c) for i, c in told.refused.items()} - log.refusals
    assert not not_kept, f"refusals not in ANTQ_REJECTED: {sorted(not_kept, key=str)[:5]}"
    say(f"checked: each of the {len(told.refused)} refusals is in ANTQ_REJECTED (event id and code)")
    last = await wait_caught_up(nc, database_url)
    env = {"ANTQ_NATS_URL": nats_url, "ANTQ_DATABASE_URL": database_url}
    code, out = await antq("audit", "verify", env=env)
    assert code == 0, out
    say(f"checked: the projection reached seq {last}; `antq audit verify` exit 0 (no difference)")
    signer = signer_from_seed(seal_seed or generate_seed())
    config = SealerConfig(nats_url=nats_url, database_url=database_url, signer=signer, every_events=500)
    seals = 0
    async with Sealer(config) as sealer:
        while await sealer.seal_once() is not None:
            seals += 1
    code, out = await antq("audit", "seals", env={**env, "ANTQ_SEAL_PUBLIC_KEYS": signer.public_key})
    assert code == 0, out
    say(f"checked: the sealer sealed the log in {seals} seals; `antq audit seals` exit 0 (chain intact)")


async def connect(url: str) -> Client:
    return await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
