"""The five demo sets (issue 10, "The articles, reproduced"): each, published through the real gateway and read
through the real query service (``services.demo.run.publish_and_read``, the path of ``antq demo``), marks ✓ on
every row; the words of the articles are judged as the issue says."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.localities import Localities
from projections.service import Projector
from services.cli.devstack import DEMO_OFFICES
from services.demo.framework import Row, satisfies
from services.demo.run import publish_and_read
from services.demo.sets import DEFAULT, SETS
from services.gateway.app import Gateway
from services.query.app import QueryService
from tests.conftest import FixedClock, Stack, gateway_config, wait_until_answering
from tests.servers import Servers

pytestmark = pytest.mark.servers

# the issue's rows, by set: a set must print exactly these, in this order
ISSUE_ROWS = {
    "tra-linh-2018": [
        "sessions_held.commune", "session_attendance.commune", "sessions_held.hamlet", "session_attendance.hamlet",
        "tips_received", "tips_valuable", "weapons_surrendered.homemade_firearm", "weapons_surrendered.support_tool",
        "safety_registered.commune", "models_active.security_council", "models_active.self_managed_team",
        "models_established.inter_household", "models_active.drug_free_area",
    ],
    "quang-ninh-2012": ["models_active", "models_active.province", "models_active.district", "models_active.commune"],
    "gia-binh-2014-2019": [
        "sessions_held", "session_attendance", "pledge_signatures", "tips_valuable.institution",
        "cases_cleared.public_disorder", "cases_cleared.social_order", "offenders.social_order",
        "commendations.collective", "commendations.individual",
        *(f"safety_achieved.agency+enterprise+school {year}" for year in range(2014, 2019)),
    ],
    "thanh-hoa-2024": [
        "models_active", "models_active.dan_van_kheo", "cases_cleared.social_order", "offenders.social_order",
        "cases_cleared.drugs", "offenders.drugs", "rings_dismantled.drugs", "youth_under_management",
    ],
    "vinh-dien-2020": [
        "sessions_held", "session_attendance", "campaigns_launched", "models_active.street_warden_team",
        "models_active.mediation_team", "consultations_held", "consultation_people",
    ],
}  # fmt: skip


@pytest.fixture(scope="session")
def demo_offices(servers: Servers) -> Path:
    """The demo's offices (``services/demo/offices.toml``) at a rate the tests' fixed clock never reaches."""
    path = servers.workdir / "demo-offices.toml"
    rate = "rate = { events_per_second = 1_000_000, burst = 1_000_000 }\n"
    path.write_text(rate + DEMO_OFFICES.read_text(encoding="utf-8"), encoding="utf-8")
    return path


@pytest.fixture
async def demo_stack(
    stack: Stack, demo_offices: Path, clock: FixedClock, localities: Localities, query: QueryService
) -> AsyncIterator[Stack]:
    """The test stack with a gateway knowing the demo's offices, the projector and the query service."""
    gateway = Gateway(gateway_config(stack, demo_offices, clock, localities))
    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    async with gateway.app:
        await wait_until_answering(stack.nc, "antq.intake._probe")
        await projector.start()
        try:
            yield stack
        finally:
            await projector.stop()


def test_the_sets_are_the_issues_and_tra_linh_is_the_default() -> None:
    assert DEFAULT == "tra-linh-2018"
    assert {name: [row.figure for row in s.rows] for name, s in SETS.items()} == ISSUE_ROWS


@pytest.mark.timeout(5)
def test_the_articles_words_are_judged_as_the_issue_says() -> None:
    assert satisfies(38, 38, "exact") and not satisfies(39, 38, "exact") and not satisfies(37, 38, "exact")
    assert (
        satisfies(96, 100, "nearly")
        and not satisfies(100, 100, "nearly")
        and not satisfies(101, 100, "nearly")
    )
    assert satisfies(12_001, 12_000, "over") and not satisfies(12_000, 12_000, "over")
    assert satisfies(210, 200, "about") and satisfies(190, 200, "about")
    assert not satisfies(211, 200, "about") and not satisfies(189, 200, "about")
    assert Row(figure="x", article=12_000, word="over").article_text() == "hơn 12,000"
    assert Row(figure="x", article=120, word="over", said="trên").article_text() == "trên 120"
    assert Row(figure="x", article=1546).article_text() == "1,546"


@pytest.mark.timeout(60)
def test_demo_lists_its_sets_and_refuses_an_unknown_one() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "--list"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert [line.split(":")[0] for line in listed.stdout.splitlines()] == [
        f"{name} (default)" if name == DEFAULT else name for name in SETS
    ]
    unknown = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "tra-linh-2019"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 2
    assert "no demo set 'tra-linh-2019'" in " ".join(unknown.stderr.split())


SAFETY = frozenset({"safety.registered", "safety.assessed"})


@pytest.mark.timeout(10)
def test_the_catalogue_has_every_type_and_figure_of_every_set(localities: Localities) -> None:
    assert {name: s.documents(localities)[1] for name, s in SETS.items()} == {name: [] for name in SETS}
    assert [(s.name, r.figure) for s in SETS.values() for r in s.rows if not r.recordable()] == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(SETS))
async def test_each_set_marks_every_row_it_can_record(
    name: str, demo_stack: Stack, localities: Localities
) -> None:
    """Every row whose figures the catalogue has is ✓; nothing sent is refused. (With the whole catalogue, every
    row: ``test_the_catalogue_has_every_type_and_figure_of_every_set``.)"""
    demo = SETS[name]
    docs, missing = demo.documents(localities)
    outcome = await publish_and_read(demo_stack.servers.nats_url, demo, localities)
    summary = outcome.summary
    assert summary.rejected_lines == 0, summary.rejections[:5]
    assert summary.accepted == len(docs) and summary.duplicate == 0
    assert list(outcome.missing_types) == missing
    assert [(r.row.figure, r.value, r.row.article_text()) for r in outcome.readings if not r.ok] == [
        (r.figure, None, r.article_text()) for r in demo.rows if not r.recordable()
    ]
    assert outcome.ok == (not missing)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(SETS))
async def test_the_report_of_each_set_equals_its_demo_table(
    name: str, demo_stack: Stack, localities: Localities
) -> None:
    """Issue 11: ``antq report`` for the set's unit and years prints the figures of the demo's table, and the
    same numbers folded from the log alone (``--from-log``)."""
    import csv
    import io

    from infra.settings import Settings
    from services.cli.report_cmd import make_report
    from services.report.span import Span
    from services.report.unit import Unit

    demo = SETS[name]
    outcome = await publish_and_read(demo_stack.servers.nats_url, demo, localities)
    assert outcome.ok
    query = dict(demo.query)
    kind = next(k for k in ("province", "ward", "district", "commune") if k in query)
    unit = Unit(scheme=query.get("scheme", "gso-2025"), kind=kind, code=query[kind])
    first, last = (
        int(query.get("from_year", query.get("year", 0))),
        int(query.get("to_year", query.get("year", 0))),
    )
    span = Span(first=first, last=last, period=query.get("period", "calendar"))
    settings = Settings(nats_url=demo_stack.servers.nats_url, database_url=demo_stack.database_url)
    live = await make_report(settings, unit, span, "csv")
    assert live == await make_report(settings, unit, span, "csv", from_log=True)
    when = str(last) if first == last else f"{first}-{last}"
    figures = {
        r[3]: int(r[4]) for r in csv.reader(io.StringIO(live.decode())) if r[0] == unit.code and r[1] == when
    }
    # rows that are one figure of the set's query (not a sum, nor another query's)
    plain = [r for r in outcome.readings if " " not in r.row.figure and demo.query_of(r.row) == demo.query]
    assert plain and all(figures.get(r.row.figure, 0) == r.value for r in plain), [
        (r.row.figure, r.value, figures.get(r.row.figure)) for r in plain
    ]
