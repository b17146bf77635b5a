"""Foreign records in ANTQ_EVENTS (issue 8, defects 2 and 7): every reader of the log — the projection, a
rebuild, a replay (in this process and in a child), verify, the gateway's index catch-up and ``antq audit
foreign`` — sets aside what the gateway did not store, the same way, and never halts on it. A record of a type
this code does not know still halts."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.codec import encode_recorded
from events.localities import Localities
from events.schema import Recorded
from events.stored import Foreign, StoredRecords, UnknownEventType
from projections.rebuild import Rebuild
from projections.runner import RunnerConfig, StatsRunner
from services.audit.foreign import scan_foreign
from services.audit.replay import ReplayScope, replay
from services.audit.verify import verify
from services.gateway.app import Gateway
from tests import factories as f
from tests.conftest import FixedClock, Stack, gateway_config, wait_until_answering
from tests.test_audit import cli
from tests.test_fold_model import OFFICE
from tests.test_projection import as_event, figures, publish_events, run_until

pytestmark = pytest.mark.servers


def stored_bytes(doc: dict[str, Any]) -> bytes:
    return encode_recorded(Recorded(office=OFFICE, event=as_event(doc)))


def foreign_records() -> list[tuple[str, bytes, str]]:
    """(subject, bytes, what makes it foreign): each is something the gateway would never store."""
    valid_01447 = stored_bytes(f.session(ward="01447", attendance=500))
    tip = f.tip(ward="01447")
    return [
        ("antq.events.04.01447.session", b"not json at all", "not a stored record envelope"),
        ("antq.events.04.01447.session", b"[" * 1000, "not a stored record envelope"),
        (
            "antq.events.04.01447.session",
            b'{"office": "x", "event": {"type": "session.held"}}',
            "not a valid",
        ),
        ("antq.events.04.01447.session", b'{"event": {"type": "session.held"}}', "not a stored record"),
        # a well-formed record of ward 01447 on another ward's subject (defect 7)
        ("antq.events.24.09454.session", valid_01447, "belongs on antq.events.04.01447.session"),
        ("antq.events.04.01456.session", valid_01447, "belongs on"),
        # right ward, wrong entity part
        ("antq.events.04.01447.pledge", valid_01447, "belongs on"),
        ("antq.events.04.01447.tip." + str(uuid.uuid4()), stored_bytes(tip), "belongs on"),
        # a ward that is no 2025 ward
        (
            "antq.events.04.99999.session",
            stored_bytes(f.session(ward="01447")).replace(b"01447", b"99999"),
            "not an official 2025 ward",
        ),
    ]


async def publish_raw(stack: Stack, subject: str, data: bytes) -> int:
    ack = await stack.js.publish(subject, data)
    return int(ack.seq)


Forged = list[tuple[str, bytes, str]]


async def history_with_foreign(stack: Stack, localities: Localities) -> tuple[Forged, list[int], int]:
    """Valid events with every foreign record among them; (the foreign records, their seqs, last seq)."""
    await publish_events(stack.nc, localities, [as_event(f.session(attendance=10)) for _ in range(3)])
    forged = foreign_records()
    foreign = [await publish_raw(stack, subject, data) for subject, data, _ in forged]
    tip = f.tip(ward="01447")
    last = await publish_events(
        stack.nc,
        localities,
        [as_event(tip), as_event(f.assessment(tip)), as_event(f.session(ward="09454", attendance=5))],
    )
    return forged, foreign, last


@pytest.mark.timeout(120)
async def test_every_reader_sets_foreign_records_aside_and_agrees(
    stack: Stack, localities: Localities
) -> None:
    forged, foreign, last = await history_with_foreign(stack, localities)
    n = len(foreign)

    # the projection: never halts, counts nothing of them, passes over them to the end of the log
    runner = await run_until(
        stack.nc, RunnerConfig(database_url=stack.database_url, localities=localities, batch=4), last
    )
    assert runner.halted is None and runner.seq == last
    assert runner.stats.foreign == n
    from projections.telemetry import FOREIGN, projection_registry

    class _Source:
        def __init__(self, r: StatsRunner) -> None:
            self.runner = r

    sampled = projection_registry(_Source(runner)).get_sample_value(
        f"{FOREIGN}_total", {"projection": "stats"}
    )
    assert sampled == n
    live = await figures(stack.database_url)
    assert live[("calendar", "01447", 2018, "session_attendance")] == 30  # the forged 500 is not counted
    assert live[("calendar", "01447", 2018, "tips_valuable")] == 1
    assert live[("calendar", "09454", 2018, "session_attendance")] == 5
    assert ("calendar", "01456", 2018, "session_attendance") not in live

    # replays in this process and in a child process: the same figures, the same count set aside
    for child in (False, True):
        result = await replay(stack.nc, ReplayScope(), localities, child_process=child, batch=5)
        assert result.foreign == n and result.replay.figures == live

    # a replay filtered by subject counts exactly what the live projection counts for that ward (defect 7)
    for ward in ("01447", "09454", "01456"):
        by_subject = await replay(stack.nc, ReplayScope(ward=ward, year=2018), localities)
        assert {k: v for k, v in by_subject.replay.figures.items() if k[1] == ward} == {
            k: v for k, v in live.items() if k[1] == ward
        }

    # verify: the comparison holds, and says how many were set aside
    conn = await asyncpg.connect(stack.database_url)
    try:
        checked = await verify(stack.nc, conn, localities)
    finally:
        await conn.close()
    assert checked.ok and checked.foreign == n and checked.behind == 0

    # a rebuild passes over them too and ends with the same figures
    rebuild = Rebuild(stack.nc, stack.database_url, localities=localities)
    report = await rebuild.run()
    assert rebuild.foreign == n
    assert await figures(stack.database_url, report.new_copy) == live

    # antq audit foreign lists each of them, with its sequence, subject and reason
    scan = await scan_foreign(stack.nc, localities)
    assert [r.seq for r in scan.records] == foreign and not scan.unknown_types
    for record, (subject, data, why) in zip(scan.records, forged, strict=True):
        assert record.subject == subject and why in record.why and record.head == data[:64]


@pytest.mark.timeout(60)
async def test_the_gateway_starts_on_a_log_with_foreign_records_and_counts_them(
    stack: Stack, offices_file: Any, clock: FixedClock, localities: Localities
) -> None:
    forged, foreign, _ = await history_with_foreign(stack, localities)
    gateway = Gateway(gateway_config(stack, offices_file, clock, localities))
    async with gateway.app:  # today's code raised in the index catch-up: the gateway never started
        await wait_until_answering(stack.nc, "antq.intake._probe")
        assert gateway.catch_up_counters.foreign == len(foreign)
        # a foreign record was never indexed: nothing can refer to it
        forged = json.loads(forged[4][1])["event"]
        reply = await stack.nc.request(
            "antq.intake.ca-cao-bang",
            msgspec.json.encode(f.retraction(forged)),
            timeout=10,
        )
        assert json.loads(reply.data)["error"]["code"] == "unknown_target"
        ok = await stack.nc.request("antq.intake.ca-cao-bang", msgspec.json.encode(f.session()), timeout=10)
        assert json.loads(ok.data)["ok"] is True


@pytest.mark.timeout(60)
async def test_a_record_of_an_unknown_type_still_halts_every_reader(
    stack: Stack, localities: Localities
) -> None:
    await publish_events(stack.nc, localities, [as_event(f.session()) for _ in range(2)])
    newer = msgspec.json.encode({"office": OFFICE, "event": {"type": "future.recorded", "thing_id": "m"}})
    bad = await publish_raw(stack, "antq.events.04.01447.future", newer)
    await publish_events(stack.nc, localities, [as_event(f.session())])
    runner = StatsRunner(stack.nc, RunnerConfig(database_url=stack.database_url, localities=localities))
    await asyncio.wait_for(runner.run(asyncio.Event()), timeout=20)
    assert runner.halted is not None and "UnknownEventType" in runner.halted and runner.seq == bad - 1
    scan = await scan_foreign(stack.nc, localities)
    assert not scan.records and [r.seq for r in scan.unknown_types] == [bad]


@pytest.mark.timeout(120)
async def test_audit_foreign_and_verify_on_the_command_line(stack: Stack, localities: Localities) -> None:
    env = {"ANTQ_NATS_URL": stack.servers.nats_url, "ANTQ_DATABASE_URL": stack.database_url, "COLUMNS": "250"}
    code, out = await cli("audit", "foreign", env=env)
    assert code == 0 and b"0 foreign record(s)" in out
    _, foreign, last = await history_with_foreign(stack, localities)
    code, out = await cli("audit", "foreign", "--format", "json", env=env)
    rows = json.loads(out)
    assert code == 1 and [r["seq"] for r in rows] == foreign
    assert {r["kind"] for r in rows} == {"foreign"} and rows[0]["head"] == "not json at all"

    # verify prints the checkpoint and the log's last seq: behind but running, exit 0 with the distance
    proc = await asyncio.create_subprocess_exec(
        *_cli_args("audit", "verify"),
        env={**_environ(), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert f"checkpoint seq 0, log last seq {last}".encode() in err and b"behind" in err

    # halted: exit 1 even though the figures it has match a replay to its checkpoint (defect 5)
    stray = f.assessment(f.tip())
    await publish_events(stack.nc, localities, [as_event(stray)])
    runner = StatsRunner(stack.nc, RunnerConfig(database_url=stack.database_url, localities=localities))
    await asyncio.wait_for(runner.run(asyncio.Event()), timeout=20)
    assert runner.halted is not None
    proc = await asyncio.create_subprocess_exec(
        *_cli_args("audit", "verify"),
        env={**_environ(), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 1
    assert f"checkpoint seq {last}, log last seq {last + 1}".encode() in err and b"HALTED" in err


def _cli_args(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "services.cli", *args]


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


# --- the classification itself, against an oracle that does not use events.stored ---------------------------

_LOCALITIES = Localities.load()
_STORED = StoredRecords(_LOCALITIES)
_WARDS = ["01447", "01456", "09454", "20551"]


def _oracle_subject(doc: dict[str, Any]) -> str:
    """Where the gateway stores an event, written out here from the README's subject table."""
    ward = doc["locality"]["ward"]
    province = {"01447": "04", "01456": "04", "09454": "24", "20551": "48"}[ward]
    kind = doc["type"]
    entity_field = {
        "tip.received": ("tip", "tip_id"),
        "tip.assessed": ("tip", "tip_id"),
        "mediation.concluded": ("mediation", "case_id"),
        "entry.retracted": ("retraction", "target_event_id"),
        "entry.corrected": ("retraction", "target_event_id"),  # one subject for every end of a version
    }
    if kind in entity_field:
        prefix, field = entity_field[kind]
        rest = f"{prefix}.{doc[field]}"
    else:
        rest = {"session.held": "session", "pledge.signed": "pledge", "weapons.surrendered": "weapons"}[kind]
    return f"antq.events.{province}.{ward}.{rest}"


_docs = st.sampled_from(_WARDS).flatmap(
    lambda ward: st.sampled_from(
        [
            f.tip(ward=ward),
            f.session(ward=ward),
            f.pledge(ward=ward),
            f.mediation(ward=ward),
            f.weapons(ward=ward),
            f.retraction(f.session(ward=ward)),
            f.assessment(f.tip(ward=ward)),
            f.correction(f.pledge(ward=ward)),
        ]
    )
)
_subject_tokens = st.lists(
    st.sampled_from(
        ["antq", "events", "04", "24", "48", *_WARDS, "session", "pledge", "weapons", "tip", "x"]
    ),
    min_size=1,
    max_size=6,
)


@given(doc=_docs, mutate=st.booleans(), tokens=_subject_tokens)
def test_a_record_is_read_only_on_the_subject_its_content_belongs_on(
    doc: dict[str, Any], mutate: bool, tokens: list[str]
) -> None:
    data = stored_bytes(doc)
    right = _oracle_subject(doc)
    subject = ".".join(tokens) if mutate else right
    got = _STORED.read(7, subject, data)
    if subject == right:
        assert isinstance(got, Recorded) and str(got.event.event_id) == doc["event_id"]
    else:
        assert isinstance(got, Foreign) and got.seq == 7 and got.subject == subject


@given(data=st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_are_foreign_never_an_error(data: bytes) -> None:
    try:
        decoded = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        decoded = None
    event = decoded.get("event") if isinstance(decoded, dict) else None
    kind = event.get("type") if isinstance(event, dict) else None
    try:
        got = _STORED.read(1, "antq.events.04.01447.session", data)
    except UnknownEventType:
        # only a well-formed envelope whose type is not one of ours may halt
        assert isinstance(decoded, dict) and isinstance(decoded.get("office"), str) and isinstance(kind, str)
        return
    assert isinstance(got, Foreign) or kind == "session.held"


def test_a_stored_record_with_a_field_this_code_does_not_know_halts_as_written_by_a_newer_gateway() -> None:
    doc = {**f.session(ward="01447"), "women_attending": 12}  # a field a newer gateway may have added
    data = msgspec.json.encode({"office": OFFICE, "event": doc})
    with pytest.raises(UnknownEventType, match=r"a field of session\.held"):
        _STORED.read(3, "antq.events.04.01447.session", data)


def test_a_correction_whose_copy_has_another_locality_is_foreign() -> None:
    doc = f.correction(f.session(ward="01447"))
    doc["corrected"]["locality"] = {"scheme": "gso-2025", "ward": "01456"}
    got = _STORED.read(5, _oracle_subject(doc), stored_bytes(doc))
    assert isinstance(got, Foreign) and "another locality" in got.why
    unknown = f.correction(f.session(ward="01447"))
    unknown["corrected"]["women_attending"] = 3  # a field of the copy this code does not know: halt
    with pytest.raises(UnknownEventType):
        _STORED.read(6, _oracle_subject(unknown), msgspec.json.encode({"office": OFFICE, "event": unknown}))


async def publish_raw_subject(nats_url: str, subject: bytes, data: bytes) -> int:
    """Publish on a subject that is not UTF-8 (the server stores any bytes but whitespace; nats-py only sends
    ``str`` subjects): over a bare protocol connection, the publish ack read back; its sequence."""
    from infra.nats_client import server_urls

    host, _, port = server_urls(nats_url)[0].removeprefix("nats://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await reader.readline()  # INFO
        writer.write(
            b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\nSUB _INBOX.raw 1\r\n'
            b"PUB " + subject + b" _INBOX.raw %d\r\n" % len(data) + data + b"\r\n"
        )
        await writer.drain()
        while not (line := await reader.readline()).startswith(b"MSG "):
            pass
        ack = json.loads(await reader.readexactly(int(line.split()[-1]) + 2))
        return int(ack["seq"])
    finally:
        writer.close()


@pytest.mark.timeout(90)
async def test_a_record_on_a_subject_that_is_not_utf8_is_foreign_and_never_stalls_the_connection(
    stack: Stack, localities: Localities
) -> None:
    """A record stored on a subject that is not UTF-8 (anyone allowed to publish on ``antq.events.>`` can store
    one) is set aside like any foreign record. Taken in on the parser's raw route (``FastHeadersClient``, what
    the projection service connects with), decoding its subject raised inside the protocol parser: nats-py's
    read loop ended (logged once), the connection stayed 'connected' but read nothing more (no pull answer, no
    publish ack) until the ping timer found it stale, and after the reconnect the redelivered record stopped it
    again: the projection never got past it."""
    from infra.nats_client import connect
    from infra.stream_reader import read_stream

    await publish_events(stack.nc, localities, [as_event(f.session(attendance=10))])
    bad = await publish_raw_subject(
        stack.servers.nats_url, b"antq.events.04.01447.\xff\xfe", stored_bytes(f.session(ward="01447"))
    )
    last = await publish_events(stack.nc, localities, [as_event(f.session(ward="09454", attendance=5))])
    nc = await connect(stack.servers.nats_url)
    try:
        seen = [m.seq async for b in read_stream(nc.jetstream(), "ANTQ_EVENTS", timeout=5.0) for m in b]
        assert seen == list(range(1, last + 1)) and bad in seen
        runner = await run_until(
            nc,
            RunnerConfig(database_url=stack.database_url, localities=localities, batch=4),
            last,
            timeout=20,
        )
        assert runner.halted is None and runner.seq == last and runner.stats.foreign == 1
        await nc.flush(timeout=5)  # the connection still reads
    finally:
        await nc.close()
