"""`antq audit seals --expect`: a seal printed on an earlier report must still be in both stores, with the
chain going on from it; without a pinned signer key the report says so. Tampering only on a copy stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import pytest
from nats.js.errors import NotFoundError
from typer.testing import CliRunner

from infra.streams import EVENTS, SEALS, ensure_streams
from services.cli.audit import audit
from services.client import OfficeClient
from services.sealer.chain import Seal, make_seal
from services.sealer.findings import Expected, Report
from services.sealer.service import Sealer
from services.sealer.verify import verify_seals
from tests.conftest import Stack
from tests.test_seals import COPY, SIGNER, append_seal, config, make_copy, publish, stored

pytestmark = pytest.mark.servers

NOT_PINNED = "warning: no signer key is pinned"


@pytest.fixture
async def copy_stack(stack: Stack) -> AsyncIterator[Stack]:
    """The stack, with no copy stream before or after (it is not one of the stack's streams)."""
    with contextlib.suppress(NotFoundError):
        await stack.js.delete_stream(COPY)
    yield stack
    with contextlib.suppress(NotFoundError):
        await stack.js.delete_stream(COPY)


def seals_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``antq audit seals --stream AUDIT_COPY …`` in this process: (exit status, stdout, stderr)."""
    result = CliRunner().invoke(audit, ["seals", "--stream", COPY, *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def stack_env(stack: Stack) -> dict[str, str]:
    return {
        "ANTQ_NATS_URL": stack.servers.nats_url,
        "ANTQ_DATABASE_URL": stack.database_url,
        "ANTQ_SEAL_PUBLIC_KEYS": "",
    }


async def seal_copy(stack: Stack, times: int) -> list[Seal]:
    async with Sealer(config(stack, stream=COPY)) as sealer:
        made = [await sealer.seal_once() for _ in range(times)]
    assert all(made)
    return [s for s in made if s is not None]


async def verify(stack: Stack, *expected: Expected) -> Report:
    conn = await asyncpg.connect(stack.database_url)
    try:
        return await verify_seals(stack.js, conn, stream=COPY, seals_stream=SEALS, expected=expected)
    finally:
        await conn.close()


def findings(report: Report) -> set[tuple[str, str | None, int | None]]:
    return {(f.kind, f.store, f.seal) for f in report.findings}


@pytest.mark.timeout(90)
async def test_a_log_wiped_and_sealed_again_fails_against_the_printed_seal(
    copy_stack: Stack, office: OfficeClient, tmp_path: Path
) -> None:
    stack = copy_stack
    await publish(office, 12)
    events = await stored(stack, EVENTS)
    await make_copy(stack, events)
    original = await seal_copy(stack, 2)
    env = stack_env(stack)

    code, out, err = await asyncio.to_thread(seals_cli, env, "--export", "--format", "json")
    assert code == 0, err
    printed = tmp_path / "printed-report.json"
    printed.write_text(out, encoding="utf-8")
    export_only = tmp_path / "export-only.json"
    export_only.write_bytes(msgspec.json.encode(msgspec.json.decode(out)["export"]))
    tip = f"2:{original[1].digest}"
    for expect in (str(printed), str(export_only), tip, f"1:{original[0].digest.upper()}"):
        code, out, err = await asyncio.to_thread(seals_cli, env, "--expect", expect)
        assert code == 0, (expect, out, err)
        assert "intact" in out

    # both stores emptied, the stream recreated with one event altered, the sealer restarted: a new chain
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute("ALTER TABLE seals DISABLE TRIGGER seals_append_only")
        await conn.execute("DELETE FROM seals WHERE stream = $1", COPY)
        await conn.execute("ALTER TABLE seals ENABLE TRIGGER seals_append_only")
    finally:
        await conn.close()
    await stack.js.delete_stream(SEALS)
    await ensure_streams(stack.js, stack.limits)
    await stack.js.delete_stream(COPY)
    altered = events[2].data.replace(b'"attendance":40', b'"attendance":400')
    assert altered != events[2].data
    await make_copy(stack, events, alter={3: altered})
    again = await seal_copy(stack, 2)
    assert [s.number for s in again] == [1, 2] and again[1].digest != original[1].digest

    code, out, _ = await asyncio.to_thread(seals_cli, env)
    assert code == 0 and NOT_PINNED in out  # the new chain is sound in itself: only the printed seal tells
    code, _, _ = await asyncio.to_thread(seals_cli, env, "--trusted-key", SIGNER.public_key)
    assert code == 0  # the real sealer's key signed the new chain too

    code, out, err = await asyncio.to_thread(seals_cli, env, "--expect", str(printed), "--format", "json")
    assert code == 1, err
    body = msgspec.json.decode(out)
    differs = [f for f in body["report"]["findings"] if f["kind"] == "expected_seal_differs"]
    assert sorted((f["store"], f["seal"]) for f in differs) == [("nats", 2), ("postgres", 2)]
    assert all("stream created" in f["detail"] for f in differs)
    code, out, _ = await asyncio.to_thread(seals_cli, env, "--expect", tip)
    assert code == 1 and "expected_seal_differs" in out


@pytest.mark.timeout(60)
async def test_the_printed_seal_must_be_in_both_stores_and_lead_to_the_latest(
    copy_stack: Stack, office: OfficeClient
) -> None:
    stack = copy_stack
    await publish(office, 25)
    await make_copy(stack, await stored(stack, EVENTS))
    seals = await seal_copy(stack, 3)
    first, tip = seals[0], seals[-1]
    assert (await verify(stack, Expected(number=1, digest=first.digest))).ok
    assert findings(await verify(stack, Expected(number=9, digest=first.digest))) == {
        ("expected_seal_missing", "nats", 9),
        ("expected_seal_missing", "postgres", 9),
    }
    moved = Expected(number=1, digest=first.digest, stream_created=tip.sealed_at)
    assert findings(await verify(stack, moved)) == {
        ("expected_seal_differs", "nats", 1),
        ("expected_seal_differs", "postgres", 1),
    }

    # a sound seal #4 by the sealer's own key, on a chain of its own: #1 no longer leads to the latest seal
    stray = make_seal(
        number=4,
        stream=COPY,
        first_seq=tip.last_seq + 1,
        last_seq=tip.last_seq + 1,
        count=0,
        stream_created=tip.stream_created,
        prev_digest="11" * 32,
        range_digest="00" * 32,
        content_digest="00" * 32,
        sealed_at=tip.sealed_at,
        signer=SIGNER,
    )
    await append_seal(stack, stray)
    report = await verify(stack, Expected(number=1, digest=first.digest))
    broken = {(f.store, f.seal) for f in report.findings if f.kind == "expected_chain_broken"}
    assert broken == {("nats", 4), ("postgres", 4)}


@pytest.mark.timeout(60)
async def test_the_report_says_when_no_signer_key_is_pinned(copy_stack: Stack, office: OfficeClient) -> None:
    stack = copy_stack
    await publish(office, 12)
    await make_copy(stack, await stored(stack, EVENTS))
    await seal_copy(stack, 2)
    env = stack_env(stack)
    code, out, err = await asyncio.to_thread(seals_cli, env)
    assert code == 0, err
    warning = next(line for line in out.splitlines() if NOT_PINNED in line)
    assert SIGNER.public_key in warning and "--trusted-key" in warning
    code, out, err = await asyncio.to_thread(seals_cli, env, "--format", "json")
    assert code == 0
    body = msgspec.json.decode(out)
    assert body["ok"] is True
    assert [w["kind"] for w in body["report"]["warnings"]] == ["signer_not_pinned"]
    assert NOT_PINNED in err
    for pinned in (["--trusted-key", SIGNER.public_key], []):
        pinned_env = env if pinned else {**env, "ANTQ_SEAL_PUBLIC_KEYS": SIGNER.public_key}
        code, out, err = await asyncio.to_thread(seals_cli, pinned_env, *pinned)
        assert code == 0 and "warning" not in out + err and "intact" in out


@pytest.mark.timeout(30)
def test_an_expectation_that_is_not_a_seal_export_exits_2_with_one_line(tmp_path: Path) -> None:
    other = tmp_path / "other-stream.json"
    other.write_text('{"stream": "ANTQ_EVENTS", "seal": 3, "digest": "' + "ab" * 32 + '"}', encoding="utf-8")
    no_seal = tmp_path / "no-seal.json"
    no_seal.write_text('{"ok": true, "export": {"stream": "AUDIT_COPY", "seal": null}}', encoding="utf-8")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("intact: every sealed range matches its seal", encoding="utf-8")
    cases = {
        str(tmp_path / "absent.json"): "neither N:DIGEST",
        "2:abc": "neither N:DIGEST",
        str(garbage): "not what `antq audit seals --export --format json` prints",
        str(no_seal): "names no seal",
        str(other): "give --stream ANTQ_EVENTS",
    }
    for value, message in cases.items():
        code, out, err = seals_cli({}, "--expect", value)
        assert (code, out) == (2, ""), value
        assert message in err and len(err.strip().splitlines()) == 1, err
