"""Auditors' replay, pure: cut at any sequence it equals what the live projection had at that checkpoint;
cut at a business date it equals an independent reference over the facts of that date."""

from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import given
from hypothesis import strategies as st

from events.schema import EntryCorrected, EntryRetracted, Event, TipAssessed, TipReceived
from projections.asof import OccurredOnOrBefore
from projections.fold_state import Key, Value, by_period
from projections.folds import apply_update, fold
from projections.replay import InMemoryReplay
from tests.test_fold_model import DAYS, histories, recorded, reference, tip_owners


@st.composite
def split_points(draw: st.DrawFn, size: int) -> list[int]:
    """Where the live runner's fetch batches ended (sequence numbers)."""
    if size == 0:
        return []
    cuts = draw(st.sets(st.integers(1, size), max_size=size))
    return sorted(cuts | {size})


@given(data=st.data())
def test_replay_cut_at_a_checkpoint_equals_the_live_figures_then(data: st.DataObject) -> None:
    events = data.draw(histories())
    records = recorded(events)
    cuts = data.draw(split_points(len(records)))
    # the live projection: batch by batch, the figures it had at each checkpoint
    state: dict[Key, Value] = {}
    live: dict[tuple[str, str, int, str], int] = {}
    at_checkpoint: dict[int, dict[tuple[str, str, int, str], int]] = {}
    start = 0
    for cut in cuts:
        update, deltas = fold(state, records[start:cut])
        apply_update(state, update)
        for key, amount in by_period(deltas).items():
            live[key] = live.get(key, 0) + amount
        at_checkpoint[cut] = {k: v for k, v in live.items() if v}
        start = cut
    for seq, expected in at_checkpoint.items():
        cut_replay = InMemoryReplay()
        cut_replay.feed(records[:seq])
        assert cut_replay.figures == expected
        assert cut_replay.figures == reference(events[:seq])


def facts_on_or_before(events: list[Event], cutoff: dt.date) -> list[Event]:
    """Independent of projections.asof: decide the facts first (by the original's date), then what speaks about
    them: an assessment about the tip received last before it, a retraction or correction about its target."""
    facts = {
        e.event_id
        for e in events
        if not isinstance(e, TipAssessed | EntryRetracted | EntryCorrected) and e.occurred_on <= cutoff
    }
    # an update or end of a model (or a person under management) is a fact of its own date, kept only with the
    # creation it speaks about (no id is used twice in the histories)
    created = {
        getattr(e, "model_id", None) or getattr(e, "person_ref", None)
        for e in events
        if type(e).__name__ in ("ModelEstablished", "YouthEnrolled") and e.event_id in facts
    }
    facts -= {
        e.event_id
        for e in events
        if type(e).__name__ in ("ModelUpdated", "ModelDissolved", "YouthReleased")
        and (getattr(e, "model_id", None) or getattr(e, "person_ref", None)) not in created
    }
    owner = tip_owners(events)
    kept = facts | {
        e.event_id for e in events if isinstance(e, TipAssessed) and owner.get(e.event_id) in facts
    }
    for e in events:  # in order: a correction of a kept correction is kept
        if isinstance(e, EntryRetracted | EntryCorrected) and e.target_event_id in kept:
            kept.add(e.event_id)
    return [e for e in events if e.event_id in kept]


@given(events=histories(), cutoff=st.sampled_from(DAYS))
def test_as_of_occurred_equals_the_reference_over_the_facts_of_that_date(
    events: list[Event], cutoff: dt.date
) -> None:
    keep = OccurredOnOrBefore(cutoff).keep
    cut = InMemoryReplay()
    cut.feed([(seq, rec) for seq, rec in recorded(events) if keep(rec)])
    assert cut.figures == reference(facts_on_or_before(events, cutoff))


def test_a_late_assessment_of_an_early_tip_counts_and_a_late_tip_does_not() -> None:
    events = [e for e in _tip_pair()]
    keep = OccurredOnOrBefore(dt.date(2018, 6, 30)).keep
    cut = InMemoryReplay()
    cut.feed([(seq, rec) for seq, rec in recorded(events) if keep(rec)])
    assert cut.metrics(wards=None, year=2018, period="calendar")["tips_received"] == 1
    assert cut.metrics(wards=None, year=2018, period="calendar")["tips_valuable"] == 1


def _tip_pair() -> list[Event]:
    from events.schema import Locality

    place = Locality(ward="01447")
    early, late = uuid.uuid4(), uuid.uuid4()
    common = {"locality": place, "channel": "phone", "category": "drugs", "source": "resident"}
    return [
        TipReceived(event_id=uuid.uuid4(), occurred_on=dt.date(2018, 6, 1), tip_id=early, **common),  # type: ignore[arg-type]
        TipReceived(event_id=uuid.uuid4(), occurred_on=dt.date(2018, 7, 1), tip_id=late, **common),  # type: ignore[arg-type]
        TipAssessed(
            event_id=uuid.uuid4(),
            occurred_on=dt.date(2018, 8, 1),
            locality=place,
            tip_id=early,
            valuable=True,
        ),
        TipAssessed(
            event_id=uuid.uuid4(), occurred_on=dt.date(2018, 8, 1), locality=place, tip_id=late, valuable=True
        ),
    ]
