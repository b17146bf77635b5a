"""Property: whatever the history, the batching, the re-sends and the crash points, the PostgreSQL figures
equal the independent reference, and the last update of every ward-year carries its final figures.

One fresh database (cloned from the migrated template) and fresh streams per example.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from nats.js.errors import NotFoundError

from events.catalogue import stock_metrics
from events.localities import Localities
from events.schema import EntryCorrected, EntryRetracted, Event, ward_of
from events.subjects import updates_subject
from infra.streams import EVENTS, UPDATES
from projections import store
from projections.metrics import complete
from projections.runner import RunnerConfig
from tests.conftest import Stack
from tests.servers import fresh_database, fresh_streams
from tests.test_fold_model import histories, published, reference
from tests.test_projection import InjectedCrash, figures, publish_events, run_through_crashes

pytestmark = pytest.mark.servers

POINTS = ("before_commit", "during_commit", "after_commit", "after_ack")


# No shrinking against real servers (minutes): the first failing example is reported as found.
@settings(max_examples=20, phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(
    events=histories(max_size=30),
    split=st.floats(0, 1),
    resend=st.lists(st.integers(0, 29), max_size=5),
    batch=st.integers(1, 8),
    crashes=st.lists(st.tuples(st.sampled_from(POINTS), st.integers(1, 40)), max_size=4),
)
async def test_figures_equal_the_reference_through_crashes_and_redeliveries(
    stack: Stack,
    localities: Localities,
    events: list[Event],
    split: float,
    resend: list[int],
    batch: int,
    crashes: list[tuple[str, int]],
) -> None:
    await fresh_streams(stack.js, stack.limits)
    database_url = await fresh_database(stack.servers)
    pending = sorted(set(crashes), key=lambda c: c[1])

    async def crash(point: str, seq: int) -> None:
        for spec in pending:
            if spec[0] == point and seq >= spec[1]:
                pending.remove(spec)
                raise InjectedCrash(f"{point} at {seq}")

    config = RunnerConfig(database_url=database_url, localities=localities, batch=batch, hook=crash)
    cut = int(len(events) * split)
    first = await publish_events(stack.nc, localities, events[:cut])
    if first:
        await run_through_crashes(stack.nc, config, first)
    resent = [events[i] for i in resend if i < len(events)]
    second = await publish_events(stack.nc, localities, [*events[cut:], *resent])  # re-sends are deduplicated
    last = max(first, second)
    assert last == len(events)
    if last:
        await run_through_crashes(stack.nc, config, last)

    expected = reference(events)
    assert await figures(database_url) == expected
    info = await stack.js.stream_info(EVENTS)
    assert info.state.messages == len(events)

    # the latest update of each ward-year (calendar) carries its final figures: flows of that year, stocks as
    # they stand at its end (a stock's ward-years run from its first change up to the current year)
    stocks = stock_metrics()
    calendar: dict[tuple[str, int], dict[str, int]] = {}
    for period, ward, year, metric in expected:
        if period == "calendar":
            last = max(year, store.this_year()) if metric in stocks else year
            for y in range(year, last + 1):
                calendar.setdefault((ward, y), {})
    for ward, year in calendar:
        calendar[(ward, year)] = published(expected, ward, year, stocks)
    for (ward, year), metrics in calendar.items():
        found = localities.ward(ward)
        assert found is not None
        msg = await stack.js.get_last_msg(UPDATES, updates_subject(found.province, ward, year))
        update = msgspec.json.decode(msg.data or b"")
        assert update["metrics"] == complete(metrics)
        assert update["period"] == "calendar" and update["ward"] == ward and update["year"] == year
    # a ward-year whose figures all went back to zero (its entries retracted): if it was ever published, its
    # latest update says zero everywhere (a stale non-zero update would mislead every subscriber)
    touched = {(ward_of(e), e.occurred_on.year) for e in events if not isinstance(e, EntryRetracted)}
    touched |= {(ward_of(e), e.corrected.occurred_on.year) for e in events if isinstance(e, EntryCorrected)}
    for ward, year in sorted(touched - {k for k, v in calendar.items() if v}):
        found = localities.ward(ward)
        assert found is not None
        try:
            msg = await stack.js.get_last_msg(UPDATES, updates_subject(found.province, ward, year))
        except NotFoundError:
            continue  # its changes cancelled out within one commit: nothing to announce
        update = msgspec.json.decode(msg.data or b"")
        assert update["metrics"] == complete(published(expected, ward, year, stocks)), (ward, year, update)
