"""``python -m bench.projection``: the statistics projection from empty to caught up, against a raw read.

Starts embedded servers, preloads N realistic events straight into ANTQ_EVENTS (pipelined JetStream
publishes), times (1) a raw nats-py pull-fetch-and-decode of the stream and (2) the projection (a runner in
this process, updates published) from empty to caught up, and prints both rates, their ratio and the peak RSS;
then (3) rebuilds in subprocesses, ``python -m projections --no-publish`` with 1 worker and with
``--workers 2`` (the provinces split in two partitions), alternated round by round, with the speed-up and the CPU
seconds of every process (nats-server, PostgreSQL, the projection's processes, this one) from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.common import discard, report_rounds, start_servers
from events.catalogue import CATALOGUE
from events.codec import decode_recorded, encode_recorded
from events.localities import Localities
from events.schema import (
    EntryRetracted,
    Event,
    Locality,
    MediationConcluded,
    ModelDissolved,
    ModelEstablished,
    ModelUpdated,
    PledgeSigned,
    Recorded,
    SafetyAssessed,
    SafetyRegistered,
    SessionHeld,
    TipAssessed,
    TipReceived,
    WeaponItem,
    WeaponsSurrendered,
    YouthEnrolled,
    YouthReleased,
    ward_of,
)
from events.subjects import event_subject
from infra.db import migrate
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.nats_client import connect
from infra.stream_reader import parse_ack_reply
from infra.streams import EVENTS, StreamLimits, ensure_streams
from projections import store
from projections.runner import RunnerConfig, StatsRunner
from services.contract.asyncapi import example_of

ROOT = Path(__file__).resolve().parent.parent
START = dt.date(2016, 1, 1)
END = dt.date(2025, 6, 30)


DRAWN_APART = frozenset({"session.held", "pledge.signed", "weapons.surrendered"})
"""Plain types the history draws with shares of their own (below); every other plain type shares the rest."""

MOVEMENT_FIELDS: dict[str, dict[str, object]] = {
    "commendation.awarded": {"recipient": "individual", "authority": "province", "count": 3},
    "patrol.held": {"participants": 8},
    "consultation.held": {"people": 5},
    "broadcast.aired": {"medium": "loudspeaker", "minutes": 20},
    "campaign.launched": {"participants": 150},
    "cases.cleared": {"category": "drugs", "cases": 1, "offenders": 2},
}
"""Fields written out for realism. A plain type not named here still joins the mix, with the contract's
example of it (``plain_mix``): declaring a plain type in the catalogue is enough to have it benchmarked."""

_ENVELOPE = frozenset({"type", "event_id", "occurred_on", "locality"})


def plain_mix() -> dict[str, dict[str, object]]:
    """The fields of every plain type of the catalogue without an entity of its own, in catalogue order (but
    those drawn apart): ``MOVEMENT_FIELDS`` where written, else the contract's example (``example_of``: required
    fields, first enum value, lower bound). A link to tips is filled per event with tips of its ward."""
    examples: dict[str, object] | None = None
    out: dict[str, dict[str, object]] = {}
    for spec in CATALOGUE:
        if spec.fold != "plain" or spec.entity is not None or spec.tag in DRAWN_APART:
            continue
        if spec.links is not None and spec.links.name != "tip":
            raise ValueError(f"{spec.tag} links to {spec.links.name}: say in bench.projection how to fill it")
        fields = MOVEMENT_FIELDS.get(spec.tag)
        if fields is None:
            if examples is None:
                from services.contract.build import contract

                examples = {k[: -len(".json")]: v for k, v in contract().schemas.items()}
            schema = examples[spec.tag]
            assert isinstance(schema, dict)
            example = example_of(schema, schema.get("definitions", {}), spec.tag)
            fields = {k: v for k, v in example.items() if k not in _ENVELOPE}
        out[spec.tag] = dict(fields)
    return out


PLAIN_MIX = plain_mix()
MOVEMENT_TAGS = tuple(PLAIN_MIX)
TIP_LINKS = {s.tag: s.links.field for s in CATALOGUE if s.tag in PLAIN_MIX and s.links is not None}


def realistic_events(n: int, wards: Sequence[str], *, seed: int = 1) -> list[Event]:
    """A history as offices would file it, roughly in date order: ~1/3 tips (most assessed, some twice), sessions,
        pledges, mediations, weapons (with ammunition), issue 10's types (3%: commendations, patrols, consultations,
    broadcasts, campaigns, cases naming tips: every other plain type of the catalogue, ``PLAIN_MIX``), models,
    youth and the safety standard, and a few % retractions of recent entries."""
    rnd = random.Random(seed)
    span = (END - START).days
    out: list[Event] = []
    open_tips: list[TipReceived] = []
    recent: list[Event] = []
    models: list[ModelEstablished] = []
    people: list[YouthEnrolled] = []
    units: list[SafetyRegistered] = []

    def new_id() -> uuid.UUID:
        return uuid.UUID(int=rnd.getrandbits(128), version=4)

    for i in range(n):
        day = START + dt.timedelta(days=span * i // max(n, 1))
        ward = rnd.choice(wards)
        loc = Locality(ward=ward)
        roll = rnd.random()
        event: Event
        if roll < 0.17 and open_tips:
            tip = (
                open_tips.pop(rnd.randrange(len(open_tips))) if rnd.random() < 0.9 else rnd.choice(open_tips)
            )
            event = TipAssessed(
                event_id=new_id(),
                occurred_on=day,
                locality=tip.locality,
                tip_id=tip.tip_id,
                valuable=rnd.random() < 0.85,
            )
        elif roll < 0.20 and recent:
            target = recent.pop(rnd.randrange(len(recent)))
            event = EntryRetracted(
                event_id=new_id(),
                occurred_on=day,
                locality=target.locality,
                target_event_id=target.event_id,
                reason="entered twice",
            )
        elif roll < 0.38:
            event = TipReceived(
                event_id=new_id(),
                occurred_on=day,
                locality=loc,
                tip_id=new_id(),
                channel="phone",
                category="drugs",
                source="resident",
            )
            open_tips.append(event)
        elif roll < 0.65:
            event = SessionHeld(
                event_id=new_id(),
                occurred_on=day,
                locality=loc,
                level=rnd.choice(("commune", "hamlet", "institution")),
                topics=("law",),
                attendance=rnd.randint(10, 300),
            )
        elif roll < 0.82:
            event = PledgeSigned(
                event_id=new_id(),
                occurred_on=day,
                locality=loc,
                signer=rnd.choice(("household", "individual", "institution")),
                signatures=rnd.randint(1, 200),
            )
        elif roll < 0.92:
            event = MediationConcluded(
                event_id=new_id(),
                occurred_on=day,
                locality=loc,
                case_id=new_id(),
                outcome=rnd.choice(("successful", "successful", "unsuccessful", "referred")),
                dispute="land",
            )
        elif roll >= 0.985:  # the "An toàn về ANTT" standard: a registration, or an assessment of one
            event = safety_event(rnd, new_id(), day, loc, units)
        elif roll >= 0.96:  # lifecycle entities: models and youth under management (stocks)
            event = lifecycle_event(rnd, new_id(), day, loc, models, people)
        elif roll >= 0.935:  # issue 10's plain types, cases naming a recent tip of their ward
            tag = rnd.choice(MOVEMENT_TAGS)
            fields = dict(PLAIN_MIX[tag])
            if tag in TIP_LINKS:
                named = [t for t in open_tips[-50:] if t.locality.ward == ward][:2]
                fields[TIP_LINKS[tag]] = [str(t.tip_id) for t in named]
            doc = {
                "type": tag,
                "event_id": str(new_id()),
                "occurred_on": day.isoformat(),
                "locality": {"scheme": "gso-2025", "ward": ward},
            }
            event = msgspec.convert({**doc, **fields}, Event)
        else:
            items = [
                WeaponItem(
                    kind=rnd.choice(("homemade_firearm", "support_tool", "explosive")),
                    quantity=rnd.randint(1, 6),
                )
            ]
            if rnd.random() < 0.3:
                items.append(WeaponItem(kind="ammunition", quantity=rnd.randint(5, 100)))
            event = WeaponsSurrendered(event_id=new_id(), occurred_on=day, locality=loc, items=tuple(items))
        out.append(event)
        if not isinstance(
            event,
            EntryRetracted
            | ModelEstablished
            | ModelUpdated
            | ModelDissolved
            | YouthEnrolled
            | YouthReleased
            | SafetyRegistered
            | SafetyAssessed,
        ):
            recent.append(event)  # lifecycle events are not retracted here: their later updates would fail
            if len(recent) > 2000:
                recent.pop(0)
        if len(open_tips) > 5000:
            open_tips.pop(0)
    return out


def safety_event(
    rnd: random.Random, event_id: uuid.UUID, day: dt.date, loc: Locality, units: list[SafetyRegistered]
) -> Event:
    """A unit registered for the standard of the day's year, or an assessment of a registration whose
    assessment window (its year, up to 31 March of the next) holds the day."""
    open_ = [u for u in units[-200:] if u.year == day.year or (u.year == day.year - 1 and day.month < 4)]
    if open_ and rnd.random() < 0.5:
        unit = rnd.choice(open_)
        return SafetyAssessed(
            event_id=event_id,
            occurred_on=day,
            locality=unit.locality,
            unit_id=unit.unit_id,
            unit_kind=unit.unit_kind,
            year=unit.year,
            achieved=rnd.random() < 0.8,
        )
    unit = SafetyRegistered(
        event_id=event_id,
        occurred_on=day,
        locality=loc,
        unit_id=uuid.UUID(int=rnd.getrandbits(128), version=4),
        unit_kind=rnd.choice(("residential_area", "agency", "enterprise", "school")),
        year=day.year,
    )
    units.append(unit)
    return unit


def lifecycle_event(
    rnd: random.Random,
    event_id: uuid.UUID,
    day: dt.date,
    loc: Locality,
    models: list[ModelEstablished],
    people: list[YouthEnrolled],
) -> Event:
    """A model set up, updated or dissolved, or a young person enrolled or released (each ended at most once)."""
    roll = rnd.random()
    if roll < 0.3 or (roll < 0.6 and not models) or (roll >= 0.8 and not people):
        model = ModelEstablished(
            event_id=event_id,
            occurred_on=day,
            locality=loc,
            model_id=uuid.UUID(int=rnd.getrandbits(128), version=4),
            name="Tổ tự quản",
            level=rnd.choice(("commune", "hamlet", "institution")),
            kind=rnd.choice(("self_managed_team", "inter_household", "security_council", "dan_van_kheo")),
            points=rnd.randint(0, 9),
            teams=rnd.randint(0, 5),
        )
        models.append(model)
        return model
    if roll < 0.5:
        model = rnd.choice(models)
        return ModelUpdated(
            event_id=event_id,
            occurred_on=day,
            locality=model.locality,
            model_id=model.model_id,
            points=rnd.randint(0, 12),
        )
    if roll < 0.6:
        model = models.pop(rnd.randrange(len(models)))
        return ModelDissolved(
            event_id=event_id, occurred_on=day, locality=model.locality, model_id=model.model_id
        )
    if roll < 0.8:
        person = YouthEnrolled(
            event_id=event_id,
            occurred_on=day,
            locality=loc,
            person_ref=uuid.UUID(int=rnd.getrandbits(128), version=4),
        )
        people.append(person)
        return person
    person = people.pop(rnd.randrange(len(people)))
    return YouthReleased(
        event_id=event_id, occurred_on=day, locality=person.locality, person_ref=person.person_ref
    )


async def preload(nc: Client, localities: Localities, events: Sequence[Event], *, window: int = 2000) -> int:
    """Publish to ANTQ_EVENTS as the gateway does (subject, Recorded, Nats-Msg-Id); returns the last seq."""
    slots = asyncio.Semaphore(window)
    last = 0

    async def one(event: Event) -> None:
        nonlocal last
        try:
            ward = localities.ward(ward_of(event))
            assert ward is not None
            reply = await nc.request(
                event_subject(event, ward.province),
                encode_recorded(Recorded(office="bench", event=event)),
                timeout=30,
                headers={"Nats-Msg-Id": str(event.event_id), "Nats-Expected-Stream": EVENTS},
            )
            seq = msgspec.json.decode(reply.data).get("seq", 0)
            last = max(last, int(seq))
        finally:
            slots.release()

    tasks = []
    for event in events:
        await slots.acquire()
        tasks.append(asyncio.ensure_future(one(event)))
    await asyncio.gather(*tasks)
    return last


async def raw_read(nc: Client, last: int, batch: int = 1000) -> float:
    """Seconds to pull-fetch and decode every event (ephemeral consumer, AckPolicy.NONE)."""
    js = nc.jetstream()
    t0 = time.perf_counter()
    sub = await js.pull_subscribe(
        "",
        stream=EVENTS,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
        pending_msgs_limit=batch * 4,
        pending_bytes_limit=-1,
    )
    seen = 0
    while seen < last:
        msgs = await sub.fetch(batch, timeout=5)
        for msg in msgs:
            decode_recorded(msg.data)
            seen = parse_ack_reply(msg.reply).stream_seq
    elapsed = time.perf_counter() - t0
    await sub.unsubscribe()
    return elapsed


async def project(
    nc: Client, database_url: str, localities: Localities, last: int, batch: int
) -> tuple[float, int]:
    """Seconds from empty to caught up (checkpoint = last, outbox published); updates published."""
    stop = asyncio.Event()
    runner = StatsRunner(nc, RunnerConfig(database_url=database_url, localities=localities, batch=batch))
    t0 = time.perf_counter()
    task = asyncio.create_task(runner.run(stop))
    while runner.seq < last and not task.done():  # noqa: ASYNC110 - polling the runner's progress
        await asyncio.sleep(0.01)
    await runner.publisher_idle()
    elapsed = time.perf_counter() - t0
    stop.set()
    await task
    return elapsed, runner.stats.batches


class Cpu:
    """CPU seconds (user + system, /proc/<pid>/stat) of the processes a rebuild keeps busy."""

    def __init__(self, nats_pid: int, postgres_pid: int) -> None:
        self._pids = {"nats-server": nats_pid, "postgres": postgres_pid}

    def sample(self, projection_pid: int | None = None) -> dict[str, float]:
        """nats-server; PostgreSQL's postmaster with every backend, live or ended; the projection process with
        its worker processes, live or ended; this bench process."""
        out = {name: _cpu_s(pid, children=name == "postgres") for name, pid in self._pids.items()}
        out["postgres"] += sum(_cpu_s(c) for c in _children(self._pids["postgres"]))
        if projection_pid is not None:
            out["projection"] = _cpu_s(projection_pid, children=True) + sum(
                _cpu_s(c) for c in _children(projection_pid)
            )
        t = os.times()
        out["bench"] = t.user + t.system
        return out


def _cpu_s(pid: int, children: bool = False) -> float:
    """utime + stime (and, with ``children``, of the children it has waited for) of a live process, in s."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


async def rebuild_in_subprocess(
    nats_url: str, database_url: str, last: int, *, copy: int = 2, workers: int = 1, cpu: Cpu | None = None
) -> tuple[float, float, dict[str, float]]:
    """``python -m projections --copy C --no-publish [--workers N]`` from empty to caught up (the copy's
    checkpoint at ``last``: with N workers, the lowest of its partitions'): (seconds, peak RSS in MB of the
    projection's processes summed, CPU seconds by process over the run)."""
    conn = await asyncpg.connect(database_url)
    root = ROOT
    args = ["--nats-url", nats_url, "--database-url", database_url, "--copy", str(copy), "--no-publish"]
    args += ["--workers", str(workers)]
    before = cpu.sample() if cpu is not None else {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
        [sys.executable, "-m", "projections", *args], cwd=root, env={**os.environ, "PYTHONPATH": str(root)}
    )
    try:
        while (await conn.fetchval(_COPY_SEQ, copy) or 0) < last:  # noqa: ASYNC110 - polling the checkpoint
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        after = cpu.sample(proc.pid) if cpu is not None else {}
        peak = _peak_rss_mb(proc.pid) if workers == 1 else sum(_peak_rss_mb(c) for c in _children(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        await conn.close()
    return elapsed, peak, {k: v - before.get(k, 0.0) for k, v in after.items()}


def _peak_rss_mb(pid: int) -> float:
    """VmHWM of a live process (Linux): its own peak, unlike ru_maxrss of children, which counts the fork."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


_COPY_SEQ = "SELECT seq FROM projection_checkpoint WHERE name = 'stats' AND copy = $1"


def _cpu_line(label: str, seconds: float, used: dict[str, float]) -> str:
    parts = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(used.items(), key=lambda kv: -kv[1]))
    return (
        f"    {label}: wall {seconds:.1f}s, CPU {parts} (total {sum(used.values()) / seconds:.2f} cores busy)"
    )


async def compare_rebuilds(nats_srv: EmbeddedNats, pg: EmbeddedPostgres, last: int, rounds: int) -> None:
    """Rebuilds into fresh copies with 1 worker and with 2, alternated round by round in this run: each
    round's rates, the median speed-up and its spread, and where the CPU went."""
    assert nats_srv.proc is not None and pg.proc is not None
    cpu = Cpu(nats_srv.proc.pid, pg.proc.pid)
    speedups: list[float] = []
    copy = 2
    for r in range(1, rounds + 1):
        one_s, one_rss, one_cpu = await rebuild_in_subprocess(nats_srv.url, pg.url, last, copy=copy, cpu=cpu)
        two_s, two_rss, two_cpu = await rebuild_in_subprocess(
            nats_srv.url, pg.url, last, copy=copy + 1, workers=2, cpu=cpu
        )
        copy += 2
        speedups.append(one_s / two_s)
        print(
            f"  rebuild round {r}: 1 worker {last / one_s:,.0f} events/s (peak RSS {one_rss:.0f} MB) | 2 workers "
            f"{last / two_s:,.0f} events/s (peak RSS {two_rss:.0f} MB, both) | speed-up {one_s / two_s:.2f}"
        )
        print(_cpu_line("1 worker ", one_s, one_cpu))
        print(_cpu_line("2 workers", two_s, two_cpu))
    ordered = sorted(speedups)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    print(
        f"rebuild with 2 workers vs 1 (python -m projections --no-publish [--workers 2], subprocess): median "
        f"speed-up {median:.2f} over {len(ordered)} rounds (spread {ordered[0]:.2f}..{ordered[-1]:.2f})",
        flush=True,
    )


async def fresh_database(admin_url: str, name: str) -> str:
    """A new, migrated database on the bench's PostgreSQL (each round projects from empty)."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def main(n: int, batch: int, wards_n: int, rounds: int = 1, rebuild_rounds: int = 3) -> None:
    nats_srv, pg, base = start_servers(sync_always=False, durable_pg=False)
    print("servers: nats-server sync_interval default, PostgreSQL durable=False (fsync off)")
    try:
        conn = await asyncpg.connect(pg.url)
        await migrate(conn)
        nc = await nats.connect(nats_srv.url, pending_size=256 * 1024 * 1024)
        await ensure_streams(nc.jetstream(), StreamLimits())
        localities = Localities.load()
        provinces = [p for p in localities.provinces() if p.code in ("04", "24", "01", "38")]
        all_wards = [w for p in provinces for w in p.wards]
        wards = random.Random(7).sample(all_wards, min(wards_n, len(all_wards)))
        t0 = time.perf_counter()
        events = realistic_events(n, wards)
        last = await preload(nc, localities, events)
        print(f"preloaded {last:,} events over {len(wards)} wards in {time.perf_counter() - t0:.1f}s")
        # the projection connects as ``python -m projections`` does (``infra.nats_client``: its header parser);
        # the raw side stays plain nats-py
        pnc = await connect(nats_srv.url, pending_size=256 * 1024 * 1024)
        raw_s = await raw_read(nc, last)
        proj_s, batches = await project(pnc, pg.url, localities, last, batch)
        measured = [(last / proj_s, last / raw_s)]
        for r in range(2, rounds + 1):  # alternate raw and project again, each projection from empty
            url = await fresh_database(pg.url, f"bench_round_{r}")
            round_raw = await raw_read(nc, last)
            round_proj, _ = await project(pnc, url, localities, last, batch)
            measured.append((last / round_proj, last / round_raw))
        updates = (await nc.jetstream().stream_info("ANTQ_UPDATES")).state.messages
        raw_rate, proj_rate = last / raw_s, last / proj_s
        print(f"raw pull-fetch-and-decode: {raw_rate:,.0f} events/s ({raw_s:.2f}s)")
        print(
            f"projection empty -> caught up: {proj_rate:,.0f} events/s ({proj_s:.2f}s, {batches} commits, {updates:,} updates)"
        )
        print(f"ratio projection/raw: {proj_rate / raw_rate:.2f}")
        if rounds > 1:
            report_rounds("projection empty -> caught up vs raw pull-fetch-and-decode", measured)
        await compare_rebuilds(nats_srv, pg, last, rebuild_rounds)
        snap = await store.read_province_stats(conn, province="04", year=2020, period="calendar")
        print(f"sample: province 04, 2020: {snap.metrics}")
        await conn.close()
        await pnc.drain()
        await nc.drain()
    finally:
        nats_srv.stop()
        pg.stop()
        discard(base)


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.projection")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=16_000)
    parser.add_argument("--wards", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw / projection rounds")
    parser.add_argument(
        "--rebuild-rounds", type=int, default=3, help="alternating 1-worker / 2-worker rebuild rounds"
    )
    args = parser.parse_args()
    asyncio.run(main(args.events, args.batch, args.wards, args.rounds, args.rebuild_rounds))


if __name__ == "__main__":
    cli()
