"""Generated NATS auth on a real nats-server: each identity can do its job and nothing else.

Every test starts its own nats-server with the generated include (the session servers run without auth);
PostgreSQL is the session's, in a fresh database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import secrets
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
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
from events.subjects import event_subject
from infra.auth import (
    PG_AUDITOR_ROLE,
    AuthError,
    Generated,
    auditor_sql,
    generate,
    nats_connect_options,
    scram_verifier,
)
from infra.embedded import EmbeddedNats
from infra.seal_keys import generate_seed, signer_from_seed
from infra.settings import Settings
from infra.stream_reader import read_stream
from infra.streams import EVENTS, SEALS, StreamLimits, ensure_streams
from projections.service import Projector
from projections.store import read_checkpoint
from services.audit.replay import ReplayScope, replay
from services.audit.verify import verify
from services.cli.main import app
from services.sealer.service import Sealer, SealerConfig
from services.sealer.verify import verify_seals
from tests import factories as f
from tests.servers import Servers, fresh_database, wait_for

OFFICES = ["ca-tra-linh", "ca-cao-bang"]
REAL_CONNECT = nats.connect
DENIED_WAIT = 1.0  # a JetStream request the server refuses is never answered: how long to wait for nothing


@dataclass
class AuthStack:
    generated: Generated
    server: EmbeddedNats
    clients: list[Client] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def options(self, name: str) -> dict[str, str]:
        return nats_connect_options(Settings(nats_nkey_seed_file=self.generated.directory / f"{name}.nk"))

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


def as_identity(stack: AuthStack, name: str) -> Callable[..., Awaitable[Client]]:
    """``nats.connect`` for code that connects by itself (the sealer, the projector): as ``name``."""

    async def connect(*servers: Any, **options: Any) -> Client:
        nc: Client = await REAL_CONNECT(*servers, **{**options, **stack.options(name)})
        stack.clients.append(nc)
        return nc

    return connect


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


@pytest.mark.servers
@pytest.mark.timeout(60)
async def test_without_an_identity_the_server_refuses_the_connection(auth_stack: AuthStack) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(auth_stack.server.url, allow_reconnect=False, max_reconnect_attempts=0)


@pytest.mark.servers
@pytest.mark.timeout(60)
async def test_an_office_submits_on_its_own_intake_subject_only(auth_stack: AuthStack) -> None:
    gateway = await auth_stack.connect("gateway")
    received: list[str] = []

    async def answer(msg: Msg) -> None:
        received.append(msg.subject)
        await msg.respond(b'{"ok": true}')

    await gateway.subscribe("antq.intake.*", queue="antq-gateway", cb=answer)
    await gateway.flush()
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


@pytest.mark.servers
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
    auditor = await auth_stack.connect("auditor")

    result = await replay(auditor, ReplayScope(ward="01447", year=2018), localities)
    assert result.as_of_seq == 7
    assert result.replay.figures[("calendar", "01447", 2018, "sessions_held")] == 7
    seals = [m async for batch in read_stream(auditor.jetstream(), SEALS) for m in batch]
    assert seals == []
    stored = await auditor.jetstream().get_msg(EVENTS, 3)
    assert stored.seq == 3

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


@pytest.mark.servers
@pytest.mark.timeout(60)
async def test_the_auditor_verifies_a_running_stack_with_read_only_postgres(
    auth_stack: AuthStack, template: Servers, localities: Localities, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await fill(auth_stack, 6)
    database_url = await fresh_database(template)
    password = secrets.token_urlsafe(16)
    owner = await asyncpg.connect(database_url)
    try:
        await owner.execute(auditor_sql(scram_verifier(password)))
    finally:
        await owner.close()

    monkeypatch.setattr(nats, "connect", as_identity(auth_stack, "projector"))
    projector = Projector(nats_url=auth_stack.server.url, database_url=database_url, localities=localities)
    await projector.start()
    monkeypatch.setattr(nats, "connect", as_identity(auth_stack, "sealer"))
    try:
        config = SealerConfig(
            nats_url=auth_stack.server.url,
            database_url=database_url,
            signer=signer_from_seed(generate_seed()),
            every_events=3,
        )
        async with Sealer(config) as sealer:
            sealed = await sealer.tick()
        assert [(s.first_seq, s.last_seq) for s in sealed] == [(1, 3), (4, 6)]
        monkeypatch.undo()

        async def caught_up() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                return (await read_checkpoint(conn, 1)).seq >= 6
            finally:
                await conn.close()

        await wait_for(caught_up, what="the projection at seq 6")

        auditor = await auth_stack.connect("auditor")
        rest = database_url.partition("://")[2].partition("@")[2]
        conn = await asyncpg.connect(f"postgresql://{PG_AUDITOR_ROLE}@{rest}", password=password)
        try:
            report = await verify_seals(auditor.jetstream(), conn, stream=EVENTS, seals_stream=SEALS)
            assert report.ok, report.findings
            assert (report.seals_nats, report.seals_postgres, report.sealed_through) == (2, 2, 6)
            verification = await verify(auditor, conn, localities)  # the projector keeps running meanwhile
            assert verification.ok
            assert (verification.as_of_seq, verification.copy) == (6, 1)

            await conn.execute("SET default_transaction_read_only = off")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("UPDATE stats SET value = value + 1")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("SELECT * FROM event_index")
        finally:
            await conn.close()
        assert await last_seq(admin) == 6
        assert await last_seq(admin, SEALS) == 2
    finally:
        monkeypatch.undo()
        await projector.stop()
