"""Issue 8's table of hostile or forbidden actions, run one after another against one running open stack
(gateway, query service, projector: real nats-server and PostgreSQL).

Each row: the action, the answer expected, and how many messages each stream may gain (nothing stored that should
not be). After every row the projection must be current again (checkpoint at the log's last sequence, not
halted); after the last row a new gateway copy must start on the whole log (index catch-up) and answer.

The roles' rows (what each identity of the secure stack may not do) run against a server with the generated
auth in ``tests/test_secure_stack.py``; the table printed by ``ANTQ_HOSTILE_TABLE=FILE`` lists these rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from events.localities import Localities
from events.subjects import QUERY_SUBJECT
from infra.streams import EVENTS, REJECTED, SEALS, UPDATES
from projections import store
from projections.service import Projector
from services.gateway.app import Gateway
from services.query.app import QueryService
from tests import factories as f
from tests.conftest import FixedClock, Stack, gateway_config, wait_until_answering
from tests.servers import create_streams, keeping_update_history, wait_for
from tests.test_foreign_records import foreign_records

pytestmark = [pytest.mark.servers]

STREAMS = (EVENTS, REJECTED, UPDATES, SEALS)
INTAKE = "antq.intake.ca-cao-bang"


@dataclass
class Ctx:
    stack: Stack
    nc: Client
    gateway: Gateway
    query: QueryService
    projector: Projector
    localities: Localities
    notes: list[str] = field(default_factory=list)


Action = Callable[[Ctx], Awaitable[str]]


@dataclass(frozen=True)
class Row:
    group: str
    action_text: str
    run: Action
    expect: str
    stored: dict[str, int] = field(default_factory=dict)
    """Messages each stream may gain (default: none in any)."""


async def counts(js: Any) -> dict[str, int]:
    return {s: int((await js.stream_info(s)).state.messages) for s in STREAMS}


async def answer(nc: Client, subject: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
    reply = await nc.request(subject, body, timeout=10, headers=headers)
    return json.loads(reply.data)


def code_of(reply: Any) -> str:
    if isinstance(reply, list):
        return ",".join(code_of(r) for r in reply)
    if reply.get("ok") is True:
        return "accepted" + (" (duplicate)" if reply.get("duplicate") else "")
    return str(reply["error"]["code"])


def intake(body: bytes, headers: dict[str, str] | None = None, office: str = "ca-cao-bang") -> Action:
    async def run(ctx: Ctx) -> str:
        return code_of(await answer(ctx.nc, f"antq.intake.{office}", body, headers))

    return run


def query(body: bytes, headers: dict[str, str] | None = None) -> Action:
    async def run(ctx: Ctx) -> str:
        return code_of(await answer(ctx.nc, QUERY_SUBJECT, body, headers))

    return run


def store_raw(subject: str, data: bytes) -> Action:
    async def run(ctx: Ctx) -> str:
        await ctx.stack.js.publish(subject, data)
        return "stored, set aside by every reader"

    return run


def event(doc: dict[str, Any]) -> bytes:
    return msgspec.json.encode(doc)


def misdirected(service: str, reply: str) -> Action:
    """A request naming ``reply`` as its reply subject: the service must drop it, publishing nothing there."""

    async def run(ctx: Ctx) -> str:
        seen: list[bytes] = []

        async def listen(msg: Msg) -> None:
            # a wildcard listener also hears every other inbox of the account (the projector's pull
            # requests end in empty 408 status messages): only a message on the named subject counts
            if msg.subject == reply:
                seen.append(msg.data)

        sub = await ctx.nc.subscribe(reply, cb=listen)

        def dropped_count() -> int:
            if service == "gateway":
                return ctx.gateway.dropped_reply_subject
            return ctx.query.dropped_reply_subject

        before = dropped_count()
        try:
            body = event(f.session()) if service == "gateway" else b'{"ward": "01447", "year": 2018}'
            await ctx.nc.publish(INTAKE if service == "gateway" else QUERY_SUBJECT, body, reply=reply)

            async def counted() -> bool:
                return dropped_count() > before

            await wait_for(counted, timeout=10, what=f"the {service} to count the dropped request")
            await ctx.nc.flush()
        finally:
            await sub.unsubscribe()
        dropped = dropped_count() - before
        return "dropped unanswered" if not seen and dropped else f"published to {reply}: {seen!r}"

    return run


def with_fields(doc: dict[str, Any], **fields: Any) -> bytes:
    return event({**doc, **fields})


def forged_update(ctx_key: str) -> Action:
    async def run(ctx: Ctx) -> str:
        from infra.update_signing import verify_update

        subject = "antq.updates.stats.04.01447.2018"
        payload = b'{"ward":"01447","year":2018,"metrics":{"sessions_held":999}}'
        await ctx.stack.js.publish(subject, payload, headers={"Nats-Msg-Id": ctx_key})
        key = ctx.projector.update_key
        assert key is not None
        ok = verify_update(payload, {"Nats-Msg-Id": ctx_key}, key.public_key, subject=subject)
        return "stored, fails verify_update" if not ok else "verified!"

    return run


def rows() -> list[Row]:
    table: list[Row] = []
    for subject, data, why in foreign_records():
        shown = data[:40].decode("utf-8", "replace") + ("…" if len(data) > 40 else "")
        table.append(
            Row(
                "foreign record (open stack)",
                f"publish straight to `{subject}`: `{shown}` ({why})",
                store_raw(subject, data),
                "stored, set aside by every reader",
                {EVENTS: 1},
            )
        )
    table += [
        Row(
            "intake",
            "body that is not JSON",
            intake(b"{nope"),
            "malformed",
            {REJECTED: 1},
        ),
        Row(
            "intake",
            "an office not in the registry",
            intake(event(f.session()), office="ca-nowhere"),
            "unknown_office",
            {REJECTED: 1},
        ),
        Row(
            "intake",
            "an event for a ward outside the office's jurisdiction",
            intake(event(f.session(ward="20551"))),
            "out_of_jurisdiction",
            {REJECTED: 1},
        ),
        Row(
            "intake",
            "a retraction of an event that is not in the log",
            intake(event(f.retraction(f.session()))),
            "unknown_target",
            {REJECTED: 1},
        ),
    ]
    for service in ("gateway", "query"):
        for reply in (
            "antq.events.04.01447.session",
            "antq.rejected.ca-cao-bang",
            "antq.updates.stats.04.01447.2018",
            "antq.seals",
            "antq.intake.ca-tra-linh",
            "foo",
            "_INBOX.*",
            "_INBOX.>",
        ):
            table.append(
                Row(
                    f"reply subject ({service})",
                    f"request to the {service} naming `{reply}` as its reply subject",
                    misdirected(service, reply),
                    "dropped unanswered",
                )
            )
    json_header = {"content-type": "application/json"}
    deep = b"[" * 1000 + b"]" * 1000
    tip = f.tip()
    table += [
        Row(
            "raw bytes",
            "gateway: a bad body sent with content-type: application/json",
            intake(b"{x", json_header),
            "malformed",
            {REJECTED: 1},
        ),
        Row("raw bytes", "gateway: a body nested 1,000 deep", intake(deep), "too_large", {REJECTED: 1}),
        Row(
            "raw bytes",
            "query: a bad body sent with content-type: application/json",
            query(b"{x", json_header),
            "bad_request",
        ),
        Row("raw bytes", "query: a body nested 1,000 deep", query(deep), "bad_request"),
        Row(
            "input",
            "duplicate key `attendance` in one event",
            intake(event(f.session())[:-1] + b',"attendance":5}'),
            "invalid",
            {REJECTED: 1},
        ),
        Row(
            "input",
            "unknown field `hamlett` (a typo)",
            intake(with_fields(f.session(), hamlett="Lũng Tung")),
            "invalid",
            {REJECTED: 1},
        ),
        Row(
            "input",
            "unknown field inside `items[0]`",
            intake(event(f.weapons(items=[{"kind": "air_gun", "quantity": 1, "colour": "red"}]))),
            "invalid",
            {REJECTED: 1},
        ),
        Row(
            "input",
            "a control character (U+0007) in `note`",
            intake(with_fields(f.session(), note="a\u0007b")),
            "invalid",
            {REJECTED: 1},
        ),
        Row(
            "input",
            "a bidi override (U+202E) in `hamlet`",
            intake(with_fields(f.session(), hamlet="x\u202ey")),
            "invalid",
            {REJECTED: 1},
        ),
        Row(
            "input",
            "a zero-width space in `reason`",
            intake(event(f.retraction(f.session(), reason="a\u200bb"))),
            "invalid",
            {REJECTED: 1},
        ),
        Row(
            "input",
            "a `note` that is blank once trimmed",
            intake(with_fields(f.session(), note="   ")),
            "invalid",
            {REJECTED: 1},
        ),
        Row(
            "input",
            "the nil UUID as `event_id`",
            intake(with_fields(f.session(), event_id="00000000-0000-0000-0000-000000000000")),
            "invalid",
            {REJECTED: 1},
        ),
        Row(
            "input",
            "the max UUID as `tip_id`",
            intake(with_fields(tip, tip_id="ffffffff-ffff-ffff-ffff-ffffffffffff")),
            "invalid",
            {REJECTED: 1},
        ),
        Row(
            "query",
            "`min_seq` 10**30",
            query(b'{"ward": "01447", "year": 2018, "min_seq": 1000000000000000000000000000000}'),
            "bad_request",
        ),
        Row(
            "query",
            "`min_seq` 2**63",
            query(b'{"ward": "01447", "year": 2018, "min_seq": 9223372036854775808}'),
            "bad_request",
        ),
        Row(
            "query",
            "duplicate key `year`",
            query(b'{"ward": "01447", "year": 2018, "year": 2019}'),
            "bad_request",
        ),
        Row(
            "update feed (open stack)",
            "publish a forged update for 01447/2018 on `antq.updates.stats.04.01447.2018` with a guessed id",
            forged_update("01447:2018:1:1"),
            "stored, fails verify_update",
            {UPDATES: 1},
        ),
    ]
    return table


@pytest.fixture
async def running(
    stack: Stack, gateway: Gateway, query: QueryService, localities: Localities
) -> AsyncIterator[Ctx]:
    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    await projector.start()
    try:
        yield Ctx(stack, stack.nc, gateway, query, projector, localities)
    finally:
        await projector.stop()


async def projection_current(ctx: Ctx) -> None:
    last = int((await ctx.stack.js.stream_info(EVENTS)).state.last_seq)
    conn = await asyncpg.connect(ctx.stack.database_url)
    try:

        async def current() -> bool:
            checkpoint = await store.read_checkpoint(conn, await store.active_copy(conn))
            assert checkpoint.halted is None, checkpoint.halted
            return int(checkpoint.seq) >= last

        await wait_for(current, timeout=20, what=f"the projection to reach seq {last}")
    finally:
        await conn.close()


def write_table(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.timeout(300)
async def test_hostile_and_forbidden_actions(running: Ctx) -> None:
    ctx = running
    js = ctx.stack.js
    # ANTQ_UPDATES keeps many updates a subject here, so that a forged one stored shows as one message more
    await create_streams(js, keeping_update_history(ctx.stack.limits))
    # a valid event first, so that the projection has something to be current with
    assert code_of(await answer(ctx.nc, INTAKE, event(f.session()))) == "accepted"
    await projection_current(ctx)
    results: list[tuple[Row, str, dict[str, int]]] = []
    failures: list[str] = []
    for row in rows():
        before = await counts(js)
        try:
            got = await row.run(ctx)
        except (nats.errors.Error, TimeoutError) as exc:
            got = f"no answer ({type(exc).__name__})"
        await projection_current(ctx)
        after = await counts(js)
        gained = {s: after[s] - before[s] for s in STREAMS if after[s] != before[s]}
        results.append((row, got, gained))
        if got != row.expect or gained != row.stored:
            failures.append(
                f"{row.action_text}: answered {got!r}, stored {gained} (expected {row.expect!r}, {row.stored})"
            )

    # a new gateway copy starts on the whole log and answers
    gateway = Gateway(
        gateway_config(ctx.stack, ctx.gateway._config.offices_path, FixedClock(), ctx.localities)
    )
    async with gateway.app:
        await wait_until_answering(ctx.nc, "antq.intake._probe")
        assert code_of(await answer(ctx.nc, INTAKE, event(f.session()))) == "accepted"
    await projection_current(ctx)

    out = os.environ.get("ANTQ_HOSTILE_TABLE")
    if out:
        lines = ["| # | group | action | expected answer | stored | ok |", "|---|---|---|---|---|---|"]
        for n, (row, got, gained) in enumerate(results, 1):
            ok = "✓" if got == row.expect and gained == row.stored else f"✗ got {got}"
            stored = ", ".join(f"{s} +{k}" for s, k in gained.items()) or "nothing"
            lines.append(f"| {n} | {row.group} | {row.action_text} | {row.expect} | {stored} | {ok} |")
        write_table(Path(out), lines)
    assert not failures, "\n".join(failures)
    # the query service counted its answers by code (antq_query_requests_total{code})
    assert ctx.query.requests_by_code.get("bad_request", 0) >= 5
    assert len(results) >= 10
