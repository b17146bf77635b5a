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

from events.localities import Localities
from events.subjects import QUERY_SUBJECT
from infra.streams import EVENTS, REJECTED, SEALS, UPDATES
from projections import store
from projections.service import Projector
from services.gateway.app import Gateway
from services.query.app import QueryService
from tests import factories as f
from tests.conftest import FixedClock, Stack, gateway_config, wait_until_answering
from tests.servers import wait_for
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
    assert len(results) >= 10
