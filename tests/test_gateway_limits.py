"""The gateway's edge cases on real servers: upper bounds of every integer field, and the JetStream ack timeout
taken from the settings (``ANTQ_ACK_TIMEOUT_S``).

A value one above its bound is refused as ``invalid`` with the field's path, nothing reaches ``ANTQ_EVENTS``
(its last sequence does not move) and the refusal is kept in ``ANTQ_REJECTED``; a value exactly at the bound
passes validation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.msg import Msg

from events.codec import decode_recorded
from events.intake import RejectedRecord
from events.localities import Localities
from infra.settings import Settings
from infra.stream_reader import read_stream
from infra.streams import EVENTS, REJECTED
from services.client import OfficeClient
from services.gateway.app import Gateway, GatewayConfig
from tests import factories as f
from tests.conftest import FixedClock, Stack, gateway_config, wait_until_answering

pytestmark = pytest.mark.servers

OFFICE = "ca-cao-bang"
FIGURE_MAX = 10_000_000  # attendance, signatures, quantity (events/schema.py: Count, Positive)
VERSION_MAX = 2**63 - 1  # a stream sequence as PostgreSQL stores it (bigint)


async def last_seq(stack: Stack, stream: str = EVENTS) -> int:
    return int((await stack.js.stream_info(stream)).state.last_seq)


async def rejected_records(stack: Stack) -> list[RejectedRecord]:
    out: list[RejectedRecord] = []
    async for batch in read_stream(stack.js, REJECTED):
        out.extend(msgspec.json.decode(m.data, type=RejectedRecord) for m in batch)
    return [rec for rec in out if rec.office != "_probe"]  # the fixture's readiness probe


def with_attendance(n: int) -> dict[str, Any]:
    return f.session(attendance=n)


def with_signatures(n: int) -> dict[str, Any]:
    return f.pledge(signatures=n)


def with_quantity(n: int) -> dict[str, Any]:
    return f.weapons(items=[{"kind": "air_gun", "quantity": 1}, {"kind": "ammunition", "quantity": n}])


FIGURES: list[tuple[str, Callable[[int], dict[str, Any]], str]] = [
    ("attendance", with_attendance, "$.attendance"),
    ("signatures", with_signatures, "$.signatures"),
    ("quantity", with_quantity, "$.items[1].quantity"),
]


async def received_tip(office: OfficeClient) -> tuple[dict[str, Any], int]:
    tip = f.tip()
    received = await office.submit_one(tip)
    assert received.ok and received.version is not None
    return tip, received.version


# --- too large: invalid, nothing stored, refusal kept -------------------------------------------------------


async def assert_refused_and_kept(stack: Stack, office: OfficeClient, doc: dict[str, Any], path: str) -> None:
    before_events = await last_seq(stack)
    before_rejected = len(await rejected_records(stack))
    body = msgspec.json.encode(doc)
    result = await office.send_raw(body)
    assert not isinstance(result, list)
    assert not result.ok and result.error is not None, result
    assert (result.error.code, result.error.path) == ("invalid", path), result.error
    assert result.event_id == doc["event_id"]
    assert await last_seq(stack) == before_events  # nothing reached the event log
    kept = await rejected_records(stack)
    assert len(kept) == before_rejected + 1
    rec = kept[-1]
    assert rec.office == OFFICE and rec.raw == body and rec.sha256 == hashlib.sha256(body).hexdigest()
    assert (rec.error.code, rec.error.path) == ("invalid", path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "build", "path"), FIGURES, ids=[name for name, _, _ in FIGURES])
async def test_figure_above_its_bound_is_invalid(
    stack: Stack, office: OfficeClient, name: str, build: Callable[[int], dict[str, Any]], path: str
) -> None:
    await assert_refused_and_kept(stack, office, build(FIGURE_MAX + 1), path)
    await assert_refused_and_kept(stack, office, build(10**30), path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ward", ["01447\n", "\n01447", "01447 ", "０1447"])
async def test_a_ward_code_with_anything_around_it_is_invalid(
    stack: Stack, office: OfficeClient, ward: str
) -> None:
    """Five digits and nothing else: ``$`` would let a trailing newline through to the locality lookup."""
    await assert_refused_and_kept(stack, office, f.session(ward=ward), "$.locality.ward")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("version", [VERSION_MAX + 1, 2**64 - 1, 2**64, 10**30])
async def test_expected_version_above_bigint_is_invalid(
    stack: Stack, office: OfficeClient, version: int
) -> None:
    tip, _ = await received_tip(office)
    await assert_refused_and_kept(
        stack, office, f.assessment(tip, expected_version=version), "$.expected_version"
    )


@pytest.mark.timeout(60)
async def test_batch_refuses_only_the_event_out_of_bounds(stack: Stack, office: OfficeClient) -> None:
    before = await last_seq(stack)
    docs = [f.session(), with_attendance(FIGURE_MAX + 1), f.pledge()]
    results = await office.submit(docs)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error is not None
    assert (results[1].error.code, results[1].error.path) == ("invalid", "$.attendance")
    assert await last_seq(stack) == before + 2
    [rec] = await rejected_records(stack)
    assert rec.raw == msgspec.json.encode(docs[1]) and rec.error.path == "$.attendance"


# --- exactly at the bound: accepted --------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "build", "path"), FIGURES, ids=[name for name, _, _ in FIGURES])
async def test_figure_at_its_bound_is_accepted(
    stack: Stack, office: OfficeClient, name: str, build: Callable[[int], dict[str, Any]], path: str
) -> None:
    doc = build(FIGURE_MAX)
    result = await office.submit_one(doc)
    assert result.ok and result.seq == await last_seq(stack), result
    stored = decode_recorded((await stack.js.get_msg(EVENTS, result.seq)).data or b"").event
    assert (
        msgspec.json.decode(msgspec.json.encode(stored)) == doc
    )  # stored as sent, and decodes again under the bounds


@pytest.mark.timeout(60)
async def test_largest_surrender_is_accepted(stack: Stack, office: OfficeClient) -> None:
    """50 items of 10 million each: the most one event can add to a figure."""
    doc = f.weapons(items=[{"kind": "ammunition", "quantity": FIGURE_MAX}] * 50)
    result = await office.submit_one(doc)
    assert result.ok, result


@pytest.mark.timeout(60)
async def test_expected_version_at_its_bound_passes_validation(stack: Stack, office: OfficeClient) -> None:
    """At the bound the event is valid; the stream then answers it as a stale version (``conflict``)."""
    tip, version = await received_tip(office)
    before = await last_seq(stack)
    at_bound = await office.submit_one(f.assessment(tip, expected_version=VERSION_MAX))
    assert not at_bound.ok and at_bound.error is not None
    assert (at_bound.error.code, at_bound.error.path) == ("conflict", "$.expected_version")
    assert await last_seq(stack) == before
    right = await office.submit_one(f.assessment(tip, expected_version=version))
    assert right.ok and right.seq == before + 1


# --- the ack timeout comes from the settings -----------------------------------------------------------------


def test_settings_parse_ack_timeout() -> None:
    assert Settings.from_env({}).ack_timeout_s == 10.0
    assert Settings.from_env({"ANTQ_ACK_TIMEOUT_S": "2.5"}).ack_timeout_s == 2.5
    assert Settings.from_env({"ANTQ_ACK_TIMEOUT_S": "30"}).ack_timeout_s == 30.0
    with pytest.raises(ValueError, match="could not convert"):
        Settings.from_env({"ANTQ_ACK_TIMEOUT_S": "ten"})


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_gateway_refuses_a_senseless_ack_timeout(bad: float, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ack_timeout_s"):
        GatewayConfig(
            nats_url="nats://x", database_url="postgresql://x", offices_path=tmp_path, ack_timeout_s=bad
        )


@contextlib.asynccontextmanager
async def gateway_with(config: GatewayConfig, stack: Stack) -> AsyncIterator[Gateway]:
    gw = Gateway(config)
    async with gw.app:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        yield gw


@pytest.mark.timeout(60)
async def test_ack_timeout_setting_reaches_the_publisher(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities
) -> None:
    """With the event log gone and a silent listener on its subjects, no ack ever comes: the gateway answers
    ``unavailable`` once the configured ack timeout (not the 10 s default) has passed."""
    settings = Settings.from_env({"ANTQ_ACK_TIMEOUT_S": "0.5"})
    config = gateway_config(stack, offices_file, clock, localities, ack_timeout_s=settings.ack_timeout_s)
    heard: list[Msg] = []

    async def silent(msg: Msg) -> None:
        heard.append(msg)  # a core subscriber that never replies: no "no responders", no ack

    async with gateway_with(config, stack):
        await stack.js.delete_stream(EVENTS)
        sub = await stack.nc.subscribe("antq.events.>", cb=silent)
        await stack.nc.flush()
        try:
            office = OfficeClient(stack.nc, OFFICE, timeout=8.0)  # well under the 10 s default
            started = time.monotonic()
            result = await office.submit_one(f.session())
            elapsed = time.monotonic() - started
        finally:
            await sub.unsubscribe()
    assert not result.ok and result.error is not None and result.error.code == "unavailable", result
    assert "in time" in result.error.message
    assert heard, "the publish reached the silent listener"
    assert elapsed >= 0.5


def test_default_gateway_config_keeps_ten_seconds(tmp_path: Path) -> None:
    config = GatewayConfig(nats_url="nats://x", database_url="postgresql://x", offices_path=tmp_path)
    assert config.ack_timeout_s == 10.0
    assert dataclasses.replace(config, ack_timeout_s=2.0).ack_timeout_s == 2.0
