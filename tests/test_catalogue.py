"""Issue 9, part 2: one catalogue. Every type of the ``Event`` union has its entry, its subject and its fold;
the metrics, the subjects, the gateway's entity rules and the README's figure table derive from it."""

from __future__ import annotations

import datetime as dt
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from events.catalogue import (
    BY_TAG,
    CATALOGUE,
    CONTRIBUTIONS,
    SPECS,
    literal_values,
    metric_names,
)
from events.codec import decode_event
from events.figure_table import figure_table
from events.schema import EVENT_TYPES, Event, Recorded
from events.subjects import event_subject
from projections import folds
from projections.metrics import BASE_METRICS
from tests import factories as f
from tests.test_fold_model import PLAIN_SAMPLES, reference
from tests.test_unknown_fields import valid_documents

README = Path(__file__).resolve().parent.parent / "README.md"
TODAY = dt.date(2026, 11, 22)


def sample(tag: str) -> Event:
    doc = next(d for d in valid_documents() if d["type"] == tag)
    return decode_event(msgspec.json.encode(doc), today=TODAY)


@pytest.mark.parametrize("event_type", typing.get_args(Event), ids=lambda t: t.__name__)
def test_every_type_of_the_union_has_its_entry_subject_and_fold(event_type: type[Any]) -> None:
    spec = SPECS[event_type]
    assert event_type in EVENT_TYPES and BY_TAG[spec.tag] is spec
    event = sample(spec.tag)
    subject = event_subject(event, "04")
    assert subject.startswith(f"antq.events.04.{event.locality.ward}.") and "*" not in subject
    rest = subject.split(".", 4)[4]
    if spec.entity is not None:
        end = ".end" if spec.entity.role == "ends" else ""
        assert rest == f"{spec.entity.name}.{getattr(event, spec.entity.field)}{end}"
    else:
        assert rest == spec.subject
    # its fold: the type has a handler (a type without one fails here, never in production)
    assert event_type in folds.handled_types()
    if spec.fold == "plain":
        assert event_type in CONTRIBUTIONS and spec.figures
    assert spec.summary


def test_the_fold_applies_a_sample_of_every_type() -> None:
    tip = f.tip()
    session = f.session(attendance=7)
    docs = [
        tip,
        f.assessment(tip),
        session,
        f.pledge(signatures=3),
        f.mediation(),
        f.weapons(items=[{"kind": "air_gun", "quantity": 2}, {"kind": "ammunition", "quantity": 30}]),
        f.retraction(session),
        f.correction(tip, channel="hotline"),
        *(f.base(tag, **fields) for tag, fields in PLAIN_SAMPLES.items()),
        f.base("cases.cleared", category="other", cases=1, offenders=1, tip_ids=[tip["tip_id"]]),
    ]
    model = f.model(kind="security_council", points=4, teams=2, day="2017-03-01")
    gone = f.youth(day="2016-01-01")
    unit = f.registration(unit_kind="agency", year=2018)
    docs += [unit, f.safety_assessment(unit, achieved=False), f.safety_assessment(unit, day="2019-01-10")]
    docs += [
        model,
        f.model_update(model, points=6, day="2018-02-01"),
        f.dissolution(model, day="2019-07-01"),
        gone,
        f.release(gone, day="2018-05-05"),
    ]
    assert {d["type"] for d in docs} == {s.tag for s in CATALOGUE}
    events = [decode_event(msgspec.json.encode(d), today=TODAY) for d in docs]
    records = [(seq, Recorded(office="x", event=e)) for seq, e in enumerate(events, 1)]
    _, deltas = folds.fold({}, records)
    totals: dict[str, int] = {}
    stocks: dict[tuple[int, str], int] = {}
    for (_, yk, metric), n in deltas.items():
        totals[metric] = totals.get(metric, 0) + n
        if metric in ("models_active", "model_points", "youth_under_management"):
            stocks[(yk >> 1, metric)] = n
    # stocks are stored as each year's change: set up, changed, ended
    assert stocks == {
        (2016, "youth_under_management"): 1,
        (2018, "youth_under_management"): -1,
        (2017, "models_active"): 1,
        (2019, "models_active"): -1,
        (2017, "model_points"): 4,
        (2018, "model_points"): 2,
        (2019, "model_points"): -6,
    }
    for name in ("models_active", "models_active.commune", "models_active.security_council", "model_points"):
        assert totals.pop(name) == 0
    assert totals.pop("model_teams") == 0 and totals.pop("youth_under_management") == 0
    mine = {k: totals.pop(k) for k in list(totals) if k.startswith(PLAIN_METRICS)}
    assert totals == {
        "models_established": 1,
        "models_established.commune": 1,
        "models_established.security_council": 1,
        "models_dissolved": 1,
        "models_dissolved.commune": 1,
        "models_dissolved.security_council": 1,
        "youth_enrolled": 1,
        # registered, assessed not achieved, then (a later assessment, in January) achieved: counted in 2018
        "safety_registered": 1,
        "safety_registered.agency": 1,
        "safety_achieved": 1,
        "safety_achieved.agency": 1,
        "tips_received": 1,
        "tips_valuable": 1,
        "tips_received.resident": 1,
        "tips_valuable.resident": 1,
        "pledge_signatures": 3,
        "pledge_signatures.household": 3,
        "mediations_concluded": 1,
        "mediations_successful": 1,
        "weapons_surrendered": 2,
        "weapons_surrendered.air_gun": 2,
        "ammunition_surrendered": 30,
    }
    # issue 10's types and tips by source: the fold's totals are the independent reference's
    expected: dict[str, int] = {}
    for (period, _, _, metric), n in reference(events).items():
        if period == "calendar" and metric.startswith((*PLAIN_METRICS, "tips_")):
            expected[metric] = expected.get(metric, 0) + n
    assert {**mine, **{k: v for k, v in totals.items() if k.startswith("tips_")}} == expected


PLAIN_METRICS = (
    "commendations",
    "patrol",
    "consultation",
    "broadcasts",
    "campaign",
    "cases_cleared",
    "offenders",
    "rings_dismantled",
    "tips_leading_to_cases",
)


def test_metrics_derive_from_the_catalogue() -> None:
    assert metric_names() == BASE_METRICS
    for spec in CATALOGUE:
        for fig in spec.figures:
            assert fig.metric in BASE_METRICS
            allowed: set[str] = set()
            for by in fig.by_fields:
                allowed |= set(literal_values_of(spec.owner, fig.each, by))
            if fig.by is not None:
                values = fig.breakdowns(spec.owner)
                assert values and set(values) <= allowed
                # the breakdowns of two fields never share a name
                sizes = [len(literal_values_of(spec.owner, fig.each, by)) for by in fig.by_fields]
                assert len(allowed) == sum(sizes)


def test_lifecycle_entities_have_one_state_number_each() -> None:
    numbers: dict[str, int] = {}
    for spec in CATALOGUE:
        entity = spec.entity
        if spec.fold == "lifecycle":
            assert entity is not None and entity.state is not None and entity.state >= 2
            assert numbers.setdefault(entity.name, entity.state) == entity.state
        else:
            assert entity is None or entity.state is None
    assert len(set(numbers.values())) == len(numbers)


def literal_values_of(struct: type[Any], each: str | None, name: str) -> tuple[str, ...]:
    hints = typing.get_type_hints(struct, include_extras=True)
    if each is not None:
        item = typing.get_args(typing.get_args(hints[each])[0])[0]
        hints = typing.get_type_hints(item, include_extras=True)
    return literal_values(hints[name])


def test_the_readme_carries_the_generated_figure_table() -> None:
    assert figure_table() in README.read_text(encoding="utf-8"), (
        "README.md's figure table is out of date: paste `python -c 'from events.figure_table import figure_table; "
        "print(figure_table())'`"
    )
