"""Where units sit on the map: the 2025 provinces' and wards' coordinates (``events/data/coords_2025.tsv``,
from vietnamadminunits 1.0.4, ``infra/scripts/extract_coords.py``); a pre-reform unit sits at the centre of
its 2025 successors."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from functools import cache
from importlib.resources import files

from events.localities import Localities

Point = tuple[float, float]
"""(latitude, longitude)"""


@cache
def _table() -> dict[tuple[str, str], Point]:
    text = files("events.data").joinpath("coords_2025.tsv").read_text(encoding="utf-8")
    rows = csv.DictReader(io.StringIO(text), delimiter="\t")
    return {(r["kind"], r["code"]): (float(r["lat"]), float(r["lon"])) for r in rows}


def province(code: str) -> Point | None:
    return _table().get(("province", code))


def ward(code: str) -> Point | None:
    return _table().get(("ward", code))


def centre(points: Iterable[Point | None]) -> Point | None:
    found = [p for p in points if p is not None]
    if not found:
        return None
    return sum(p[0] for p in found) / len(found), sum(p[1] for p in found) / len(found)


def legacy(kind: str, code: str, localities: Localities) -> Point | None:
    """A pre-reform province, district or commune at the centre of the 2025 wards its communes went to."""
    if kind == "commune":
        successors: Iterable[str] = localities.successors(code)
    elif kind == "district":
        successors = localities.district_wards(code)
    else:
        successors = {w for c in localities.legacy_units(province=code) for w in localities.successors(c)}
    return centre(ward(w) for w in successors)
