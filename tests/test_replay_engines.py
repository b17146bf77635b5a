"""The auditors' replay folds in this process or in a child process: same figures, same refusals."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from events.localities import Localities
from events.schema import Event
from services.audit.errors import UnfoldableHistory
from services.audit.replay import ReplayScope, replay
from tests import factories as f
from tests.conftest import Stack
from tests.test_projection import as_event, publish_events
from tests.test_telemetry import stray_assessment

pytestmark = [pytest.mark.servers, pytest.mark.timeout(90)]


def history(n: int, seed: int) -> list[Event]:
    """Tips (some assessed, some retracted), sessions, pledges, weapons over three wards and both periods."""
    rng = random.Random(seed)
    docs: list[dict[str, object]] = []
    for _ in range(n):
        ward = rng.choice(("01447", "01456", "09454"))
        day = rng.choice(("2018-12-14", "2018-12-15", "2019-03-01"))
        kind = rng.randrange(5)
        if kind == 0:
            tip = f.tip(ward=ward, day=day)
            docs.append(tip)
            if rng.random() < 0.7:
                docs.append(f.assessment(tip, valuable=rng.random() < 0.8, day=day))
            if rng.random() < 0.2:
                docs.append(f.retraction(tip, day=day))
        elif kind == 1:
            docs.append(f.session(ward=ward, day=day, attendance=rng.randrange(1, 90)))
        elif kind == 2:
            pledge = f.pledge(ward=ward, day=day, signatures=rng.randrange(1, 30))
            docs.append(pledge)
            if rng.random() < 0.3:
                docs.append(f.retraction(pledge, day=day))
        elif kind == 3:
            docs.append(f.weapons(ward=ward, day=day))
        else:
            docs.append(f.mediation(ward=ward, day=day))
    return [as_event(d) for d in docs]


async def test_the_child_process_folds_exactly_what_this_process_folds(
    stack: Stack, localities: Localities
) -> None:
    last = await publish_events(stack.nc, localities, history(400, seed=3))
    here = await replay(stack.nc, ReplayScope(), localities, child_process=False, batch=97)
    child = await replay(stack.nc, ReplayScope(), localities, child_process=True, batch=97)
    assert here.as_of_seq == child.as_of_seq == last
    assert child.replay.events == here.replay.events == last
    assert child.replay.figures == here.replay.figures
    # two children, each folding its share of the provinces: their totals summed are the one fold's
    split = await replay(stack.nc, ReplayScope(), localities, child_process=True, batch=97, children=2)
    assert split.replay.events == last and split.replay.figures == here.replay.figures
    codes = sorted(p.code for p in localities.provinces())
    provinces = {localities.ward(ward).province for _, ward, _, _ in here.replay.figures}  # type: ignore[union-attr]
    assert {codes.index(p) % 2 for p in provinces} == {0, 1}  # each child had a share of its own
    assert here.replay.figures  # a history that counts something
    for period in ("calendar", "reporting"):
        for year in here.replay.years(period):
            assert child.replay.metrics(wards=["01447"], year=year, period=period) == here.replay.metrics(
                wards=["01447"], year=year, period=period
            )
    # a business-date cut and a ward filter reach the child too
    cut = ReplayScope(ward="01447", as_of_occurred=dt.date(2018, 12, 14))
    here_cut = await replay(stack.nc, cut, localities, child_process=False)
    child_cut = await replay(stack.nc, cut, localities, child_process=True)
    assert child_cut.replay.figures == here_cut.replay.figures
    assert {ward for _, ward, _, _ in child_cut.replay.figures} == {"01447"}
    assert {year for _, _, year, _ in child_cut.replay.figures} == {2018}


@pytest.mark.parametrize("child_process", [False, True])
async def test_a_history_that_cannot_be_folded_is_reported_with_its_sequence(
    stack: Stack, localities: Localities, child_process: bool
) -> None:
    await publish_events(stack.nc, localities, [as_event(f.session()) for _ in range(3)])
    bad = await publish_events(stack.nc, localities, [stray_assessment()])
    await publish_events(stack.nc, localities, [as_event(f.session())])
    with pytest.raises(UnfoldableHistory, match=f"seq {bad}"):
        await replay(stack.nc, ReplayScope(), localities, child_process=child_process)


@pytest.mark.parametrize("child_process", [False, True])
async def test_a_stored_record_that_is_not_an_event_is_reported_with_its_sequence(
    stack: Stack, localities: Localities, child_process: bool
) -> None:
    await publish_events(stack.nc, localities, [as_event(f.session()) for _ in range(2)])
    ack = await stack.js.publish("antq.events.04.01447.session", b'{"office": "x", "event": {"type": "?"}}')
    await publish_events(stack.nc, localities, [as_event(f.session())])
    with pytest.raises(UnfoldableHistory, match=f"seq {ack.seq}: event type '\\?' is unknown to this reader"):
        await replay(stack.nc, ReplayScope(), localities, child_process=child_process)
