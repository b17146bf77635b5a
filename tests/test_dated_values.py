"""Issue 10: values tied to a date (``events.schema.DATED_VALUES``) are refused outside their dates, as
``invalid`` at the field's path, by the gateway's decoder and by the published JSON Schemas alike; inside them
they are accepted. Boundary days of every declared rule, at the event's top level and in a corrected copy."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from events.codec import decode_event
from events.errors import EventError
from events.schema import DATED_VALUES, DatedValue
from tests import factories as f
from tests.test_fold_model import PLAIN_SAMPLES

TODAY = dt.date(2026, 11, 22)
SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "contract" / "schemas"
DAY = dt.timedelta(days=1)


def carrier(rule: DatedValue, day: dt.date) -> dict[str, Any]:
    """A valid document of a type whose field can hold the rule's value, holding it, on ``day``."""
    if rule.field == "channel":
        doc = f.tip(channel=rule.value)
    elif rule.field == "authority":
        doc = f.base(
            "commendation.awarded", **{**PLAIN_SAMPLES["commendation.awarded"], "authority": rule.value}
        )
    elif rule.field in ("kind", "level"):
        doc = f.model(**{rule.field: rule.value})
    else:  # pragma: no cover - a rule added without a carrier here
        raise AssertionError(f"add a document carrying {rule.field} = {rule.value} to this test")
    return {**doc, "occurred_on": day.isoformat()}


def boundaries(rule: DatedValue) -> list[tuple[dt.date, bool]]:
    """(day, accepted) on both sides of each date of the rule."""
    cases: list[tuple[dt.date, bool]] = []
    if rule.valid_from is not None:
        cases += [(rule.valid_from - DAY, False), (rule.valid_from, True)]
    if rule.valid_to is not None:
        cases += [(rule.valid_to, True), (rule.valid_to + DAY, False)]
    return cases


def verdict(doc: dict[str, Any]) -> EventError | None:
    try:
        decode_event(msgspec.json.encode(doc), today=TODAY)
    except EventError as exc:
        return exc
    return None


def schema_valid(doc: dict[str, Any]) -> bool:
    schema = json.loads((SCHEMAS / f"{doc['type']}.json").read_text("utf-8"))
    union = json.loads((SCHEMAS / "event.json").read_text("utf-8"))
    mine: bool = bool(jsonschema.Draft7Validator(schema).is_valid(doc))
    assert bool(jsonschema.Draft7Validator(union).is_valid(doc)) == mine
    return mine


def test_the_declared_rules_are_the_issues() -> None:
    declared = {(r.field, r.value, r.valid_from, r.valid_to) for r in DATED_VALUES}
    assert ("channel", "vneid", dt.date(2022, 7, 1), None) in declared
    assert ("authority", "district", None, dt.date(2025, 6, 30)) in declared
    assert ("level", "district", None, dt.date(2025, 6, 30)) in declared
    assert ("kind", "security_order_team", dt.date(2024, 7, 1), None) in declared


@pytest.mark.parametrize("rule", DATED_VALUES, ids=lambda r: f"{r.field}={r.value}")
def test_a_value_tied_to_a_date_is_refused_outside_it_with_the_fields_path(rule: DatedValue) -> None:
    for day, accepted in boundaries(rule):
        doc = carrier(rule, day)
        err = verdict(doc)
        if accepted:
            assert err is None, (day, err)
        else:
            assert err is not None and (err.code, err.path) == ("invalid", f"$.{rule.field}"), (day, err)
            assert str(day) in err.message and rule.value in err.message
        assert schema_valid(doc) is accepted, day


@pytest.mark.parametrize("rule", DATED_VALUES, ids=lambda r: f"{r.field}={r.value}")
def test_a_corrected_copy_is_held_to_the_same_dates(rule: DatedValue) -> None:
    for day, accepted in boundaries(rule):
        original = carrier(rule, day)
        # the copy differs only in its own id; the original is judged on its own
        doc = f.correction(original)
        err = verdict(doc)
        if accepted:
            assert err is None, (day, err)
        else:
            assert err is not None and (err.code, err.path) == ("invalid", f"$.corrected.{rule.field}")
        assert schema_valid(doc) is accepted, day


def test_other_values_of_the_same_fields_have_no_dates() -> None:
    assert verdict(f.tip(channel="hotline", day="2000-01-01")) is None
    late = f.base("commendation.awarded", **PLAIN_SAMPLES["commendation.awarded"], day="2026-01-05")
    assert verdict({**late, "authority": "commune"}) is None
    assert verdict({**late, "authority": "province"}) is None
