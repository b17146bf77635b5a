"""The query service over request/reply: ward, province and ward-list sums, read-your-writes, clear errors."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from events.localities import Localities
from events.subjects import QUERY_SUBJECT
from projections.metrics import BASE_METRICS, FOLD_VERSION
from projections.service import Projector
from services.client import OfficeClient
from services.query.app import QueryService
from tests import factories as f
from tests.conftest import Stack, wait_until_answering

pytestmark = pytest.mark.servers
ROOT = Path(__file__).resolve().parent.parent


async def ask(stack: Stack, body: Any) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    reply = await stack.nc.request(QUERY_SUBJECT, raw, timeout=30)
    result: dict[str, Any] = msgspec.json.decode(reply.data)
    return result


@pytest.mark.timeout(60)
async def test_known_ward_without_events_answers_zeros(stack: Stack, query: QueryService) -> None:
    reply = await ask(stack, {"ward": "01447", "year": 2018})
    assert reply["metrics"] == dict.fromkeys(BASE_METRICS, 0)
    assert (reply["ward"], reply["year"], reply["period"], reply["as_of_seq"], reply["stale"]) == (
        "01447",
        2018,
        "calendar",
        0,
        False,
    )


@pytest.mark.timeout(60)
async def test_ward_province_and_ward_list_sums_with_read_your_writes(
    stack: Stack, query: QueryService, office: OfficeClient, localities: Localities
) -> None:
    docs = [
        f.session(ward="01447", attendance=10),
        f.session(ward="01456", attendance=20, day="2018-12-20"),
        f.pledge(ward="01465", signatures=3),
    ]
    results = await office.submit(docs)
    last = max(r.seq or 0 for r in results)
    too_early = await ask(stack, {"ward": "01447", "year": 2018, "min_seq": last, "timeout_ms": 50})
    assert too_early["error"]["code"] == "timeout"
    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    await projector.start()
    try:
        ward = await ask(stack, {"ward": "01447", "year": 2018, "min_seq": last, "timeout_ms": 20_000})
        assert ward["as_of_seq"] >= last
        assert ward["fold_version"] == FOLD_VERSION  # the version the running fold built the figures with
        assert ward["metrics"]["session_attendance"] == 10, ward
        both = await ask(stack, {"wards": ["01447", "01456"], "year": 2018})
        assert both["metrics"]["session_attendance"] == 30
        assert both["wards"] == ["01447", "01456"]
        reporting = await ask(stack, {"wards": ["01447", "01456"], "year": 2018, "period": "reporting"})
        assert reporting["metrics"]["session_attendance"] == 10  # 20 December counts in reporting year 2019
        province = await ask(stack, {"province": "04", "year": 2018})
        assert province["metrics"]["session_attendance"] == 30
        assert province["metrics"]["pledge_signatures"] == 3
        assert province["metrics"]["sessions_held.commune"] == 2
        assert "by_ward" not in province  # only when asked
        # every ward of the province in one request, at the same sequence (the dashboard's province page)
        by_ward = await ask(stack, {"province": "04", "year": 2018, "by": "ward"})
        assert by_ward["metrics"] == province["metrics"]
        assert by_ward["as_of_seq"] == province["as_of_seq"]
        assert sorted(by_ward["by_ward"]) == list(localities.wards_of("04"))
        for code, metrics in by_ward["by_ward"].items():
            alone = (
                await ask(stack, {"ward": code, "year": 2018})
                if code in ("01447", "01456", "01465")
                else None
            )
            assert metrics == (alone["metrics"] if alone else dict.fromkeys(BASE_METRICS, 0)), code
        summed = {m: sum(w.get(m, 0) for w in by_ward["by_ward"].values()) for m in province["metrics"]}
        assert summed == province["metrics"]
        ranged = await ask(
            stack, {"wards": ["01447", "01456"], "from_year": 2018, "to_year": 2019, "by": "ward"}
        )
        assert ranged["by_ward"]["01456"]["session_attendance"] == 20
    finally:
        await projector.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        (b"{nope", "bad_request", None),
        ({"year": 2018}, "bad_request", "$"),
        ({"ward": "01447", "province": "04", "year": 2018}, "bad_request", "$"),
        ({"ward": "1447", "year": 2018}, "bad_request", "$.ward"),
        ({"ward": "01447", "year": 1900}, "bad_request", "$.year"),
        ({"ward": "01447", "year": 2018, "period": "fiscal"}, "bad_request", "$.period"),
        ({"ward": "99999", "year": 2018}, "unknown_locality", "$.ward"),
        ({"province": "99", "year": 2018}, "unknown_locality", "$.province"),
        ({"wards": ["01447", "00000"], "year": 2018}, "unknown_locality", "$.wards[1]"),
        ({"ward": "01447", "year": 2018, "extra": 1}, "bad_request", "$.extra"),
        ({"ward": "01447", "year": 2018, "a b": 1}, "bad_request", '$["a b"]'),
        ([1, 2], "bad_request", "$"),
        ("01447", "bad_request", "$"),
        ({"ward": "01447\n", "year": 2018}, "bad_request", "$.ward"),  # `$` in a pattern matches before \n
        ({"province": "04\n", "year": 2018}, "bad_request", "$.province"),
        ({"wards": ["01447", "01456\n"], "year": 2018}, "bad_request", "$.wards[1]"),
        ({"province": "04", "year": 2018, "by": "district"}, "bad_request", "$.by"),
        ({"scheme": "gso-pre2025", "district": "046", "year": 2018, "by": "ward"}, "bad_request", "$.by"),
    ],
)
async def test_query_errors(
    stack: Stack, query: QueryService, body: Any, code: str, path: str | None
) -> None:
    reply = await ask(stack, body)
    assert (reply["error"]["code"], reply["error"]["path"]) == (code, path)
    assert reply["error"]["message"]


@pytest.mark.timeout(60)
async def test_python_m_services_query_answers_and_stops_on_sigterm(stack: Stack) -> None:
    root = ROOT
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "ANTQ_NATS_URL": stack.servers.nats_url,
        "ANTQ_DATABASE_URL": stack.database_url,
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.query", cwd=root, env=env)
    try:
        await wait_until_answering(stack.nc, QUERY_SUBJECT)
        reply = await ask(stack, {"province": "04", "year": 2018})
        assert (reply["province"], reply["metrics"], reply["stale"]) == (
            "04",
            dict.fromkeys(BASE_METRICS, 0),
            False,
        )
        unknown = await ask(stack, {"ward": "99999", "year": 2018})
        assert unknown["error"]["code"] == "unknown_locality"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
    assert code == 0


@pytest.mark.timeout(60)
async def test_a_reply_carries_the_fold_version_of_the_copy_it_reads(
    stack: Stack, query: QueryService
) -> None:
    reply = await ask(stack, {"ward": "01447", "year": 2018})
    assert reply["fold_version"] == FOLD_VERSION  # nothing folded yet: the current fold's version
    conn = await asyncpg.connect(stack.database_url)
    try:  # a copy whose checkpoint says another fold built it
        await conn.execute(
            "INSERT INTO projection_checkpoint (name, copy, seq, fold_version) VALUES ('stats', 1, 0, $1)",
            FOLD_VERSION + 1,
        )
    finally:
        await conn.close()
    reply = await ask(stack, {"province": "04", "year": 2018})
    assert reply["fold_version"] == FOLD_VERSION + 1


@pytest.mark.timeout(60)
async def test_an_unusable_database_is_answered_with_unavailable_not_silence(
    stack: Stack, query: QueryService, caplog: pytest.LogCaptureFixture
) -> None:
    assert "metrics" in await ask(stack, {"ward": "01447", "year": 2018})  # the service reads fine, then
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute("DROP TABLE stats CASCADE")  # the read model is gone under the running service
    finally:
        await conn.close()
    for body in ({"ward": "01447", "year": 2018}, {"province": "04", "year": 2018, "min_seq": 0}):
        reply = await ask(stack, body)  # a reply within ask's timeout, not a NATS timeout
        assert set(reply) == {"error"}, reply
        assert set(reply["error"]) == {"code", "message", "path"}
        assert reply["error"]["code"] == "unavailable"
        assert reply["error"]["path"] is None
        message = reply["error"]["message"]
        assert isinstance(message, str) and "retry" in message
        assert "does not exist" not in message and "stats" not in message  # no database internals
    assert any(r.name == "antq.query" and r.exc_info for r in caplog.records)  # logged with its traceback
    bad = await ask(stack, {"ward": "99999", "year": 2018})  # and it still answers everything else
    assert bad["error"]["code"] == "unknown_locality"
