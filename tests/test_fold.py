"""The pure fold against the independent reference (tests/test_fold_model.py), and its refusals."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections import Counter
from collections.abc import Callable
from unittest import mock

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.schema import Event, Recorded, TipReceived
from projections import fold_lifecycles, folds
from projections.errors import DuplicateEntity, FoldError, UnknownTarget, UnknownTip, WardMismatch
from projections.fold_state import (
    EntityState,
    Key,
    Value,
    by_period,
    encode_value,
    event_key,
    key_bytes,
    key_of,
    tip_key,
    year_key,
)
from tests.test_fold_model import Figures, _assess, _retract, _tip, histories, recorded, reference


def fold_all(events: list[tuple[int, Recorded]], cuts: list[int]) -> tuple[dict[Key, Value], Figures]:
    """Fold in batches split at ``cuts``, as a runner would: each batch sees only the keys it asks for."""
    state: dict[Key, Value] = {}
    totals: Counter[tuple[str, str, int, str]] = Counter()
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(events)), len(events)]
    for lo, hi in itertools.pairwise(bounds):
        batch = events[lo:hi]
        view: dict[Key, Value] = {}
        asked: set[Key] = set()
        while need := folds.keys_needed(batch, view) - asked:
            view.update({k: state[k] for k in need if k in state})
            asked |= need
        update, deltas = folds.fold(view, batch)
        folds.apply_update(state, update)
        totals.update(by_period(deltas))
    return state, {k: v for k, v in totals.items() if v}


@settings(max_examples=300)
@given(histories(max_size=60), st.lists(st.integers(0, 60), max_size=8))
def test_fold_equals_reference_whatever_the_batches(events: list[folds.Event], cuts: list[int]) -> None:  # type: ignore[name-defined]
    state, figures = fold_all(recorded(events), cuts)
    assert figures == reference(events)
    # state stays small: retracted non-tip entries leave nothing behind
    assert len(state) <= len(events) + sum(
        1
        for e in events
        if type(e).__name__ in ("TipReceived", "ModelEstablished", "YouthEnrolled", "SafetyRegistered")
    )


@settings(max_examples=100)
@given(histories(max_size=60), st.lists(st.integers(0, 60), max_size=8))
def test_the_entity_memo_stays_within_its_bound_and_changes_no_figure(
    events: list[Event], cuts: list[int]
) -> None:
    """The memo of an entity's last figures (``fold_lifecycles.remember``) keeps the most recently changed
    entities only: at a bound of 2 most entities' next change misses it, and every figure is still the
    reference's; the memo never holds more than its bound (it was the projection's slow memory growth)."""
    fold_lifecycles._last_figures.clear()
    with mock.patch.object(fold_lifecycles, "_LAST_FIGURES_MAX", 2):
        _, figures = fold_all(recorded(events), cuts)
        assert len(fold_lifecycles._last_figures) <= 2
    assert figures == reference(events)


def test_the_entity_memo_keeps_the_most_recently_changed_entities() -> None:
    fold_lifecycles._last_figures.clear()
    states = [EntityState(ward="00004", marks=()) for _ in range(4)]
    with mock.patch.object(fold_lifecycles, "_LAST_FIGURES_MAX", 3):
        for key, state in enumerate(states[:3]):
            fold_lifecycles.remember(key, state, {})
        fold_lifecycles.remember(0, states[0], {})  # 0 changed again: now the most recent
        fold_lifecycles.remember(3, states[3], {})  # 1, the least recently changed, goes
        assert list(fold_lifecycles._last_figures) == [2, 0, 3]


def test_fold_does_not_mutate_its_input_and_drops_zero_deltas() -> None:
    tip = _tip()
    state: dict[Key, Value] = {}
    update, deltas = folds.fold(state, recorded([tip]))
    assert state == {}
    folds.apply_update(state, update)
    snapshot = dict(state)
    update2, deltas2 = folds.fold(state, [(2, Recorded(office="x", event=_retract(tip)))])
    assert state == snapshot
    assert (
        deltas == {k: 1 for k in deltas2}
        and all(v == -1 for v in deltas2.values())
        and len(by_period(deltas2)) == 4  # tips_received and tips_received.resident, both kinds of year
    )
    assert update2[event_key(tip.event_id.bytes)] is None
    assert key_of(key_bytes(event_key(tip.event_id.bytes))) == event_key(tip.event_id.bytes)
    _, nothing = folds.fold(state, [(2, Recorded(office="x", event=_assess(tip, False)))])
    assert nothing == {}  # a tip never assessed valuable: the 'not valuable' assessment changes no figure


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda t: [_assess(t, True)], UnknownTip),
        (lambda t: [_retract(t)], UnknownTarget),
        (lambda t: [t, _retract(t), _retract(t)], UnknownTarget),
        (lambda t: [t, _retract(_retract(t))], UnknownTarget),
        (lambda t: [t, t], DuplicateEntity),
        (
            lambda t: [t, msgspec.structs.replace(_assess(t, True), locality=_tip(ward="01273").locality)],
            WardMismatch,
        ),
    ],
)
def test_fold_refuses_what_the_gateway_should_not_have_let_in(
    make: Callable[[TipReceived], list[Event]], error: type[FoldError]
) -> None:
    events = make(_tip())
    with pytest.raises(error) as info:
        folds.fold({}, recorded(events))
    assert isinstance(info.value, FoldError)
    assert info.value.seq == len(events)


def test_reporting_year_runs_from_15_december() -> None:
    def years(day: dt.date) -> set[tuple[str, int]]:
        return {(p, y) for p, _, y, _ in by_period({("w", year_key(day.toordinal()), "m"): 1})}

    assert years(dt.date(2018, 12, 14)) == {("calendar", 2018), ("reporting", 2018)}
    assert years(dt.date(2018, 12, 15)) == {("calendar", 2018), ("reporting", 2019)}
    assert years(dt.date(2019, 1, 1)) == {("calendar", 2019), ("reporting", 2019)}


def test_state_values_are_small() -> None:
    tip = _tip()
    update, _ = folds.fold({}, recorded([tip, _assess(tip, True), _assess(tip, False)]))
    assert all(v is not None and len(encode_value(v)) < 80 for v in update.values())
    assert len(key_bytes(tip_key(uuid.uuid4().bytes))) == 17


def test_a_pre2025_tip_and_the_case_naming_it_count_source_and_lead_under_its_units_too() -> None:
    from events.schema import CasesCleared, LegacyLocality

    place = LegacyLocality(commune="01471")  # Cao Chương, district 046 in 2018; 2025 ward 01447
    tip = msgspec.structs.replace(_tip("2018-05-10"), locality=place, source="institution")
    case = CasesCleared(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2018, 9, 1),
        locality=place,
        category="drugs",
        cases=1,
        offenders=2,
        tip_ids=(tip.tip_id,),
    )
    _, deltas = folds.fold({}, recorded([tip, case, _retract(case)])[:2])
    figures = by_period(deltas)
    for where in ("01447", "pre2025:commune:01471", "pre2025:district:046", "pre2025:province:04"):
        for metric in ("tips_received.institution", "tips_leading_to_cases", "cases_cleared.drugs"):
            assert figures[("calendar", where, 2018, metric)] == 1, (where, metric)
    _, deltas = folds.fold({}, recorded([tip, case, _retract(case)]))
    assert not any(k[3] == "tips_leading_to_cases" for k in by_period(deltas))


def test_retracting_an_event_of_an_earlier_entity_of_the_same_id_in_another_ward_changes_nothing() -> None:
    """A unit's registration retracted (its id freed) and made again in another ward: retracting the first
    registration's assessment speaks of the earlier entity, never halts on the new one's ward (found by
    hypothesis in CI)."""
    import datetime as dt
    import uuid

    from events.schema import EntryRetracted, Locality, SafetyAssessed, SafetyRegistered
    from tests.test_fold_model import recorded, reference

    unit = uuid.uuid4()
    first = SafetyRegistered(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2017, 1, 10),
        locality=Locality(ward="01447"),
        unit_id=unit,
        unit_kind="commune",
        year=2017,
    )
    assessed = SafetyAssessed(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2017, 6, 1),
        locality=first.locality,
        unit_id=unit,
        unit_kind="commune",
        year=2017,
        achieved=True,
    )

    def retract(target: SafetyRegistered | SafetyAssessed) -> EntryRetracted:
        return EntryRetracted(
            event_id=uuid.uuid4(),
            occurred_on=dt.date(2018, 6, 1),
            locality=target.locality,
            target_event_id=target.event_id,
            reason="entered twice",
        )

    again = SafetyRegistered(
        event_id=uuid.uuid4(),
        occurred_on=dt.date(2017, 1, 10),
        locality=Locality(ward="01273"),
        unit_id=unit,
        unit_kind="commune",
        year=2017,
    )
    events: list[Event] = [first, assessed, retract(first), again, retract(assessed)]
    _, deltas = folds.fold({}, recorded(events))
    assert by_period(deltas) == reference(events)
