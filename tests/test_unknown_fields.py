"""Issue 9, part 1: nothing an office sends is silently dropped. An unknown field at any level of any event type
is refused as ``invalid`` with the path of the unknown field itself. The oracle walks the document here (its
own notion of where each object sits), never asking the code under test."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.codec import decode_event
from events.errors import EventError
from events.schema import TAGS
from tests import factories as f
from tests.test_fold_model import PLAIN_SAMPLES

TODAY = dt.date(2026, 11, 22)


def valid_documents() -> list[dict[str, Any]]:
    tip = f.tip()
    docs = [
        tip,
        f.assessment(tip),
        f.session(hamlet="Lũng Tung", note="ok"),
        f.pledge(),
        f.mediation(),
        f.weapons(items=[{"kind": "air_gun", "quantity": 1}, {"kind": "explosive", "quantity": 2}]),
        f.model(points=3, teams=2),
        f.model_update(f.model(), points=4),
        f.dissolution(f.model()),
        f.youth(),
        f.release(f.youth()),
        f.retraction(f.session()),
        f.correction(f.weapons(items=[{"kind": "air_gun", "quantity": 1}]), hamlet="Nà Giàng"),
        *(f.base(tag, **fields) for tag, fields in PLAIN_SAMPLES.items()),
        # a pre-2025 locality, every field given (issue 9, part 4)
        f.session(
            locality={
                "scheme": "gso-pre2025",
                "commune": "01471",
                "district": "046",
                "province": "04",
                "ward": "01447",
            }
        ),
    ]
    assert {d["type"] for d in docs} == TAGS, "every event type has a document here"
    return docs


def objects(doc: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON object in the document with its JSONPath."""
    if isinstance(doc, dict):
        yield path, doc
        for key, value in doc.items():
            yield from objects(value, f"{path}.{key}")
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from objects(value, f"{path}[{i}]")


def with_key(doc: dict[str, Any], path: str, key: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for p, obj in objects(out):
        if p == path:
            obj[key] = value
            return out
    raise AssertionError(path)


def refusal(doc: dict[str, Any]) -> EventError:
    import msgspec

    with pytest.raises(EventError) as caught:
        decode_event(msgspec.json.encode(doc), today=TODAY)
    return caught.value


@pytest.mark.parametrize("doc", valid_documents(), ids=lambda d: d["type"])
def test_every_valid_document_is_accepted(doc: dict[str, Any]) -> None:
    import msgspec

    decode_event(msgspec.json.encode(doc), today=TODAY)


@pytest.mark.parametrize("doc", valid_documents(), ids=lambda d: d["type"])
def test_an_unknown_key_at_every_level_of_every_type_is_refused_with_its_own_path(
    doc: dict[str, Any],
) -> None:
    levels = list(objects(doc))
    assert len(levels) >= 2  # the event and its locality at least
    for path, _ in levels:
        for key in ("hamlett", "women_attending", "colour", "x"):
            err = refusal(with_key(doc, path, key, 1))
            assert (err.code, err.path) == ("invalid", f"{path}.{key}"), (path, key, err.message)


@pytest.mark.parametrize("doc", valid_documents(), ids=lambda d: d["type"])
def test_a_misspelt_known_key_is_refused_at_its_path(doc: dict[str, Any]) -> None:
    for path, obj in objects(doc):
        for key in list(obj):
            if key == "type":
                continue
            for typo in (key + "s", key[:-1], key.upper()):
                broken = copy.deepcopy(doc)
                target = next(o for p, o in objects(broken) if p == path)
                target[typo] = target.pop(key)
                err = refusal(broken)
                assert err.code == "invalid", (path, typo, err.message)
                # either the misspelt key itself, or the real one now missing, names the place
                assert err.path in (f"{path}.{typo}", f"{path}.{key}"), (path, typo, err.path)


@given(
    which=st.integers(min_value=0, max_value=len(valid_documents()) - 1),
    key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
    level=st.integers(min_value=0, max_value=5),
)
def test_any_unknown_key_anywhere(which: int, key: str, level: int) -> None:
    doc = valid_documents()[which]
    levels = [p for p, _ in objects(doc)]
    path = levels[level % len(levels)]
    target = next(o for p, o in objects(doc) if p == path)
    if key in target or key == "type":
        return
    err = refusal(with_key(doc, path, key, "v"))
    assert (err.code, err.path) == ("invalid", f"{path}.{key}")
