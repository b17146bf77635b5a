"""Pre-2025 localities wired through the system, on real servers: the gateway resolves them on ``occurred_on`` and
refuses what does not resolve; the read model counts them under the resolved 2025 ward (approximate when a split
commune went to its default ward) and under the units as recorded; the query, replay, verify and a rebuild agree;
retraction and correction take away exactly what was added."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from nats.js.errors import NotFoundError

from events.localities import Localities
from events.subjects import QUERY_SUBJECT, updates_subject
from infra.streams import EVENTS, UPDATES
from projections import store
from projections.metrics import FOLD_VERSION
from projections.places import unit_key
from projections.service import Projector
from services.audit.replay import ReplayScope, replay
from services.audit.verify import verify
from services.client import OfficeClient
from services.gateway.app import Gateway
from tests.conftest import OFFICES_TOML, FixedClock, Stack, gateway_config, wait_until_answering
from tests.servers import wait_for
from tests.test_auth import antq
from tests.test_cli_commands import WIDE, figures

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]

OFFICES = (
    OFFICES_TOML
    + '\n[[office]]\nid = "ca-quang-ninh"\nname = "Công an tỉnh Quảng Ninh"\njurisdiction = ["province:22"]\n'
)
TRA_LINH = {"scheme": "gso-pre2025", "commune": "01471", "district": "046", "province": "04"}  # Cao Chương
HAI_LANG = {"scheme": "gso-pre2025", "commune": "06886"}  # split over 06886 (default), 06799, 06970
GIA_BINH = {
    "scheme": "gso-pre2025",
    "commune": "09457",
    "province": "27",
}  # old Bắc Ninh 27 → new Bắc Ninh 24


def session(
    locality: dict[str, Any], day: str = "2018-05-10", attendance: int = 40, **more: Any
) -> dict[str, Any]:
    return {
        "type": "session.held",
        "event_id": str(uuid.uuid4()),
        "occurred_on": day,
        "locality": locality,
        "level": "commune",
        "topics": ["law"],
        "attendance": attendance,
        **more,
    }


@pytest.fixture
async def gateway(
    stack: Stack, clock: FixedClock, localities: Localities, tmp_path: Path
) -> AsyncIterator[Gateway]:
    path = tmp_path / "offices.toml"
    path.write_text(OFFICES, encoding="utf-8")
    gw = Gateway(gateway_config(stack, path, clock, localities))
    async with gw.app:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        yield gw


@pytest.fixture
async def projector(stack: Stack, localities: Localities) -> AsyncIterator[Projector]:
    p = Projector(nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities)
    await p.start()
    yield p
    await p.stop()


async def submit(stack: Stack, office: str, docs: list[dict[str, Any]]) -> list[Any]:
    return list(await OfficeClient(stack.nc, office, timeout=20).submit(docs))


async def accepted(stack: Stack, office: str, docs: list[dict[str, Any]]) -> tuple[list[Any], int]:
    results = await submit(stack, office, docs)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return results, max(r.seq or 0 for r in results)


async def ask(stack: Stack, request: dict[str, Any]) -> dict[str, Any]:
    msg = await stack.nc.request(QUERY_SUBJECT, msgspec.json.encode(request), timeout=20)
    reply: dict[str, Any] = msgspec.json.decode(msg.data)
    return reply


async def folded(stack: Stack, seq: int) -> None:
    conn = await asyncpg.connect(stack.database_url)
    try:

        async def done() -> bool:
            snap = await store.read_stats(conn, wards=["01447"], year=2018, period="calendar")
            return snap.as_of_seq >= seq

        await wait_for(done, what=f"the projection to fold seq {seq}")
    finally:
        await conn.close()


async def test_a_pre2025_event_is_stored_as_recorded_on_its_resolved_wards_subject(
    stack: Stack, gateway: Gateway
) -> None:
    doc = session(TRA_LINH)
    (result,), seq = await accepted(stack, "ca-cao-bang", [doc])
    assert result.ward == "01447" and result.approximate is None
    msg = await stack.js.get_msg(EVENTS, seq)
    assert msg.subject == "antq.events.04.01447.session"
    assert msgspec.json.decode(msg.data or b"")["event"]["locality"] == TRA_LINH  # exactly as recorded
    (split,), _ = await accepted(stack, "ca-quang-ninh", [session(HAI_LANG)])
    assert split.ward == "06886" and split.approximate is True
    (chosen,), _ = await accepted(stack, "ca-quang-ninh", [session({**HAI_LANG, "ward": "06970"})])
    assert chosen.ward == "06970" and chosen.approximate is None


@pytest.mark.parametrize(
    ("locality", "day", "code", "path"),
    [
        (
            {"scheme": "gso-pre2025", "commune": "99999"},
            "2018-05-10",
            "unknown_locality",
            "$.locality.commune",
        ),
        (
            {"scheme": "gso-pre2025", "commune": "01450"},
            "2021-05-10",
            "unknown_locality",
            "$.locality.commune",
        ),
        ({**TRA_LINH, "district": "047"}, "2018-05-10", "unknown_locality", "$.locality.district"),
        ({**TRA_LINH, "district": "046"}, "2020-03-01", "unknown_locality", "$.locality.district"),
        ({**TRA_LINH, "province": "24"}, "2018-05-10", "unknown_locality", "$.locality.province"),
        (TRA_LINH, "2025-07-01", "invalid", "$.occurred_on"),
        ({**TRA_LINH, "ward": "01456"}, "2018-05-10", "invalid", "$.locality.ward"),
        ({**TRA_LINH, "colour": "red"}, "2018-05-10", "invalid", "$.locality.colour"),
        ({**TRA_LINH, "district": "46"}, "2018-05-10", "invalid", "$.locality.district"),
        ({"scheme": "gso-pre2025", "ward": "01447"}, "2018-05-10", "invalid", "$.locality.commune"),
        ({"scheme": "gso-2024", "ward": "01447"}, "2018-05-10", "invalid", "$.locality.scheme"),
    ],
)
async def test_the_gateway_refuses_a_pre2025_locality_that_does_not_resolve_on_its_date(
    stack: Stack,
    gateway: Gateway,
    clock: FixedClock,
    locality: dict[str, Any],
    day: str,
    code: str,
    path: str,
) -> None:
    clock.now = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    (result,) = await submit(stack, "ca-cao-bang", [session(locality, day)])
    assert not result.ok and result.error is not None
    assert (result.error.code, result.error.path) == (code, path), result.error.message


async def test_jurisdiction_is_checked_on_the_resolved_2025_ward(stack: Stack, gateway: Gateway) -> None:
    # ca-tra-linh holds ward 01447: Cao Chương (→ 01447) is its own, Xuân Nội (01462 → 01465) is not
    (own,) = await submit(stack, "ca-tra-linh", [session(TRA_LINH)])
    assert own.ok
    (other,) = await submit(stack, "ca-tra-linh", [session({"scheme": "gso-pre2025", "commune": "01462"})])
    assert not other.ok and other.error is not None
    assert other.error.path == "$.locality.commune" and "01465" in other.error.message


async def test_figures_by_recorded_unit_and_through_the_ward_and_a_province_rollup(
    stack: Stack, gateway: Gateway, projector: Projector, query: object
) -> None:
    docs = [
        session(TRA_LINH, attendance=10),
        session({"scheme": "gso-pre2025", "commune": "01462"}, attendance=20),  # Xuân Nội → 01465
        session(
            {"scheme": "gso-pre2025", "commune": "01471"}, day="2020-05-10", attendance=400
        ),  # in 047 then
        session({"scheme": "gso-2025", "ward": "01447"}, attendance=1000),  # 2025 units only
    ]
    _, last = await accepted(stack, "ca-cao-bang", docs)
    _, last_bn = await accepted(stack, "ca-bac-ninh", [session(GIA_BINH, attendance=7)])
    _, last_qn = await accepted(stack, "ca-quang-ninh", [session(HAI_LANG, attendance=3)])
    await folded(stack, max(last, last_bn, last_qn))

    district = await ask(stack, {"scheme": "gso-pre2025", "district": "046", "year": 2018})
    assert district["metrics"]["session_attendance"] == 30 and district["district"] == "046"
    assert "approximate" not in district
    assert (await ask(stack, {"scheme": "gso-pre2025", "district": "047", "year": 2020}))["metrics"][
        "session_attendance"
    ] == 400
    commune = await ask(stack, {"scheme": "gso-pre2025", "commune": "01471", "year": 2018})
    assert commune["metrics"]["session_attendance"] == 10
    old_cao_bang = await ask(stack, {"scheme": "gso-pre2025", "province": "04", "year": 2018})
    assert old_cao_bang["metrics"]["session_attendance"] == 30  # the gso-2025 event is not in pre-2025 units
    ward = await ask(stack, {"ward": "01447", "year": 2018})
    assert ward["metrics"]["session_attendance"] == 1010
    # province 24 was Bắc Giang and is Bắc Ninh: a rollup goes through the ward, never by matching codes
    assert (await ask(stack, {"province": "24", "year": 2018}))["metrics"]["session_attendance"] == 7
    assert (await ask(stack, {"scheme": "gso-pre2025", "province": "27", "year": 2018}))["metrics"][
        "session_attendance"
    ] == 7
    assert (await ask(stack, {"scheme": "gso-pre2025", "province": "24", "year": 2018}))["metrics"][
        "session_attendance"
    ] == 0
    approx = await ask(stack, {"ward": "06886", "year": 2018})
    assert approx["metrics"]["session_attendance"] == 3
    assert approx["approximate"] == {
        "session_attendance": 3,
        "session_attendance.commune": 3,
        "sessions_held": 1,
        "sessions_held.commune": 1,
    }
    assert "~session_attendance" not in approx["metrics"]
    # not on the update feed: its subjects carry 2025 wards only
    conn = await asyncpg.connect(stack.database_url)
    try:
        outbox = await conn.fetch("SELECT ward, province FROM stats_outbox")
        units = await conn.fetch("SELECT DISTINCT province FROM stats WHERE ward LIKE 'pre2025:%'")
    finally:
        await conn.close()
    assert all(not r["ward"].startswith("pre2025:") for r in outbox)
    assert [r["province"] for r in units] == ["pre2025"]

    async def feed() -> dict[str, Any] | None:  # the update of the ward-year carries the approximate part too
        try:
            msg = await stack.js.get_last_msg(UPDATES, updates_subject("22", "06886", 2018))
        except NotFoundError:
            return None
        update: dict[str, Any] = msgspec.json.decode(msg.data or b"")
        return update

    update = await wait_for(feed, what="the update of ward 06886, 2018")
    assert (update["metrics"], update["approximate"]) == (approx["metrics"], approx["approximate"])


async def test_retraction_and_correction_of_a_pre2025_entry_take_away_what_it_added(
    stack: Stack, gateway: Gateway, clock: FixedClock, projector: Projector, query: object
) -> None:
    clock.now = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    kept, wrong, moved = session(TRA_LINH, attendance=5), session(TRA_LINH, attendance=50), session(TRA_LINH)
    _, _ = await accepted(stack, "ca-cao-bang", [kept, wrong, moved])
    retraction = {
        "type": "entry.retracted",
        "event_id": str(uuid.uuid4()),
        "occurred_on": "2026-01-02",
        "locality": {"scheme": "gso-2025", "ward": "01447"},  # after the reform: the resolved 2025 ward
        "target_event_id": wrong["event_id"],
        "reason": "entered twice",
    }
    copy = {**moved, "event_id": str(uuid.uuid4()), "occurred_on": "2020-04-01", "attendance": 70}
    correction = {
        "type": "entry.corrected",
        "event_id": str(uuid.uuid4()),
        "occurred_on": "2026-01-02",
        "locality": TRA_LINH,
        "target_event_id": moved["event_id"],
        "corrected": {**copy, "locality": TRA_LINH},
        "reason": "date and attendance",
    }
    # dated 2020-04-01 the copy's district 046 no longer holds: the same locality is refused for that date
    (refused,) = await submit(stack, "ca-cao-bang", [correction])
    assert not refused.ok and refused.error is not None and refused.error.path == "$.locality.district"
    without_district = {k: v for k, v in TRA_LINH.items() if k != "district"}
    (still,) = await submit(
        stack,
        "ca-cao-bang",
        [{**correction, "locality": without_district, "corrected": {**copy, "locality": without_district}}],
    )
    assert not still.ok and still.error is not None and still.error.path == "$.corrected.locality"
    (retracted,) = await submit(stack, "ca-cao-bang", [retraction])
    assert retracted.ok, retracted.error
    _, last = await accepted(
        stack,
        "ca-cao-bang",
        [{**correction, "corrected": {**copy, "occurred_on": "2019-04-01", "locality": TRA_LINH}}],
    )
    await folded(stack, last)
    by_district = {
        year: (await ask(stack, {"scheme": "gso-pre2025", "district": "046", "year": year}))["metrics"]
        for year in (2018, 2019)
    }
    assert by_district[2018]["session_attendance"] == 5 and by_district[2018]["sessions_held"] == 1
    assert by_district[2019]["session_attendance"] == 70 and by_district[2019]["sessions_held"] == 1
    assert (await ask(stack, {"ward": "01447", "year": 2019}))["metrics"]["session_attendance"] == 70


async def test_replay_verify_and_rebuild_agree_on_pre2025_units(
    stack: Stack, gateway: Gateway, projector: Projector, localities: Localities
) -> None:
    tip = str(uuid.uuid4())
    docs = [
        session(TRA_LINH, attendance=11),
        session({"scheme": "gso-pre2025", "commune": "01450"}, attendance=13),  # Cô Mười, merged away in 2020
        {
            "type": "tip.received",
            "event_id": str(uuid.uuid4()),
            "occurred_on": "2018-03-03",
            "locality": {"scheme": "gso-pre2025", "commune": "01468"},  # Lưu Ngọc in 2018
            "tip_id": tip,
            "channel": "phone",
            "category": "drugs",
            "source": "resident",
        },
        {
            "type": "tip.assessed",
            "event_id": str(uuid.uuid4()),
            "occurred_on": "2018-03-04",
            "locality": {"scheme": "gso-2025", "ward": "01456"},  # the tip's resolved ward
            "tip_id": tip,
            "valuable": True,
        },
    ]
    _, last = await accepted(stack, "ca-cao-bang", docs)
    await folded(stack, last)
    scope = ReplayScope(scheme="gso-pre2025", district="046", year=2018)
    result = await replay(stack.nc, scope, localities)
    replayed = result.replay.metrics(wards=result.wards, year=2018, period="calendar")
    live = await ask_store(stack, [unit_key("district", "046")])
    assert replayed == live
    assert live["session_attendance"] == 24 and live["tips_received"] == 1 and live["tips_valuable"] == 1
    conn = await asyncpg.connect(stack.database_url)
    try:
        checked = await verify(stack.nc, conn, localities)
    finally:
        await conn.close()
    assert not checked.differences and not checked.problems


async def ask_store(stack: Stack, wards: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(stack.database_url)
    try:
        return (await store.read_stats(conn, wards=wards, year=2018, period="calendar")).metrics
    finally:
        await conn.close()


async def test_stats_replay_and_rebuild_from_the_command_line_answer_by_pre2025_unit(
    stack: Stack, gateway: Gateway, projector: Projector, query: object
) -> None:
    _, last = await accepted(
        stack,
        "ca-cao-bang",
        [
            session(TRA_LINH, attendance=21),
            session({"scheme": "gso-pre2025", "commune": "01459"}, attendance=4),  # Quang Vinh, old code
            session({"scheme": "gso-2025", "ward": "01447"}, attendance=1000),  # not a pre-2025 unit's
        ],
    )
    await folded(stack, last)
    env = {"ANTQ_NATS_URL": stack.servers.nats_url, "ANTQ_DATABASE_URL": stack.database_url, **WIDE}
    code, out, err = await antq(
        "stats", "--scheme", "gso-pre2025", "--district", "046", "--year", "2018", env=env
    )
    assert code == 0, err
    assert "pre-2025 district 046, 2018 (calendar)" in " ".join(out.split())
    assert figures(out)["session_attendance"] == 25, out

    args = (
        "audit",
        "replay",
        "--scheme",
        "gso-pre2025",
        "--district",
        "046",
        "--year",
        "2018",
        "--format",
        "json",
    )
    code, out, err = await antq(*args, env=env)
    assert code == 0, err
    body = json.loads(out)
    assert (body["scheme"], body["district"], body["as_of_seq"]) == ("gso-pre2025", "046", last)
    assert body["metrics"]["session_attendance"] == 25
    code, out, err = await antq("audit", "replay", "--district", "046", env=env)
    assert code == 2 and "give --scheme gso-pre2025" in " ".join(err.split()), err

    # a rebuild (the fold version holds the mapping's) folds the log anew into a copy with the same figures
    conn = await asyncpg.connect(stack.database_url)
    try:
        before = await store.all_figures(conn, await store.active_copy(conn))
        code, out, err = await antq("projections", "rebuild", "stats", env=env)
        assert code == 0, err
        after = await store.all_figures(conn, await store.active_copy(conn))
    finally:
        await conn.close()
    assert await_copy_changed(out)
    assert (
        after == before and after[("calendar", unit_key("district", "046"), 2018, "session_attendance")] == 25
    )


def await_copy_changed(out: str) -> bool:
    return f"(fold v{FOLD_VERSION})" in out and "copy 2" in out


async def test_a_model_set_up_under_a_pre2025_commune_stands_in_its_ward_and_units_every_later_year(
    stack: Stack, gateway: Gateway, projector: Projector, query: object
) -> None:
    model = {
        "type": "model.established",
        "event_id": str(uuid.uuid4()),
        "occurred_on": "2016-04-01",
        "locality": HAI_LANG,  # split: its default ward 06886, approximate
        "model_id": str(uuid.uuid4()),
        "name": "Tổ tự quản",
        "level": "commune",
        "kind": "self_managed_team",
    }
    dissolved = {
        "type": "model.dissolved",
        "event_id": str(uuid.uuid4()),
        "occurred_on": "2019-06-01",
        "locality": HAI_LANG,
        "model_id": model["model_id"],
    }
    _, last = await accepted(stack, "ca-quang-ninh", [model, dissolved])
    await folded(stack, last)
    for year, standing in ((2015, 0), (2016, 1), (2018, 1), (2019, 0)):
        district = await ask(stack, {"scheme": "gso-pre2025", "district": "199", "year": year})
        assert district["metrics"]["models_active"] == standing, (year, district)
        ward = await ask(stack, {"ward": "06886", "year": year})
        assert ward["metrics"]["models_active"] == standing
        assert ward.get("approximate", {}).get("models_active", 0) == standing
    ranged = await ask(
        stack, {"scheme": "gso-pre2025", "district": "199", "from_year": 2014, "to_year": 2018}
    )
    assert ranged["metrics"]["models_active"] == 1  # a stock stands at the range's end


async def test_the_report_marks_approximate_figures_live_and_from_the_log(
    stack: Stack, gateway: Gateway, projector: Projector, query: object
) -> None:
    """Issue 11: a split pre-2025 commune recorded without its 2025 ward counts in its default ward, and the
    report of that ward marks the figure approximate (≈ N), the same from the log alone."""
    from infra.settings import Settings
    from services.cli.report_cmd import make_report
    from services.report.span import Span
    from services.report.unit import Unit

    _, seq = await accepted(stack, "ca-quang-ninh", [session(HAI_LANG, attendance=30), session(HAI_LANG)])
    await folded(stack, seq)
    settings = Settings(nats_url=stack.servers.nats_url, database_url=stack.database_url)
    ward, span = Unit(kind="ward", code="06886"), Span(first=2018, last=2018)
    live = (await make_report(settings, ward, span, "md")).decode()
    assert "(≈ 2)" in live and "(≈ 70)" in live and "số ước tính" in live
    logged = (await make_report(settings, ward, span, "md", from_log=True)).decode()
    assert [line for line in live.splitlines() if "≈" in line] == [
        line for line in logged.splitlines() if "≈" in line
    ]
