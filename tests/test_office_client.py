"""The office client library (``services.office``): an outbox on disk, written before any send, forwarded in
order, exactly once, with every rejection kept for the office; and fault 5, an office offline for a while.

The first tests need no server (the outbox and the sender against a scripted link); those marked ``servers``
and ``faults`` run the real gateway on the session's nats-server and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.codec import decode_recorded
from events.intake import ErrorDetail, IntakeResult, RejectedRecord
from events.localities import Localities
from infra.stream_reader import read_stream
from infra.streams import EVENTS, REJECTED
from projections.runner import RunnerConfig, StatsRunner
from projections.store import read_checkpoint
from services.audit.verify import verify
from services.gateway.app import Gateway
from services.office.errors import LinkDown, NotInOutbox, OutboxError
from services.office.outbox import Outbox, default_path
from services.office.sender import ClientLink, NatsLink, OfficeSender, RetryPolicy
from tests import factories as f
from tests.conftest import FixedClock, Stack, gateway_config, wait_until_answering
from tests.servers import wait_for
from tests.test_auth import antq
from tests.test_cli_commands import env_of, no_traceback

OFFICE = "ca-cao-bang"
enc = msgspec.json.Encoder()


def docs_of(events: list[dict[str, Any]]) -> list[bytes]:
    return [enc.encode(e) for e in events]


def ok(seq: int, duplicate: bool = False) -> IntakeResult:
    return IntakeResult(ok=True, event_id=None, seq=seq, duplicate=duplicate)


def no(code: str, retry_after_ms: int | None = None) -> IntakeResult:
    detail = ErrorDetail(code=code, message=f"{code} here", path="$.x", retry_after_ms=retry_after_ms)
    return IntakeResult(ok=False, event_id=None, error=detail)


# --- the outbox on its own ------------------------------------------------------------------------------------

CRASHER = """
import os, sys
from services.office.outbox import Outbox
box = Outbox(sys.argv[1], "ca-cao-bang")
box.enqueue([("{\\"event_id\\": \\"e%d\\"}" % i).encode() for i in range(int(sys.argv[2]))])
print("enqueued", flush=True)
os.kill(os.getpid(), 9)  # no close, no clean exit: what a power cut leaves
"""


@pytest.mark.timeout(60)
def test_events_enqueued_then_a_crash_before_any_send_are_still_queued_in_order(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    proc = subprocess.run(
        [sys.executable, "-c", CRASHER, str(path), "5"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    print("a process enqueued 5 events and was killed -9:", proc.returncode, proc.stdout.strip())
    assert proc.returncode == -9 and "enqueued" in proc.stdout
    with Outbox(path, OFFICE) as box:
        entries = box.entries()
        print("reopened:", [(e.id, e.event_id, e.state) for e in entries])
        assert [(e.event_id, e.state) for e in entries] == [(f"e{i}", "queued") for i in range(5)]
        assert [p.id for p in box.next_batch(1000, 10**6)] == [e.id for e in entries]


def test_an_outbox_belongs_to_one_office(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    Outbox(path, OFFICE).close()
    with pytest.raises(OutboxError, match="belongs to office 'ca-cao-bang'"):
        Outbox(path, "ca-tra-linh")
    with pytest.raises(OutboxError, match="cannot be used"):
        Outbox(tmp_path, OFFICE)  # a directory
    assert default_path("x/y:z", None, {"XDG_DATA_HOME": "/d"}) == Path("/d/antq/outbox-x_y_z.sqlite")
    assert default_path("a", tmp_path) == tmp_path / "outbox-a.sqlite"


def test_batches_keep_the_order_within_limits_and_a_line_that_is_not_json_goes_alone() -> None:
    with Outbox(":memory:", OFFICE) as box:
        ids = box.enqueue(
            [b'{"event_id":"a"}', b'{"event_id":"b"}', b"not json", b'{"event_id":"c"}', b"[1]"]
        )
        assert [p.id for p in box.next_batch(1000, 10**6)] == ids[:2]
        assert [p.id for p in box.next_batch(1, 10**6)] == ids[:1]
        assert [p.id for p in box.next_batch(1000, 20)] == ids[:1]  # the first always goes, however large
        box.record([(ids[0], ok(1)), (ids[1], ok(2))], retry_codes=frozenset({"unavailable"}))
        (alone,) = box.next_batch(1000, 10**6)
        assert alone.id == ids[2] and not alone.is_json
        box.record([(ids[2], no("malformed"))], retry_codes=frozenset())
        assert [p.id for p in box.next_batch(1000, 10**6)] == ids[3:]
        with pytest.raises(NotInOutbox):
            box.drop(ids[0])  # done: nothing to drop
        with pytest.raises(NotInOutbox):
            box.requeue(ids[3])  # queued, not rejected
        with pytest.raises(NotInOutbox):
            box.drop(999)


# a model of the outbox: a list of [id, state], in enqueue order
Op = tuple[str, int]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), st.integers(1, 4)),
        st.tuples(st.sampled_from(["accept", "reject", "unavailable", "no_answer"]), st.integers(1, 5)),
        st.tuples(st.sampled_from(["drop", "requeue"]), st.integers(0, 20)),
        st.tuples(st.just("crash"), st.just(0)),
    ),
    max_size=30,
)


@pytest.mark.timeout(120)
@given(script=ops)
def test_outbox_against_a_list_model(tmp_path_factory: pytest.TempPathFactory, script: list[Op]) -> None:
    """Enqueue, answers of every kind, drop, requeue and crashes (reopen without close), in any order: the
    outbox holds what a plain list says, and always offers the oldest queued entries first."""
    path = tmp_path_factory.mktemp("model") / "outbox.sqlite"
    box = Outbox(path, OFFICE)
    model: list[list[Any]] = []
    retry = frozenset({"unavailable"})
    n = 0
    for op, arg in script:
        queued = [row for row in model if row[1] == "queued"]
        if op == "enqueue":
            ids = box.enqueue(f'{{"event_id":"e{n + i}"}}'.encode() for i in range(arg))
            n += arg
            model += [[id_, "queued"] for id_ in ids]
        elif op in ("accept", "reject", "unavailable", "no_answer"):
            batch = box.next_batch(arg, 10**6)
            assert [p.id for p in batch] == [row[0] for row in queued[:arg]]
            answer = {"accept": ok(1), "reject": no("invalid"), "unavailable": no("unavailable")}.get(op)
            box.record([(p.id, answer) for p in batch], retry_codes=retry)
            for row in queued[:arg]:
                row[1] = {"accept": "done", "reject": "rejected"}.get(op, "queued")
        elif op in ("drop", "requeue") and model:
            row = model[arg % len(model)]
            allowed = row[1] in (("queued", "rejected") if op == "drop" else ("rejected",))
            if allowed:
                getattr(box, op)(row[0])
                row[1] = "dropped" if op == "drop" else "queued"
            else:
                with pytest.raises(NotInOutbox):
                    getattr(box, op)(row[0])
        elif op == "crash":
            box = Outbox(path, OFFICE)  # the old connection is abandoned, not closed
        assert [(e.id, e.state) for e in box.entries()] == [tuple(row) for row in model]
    box.close()


# --- the sender against a scripted link ------------------------------------------------------------------------


class ScriptedLink:
    """Answers each request with the next step: a function of the request's events, or LinkDown."""

    def __init__(
        self, steps: list[Callable[[list[bytes]], list[IntakeResult] | IntakeResult] | None]
    ) -> None:
        self.steps = steps
        self.requests: list[bytes] = []

    async def request(self, body: bytes, timeout: float) -> bytes:
        self.requests.append(body)
        step = self.steps.pop(0) if self.steps else None
        if step is None:
            raise LinkDown("no connection (scripted)")
        items = [bytes(r) for r in msgspec.json.decode(body, type=list[msgspec.Raw])]
        return enc.encode(step(items))

    async def close(self) -> None:
        return None


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.mark.timeout(30)
async def test_retries_send_the_same_bytes_with_capped_full_jitter_backoff() -> None:
    box = Outbox(":memory:", OFFICE)
    docs = docs_of([f.session() for _ in range(3)])
    link = ScriptedLink(
        [
            None,
            None,
            lambda items: [no("unavailable", retry_after_ms=7000)] * len(items),
            None,
            lambda items: [ok(i + 1, duplicate=i == 0) for i in range(len(items))],
        ]
    )
    sleeps = Sleeps()
    sender = OfficeSender(
        box, link, policy=RetryPolicy(base_s=1, cap_s=5), rng=random.Random(1), sleep=sleeps
    )
    await sender.enqueue(docs)
    report = await sender.flush()
    print("requests:", len(link.requests), "pauses:", [round(d, 3) for d in sleeps.delays])
    assert report.done == 3 and report.queued == 0 and report.failures == 4
    assert set(link.requests) == {b"[" + b",".join(docs) + b"]"}  # the same events, the same bytes, each time
    assert len(sleeps.delays) == 4
    assert 0 <= sleeps.delays[0] <= 2 and 0 <= sleeps.delays[1] <= 4  # uniform(0, base·2ⁿ)
    assert sleeps.delays[2] >= 7  # at least retry_after_ms
    assert 0 <= sleeps.delays[3] <= 5  # capped
    assert [e.seq for e in box.entries()] == [1, 2, 3]
    assert RetryPolicy(base_s=1, cap_s=5).delay(60, random.Random(2)) <= 5


@pytest.mark.timeout(30)
async def test_the_gateway_judges_each_event_and_later_ones_are_still_sent() -> None:
    """A rejected event is kept with its code, message and path; the events after it are sent and judged; an
    array refused as a whole (not by event) is sent again one event per request."""
    box = Outbox(":memory:", OFFICE)
    docs = docs_of([f.session() for _ in range(4)])

    def second_refused(items: list[bytes]) -> list[IntakeResult]:
        return [no("unknown_target") if i == 1 else ok(10 + i) for i in range(len(items))]

    link = ScriptedLink([lambda items: no("too_large"), *([second_refused] * 4)])
    sender = OfficeSender(box, link, sleep=Sleeps())
    await sender.enqueue(docs)
    seen: list[tuple[int, bool]] = []
    report = await sender.flush(on_answer=lambda id_, res: seen.append((id_, res.ok)))
    assert [len(msgspec.json.decode(r)) for r in link.requests] == [4, 1, 1, 1, 1]
    assert report.done == 4 and report.rejected == 0  # each alone is the first of its request
    box2 = Outbox(":memory:", OFFICE)
    sender2 = OfficeSender(box2, ScriptedLink([second_refused]), sleep=Sleeps())
    await sender2.enqueue(docs)
    report = await sender2.flush()
    assert (report.done, report.rejected) == (3, 1)
    (rejected,) = box2.entries(["rejected"])
    assert (rejected.code, rejected.message, rejected.path) == (
        "unknown_target",
        "unknown_target here",
        "$.x",
    )


@pytest.mark.timeout(30)
async def test_with_no_link_within_the_wait_everything_stays_queued() -> None:
    box = Outbox(":memory:", OFFICE)
    sleeps = Sleeps()
    sender = OfficeSender(box, ScriptedLink([]), sleep=sleeps)
    await sender.enqueue(docs_of([f.session(), f.pledge()]))
    report = await sender.flush(wait=0)
    assert (report.done, report.queued, report.requests) == (0, 2, 1)
    assert report.last_problem is not None and "no connection" in report.last_problem
    assert [e.attempts for e in box.entries()] == [1, 1]


class FakeGateway:
    """The gateway's promise in a few lines: events judged in order, stored once per event id (a known id is
    answered ``duplicate`` with its first seq), ``bad`` ones refused."""

    def __init__(self) -> None:
        self.stream: list[str] = []
        self.seqs: dict[str, int] = {}

    def judge(self, items: list[bytes], unavailable_from: int) -> list[IntakeResult]:
        out: list[IntakeResult] = []
        for i, raw in enumerate(items):
            doc = json.loads(raw)
            event_id = doc["event_id"]
            if i >= unavailable_from:
                out.append(no("unavailable", retry_after_ms=5))
            elif event_id in self.seqs:
                out.append(IntakeResult(ok=True, event_id=event_id, seq=self.seqs[event_id], duplicate=True))
            elif doc.get("bad"):
                out.append(no("invalid"))
            else:
                self.stream.append(event_id)
                self.seqs[event_id] = len(self.stream)
                out.append(IntakeResult(ok=True, event_id=event_id, seq=len(self.stream), duplicate=False))
        return out


class FlakyLink:
    """Each request meets the next fault of a script: ``down`` (never reaches the gateway), ``lost`` (stored,
    answer lost), ``tail`` (the gateway answers ``unavailable`` from the second event on), ``ok``."""

    def __init__(self, gateway: FakeGateway, faults: list[str]) -> None:
        self.gateway, self.faults = gateway, faults

    async def request(self, body: bytes, timeout: float) -> bytes:
        fault = self.faults.pop(0) if self.faults else "ok"
        if fault == "down":
            raise LinkDown("down (injected)")
        items = [bytes(r) for r in msgspec.json.decode(body, type=list[msgspec.Raw])]
        answer = self.gateway.judge(items, 1 if fault == "tail" else len(items))
        if fault == "lost":
            raise LinkDown("reply lost (injected)")
        return enc.encode(answer)

    async def close(self) -> None:
        return None


steps = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), st.lists(st.booleans(), min_size=1, max_size=6)),
        st.tuples(st.just("flush"), st.lists(st.sampled_from(["down", "lost", "tail", "ok"]), max_size=6)),
        st.tuples(st.just("crash"), st.just([])),
    ),
    max_size=12,
)


@pytest.mark.timeout(120)
@given(script=steps, batch=st.integers(1, 5))
async def test_sender_against_a_flaky_link_stores_each_event_once_in_enqueue_order(
    tmp_path_factory: pytest.TempPathFactory, script: list[tuple[str, list[Any]]], batch: int
) -> None:
    """Any mix of enqueues, flushes over a link that goes down, loses answers or answers ``unavailable`` for a
    tail, and crashes of the office's program: once the link is good, the stream holds every good event once,
    in enqueue order, and the outbox has each one ``done`` with its seq and each bad one ``rejected``."""
    path = tmp_path_factory.mktemp("flaky") / "outbox.sqlite"
    gateway = FakeGateway()
    box = Outbox(path, OFFICE)
    enqueued: list[tuple[str, bool]] = []
    for op, arg in script:
        if op == "enqueue":
            docs = [{"event_id": f"e{len(enqueued) + i}", "bad": bad} for i, bad in enumerate(arg)]
            await OfficeSender(box, FlakyLink(gateway, [])).enqueue(docs_of(docs))
            enqueued += [(d["event_id"], d["bad"]) for d in docs]
        elif op == "flush":
            sender = OfficeSender(box, FlakyLink(gateway, list(arg)), batch_size=batch, sleep=Sleeps())
            await sender.flush(wait=None if len(arg) % 2 else 0)  # through every fault, or stop at the first
        else:
            box = Outbox(path, OFFICE)  # the old one abandoned unclosed
    report = await OfficeSender(box, FlakyLink(gateway, []), batch_size=batch, sleep=Sleeps()).flush()
    good = [event_id for event_id, bad in enqueued if not bad]
    assert report.queued == 0
    assert gateway.stream == good
    entries = box.entries()
    assert [(e.event_id, e.state) for e in entries] == [
        (event_id, "rejected" if bad else "done") for event_id, bad in enqueued
    ]
    assert [e.seq for e in entries if e.state == "done"] == list(range(1, len(good) + 1))
    box.close()


# --- fault 5 and the CLI, on the real servers -----------------------------------------------------------------


def closed_port_url() -> str:
    """A loopback URL nothing listens on (a port just bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"nats://127.0.0.1:{port}"


async def stored_events(stack: Stack) -> list[tuple[int, str, str]]:
    """(seq, office, event id) of every event in ANTQ_EVENTS, in stream order."""
    out: list[tuple[int, str, str]] = []
    async for batch in read_stream(stack.js, EVENTS):
        for m in batch:
            rec = decode_recorded(m.data)
            out.append((m.seq, rec.office, str(rec.event.event_id)))
    return out


async def rejected_ids(stack: Stack) -> list[str]:
    """Event ids of the refusals ANTQ_REJECTED kept (their raw bodies)."""
    ids: list[str] = []
    async for batch in read_stream(stack.js, REJECTED):
        for m in batch:
            rec = msgspec.json.decode(m.data, type=RejectedRecord)
            if rec.office == "_probe":
                continue
            for item in msgspec.json.decode(rec.raw) if rec.raw.startswith(b"[") else [json.loads(rec.raw)]:
                ids.append(item.get("event_id"))
    return ids


async def audit_clean(stack: Stack, localities: Localities, last_seq: int) -> None:
    """The projection folds the whole log, then ``verify`` replays it and finds no figure differing."""
    stop = asyncio.Event()
    runner = StatsRunner(stack.nc, RunnerConfig(database_url=stack.database_url, localities=localities))
    run = asyncio.create_task(runner.run(stop))

    async def folded() -> bool:
        conn = await asyncpg.connect(stack.database_url)
        try:
            return (await read_checkpoint(conn, 1)).seq >= last_seq
        except LookupError:
            return False
        finally:
            await conn.close()

    try:
        await wait_for(folded, timeout=30, what="the projection to fold the log")
    finally:
        stop.set()
        await run
    conn = await asyncpg.connect(stack.database_url)
    try:
        result = await verify(stack.nc, conn, localities)
    finally:
        await conn.close()
    print(f"audit verify at seq {result.as_of_seq}: {len(result.differences)} difference(s)")
    assert result.ok, (result.differences, result.problems)


def workload() -> tuple[list[dict[str, Any]], set[int]]:
    """Events of one office, some depending on earlier ones; the indexes of those the gateway refuses."""
    tip = f.tip(ward="01447")
    bad = f.session(attendance=-1)  # invalid
    outside = f.session(ward="07210")  # Bắc Ninh: out of ca-cao-bang's jurisdiction
    events = [tip, f.session(), bad, f.assessment(tip), outside]
    events += [f.pledge() if i % 2 else f.session() for i in range(25)]
    return events, {2, 4}


@pytest.mark.servers
@pytest.mark.faults
@pytest.mark.timeout(90)
async def test_fault5_an_office_offline_for_a_while_then_reconnected(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities, tmp_path: Path
) -> None:
    """Fault 5. The office queues events with NATS unreachable (a closed port), its program restarts, then the
    link comes back but no gateway answers (no responders); then the gateway starts and the office flushes:
    every accepted event is in the stream exactly once, in enqueue order; each rejection is kept in the outbox
    and in ANTQ_REJECTED; the audit replay finds no difference."""
    path = tmp_path / "outbox.sqlite"
    events, refused = workload()
    first, second = events[:12], events[12:]

    box = Outbox(path, OFFICE)
    offline = NatsLink(closed_port_url(), OFFICE, connect_timeout=1)
    sender = OfficeSender(box, offline, batch_size=7)
    await sender.enqueue(docs_of(first))
    report = await sender.flush(wait=0.5)
    print(f"offline: {len(first)} queued, {report.requests} attempt(s), last problem: {report.last_problem}")
    assert (report.done, report.rejected, report.queued) == (0, 0, len(first))
    await sender.enqueue(docs_of(second[:5]))
    box.close()  # the office's program stops with everything queued

    box = Outbox(path, OFFICE)  # ... and starts again
    no_gateway = OfficeSender(box, NatsLink(stack.servers.nats_url, OFFICE), batch_size=7)
    await no_gateway.enqueue(docs_of(second[5:]))
    report = await no_gateway.flush(wait=0.5)
    await no_gateway.link.close()
    print(
        f"link back, no gateway: {report.requests} attempt(s), {report.queued} queued ({report.last_problem})"
    )
    assert report.queued == len(events) and "no responders" in (report.last_problem or "")
    assert await stored_events(stack) == []

    gw = Gateway(gateway_config(stack, offices_file, clock, localities))
    async with gw.app:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        link = NatsLink(stack.servers.nats_url, OFFICE)
        try:
            report = await OfficeSender(box, link, batch_size=7).flush(wait=30)
        finally:
            await link.close()
    print(f"gateway up: {report.requests} request(s), {report.done} done, {report.rejected} rejected")
    assert (report.done, report.rejected, report.queued) == (len(events) - len(refused), len(refused), 0)

    stored = await stored_events(stack)
    expected = [str(e["event_id"]) for i, e in enumerate(events) if i not in refused]
    print(f"stream: {len(stored)} events; expected {len(expected)}, each once, in enqueue order")
    assert [event_id for _, office, event_id in stored if office == OFFICE] == expected
    entries = box.entries()
    assert [e.seq for e in entries if e.state == "done"] == [seq for seq, _, _ in stored]
    rejected = box.entries(["rejected"])
    assert [e.event_id for e in rejected] == [events[i]["event_id"] for i in sorted(refused)]
    assert [(e.code, bool(e.message)) for e in rejected] == [("invalid", True), ("out_of_jurisdiction", True)]
    assert rejected[0].path == "$.attendance"
    kept = await rejected_ids(stack)
    print(f"ANTQ_REJECTED keeps {len(kept)} refusal(s); the outbox {len(rejected)}")
    assert kept == [e.event_id for e in rejected]
    box.close()
    await audit_clean(stack, localities, stored[-1][0])


class ReplyLost:
    """The link drops after the gateway answered the first request: the answer never reaches the office."""

    def __init__(self, inner: ClientLink) -> None:
        self.inner = inner
        self.lost = 0

    async def request(self, body: bytes, timeout: float) -> bytes:
        answer = await self.inner.request(body, timeout)
        if self.lost == 0:
            self.lost += 1
            raise LinkDown("the link dropped before the answer arrived (injected)")
        return answer

    async def close(self) -> None:
        return None


@pytest.mark.servers
@pytest.mark.faults
@pytest.mark.timeout(90)
async def test_a_batch_answered_but_its_reply_lost_is_resent_and_counted_once(
    stack: Stack, gateway: Gateway, localities: Localities
) -> None:
    box = Outbox(":memory:", OFFICE)
    events, refused = workload()
    link = ReplyLost(ClientLink(stack.nc, OFFICE))
    sender = OfficeSender(box, link, policy=RetryPolicy(base_s=0.01, cap_s=0.05))
    await sender.enqueue(docs_of(events))
    report = await sender.flush(wait=30)
    print(f"reply lost once, resent: {report.requests} request(s), {report.failures} failure(s)")
    assert report.failures == 1 and report.requests == 2
    assert (report.done, report.rejected, report.queued) == (len(events) - len(refused), len(refused), 0)
    done = box.entries(["done"])
    assert all(e.duplicate for e in done)  # stored by the first request, recognised by the second
    stored = await stored_events(stack)
    assert [event_id for _, _, event_id in stored] == [e.event_id for e in done]
    assert [e.seq for e in done] == [seq for seq, _, _ in stored]
    print(f"stream: {len(stored)} events, each once")
    await audit_clean(stack, localities, stored[-1][0])


@pytest.mark.servers
@pytest.mark.faults
@pytest.mark.timeout(120)
async def test_cli_exit_3_while_offline_then_outbox_retry_and_drop(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities, tmp_path: Path
) -> None:
    """``antq publish`` with no link exits 3 (queued); ``antq outbox retry`` once the gateway is up sends them
    (exit 1: one was rejected); ``antq outbox drop`` discards the rejected one; ``list`` then shows nothing."""
    good, bad = f.session(), f.pledge(signatures=-5)
    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(e) + "\n" for e in (good, bad)))
    box = ["--outbox", str(tmp_path / "box.sqlite")]
    offline = env_of(stack, ANTQ_NATS_URL=closed_port_url())
    code, stdout, stderr = await antq(
        "publish", str(source), "--office", OFFICE, *box, "--wait", "0", env=offline
    )
    no_traceback(stdout, stderr)
    print("publish offline: exit", code)
    assert code == 3 and "still queued" in stderr

    env = env_of(stack)
    code, stdout, stderr = await antq("outbox", "retry", "--office", OFFICE, *box, "--wait", "0", env=env)
    print("retry, no gateway: exit", code)
    assert code == 3, stderr
    gw = Gateway(gateway_config(stack, offices_file, clock, localities))
    async with gw.app:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        code, stdout, stderr = await antq("outbox", "retry", "--office", OFFICE, *box, env=env)
        no_traceback(stdout, stderr)
        print("retry, gateway up: exit", code, stdout.strip())
        assert code == 1 and "1 accepted, 1 rejected" in stdout
        code, stdout, _ = await antq("outbox", "list", "--office", OFFICE, *box, "--json", env=env)
        (listed,) = [json.loads(line) for line in stdout.splitlines()]
        assert listed["event_id"] == bad["event_id"] and listed["state"] == "rejected"
        assert listed["code"] == "invalid" and listed["path"] == "$.signatures"
        code, stdout, stderr = await antq(
            "outbox", "retry", "--office", OFFICE, *box, str(listed["id"]), env=env
        )
        assert code == 1, stderr  # queued again unchanged: refused again
        code, _, stderr = await antq("outbox", "drop", "--office", OFFICE, *box, "12345", env=env)
        assert code == 2 and "no entry 12345" in stderr
        code, stdout, stderr = await antq(
            "outbox", "drop", "--office", OFFICE, *box, str(listed["id"]), env=env
        )
        assert code == 0 and "dropped" in stdout, stderr
        code, stdout, _ = await antq("outbox", "list", "--office", OFFICE, *box, "--json", env=env)
        assert code == 0 and stdout.strip() == ""
        code, stdout, _ = await antq("outbox", "list", "--office", OFFICE, *box, env=env)
        assert "1 done" in stdout and "1 dropped" in stdout
        code, stdout, stderr = await antq("publish", str(source), "--office", OFFICE, *box, env=env)
        print("publish again, gateway up: exit", code)
        assert code == 1 and "duplicate" in stdout
    code, _, stderr = await antq(
        "outbox", "list", "--office", "nobody", env=env_of(stack, ANTQ_DATA_DIR=str(tmp_path))
    )
    assert code == 2 and "no outbox" in stderr
