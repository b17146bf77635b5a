"""Generated NATS auth on a real nats-server: each identity can do its job and nothing else.

Every test starts its own nats-server with the generated include (the session servers run without auth);
PostgreSQL is the session's, in a fresh database. Services and commands connect as an identity through their
settings (``ANTQ_NATS_NKEY_SEED_FILE``), as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import secrets
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from typer.testing import CliRunner

from events.codec import decode_event, encode_recorded
from events.localities import Localities
from events.schema import Recorded
from events.subjects import QUERY_SUBJECT, SEALS_SUBJECT, event_subject
from infra.auth import AuthError, nats_connect_options
from infra.auth.credentials import Generated, generate
from infra.auth.permissions import read_consumer_name
from infra.auth.pg_roles import PG_AUDITOR_ROLE, auditor_sql, scram_verifier
from infra.direct_reader import read_direct
from infra.embedded import EmbeddedNats
from infra.reading import StreamReader
from infra.seal_keys import generate_seed, signer_from_seed
from infra.settings import Settings
from infra.stream_reader import StreamReadError, read_stream
from infra.streams import EVENTS, SEALS, StreamLimits, ensure_streams
from projections.service import Projector
from projections.store import read_checkpoint
from services.audit.replay import ReplayScope, replay
from services.audit.verify import verify
from services.cli.main import app
from services.cli.stats_view import query_stats, query_subject_of
from services.gateway.app import Gateway, GatewayConfig
from services.query.app import QueryConfig, QueryService
from services.sealer.service import Sealer, SealerConfig
from services.sealer.verify import verify_seals
from tests import factories as f
from tests.conftest import wait_until_answering
from tests.servers import Servers, fresh_database, settle, wait_for

pytestmark = pytest.mark.servers

OFFICES = ["ca-tra-linh", "ca-cao-bang"]
DENIED_WAIT = 1.0  # a JetStream request the server refuses is never answered: how long to wait for nothing


@dataclass
class AuthStack:
    generated: Generated
    server: EmbeddedNats
    clients: list[Client] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def seed_file(self, name: str) -> Path:
        return self.generated.directory / f"{name}.nk"

    def settings(self, name: str) -> Settings:
        """What a process running as ``name`` reads from its environment."""
        return Settings(nats_url=self.server.url, nats_nkey_seed_file=self.seed_file(name))

    def options(self, name: str) -> dict[str, str]:
        return nats_connect_options(self.settings(name))

    async def connect(self, name: str) -> Client:
        """Connect as an identity; the permission violations the server reports are kept under its name."""
        errors = self.errors.setdefault(name, [])

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        nc = await nats.connect(
            self.server.url, error_cb=on_error, allow_reconnect=False, **self.options(name)
        )
        self.clients.append(nc)
        return nc

    async def refused(self, name: str, subject: str) -> None:
        """Wait until the server has told ``name`` that it refused an operation on ``subject``."""

        async def seen() -> bool:
            return any(
                "permissions violation" in e and subject.lower() in e for e in self.errors.get(name, [])
            )

        await wait_for(seen, timeout=10, what=f"the server refusing {subject} to {name}")


@pytest.fixture
async def auth_stack(tmp_path: Path) -> AsyncIterator[AuthStack]:
    generated = generate(tmp_path / "auth", OFFICES)
    server = EmbeddedNats(tmp_path / "nats", sync_always=False, auth_conf=generated.server_conf)
    server.start()
    stack = AuthStack(generated, server)
    try:
        yield stack
    finally:
        for nc in stack.clients:
            with contextlib.suppress(Exception):
                await nc.close()
        server.stop()


def stored_sessions(n: int, ward: str = "01447") -> list[tuple[str, bytes]]:
    """What the gateway would store for ``n`` sessions held in a ward of Cao Bằng (province 04)."""
    out = []
    for _ in range(n):
        event = decode_event(json.dumps(f.session(ward)).encode(), today=dt.date(2026, 1, 1))
        out.append((event_subject(event, "04"), encode_recorded(Recorded(office="ca-tra-linh", event=event))))
    return out


async def fill(stack: AuthStack, n: int) -> Client:
    """Streams created by the admin, ``n`` events written by the gateway; returns the admin's connection."""
    admin = await stack.connect("admin")
    await ensure_streams(admin.jetstream(), StreamLimits())
    gateway = (await stack.connect("gateway")).jetstream()
    for subject, data in stored_sessions(n):
        await gateway.publish(subject, data)
    return admin


async def last_seq(admin: Client, stream: str = EVENTS) -> int:
    return int((await admin.jetstream().stream_info(stream)).state.last_seq)


def test_generated_files_are_private_and_a_rerun_keeps_every_seed(tmp_path: Path) -> None:
    out = tmp_path / "auth"
    first = generate(out, ["ca-tra-linh"])
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert {i.name for i in first.identities} >= {"admin", "auditor", "gateway", "office-ca-tra-linh"}
    conf = first.server_conf.read_text()
    assert all(f'nkey: "{i.public_key}"' in conf for i in first.identities)
    assert all(i.seed.decode() not in conf for i in first.identities)  # seeds stay in their own files

    again = generate(out, ["ca-cao-bang"])
    keys = {i.name: i.public_key for i in again.identities}
    assert (
        keys["office-ca-tra-linh"] == {i.name: i.public_key for i in first.identities}["office-ca-tra-linh"]
    )
    assert again.created == ["office-ca-cao-bang"]
    assert keys["auditor"] == next(i.public_key for i in first.identities if i.name == "auditor")
    assert (out / "postgres_auditor.password").read_text() == (first.pg_password.read_text())

    with pytest.raises(AuthError):
        generate(tmp_path / "bad", ["ca.*"])
    assert not (tmp_path / "bad").exists()


def test_cli_generate_takes_offices_from_options_and_registry_and_prints_no_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTQ_OFFICES", raising=False)
    registry = tmp_path / "offices.toml"
    registry.write_text('[[office]]\nid = "ca-bac-ninh"\nname = "B"\njurisdiction = ["province:24"]\n')
    out = tmp_path / "auth"
    args = ["auth", "generate", "--out", str(out), "--office", "ca-tra-linh", "--offices", str(registry)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"auth.conf", "auditor.nk", "office-ca-tra-linh.nk", "office-ca-bac-ninh.nk"} <= names
    assert {"postgres_auditor.sql", "postgres_auditor.password"} <= names
    for seed in out.glob("*.nk"):
        assert seed.read_text().strip()[:20] not in result.output
    assert (out / "postgres_auditor.password").read_text().strip() not in result.output

    refused = CliRunner().invoke(app, ["auth", "generate", "--out", str(tmp_path / "b"), "--office", "a.b"])
    assert refused.exit_code == 2
    assert not (tmp_path / "b").exists()


@pytest.mark.timeout(60)
async def test_without_an_identity_the_server_refuses_the_connection(auth_stack: AuthStack) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(auth_stack.server.url, allow_reconnect=False, max_reconnect_attempts=0)


@pytest.mark.timeout(60)
async def test_an_office_submits_on_its_own_intake_subject_only(auth_stack: AuthStack) -> None:
    gateway = await auth_stack.connect("gateway")
    received: list[str] = []

    async def answer(msg: Msg) -> None:
        received.append(msg.subject)
        await msg.respond(b'{"ok": true}')

    await gateway.subscribe("antq.intake.*", queue="antq-gateway", cb=answer)
    await settle(gateway)  # the server has the SUB before the office's connection asks
    office = await auth_stack.connect("office-ca-tra-linh")

    reply = await office.request("antq.intake.ca-tra-linh", b"[]", timeout=10)
    assert json.loads(reply.data) == {"ok": True}

    await office.publish("antq.intake.ca-cao-bang", b"[]")  # another office's subject
    await auth_stack.refused("office-ca-tra-linh", "antq.intake.ca-cao-bang")
    await office.publish("antq.events.04.01447.session", b"{}")
    await auth_stack.refused("office-ca-tra-linh", "antq.events.04.01447.session")
    await office.subscribe("_INBOX.>")  # the replies meant for others
    await auth_stack.refused("office-ca-tra-linh", "_INBOX.>")
    await office.request(
        "antq.intake.ca-tra-linh", b"[]", timeout=10
    )  # the gateway saw the requests in order
    assert received == ["antq.intake.ca-tra-linh", "antq.intake.ca-tra-linh"]


async def antq(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``antq`` in a subprocess with only the given ANTQ_ settings: (exit status, stdout, stderr)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("ANTQ_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        env={**inherited, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def create_request(
    nc: Client, stream: str, name: str, config: dict[str, object], *, timeout: float = 5.0
) -> dict[str, Any]:
    """A consumer create request on the named subject, as any client may send it (not only nats-py's)."""
    body = {
        "stream_name": stream,
        "config": {"ack_policy": "none", "inactive_threshold": 30 * 10**9, **config},
    }
    reply = await nc.request(
        f"$JS.API.CONSUMER.CREATE.{stream}.{name}", json.dumps(body).encode(), timeout=timeout
    )
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


@pytest.mark.timeout(60)
async def test_the_auditor_reads_the_log_and_the_seals_and_changes_nothing(
    auth_stack: AuthStack, localities: Localities
) -> None:
    admin = await fill(auth_stack, 7)
    ajs = admin.jetstream()
    await ajs.add_consumer(
        EVENTS,
        ConsumerConfig(durable_name="stats-1", ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL),
    )
    sealer = (await auth_stack.connect("sealer")).jetstream()
    for n in range(2):
        await sealer.publish(SEALS_SUBJECT, b'{"seal": %d}' % n)
    auditor = await auth_stack.connect("auditor")
    direct = StreamReader("direct")

    result = await replay(auditor, ReplayScope(ward="01447", year=2018), localities, reader=direct)
    assert result.as_of_seq == 7
    assert result.replay.figures[("calendar", "01447", 2018, "sessions_held")] == 7
    now = dt.datetime.now(dt.UTC)
    known = await replay(auditor, ReplayScope(as_known_on=now), localities, reader=direct)
    assert known.as_of_seq == 7  # record time resolved by the server (a stored-message get)
    seals = [m async for batch in read_direct(auditor, SEALS) for m in batch]
    assert [m.seq for m in seals] == [1, 2]
    stored = await auditor.jetstream().get_msg(EVENTS, 3)
    assert stored.seq == 3
    assert {c.name for c in await ajs.consumers_info(EVENTS)} == {"stats-1"}  # it read without a consumer
    assert await ajs.consumers_info(SEALS) == []

    js = auditor.jetstream(timeout=DENIED_WAIT)
    with pytest.raises(nats.errors.TimeoutError):
        await js.publish("antq.events.04.01447.session", stored_sessions(1)[0][1])
    await auth_stack.refused("auditor", "antq.events.04.01447.session")
    await auditor.publish("antq.intake.ca-tra-linh", b"[]")
    await auth_stack.refused("auditor", "antq.intake.ca-tra-linh")
    with pytest.raises(nats.errors.TimeoutError):
        await js.delete_stream(EVENTS)
    await auth_stack.refused("auditor", f"$JS.API.STREAM.DELETE.{EVENTS}")
    with pytest.raises(nats.errors.TimeoutError):
        await js.purge_stream(EVENTS)
    await auth_stack.refused("auditor", f"$JS.API.STREAM.PURGE.{EVENTS}")
    loosened = dataclasses.replace((await ajs.stream_info(EVENTS)).config, max_msgs=1)
    with pytest.raises(nats.errors.TimeoutError):
        await js.update_stream(loosened)
    await auth_stack.refused("auditor", f"$JS.API.STREAM.UPDATE.{EVENTS}")
    with pytest.raises(nats.errors.TimeoutError):
        await js.delete_consumer(EVENTS, "stats-1")
    await auth_stack.refused("auditor", f"$JS.API.CONSUMER.DELETE.{EVENTS}.stats-1")
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(EVENTS, ConsumerConfig(durable_name="auditor-own"))
    await auth_stack.refused("auditor", f"$JS.API.CONSUMER.DURABLE.CREATE.{EVENTS}.auditor-own")
    await auditor.subscribe("antq.events.>")
    await auth_stack.refused("auditor", "antq.events.>")

    info = await ajs.stream_info(EVENTS)
    assert (info.state.messages, info.state.last_seq) == (7, 7)  # nothing landed, nothing went
    assert info.config.max_msgs == -1
    assert (await ajs.consumer_info(EVENTS, "stats-1")).config.durable_name == "stats-1"
    with pytest.raises(NotFoundError):
        await ajs.consumer_info(EVENTS, "auditor-own")


@pytest.mark.timeout(60)
async def test_the_auditor_can_neither_replace_nor_drain_the_projectors_consumer(
    auth_stack: AuthStack, template: Servers, localities: Localities
) -> None:
    admin = await fill(auth_stack, 5)
    ajs = admin.jetstream()
    database_url = await fresh_database(template)
    projector = Projector(
        nats_url=auth_stack.server.url,
        database_url=database_url,
        localities=localities,
        nats_options=auth_stack.options("projector"),
    )
    await projector.start()
    try:
        assert projector.runner is not None
        durable = projector.runner.durable
        assert durable == "stats-1"
        before = await ajs.consumer_info(EVENTS, durable)
        auditor = await auth_stack.connect("auditor")
        own = read_consumer_name(auth_stack.options("auditor")["inbox_prefix"].removeprefix("_INBOX."))
        js = auditor.jetstream(timeout=DENIED_WAIT)

        attempts = {  # what nats-py sends for each config, and the subject the server refuses
            f"CONSUMER.CREATE.{EVENTS}.{durable}": ConsumerConfig(name=durable, ack_policy=AckPolicy.NONE),
            f"CONSUMER.CREATE.{EVENTS}.{own}": ConsumerConfig(name=own),  # the name it once had
            f"CONSUMER.DURABLE.CREATE.{EVENTS}.{durable}": ConsumerConfig(durable_name=durable),
            f"CONSUMER.CREATE.{EVENTS}": ConsumerConfig(deliver_policy=DeliverPolicy.ALL),  # unnamed
        }
        for subject, config in attempts.items():
            with pytest.raises(nats.errors.TimeoutError):
                await js.add_consumer(EVENTS, config)
            await auth_stack.refused("auditor", f"$JS.API.{subject}")
        with pytest.raises(nats.errors.TimeoutError):  # a filtered create
            await auditor.request(
                f"$JS.API.CONSUMER.CREATE.{EVENTS}.{own}.antq.events.>", b"{}", timeout=DENIED_WAIT
            )
        await auth_stack.refused("auditor", f"$JS.API.CONSUMER.CREATE.{EVENTS}.{own}.antq.events.>")
        with pytest.raises(nats.errors.TimeoutError):
            await auditor.request(
                f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS}.{durable}", b'{"batch": 5}', timeout=DENIED_WAIT
            )
        await auth_stack.refused("auditor", f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS}.{durable}")
        with pytest.raises(nats.errors.TimeoutError):
            await js.delete_consumer(EVENTS, durable)
        await auth_stack.refused("auditor", f"$JS.API.CONSUMER.DELETE.{EVENTS}.{durable}")

        after = await ajs.consumer_info(EVENTS, durable)
        assert (after.created, after.config.ack_policy, after.config.durable_name) == (
            before.created,
            AckPolicy.ALL,
            durable,
        )
        assert {c.name for c in await ajs.consumers_info(EVENTS)} == {durable}

        gateway = (await auth_stack.connect("gateway")).jetstream()  # the projection still gets every event
        for subject, data in stored_sessions(2):
            await gateway.publish(subject, data)

        async def caught_up() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                return (await read_checkpoint(conn, 1)).seq == 7
            finally:
                await conn.close()

        await wait_for(caught_up, what="the projection at seq 7")
    finally:
        await projector.stop()


@pytest.mark.timeout(60)
async def test_one_consumer_read_at_a_time_per_name_and_direct_reads_in_parallel(
    auth_stack: AuthStack,
) -> None:
    """A consumer-mode read under a name (``ANTQ_READ_CONSUMER``, an identity with consumer rights) is never
    shared; the auditor's direct reads hold nothing at the server, so two of them run side by side."""
    admin = await fill(auth_stack, 6)
    js = admin.jetstream()
    name = "audit_admin"

    first = read_stream(js, EVENTS, batch=1, consumer_name=name)
    seqs = [m.seq for m in await anext(first)]
    with pytest.raises(
        StreamReadError, match="already exists"
    ):  # same name, same config: refused, not shared
        async for _ in read_stream(js, EVENTS, batch=1, consumer_name=name):
            pass
    seqs += [m.seq async for batch in first for m in batch]
    assert seqs == [1, 2, 3, 4, 5, 6]  # the refused read took nothing from the first one
    again = [m.seq async for batch in read_stream(js, EVENTS, consumer_name=name) for m in batch]
    assert again == [1, 2, 3, 4, 5, 6]  # the name is free as soon as a read ends

    auditor = await auth_stack.connect("auditor")
    one = read_direct(auditor, EVENTS, batch=2)
    two = read_direct(auditor, EVENTS, batch=2)
    a = [m.seq for m in await anext(one)]
    b = [m.seq async for batch in two for m in batch]
    a += [m.seq async for batch in one for m in batch]
    assert a == b == [1, 2, 3, 4, 5, 6]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("role", ["auditor", "sealer"])
async def test_readers_without_consumer_rights_cannot_make_a_push_consumer_deliver_stored_events_elsewhere(
    auth_stack: AuthStack, role: str
) -> None:
    """nats-server does not check a push consumer's deliver subject against its creator's permissions
    (nats-server issue 8274); the auditor and the sealer, which read with direct gets and have no CONSUMER.*
    right, cannot create one at all: not unnamed, named or durable."""
    admin = await fill(auth_stack, 3)
    ajs = admin.jetstream()
    sealer = (await auth_stack.connect("sealer")).jetstream()
    for n in range(2):
        await sealer.publish(SEALS_SUBJECT, b'{"seal": %d}' % n)
    reader = await auth_stack.connect(role)
    own = read_consumer_name(auth_stack.options(role)["inbox_prefix"].removeprefix("_INBOX."))
    push = {"deliver_policy": "all", "deliver_subject": QUERY_SUBJECT, "deliver_group": "antq-query"}
    for stream in (EVENTS, SEALS):
        with pytest.raises(nats.errors.TimeoutError):
            await reader.request(
                f"$JS.API.CONSUMER.CREATE.{stream}",
                json.dumps({"stream_name": stream, "config": push}).encode(),
                timeout=DENIED_WAIT,
            )
        await auth_stack.refused(role, f"$JS.API.CONSUMER.CREATE.{stream}")  # first: a prefix of the next
        for name in (own, "anything"):
            with pytest.raises(nats.errors.TimeoutError):
                await create_request(reader, stream, name, {"name": name, **push}, timeout=DENIED_WAIT)
            await auth_stack.refused(role, f"$JS.API.CONSUMER.CREATE.{stream}.{name}")
        with pytest.raises(nats.errors.TimeoutError):
            await reader.request(
                f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{own}",
                json.dumps({"stream_name": stream, "config": {"durable_name": own, **push}}).encode(),
                timeout=DENIED_WAIT,
            )
        await auth_stack.refused(role, f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{own}")
        assert await ajs.consumers_info(stream) == []
    info = await ajs.stream_info(EVENTS)
    assert (info.state.messages, info.state.last_seq) == (3, 3)


@pytest.mark.timeout(90)
async def test_antq_audit_replay_runs_as_the_auditor_and_says_clearly_when_it_has_no_identity(
    auth_stack: AuthStack,
) -> None:
    await fill(auth_stack, 4)
    url = auth_stack.server.url
    as_auditor = {
        "ANTQ_NATS_URL": url,
        "ANTQ_NATS_NKEY_SEED_FILE": str(auth_stack.seed_file("auditor")),
        "ANTQ_READ_MODE": "direct",
    }
    args = ["audit", "replay", "--ward", "01447", "--year", "2018", "--format", "json"]

    code, out, err = await antq(*args, env=as_auditor)
    assert code == 0, err
    body = json.loads(out)
    assert (body["ward"], body["year"], body["period"], body["as_of_seq"]) == ("01447", 2018, "calendar", 4)
    assert (body["metrics"]["sessions_held"], body["metrics"]["session_attendance"]) == (4, 160)
    code, out, err = await antq(*args, "--as-known-on", "2000-01-01T00:00:00+07:00", env=as_auditor)
    assert code == 0, err
    assert json.loads(out)["as_of_seq"] == 0  # nothing was stored yet in 2000

    # in consumer mode the auditor is refused the consumer, and told which mode it reads with
    code, out, err = await antq(*args, env={**as_auditor, "ANTQ_READ_MODE": "consumer"})
    assert (code, out) == (2, "")
    assert "ANTQ_READ_MODE=direct" in err and "Traceback" not in err
    code, out, err = await antq(*args, env={**as_auditor, "ANTQ_READ_MODE": "fast"})
    assert (code, out) == (2, "")
    assert "ANTQ_READ_MODE is consumer or direct" in err and "Traceback" not in err

    code, out, err = await antq(*args, env={"ANTQ_NATS_URL": url})
    assert (code, out) == (2, "")
    assert "Authorization Violation" in err and "ANTQ_NATS_NKEY_SEED_FILE" in err
    assert "Traceback" not in err
    missing = {**as_auditor, "ANTQ_NATS_NKEY_SEED_FILE": str(auth_stack.seed_file("nobody"))}
    code, out, err = await antq(*args, env=missing)
    assert (code, out) == (2, "")
    assert "cannot read the nkey seed file" in err and "Traceback" not in err


@pytest.mark.timeout(90)
async def test_the_auditor_verifies_a_running_stack_with_read_only_postgres(
    auth_stack: AuthStack, template: Servers, localities: Localities
) -> None:
    admin = await fill(auth_stack, 6)
    database_url = await fresh_database(template)
    password = secrets.token_urlsafe(16)
    owner = await asyncpg.connect(database_url)
    try:
        await owner.execute(auditor_sql(scram_verifier(password)))
    finally:
        await owner.close()

    projector = Projector(
        nats_url=auth_stack.server.url,
        database_url=database_url,
        localities=localities,
        nats_options=auth_stack.options("projector"),
    )
    await projector.start()
    try:
        signer = signer_from_seed(generate_seed())
        config = SealerConfig(
            nats_url=auth_stack.server.url,
            database_url=database_url,
            signer=signer,
            every_events=3,
            nats_options=auth_stack.options("sealer"),
        )
        async with Sealer(config) as sealer:
            sealed = await sealer.tick()
        assert [(s.first_seq, s.last_seq) for s in sealed] == [(1, 3), (4, 6)]

        async def caught_up() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                return (await read_checkpoint(conn, 1)).seq >= 6
            finally:
                await conn.close()

        await wait_for(caught_up, what="the projection at seq 6")

        auditor = await auth_stack.connect("auditor")
        direct = StreamReader("direct")
        rest = database_url.partition("://")[2].partition("@")[2]
        conn = await asyncpg.connect(f"postgresql://{PG_AUDITOR_ROLE}@{rest}", password=password)
        try:
            report = await verify_seals(
                auditor.jetstream(), conn, stream=EVENTS, seals_stream=SEALS, reader=direct
            )
            assert report.ok, report.findings
            assert (report.seals_nats, report.seals_postgres, report.sealed_through) == (2, 2, 6)
            verification = await verify(auditor, conn, localities, reader=direct)  # projector runs on
            assert verification.ok
            assert (verification.as_of_seq, verification.copy) == (6, 1)

            await conn.execute("SET default_transaction_read_only = off")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("UPDATE stats SET value = value + 1")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("SELECT * FROM event_index")
        finally:
            await conn.close()

        env = {  # the commands themselves, as an auditor runs them
            "ANTQ_NATS_URL": auth_stack.server.url,
            "ANTQ_NATS_NKEY_SEED_FILE": str(auth_stack.seed_file("auditor")),
            "ANTQ_DATABASE_URL": f"postgresql://{PG_AUDITOR_ROLE}:{password}@{rest}",
            "ANTQ_SEAL_PUBLIC_KEYS": signer.public_key,
            "ANTQ_READ_MODE": "direct",
        }
        code, out, err = await antq("audit", "seals", "--format", "json", env=env)
        assert code == 0, err
        assert json.loads(out)["ok"] is True
        code, out, err = await antq("audit", "verify", env=env)
        assert code == 0, err
        assert "match the replay at seq 6" in out
        code, out, err = await antq(
            "audit", "replay", "--ward", "01447", "--year", "2018", "--format", "json", env=env
        )
        assert code == 0, err
        assert json.loads(out)["metrics"]["sessions_held"] == 6
        assert await last_seq(admin) == 6
        assert await last_seq(admin, SEALS) == 2
    finally:
        await projector.stop()


@pytest.mark.timeout(90)
async def test_the_services_and_the_commands_run_as_their_own_identities(
    auth_stack: AuthStack, template: Servers, localities: Localities, offices_file: Path, tmp_path: Path
) -> None:
    await fill(auth_stack, 0)  # the streams, created by the admin
    url = auth_stack.server.url
    database_url = await fresh_database(template)
    gateway = Gateway(
        GatewayConfig(
            nats_url=url,
            database_url=database_url,
            offices_path=offices_file,
            localities=localities,
            nats_options=auth_stack.options("gateway"),
        )
    )
    query = QueryService(
        QueryConfig(
            nats_url=url,
            database_url=database_url,
            localities=localities,
            nats_options=auth_stack.options("query"),
        )
    )
    projector = Projector(
        nats_url=url,
        database_url=database_url,
        localities=localities,
        nats_options=auth_stack.options("projector"),
    )
    async with gateway.app, query.app:
        await projector.start()
        try:
            office = await auth_stack.connect("office-ca-cao-bang")
            await wait_until_answering(office, "antq.intake.ca-cao-bang")
            reader = await auth_stack.connect("reader")
            await wait_until_answering(reader, query_subject_of(reader))
            events = tmp_path / "events.jsonl"
            events.write_text("".join(json.dumps(f.session(attendance=10)) + "\n" for _ in range(3)))

            as_office = {
                "ANTQ_NATS_URL": url,
                "ANTQ_NATS_NKEY_SEED_FILE": str(auth_stack.seed_file("office-ca-cao-bang")),
            }
            code, out, err = await antq("publish", str(events), "--office", "ca-cao-bang", env=as_office)
            assert code == 0, out + err
            reply = await query_stats(
                reader, {"ward": "01447", "year": 2018, "min_seq": 3, "timeout_ms": 20_000}
            )
            assert (reply["metrics"]["sessions_held"], reply["metrics"]["session_attendance"]) == (3, 30)

            as_reader = {
                "ANTQ_NATS_URL": url,
                "ANTQ_NATS_NKEY_SEED_FILE": str(auth_stack.seed_file("reader")),
            }
            code, out, err = await antq("stats", "--ward", "01447", "--year", "2018", env=as_reader)
            assert code == 0, err
            assert "as of stream seq 3" in out
        finally:
            await projector.stop()
