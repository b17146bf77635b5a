"""The secure stack: every role against every stream subject on a real nats-server started with the generated
configuration, the web / subscriber / office-rejection roles, revoke and rotate without a restart, the
services' PostgreSQL roles, and ``antq dev up`` (secure by default, ``--insecure`` warned, no temp dir left).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import asyncpg
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import generate_latest
from typer.testing import CliRunner

from events.localities import Localities
from events.subjects import QUERY_SUBJECT, SEALS_SUBJECT, query_subject
from infra.auth.credentials import Generated, generate
from infra.auth.identities import public_key_of
from infra.auth.permissions import read_consumer_name, subscriber_consumer
from infra.auth.pg_roles import PG_ROLES, role_database_url, roles_sql
from infra.embedded import EmbeddedNats, free_port
from infra.metrics import Exporter
from infra.reading import audit_reader
from infra.seal_keys import generate_seed, signer_from_seed
from infra.settings import Settings
from infra.streams import EVENTS, REJECTED, SEALS, UPDATES, StreamLimits, ensure_streams
from projections.rebuild import Rebuild
from projections.service import Projector
from services.cli.main import app
from services.cli.stats_view import query_stats
from services.client import OfficeClient
from services.gateway.app import Gateway, GatewayConfig
from services.gateway.rejected_later import PendingRecord, PendingTable
from services.query.app import QueryConfig, QueryService
from services.query.telemetry import query_registry
from services.sealer.errors import SealingHalted
from services.sealer.service import Sealer, SealerConfig
from services.sealer.telemetry import sealer_registry
from tests import factories as f
from tests.conftest import Stack, wait_until_answering
from tests.servers import Servers, create_streams, dev_up, fresh_database, fresh_streams, settle, wait_for

pytestmark = pytest.mark.servers

OFFICE, OTHER = "ca-tra-linh", "ca-cao-bang"
SUBSCRIBER = "s04"  # a downstream subscriber of province 04
IDENTITIES = [
    "admin",
    "gateway",
    "projector",
    "query",
    "sealer",
    "auditor",
    "reader",
    "web",
    f"office-{OFFICE}",
    f"office-{OTHER}",
    f"subscriber-{SUBSCRIBER}",
]
DENIED_WAIT = 1.0


@dataclass
class Secure:
    generated: Generated
    server: EmbeddedNats
    admin: Client
    clients: list[Client] = field(default_factory=list)
    errors: dict[Client, list[str]] = field(default_factory=dict)

    def seed_file(self, name: str) -> Path:
        return self.generated.directory / f"{name}.nk"

    def options(self, name: str) -> dict[str, str]:
        from infra.auth import nats_connect_options

        settings = Settings(credentials_dir=self.generated.directory, identity=name)
        return nats_connect_options(settings)

    async def connect(self, name: str, **extra: object) -> Client:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        nc = await nats.connect(
            self.server.url, error_cb=on_error, allow_reconnect=False, **self.options(name), **extra
        )
        self.clients.append(nc)
        self.errors[nc] = errors
        return nc

    async def refused(self, nc: Client, subject: str) -> None:
        async def seen() -> bool:
            return any("permissions violation" in e and subject.lower() in e for e in self.errors[nc])

        await wait_for(seen, timeout=10, what=f"the server refusing {subject}")

    async def last_seq(self, stream: str) -> int:
        return int((await self.admin.jetstream().stream_info(stream)).state.last_seq)


async def start_secure(directory: Path) -> Secure:
    generated = generate(directory / "credentials", [OFFICE, OTHER], {SUBSCRIBER: ["04"]})
    server = EmbeddedNats(directory / "nats", sync_always=False, auth_conf=generated.server_conf)
    server.start()
    admin = await nats.connect(server.url, allow_reconnect=False, **_options(generated, "admin"))
    await ensure_streams(admin.jetstream(), StreamLimits())
    return Secure(generated, server, admin)


def _options(generated: Generated, name: str) -> dict[str, str]:
    from infra.auth import nats_connect_options

    return nats_connect_options(Settings(credentials_dir=generated.directory, identity=name))


async def stop_secure(stack: Secure) -> None:
    for nc in [*stack.clients, stack.admin]:
        with contextlib.suppress(Exception):
            await nc.close()
    stack.server.stop()


@pytest.fixture(scope="module")
async def secure_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Secure]:
    stack = await start_secure(tmp_path_factory.mktemp("secure"))
    try:
        yield stack
    finally:
        await stop_secure(stack)


@pytest.fixture
async def secure(secure_server: Secure) -> AsyncIterator[Secure]:
    """The module's server; the connections a test opened are closed after it."""
    yield secure_server
    while secure_server.clients:
        nc = secure_server.clients.pop()
        with contextlib.suppress(Exception):
            await nc.close()


@pytest.fixture
async def own_secure(tmp_path: Path) -> AsyncIterator[Secure]:
    """A server of its own, for a test that changes the identities."""
    stack = await start_secure(tmp_path)
    try:
        yield stack
    finally:
        await stop_secure(stack)


# ---------------------------------------------------------------------------------------------------------
# every role against every stream subject (and the two request subjects)

STREAM_SUBJECTS = {
    "events": (EVENTS, "antq.events.04.01447.session", {"gateway"}),
    "rejected": (REJECTED, f"antq.rejected.{OFFICE}", {"gateway"}),
    "updates": (UPDATES, "antq.updates.stats.04.01447.2018", {"projector"}),
    "seals": (SEALS, SEALS_SUBJECT, {"sealer"}),
}
REQUEST_SUBJECTS = {
    "intake": (f"antq.intake.{OFFICE}", {f"office-{OFFICE}"}),
    # nobody asks on the plain subject on the secure stack: readers ask on their own (test below)
    "query": (QUERY_SUBJECT, set()),
}
CASES = [(who, what) for what in [*STREAM_SUBJECTS, *REQUEST_SUBJECTS] for who in IDENTITIES]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("who", "what"), CASES, ids=[f"{w}-{s}" for w, s in CASES])
async def test_every_role_against_every_stream_subject(secure: Secure, who: str, what: str) -> None:
    """Only the gateway publishes on antq.events.> (and antq.rejected.>), only the projector on antq.updates.>,
    only the sealer on antq.seals; an office on its own intake; readers and the web role on the query subject."""
    nc = await secure.connect(who)
    token = secrets.token_hex(8).encode()
    if what in STREAM_SUBJECTS:
        stream, subject, allowed = STREAM_SUBJECTS[what]
        before = await secure.last_seq(stream)
        await nc.publish(subject, token)
        if who in allowed:
            await wait_for(lambda: _grown(secure, stream, before), what=f"{who}'s message in {stream}")
            assert not secure.errors[nc]
        else:
            await secure.refused(nc, subject)
            assert await secure.last_seq(stream) == before  # nothing stored
        return
    subject, allowed = REQUEST_SUBJECTS[what]
    receiver = await secure.connect("gateway" if what == "intake" else "query")
    got = await receiver.subscribe(subject)
    await settle(receiver)
    if who in allowed:

        async def delivered() -> bool:  # sent again until the receiver's subscription is seen live
            await nc.publish(subject, token)
            try:
                return (await got.next_msg(timeout=0.2)).data == token
            except nats.errors.TimeoutError:
                return False

        await wait_for(delivered, what=f"{who}'s message on {subject}")
        assert not secure.errors[nc]
    else:
        await nc.publish(subject, token)
        await secure.refused(nc, subject)
        await receiver.flush()
        with pytest.raises(nats.errors.TimeoutError):
            await got.next_msg(timeout=0.2)


async def _grown(secure: Secure, stream: str, before: int) -> bool:
    return await secure.last_seq(stream) > before


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("responder", "asker", "reply"),
    [
        ("query", "reader", "antq.events.04.01447.session"),
        ("query", "web", "antq.updates.stats.04.01447.2018"),
        ("query", "reader", SEALS_SUBJECT),
        ("gateway", f"office-{OFFICE}", "antq.updates.stats.04.01447.2018"),
        ("gateway", f"office-{OFFICE}", SEALS_SUBJECT),
    ],
)
async def test_a_responder_cannot_answer_into_a_stream_it_may_not_write(
    secure: Secure, responder: str, asker: str, reply: str
) -> None:
    """A request naming a stream subject as its reply: the server refuses the responder's answer (responders
    answer on _INBOX.> only, no allow_responses). The gateway may write antq.events.> itself: that reply is
    refused by the gateway's code (issue 8, defect 1), not by the server."""
    service = await secure.connect(responder)
    subject = f"{QUERY_SUBJECT}.*" if responder == "query" else f"antq.intake.{OFFICE}"
    ask = (
        query_subject(public_key_of(secure.seed_file(asker).read_bytes()))
        if responder == "query"
        else subject
    )
    answered: list[str] = []

    async def answer(msg: Msg) -> None:
        answered.append(msg.reply)
        await msg.respond(b'{"forged": true}')

    await service.subscribe(subject, cb=answer)
    await settle(service)
    stream = next(s for s, subj, _ in STREAM_SUBJECTS.values() if subj == reply)
    before = await secure.last_seq(stream)
    client = await secure.connect(asker)
    await client.publish(ask, b"{}", reply=reply)
    await secure.refused(service, reply)
    assert answered == [reply]
    assert await secure.last_seq(stream) == before


# ---------------------------------------------------------------------------------------------------------
# the roles of the next issues


async def _update(secure: Secure, province: str, ward: str) -> None:
    projector = await secure.connect("projector")
    await projector.jetstream().publish(f"antq.updates.stats.{province}.{ward}.2018", f"{ward}".encode())


@pytest.mark.timeout(60)
async def test_web_reads_updates_with_an_ordered_consumer_and_nothing_else(secure: Secure) -> None:
    web = await secure.connect("web")
    await _update(secure, "04", "01447")
    sub = await web.jetstream().subscribe(
        "antq.updates.stats.>", stream=UPDATES, ordered_consumer=True, deliver_policy=DeliverPolicy.LAST
    )
    msg = await sub.next_msg(timeout=10)
    assert msg.subject.startswith("antq.updates.stats.")
    await sub.unsubscribe()

    js = web.jetstream(timeout=DENIED_WAIT)
    for stream in (EVENTS, REJECTED, SEALS):  # no consumer on any other stream
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer(stream, ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        await secure.refused(web, f"$JS.API.CONSUMER.CREATE.{stream}")
    with pytest.raises(nats.errors.TimeoutError):  # no durable, no named consumer of its own
        await js.add_consumer(UPDATES, ConsumerConfig(durable_name="web-durable"))
    await secure.refused(web, f"$JS.API.CONSUMER.DURABLE.CREATE.{UPDATES}.web-durable")
    with pytest.raises(nats.errors.TimeoutError):
        await js.add_consumer(UPDATES, ConsumerConfig(name="web-named"))
    await secure.refused(web, f"$JS.API.CONSUMER.CREATE.{UPDATES}.web-named")
    # a durable through the unnamed create subject is refused by the server itself
    body = {"stream_name": UPDATES, "config": {"durable_name": "sneaky", "ack_policy": "explicit"}}
    answer = await web.request(f"$JS.API.CONSUMER.CREATE.{UPDATES}", json.dumps(body).encode(), timeout=5)
    assert "error" in json.loads(answer.data), answer.data
    # no pull from a subscriber's consumer
    name = subscriber_consumer(SUBSCRIBER, "04")
    await web.publish(f"$JS.API.CONSUMER.MSG.NEXT.{UPDATES}.{name}", b'{"batch": 1}')
    await secure.refused(web, f"$JS.API.CONSUMER.MSG.NEXT.{UPDATES}.{name}")
    names = {c.name for c in await secure.admin.jetstream().consumers_info(UPDATES)}
    assert "sneaky" not in names and "web-durable" not in names


@pytest.mark.timeout(60)
async def test_a_subscriber_reads_the_updates_of_its_provinces_only(secure: Secure) -> None:
    await _update(secure, "04", "01456")
    await _update(secure, "24", "07210")
    sub = await secure.connect(f"subscriber-{SUBSCRIBER}")
    name = subscriber_consumer(SUBSCRIBER, "04")
    js = sub.jetstream()
    await js.add_consumer(
        UPDATES,
        ConsumerConfig(
            name=name,
            filter_subject="antq.updates.stats.04.>",
            ack_policy=AckPolicy.EXPLICIT,
            inactive_threshold=30,
        ),
    )
    pull = await js.pull_subscribe_bind(name, stream=UPDATES)
    msgs = await pull.fetch(100, timeout=5)
    assert msgs and all(m.subject.startswith("antq.updates.stats.04.") for m in msgs)
    for m in msgs:
        await m.ack()

    denied = js = sub.jetstream(timeout=DENIED_WAIT)
    other = subscriber_consumer(SUBSCRIBER, "24")
    with pytest.raises(nats.errors.TimeoutError):  # another province
        await denied.add_consumer(
            UPDATES, ConsumerConfig(name=other, filter_subject="antq.updates.stats.24.>")
        )
    await secure.refused(sub, f"$JS.API.CONSUMER.CREATE.{UPDATES}.{other}.antq.updates.stats.24.>")
    with pytest.raises(nats.errors.TimeoutError):  # all provinces
        await denied.add_consumer(UPDATES, ConsumerConfig(name=name))
    await secure.refused(sub, f"$JS.API.CONSUMER.CREATE.{UPDATES}.{name}")
    for body in (  # the subject's filter is its own province, the body's another: the server refuses it
        {"name": name, "filter_subject": "antq.updates.stats.24.>"},
        {"name": name, "filter_subjects": ["antq.updates.stats.04.>", "antq.updates.stats.24.>"]},
    ):
        answer = await sub.request(
            f"$JS.API.CONSUMER.CREATE.{UPDATES}.{name}.antq.updates.stats.04.>",
            json.dumps({"stream_name": UPDATES, "config": {"ack_policy": "explicit", **body}}).encode(),
            timeout=5,
        )
        assert "error" in json.loads(answer.data), answer.data
    for forbidden in (f"$JS.API.CONSUMER.CREATE.{EVENTS}", QUERY_SUBJECT):
        await sub.publish(forbidden, b"{}")
        await secure.refused(sub, forbidden)
    info = await secure.admin.jetstream().consumer_info(UPDATES, name)
    assert info.config.filter_subject == "antq.updates.stats.04.>"


@pytest.mark.timeout(60)
async def test_an_office_reads_only_its_own_rejections(secure: Secure) -> None:
    gateway = (await secure.connect("gateway")).jetstream()
    for office in (OFFICE, OTHER, OFFICE):
        await gateway.publish(f"antq.rejected.{office}", office.encode())
    nc = await secure.connect(f"office-{OFFICE}")
    js = nc.jetstream()
    name = read_consumer_name(public_key_of(secure.seed_file(f"office-{OFFICE}").read_bytes()))
    await js.add_consumer(
        REJECTED,
        ConsumerConfig(name=name, filter_subject=f"antq.rejected.{OFFICE}", inactive_threshold=30),
    )
    pull = await js.pull_subscribe_bind(name, stream=REJECTED)
    msgs = await pull.fetch(10, timeout=5)
    assert {m.subject for m in msgs} == {f"antq.rejected.{OFFICE}"}
    assert [m.data for m in msgs].count(OFFICE.encode()) == 2 and OTHER.encode() not in {m.data for m in msgs}

    await js.delete_consumer(REJECTED, name)
    # the project's own consumer-mode reader, as `antq rejected` runs it with the office's settings
    settings = Settings(credentials_dir=secure.generated.directory, identity=f"office-{OFFICE}")
    reader = audit_reader(settings)
    read = [
        m async for batch in reader.messages(js, REJECTED, subject=f"antq.rejected.{OFFICE}") for m in batch
    ]
    assert [m.data for m in read].count(OFFICE.encode()) == 2 and {m.subject for m in read} == {
        f"antq.rejected.{OFFICE}"
    }

    denied = nc.jetstream(timeout=DENIED_WAIT)
    theirs = read_consumer_name(public_key_of(secure.seed_file(f"office-{OTHER}").read_bytes()))
    with pytest.raises(nats.errors.TimeoutError):
        await denied.add_consumer(
            REJECTED, ConsumerConfig(name=theirs, filter_subject=f"antq.rejected.{OTHER}")
        )
    await secure.refused(nc, f"$JS.API.CONSUMER.CREATE.{REJECTED}.{theirs}")
    with pytest.raises(nats.errors.TimeoutError):
        await denied.add_consumer(REJECTED, ConsumerConfig(name=name, filter_subject="antq.rejected.>"))
    await secure.refused(nc, f"$JS.API.CONSUMER.CREATE.{REJECTED}.{name}.antq.rejected.>")
    answer = await nc.request(
        f"$JS.API.CONSUMER.CREATE.{REJECTED}.{name}.antq.rejected.{OFFICE}",
        json.dumps(
            {"stream_name": REJECTED, "config": {"name": name, "filter_subject": f"antq.rejected.{OTHER}"}}
        ).encode(),
        timeout=5,
    )
    assert "error" in json.loads(answer.data)
    await nc.publish(f"$JS.API.DIRECT.GET.{REJECTED}.antq.rejected.{OTHER}", b"")
    await secure.refused(nc, f"$JS.API.DIRECT.GET.{REJECTED}.antq.rejected.{OTHER}")
    await nc.publish(f"$JS.API.DIRECT.GET.{REJECTED}", b'{"next_by_subj": "antq.rejected.>"}')
    await secure.refused(nc, f"$JS.API.DIRECT.GET.{REJECTED}")


@pytest.mark.timeout(60)
async def test_a_push_consumer_aimed_at_the_log_or_an_intake_stores_nothing(secure: Secure) -> None:
    """nats-server does not check a push consumer's deliver subject (its issue 8274): the web role's consumer
    can be made to deliver update messages onto antq.events.… or an office's intake. No stream stores a
    JetStream delivery, so the log is untouched; a service gets the projector's update with a ``$JS.ACK.…``
    reply subject, which is no inbox (refused by the services, issue 8 defect 1)."""
    web = await secure.connect("web")
    gateway = await secure.connect("gateway")
    intake = await gateway.subscribe(f"antq.intake.{OTHER}")
    await settle(gateway)
    before = await secure.last_seq(EVENTS)
    created = []
    for target in ("antq.events.04.01447.session", f"antq.intake.{OTHER}"):
        body = {
            "stream_name": UPDATES,
            "config": {"deliver_subject": target, "deliver_policy": "all", "ack_policy": "none"},
        }
        answer = await web.request(f"$JS.API.CONSUMER.CREATE.{UPDATES}", json.dumps(body).encode(), timeout=5)
        created.append(json.loads(answer.data)["name"])
    await _update(secure, "04", "01465")
    delivered = await intake.next_msg(timeout=10)
    assert delivered.reply.startswith("$JS.ACK.")
    assert await secure.last_seq(EVENTS) == before
    for name in created:
        await secure.admin.jetstream().delete_consumer(UPDATES, name)


# ---------------------------------------------------------------------------------------------------------
# revoke and rotate without a restart


@pytest.mark.timeout(90)
async def test_a_revoked_office_is_cut_off_and_a_rotated_one_gets_a_new_key_while_others_publish(
    own_secure: Secure,
) -> None:
    stack = own_secure
    gateway = await stack.connect("gateway")

    async def answer(msg: Msg) -> None:
        await msg.respond(b'{"ok": true}')

    await gateway.subscribe("antq.intake.*", cb=answer)
    await settle(gateway)
    lost = await stack.connect(f"office-{OFFICE}")
    other = await stack.connect(f"office-{OTHER}")
    assert (await lost.request(f"antq.intake.{OFFICE}", b"[]", timeout=5)).data == b'{"ok": true}'
    old_seed = stack.seed_file(f"office-{OFFICE}").read_bytes()
    saved = stack.generated.directory.parent / "old-office.nk"
    saved.write_bytes(old_seed)
    saved.chmod(0o600)
    directory = str(stack.generated.directory)
    pid_file = str(stack.server.pid_file)

    result = CliRunner().invoke(
        app, ["auth", "revoke", "--office", OFFICE, "--out", directory, "--nats-pid-file", pid_file]
    )
    assert result.exit_code == 0, result.output
    await wait_for(lambda: _closed(lost), what="the revoked office's connection closed")
    with pytest.raises(nats.errors.Error):
        await nats.connect(
            stack.server.url, allow_reconnect=False, max_reconnect_attempts=0, nkeys_seed=str(saved)
        )
    for _ in range(3):  # the others never noticed
        assert (await other.request(f"antq.intake.{OTHER}", b"[]", timeout=5)).data == b'{"ok": true}'
    assert not gateway.is_closed
    # a later generate (antq dev up's next start) does not bring it back
    generate(stack.generated.directory, [OFFICE, OTHER])
    assert not stack.seed_file(f"office-{OFFICE}").exists()

    result = CliRunner().invoke(
        app,
        ["--credentials-dir", directory, "auth", "rotate", "--office", OFFICE, "--nats-pid-file", pid_file],
    )
    assert result.exit_code == 0, result.output
    assert stack.seed_file(f"office-{OFFICE}").read_bytes() != old_seed

    async def new_key_works() -> bool:
        try:
            fresh = await stack.connect(f"office-{OFFICE}")
        except nats.errors.Error:
            return False
        return (await fresh.request(f"antq.intake.{OFFICE}", b"[]", timeout=5)).data == b'{"ok": true}'

    await wait_for(new_key_works, what="the rotated key accepted")
    with pytest.raises(nats.errors.Error):
        await nats.connect(
            stack.server.url, allow_reconnect=False, max_reconnect_attempts=0, nkeys_seed=str(saved)
        )
    assert (await other.request(f"antq.intake.{OTHER}", b"[]", timeout=5)).data == b'{"ok": true}'


async def _closed(nc: Client) -> bool:
    return nc.is_closed


# ---------------------------------------------------------------------------------------------------------
# PostgreSQL: each service's role writes only its tables

ALL_TABLES = (
    "event_index",
    "event_index_checkpoint",
    "entity_claims",
    "stats",
    "stats_fold_state",
    "stats_outbox",
    "projection_active",
    "projection_checkpoint",
    "projection_partition",
    "seals",
    "gateway_rejected_pending",
    "gateway_rejected_pending_total",
)
GATEWAY_PENDING = ("gateway_rejected_pending", "gateway_rejected_pending_total")  # migration 015
WRITES = {  # role: the tables it may write (INSERT)
    "antq_gateway": {"event_index", "event_index_checkpoint", "entity_claims", *GATEWAY_PENDING},
    "antq_projector": {
        "stats",
        "stats_fold_state",
        "stats_outbox",
        "projection_active",
        "projection_checkpoint",
        "projection_partition",
    },
    "antq_query": set(),
    "antq_sealer": {"seals"},
    "antq_auditor": set(),
}
READS = {
    "antq_gateway": {"event_index", "event_index_checkpoint", "entity_claims", *GATEWAY_PENDING},
    "antq_projector": WRITES["antq_projector"],
    "antq_query": {"stats", "projection_active", "projection_checkpoint", "projection_partition"},
    "antq_sealer": {"seals"},
    "antq_auditor": {"stats", "projection_active", "projection_checkpoint", "projection_partition", "seals"},
}


async def roles_database(template: Servers) -> str:
    url = await fresh_database(template)
    owner = await asyncpg.connect(url)
    try:
        await owner.execute(roles_sql())
        await owner.execute(roles_sql())  # run again (every `antq dev up` start does): the same rights
    finally:
        await owner.close()
    return url


def as_role(url: str, role: str) -> str:
    return role_database_url(url, role, "unused-with-trust-auth")


@pytest.mark.timeout(60)
async def test_each_postgres_role_reads_and_writes_only_its_tables(template: Servers) -> None:
    url = await roles_database(template)
    owner = await asyncpg.connect(url)
    try:
        for role in (r.name for r in PG_ROLES):
            for table in ALL_TABLES:
                for privilege, allowed in (
                    ("INSERT", table in WRITES[role]),
                    ("UPDATE", table in WRITES[role] and table != "seals"),
                    ("SELECT", table in READS[role]),
                ):
                    granted = await owner.fetchval(
                        "SELECT has_table_privilege($1, $2, $3)", role, table, privilege
                    )
                    assert granted is allowed, (role, table, privilege)
    finally:
        await owner.close()

    gateway = await asyncpg.connect(as_role(url, "antq_gateway"))
    try:
        await gateway.execute("UPDATE event_index_checkpoint SET seq = seq")
        # a refusal's record waiting for ANTQ_REJECTED: its identity column needs no grant on a sequence
        pending = PendingRecord("antq.rejected.x", b"{}", {"Nats-Msg-Id": "rejected:1"})
        assert await PendingTable(cast(asyncpg.Pool, gateway)).put(pending, 10, 1000)
        for statement in (
            "UPDATE stats SET value = value + 1",
            "DELETE FROM projection_active",
            "DELETE FROM seals",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await gateway.execute(statement)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await gateway.execute("CREATE TABLE mine (x int)")
    finally:
        await gateway.close()
    query = await asyncpg.connect(as_role(url, "antq_query"))
    try:
        await query.fetch("SELECT * FROM stats")
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await query.execute("UPDATE projection_active SET copy = copy")
        await query.execute("SET default_transaction_read_only = off")
        for statement in (
            "UPDATE projection_active SET copy = copy",
            "UPDATE stats SET value = value + 1",
            "DELETE FROM event_index",
            "CREATE TABLE mine (x int)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await query.execute(statement)
    finally:
        await query.close()
    sealer = await asyncpg.connect(as_role(url, "antq_sealer"))
    try:
        for statement in ("UPDATE stats SET value = value + 1", "DELETE FROM entity_claims"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await sealer.execute(statement)
    finally:
        await sealer.close()
    projector = await asyncpg.connect(as_role(url, "antq_projector"))
    try:
        for statement in ("DELETE FROM event_index", "DELETE FROM entity_claims", "DELETE FROM seals"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await projector.execute(statement)
    finally:
        await projector.close()


@pytest.mark.timeout(120)
async def test_the_services_run_and_a_rebuild_swaps_copies_under_their_own_roles(
    template: Servers, offices_file: Path, localities: Localities
) -> None:
    """The gateway, the projection, the query service and a rebuild (which creates the new copy's tables and
    drops the old copy's: the projection owns them) each on its own PostgreSQL role."""
    url = await roles_database(template)
    nc = await nats.connect(template.nats_url)
    js = nc.jetstream()
    await fresh_streams(js, StreamLimits(dedup_window_s=3600.0))
    gateway = Gateway(
        GatewayConfig(
            nats_url=template.nats_url,
            database_url=as_role(url, "antq_gateway"),
            offices_path=offices_file,
            localities=localities,
        )
    )
    query = QueryService(
        QueryConfig(
            nats_url=template.nats_url, database_url=as_role(url, "antq_query"), localities=localities
        )
    )
    projector = Projector(
        nats_url=template.nats_url, database_url=as_role(url, "antq_projector"), localities=localities
    )
    try:
        async with gateway.app, query.app:
            await projector.start()
            try:
                await wait_until_answering(nc, "antq.intake._probe")
                results = await OfficeClient(nc, "ca-cao-bang", timeout=30).submit(
                    [f.session(attendance=10) for _ in range(3)]
                )
                assert all(r.ok for r in results), [r.error for r in results]
                last = max(r.seq or 0 for r in results)
                await wait_until_answering(nc, QUERY_SUBJECT)
                reply = await query_stats(
                    nc, {"ward": "01447", "year": 2018, "min_seq": last, "timeout_ms": 20_000}
                )
                assert reply["metrics"]["sessions_held"] == 3
                report = await Rebuild(nc, as_role(url, "antq_projector"), localities=localities).run()
                assert (report.old_copy, report.new_copy, report.old_dropped) == (1, 2, True)
                reply = await query_stats(nc, {"ward": "01447", "year": 2018, "min_seq": last})
                assert reply["metrics"]["session_attendance"] == 30
            finally:
                await projector.stop()
    finally:
        await nc.drain()
    owner = await asyncpg.connect(url)
    try:
        assert (
            await owner.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'stats_c2'")
            == "antq_projector"
        )
        assert await owner.fetchval("SELECT to_regclass('stats_c1')") is None
    finally:
        await owner.close()


# ---------------------------------------------------------------------------------------------------------
# antq dev up: secure by default; --insecure warned; nothing left in the temp dir


def antq_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANTQ_")}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def seeds_in(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.glob("*.nk")}


def write_events(path: Path) -> Path:
    path.write_text(json.dumps(f.session(attendance=7)) + "\n")
    return path


def dev_dirs(temp: Path) -> list[str]:
    return [p.name for p in temp.iterdir() if p.name.startswith("antq-dev-")]


async def _anonymous_refused(url: str) -> bool:
    try:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)
    except nats.errors.Error as exc:
        return "authorization violation" in str(exc).lower()
    await nc.close()
    return False


@pytest.fixture
def data_root() -> Iterator[Path]:
    """A directory outside pytest's (whose root other pytest sessions on the machine reset to mode 0700, which
    the unprivileged PostgreSQL user of a root run can then not traverse); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="antq-secure-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(180)
async def test_dev_up_is_secure_by_default_and_keeps_its_identities(tmp_path: Path, data_root: Path) -> None:
    data = data_root / "data"
    ports = {"ANTQ_QUERY_METRICS_PORT": str(free_port()), "ANTQ_SEALER_METRICS_PORT": str(free_port())}
    with dev_up("--data-dir", str(data), env=ports) as (_, ready):
        query_metrics = await asyncio.to_thread(scrape, int(ports["ANTQ_QUERY_METRICS_PORT"]))
        assert query_metrics["antq_query_waiting"] == 0
        sealer_metrics = await asyncio.to_thread(scrape, int(ports["ANTQ_SEALER_METRICS_PORT"]))
        assert 'antq_sealer_halted{stream="ANTQ_EVENTS"}' in sealer_metrics
        credentials = Path(ready["credentials_dir"])
        assert credentials == data / "credentials"
        assert {
            "admin.nk",
            "gateway.nk",
            "projector.nk",
            "query.nk",
            "sealer.nk",
            "auditor.nk",
            "reader.nk",
        } <= set(seeds_in(credentials))
        assert {"web.nk", "office-ca-tra-linh.nk", "office-bcd-tra-linh-cu.nk"} <= set(seeds_in(credentials))
        seeds = seeds_in(credentials)
        assert await _anonymous_refused(ready["nats_url"])
        events = write_events(tmp_path / "events.jsonl")
        url = {"ANTQ_NATS_URL": ready["nats_url"]}
        published = antq_cli(
            "--credentials-dir", str(credentials), "publish", str(events), "--office", "ca-tra-linh", env=url
        )
        assert published.returncode == 0, published.stdout + published.stderr
        # the office's identity may not ask the query service; the reader's (ANTQ_CREDENTIALS_DIR) may
        stats = antq_cli(
            "stats",
            "--ward",
            "01447",
            "--year",
            "2018",
            env={**url, "ANTQ_CREDENTIALS_DIR": str(credentials)},
        )
        assert stats.returncode == 0, stats.stderr
        assert "tips_received" in stats.stdout
        anonymous = antq_cli("stats", "--ward", "01447", "--year", "2018", env=url)
        assert anonymous.returncode != 0 and "Traceback" not in anonymous.stderr
        as_us = {**url, "ANTQ_CREDENTIALS_DIR": str(credentials), "ANTQ_DATABASE_URL": ready["database_url"]}
        replay = antq_cli(
            "audit", "replay", "--ward", "01447", "--year", "2018", "--format", "json", env=as_us
        )
        assert replay.returncode == 0, replay.stderr  # as the auditor, with direct gets
        assert json.loads(replay.stdout)["metrics"]["session_attendance"] == 7
        rebuilt = antq_cli("projections", "rebuild", "stats", env=as_us)  # as the projector, both servers
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        owner = await asyncpg.connect(ready["database_url"])
        try:
            assert await owner.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'stats_c2'") == (
                "antq_projector"
            )
        finally:
            await owner.close()
    with dev_up("--data-dir", str(data)) as (_, again):  # a later start keeps every identity
        assert again["credentials_dir"] == ready["credentials_dir"]
        assert seeds_in(credentials) == seeds
        assert await _anonymous_refused(again["nats_url"])


@pytest.mark.timeout(180)
async def test_dev_up_insecure_warns_and_a_run_without_data_dir_leaves_no_temp_dir(data_root: Path) -> None:
    temp = data_root / "tmp"
    temp.mkdir()
    with dev_up("--insecure", env={"TMPDIR": str(temp)}) as (proc, ready):
        assert ready["credentials_dir"] is None
        nc = await nats.connect(ready["nats_url"], allow_reconnect=False)  # the open stack
        await nc.close()
        assert dev_dirs(temp)  # in use while it runs
    assert proc.stderr is not None
    warning = proc.stderr.read().decode()
    assert "WARNING: open stack (--insecure)" in warning and "forged events" in warning
    assert not dev_dirs(temp)


# ---------------------------------------------------------------------------------------------------------
# Prometheus metrics of the query service and the sealer (infra/metrics.py)


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` over HTTP, as Prometheus reads it: sample name with labels to value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.mark.timeout(60)
async def test_the_query_service_exports_waiting_requests_and_dropped_replies(
    stack: Stack, query: QueryService
) -> None:
    exporter = Exporter(query_registry(query), 0, addr="127.0.0.1")
    try:
        first = await asyncio.to_thread(scrape, exporter.port)
        assert first["antq_query_waiting"] == 0
        assert first["antq_query_dropped_reply_subject_total"] == 0
        assert "process_cpu_seconds_total" in first
        inbox = stack.nc.new_inbox()
        answers = await stack.nc.subscribe(inbox)
        await stack.nc.publish(  # waits for a sequence the log does not have yet, for 5 s
            QUERY_SUBJECT, b'{"ward": "01447", "year": 2018, "min_seq": 99, "timeout_ms": 5000}', reply=inbox
        )

        async def waiting(count: int) -> bool:
            return (await asyncio.to_thread(scrape, exporter.port))["antq_query_waiting"] == count

        await wait_for(lambda: waiting(1), what="the waiting request in antq_query_waiting")
        assert b"not yet 99" in (await answers.next_msg(timeout=20)).data
        await wait_for(lambda: waiting(0), what="antq_query_waiting back to 0")
    finally:
        exporter.close()


def test_query_metrics_read_what_the_service_counts() -> None:
    @dataclass
    class Counted:
        waiting: int = 2
        requests_by_code: dict[str, int] = field(default_factory=lambda: {"ok": 5, "bad_request": 1})
        dropped_reply_subject: int = 3

    text = generate_latest(query_registry(Counted(), process=False)).decode()
    assert 'antq_query_requests_total{code="ok"} 5.0' in text
    assert 'antq_query_requests_total{code="bad_request"} 1.0' in text
    assert "antq_query_waiting 2.0" in text
    assert "antq_query_dropped_reply_subject_total 3.0" in text

    @dataclass
    class Dropped:
        total: int = 4

    @dataclass
    class WithRecord:
        dropped: Dropped = field(default_factory=Dropped)

    assert (
        "antq_query_dropped_reply_subject_total 4.0" in generate_latest(query_registry(WithRecord())).decode()
    )


@pytest.mark.timeout(60)
async def test_the_sealer_exports_seals_made_the_last_sealed_seq_and_halts(stack: Stack) -> None:
    for n in range(5):
        await stack.js.publish("antq.events.04.01447.session", b"%d" % n)
    config = SealerConfig(
        nats_url=stack.servers.nats_url,
        database_url=stack.database_url,
        signer=signer_from_seed(generate_seed()),
        every_events=2,
    )
    async with Sealer(config) as sealer:
        exporter = Exporter(sealer_registry(sealer), 0, addr="127.0.0.1")
        try:
            before = await asyncio.to_thread(scrape, exporter.port)
            assert before['antq_sealer_seals_total{stream="ANTQ_EVENTS"}'] == 0
            await sealer.tick()
            after = await asyncio.to_thread(scrape, exporter.port)
            assert after['antq_sealer_seals_total{stream="ANTQ_EVENTS"}'] == 2  # 1..2, 3..4; 5 waits
            assert after['antq_sealer_last_sealed_seq{stream="ANTQ_EVENTS"}'] == 4
            assert after['antq_sealer_stream_last_seq{stream="ANTQ_EVENTS"}'] == 5  # 5 waits for its seal
            assert after['antq_sealer_halted{stream="ANTQ_EVENTS"}'] == 0
            assert after['antq_sealer_halts_total{stream="ANTQ_EVENTS"}'] == 0
            await stack.js.delete_stream(EVENTS)  # recreated: the chain no longer describes it
            await create_streams(stack.js, stack.limits)
            for n in range(3):
                await stack.js.publish("antq.events.04.01447.session", b"%d" % n)
            with pytest.raises(SealingHalted):
                await sealer.seal_once()
            with pytest.raises(SealingHalted):
                await sealer.seal_once()
            halted = await asyncio.to_thread(scrape, exporter.port)
            assert halted['antq_sealer_halted{stream="ANTQ_EVENTS"}'] == 1
            assert halted['antq_sealer_halts_total{stream="ANTQ_EVENTS"}'] == 1
        finally:
            exporter.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", [[], ["--insecure"]], ids=["secure", "insecure"])
@pytest.mark.parametrize(
    "registry",
    [
        "[[office]]\nid = 3\n",
        '[[office]]\nid = "A.B"\nname = "x"\njurisdiction = ["province:04"]\n',
        "[[office",
    ],
    ids=["no-id", "bad-id", "not-toml"],
)
def test_dev_up_refuses_a_bad_offices_file_in_one_line_before_any_server_starts(
    data_root: Path, mode: list[str], registry: str
) -> None:
    offices = write_text(data_root / "offices.toml", registry)
    data = data_root / "data"
    result = antq_cli("dev", "up", *mode, "--offices", str(offices), "--data-dir", str(data), env={})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) <= 2  # one line, wrapped at most once by the console
    assert not data.exists() or not list(data.iterdir())


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.timeout(240)
def test_antq_demo_runs_on_the_secure_stack(data_root: Path) -> None:
    """`make demo` / `antq demo`: identities generated, the set published as the office, read as the reader."""
    data = data_root / "demo"
    result = antq_cli("demo", env={"ANTQ_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "every figure satisfies the article" in result.stdout
    assert "WARNING" not in result.stderr
    assert {"office-bcd-tra-linh-cu.nk", "reader.nk", "auth.conf"} <= set(names_in(data / "credentials"))


def names_in(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir()]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("who", ["reader", "web"])
async def test_a_reader_asks_only_on_its_own_query_subject(secure: Secure, who: str) -> None:
    """Each identity may publish queries only on antq.query.stats.<its public key>: the query service counts
    its waiting requests by that subject, which the server checks (a reply subject it does not)."""
    nc = await secure.connect(who)
    own = query_subject(public_key_of(secure.seed_file(who).read_bytes()))
    other = query_subject(public_key_of(secure.seed_file("auditor").read_bytes()))
    receiver = await secure.connect("query")
    got = await receiver.subscribe(f"{QUERY_SUBJECT}.*")
    await settle(receiver)

    async def delivered() -> bool:
        await nc.publish(own, b"mine")
        try:
            return (await got.next_msg(timeout=0.2)).subject == own
        except nats.errors.TimeoutError:
            return False

    await wait_for(delivered, what=f"{who}'s query on its own subject")
    for forbidden in (other, QUERY_SUBJECT):
        await nc.publish(forbidden, b"not mine")
        await secure.refused(nc, forbidden)
