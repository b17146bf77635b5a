"""The figures of a view, from the query service (as the read-only ``web`` identity): the unit and the units
below it through the report's own gathering (``services.report.figures.gather_live``: every answer at one
stream sequence), the country as its provinces, and the chart's years."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import cache
from typing import Any

import msgspec

from events.localities import Localities
from services.report.figures import Ask, Figures, WardFigures, gather_live
from services.report.span import Span
from services.report.unit import Unit, names_of
from services.web import coords
from services.web.coords import Point
from services.web.view import REFORM_YEAR, View

PARALLEL = 32
CHART_YEARS = 10
ATTEMPTS = 5
WAIT_MS = 10_000


class Row(msgspec.Struct, frozen=True, kw_only=True):
    """A unit below the page's unit (a province of the country, a ward of a province, …)."""

    kind: str
    scheme: str
    code: str
    name: str
    metrics: dict[str, int]
    point: Point | None


class PageData(msgspec.Struct, frozen=True, kw_only=True):
    view: View
    name: str
    """The unit's official name (``Tỉnh Cao Bằng``; the country: empty)."""
    parent: tuple[str, str, str] | None
    """(kind, code, name) of the unit above, for the way back up."""
    current: dict[str, int]
    previous: dict[str, int] | None
    rows: tuple[Row, ...]
    series: tuple[tuple[int, int], ...]
    """(year, value of the view's metric) for the chart; the country: empty (its chart is by province)."""
    point: Point | None
    as_of_seq: int
    fold_version: int
    stale: bool
    figures: Figures | None
    """The report's figures (a unit; None for the country), for the downloads."""


async def ask_all(
    ask: Ask, requests: Sequence[dict[str, Any]], at: int | None = None
) -> list[dict[str, Any]]:
    """Every request answered at one stream sequence (as ``gather_live``), ``PARALLEL`` at a time."""
    limit = asyncio.Semaphore(PARALLEL)

    async def one(request: dict[str, Any]) -> dict[str, Any]:
        async with limit:
            return await ask(request)

    replies: list[dict[str, Any]] = []
    for _ in range(ATTEMPTS):
        wait = {} if at is None else {"min_seq": at, "timeout_ms": WAIT_MS}
        replies = list(await asyncio.gather(*(one({**r, **wait}) for r in requests)))
        seqs = {int(r["as_of_seq"]) for r in replies}
        if len(seqs) <= 1:
            return replies
        at = max(seqs)
    return replies  # still moving: the newest answers stand (the page says its sequence)


@cache
def legacy_provinces(localities: Localities) -> tuple[tuple[str, str], ...]:
    """The pre-reform provinces (code, latest name), by code."""
    names: dict[str, str] = {}
    for code in sorted(localities.legacy_units()):
        for period in localities.legacy_periods(code):
            names[period.province] = period.province_name
    return tuple(sorted(names.items()))


def _point(view: View, kind: str, code: str, localities: Localities) -> Point | None:
    if view.pre2025:
        return coords.legacy(kind, code, localities)
    return coords.province(code) if kind == "province" else coords.ward(code)


async def country(ask: Ask, view: View, localities: Localities) -> PageData:
    if view.pre2025:
        units = legacy_provinces(localities)
        place: dict[str, Any] = {"scheme": "gso-pre2025"}
    else:
        units = tuple((p.code, p.name) for p in localities.provinces())
        place = {}
    replies = await ask_all(ask, [{**place, "province": code, **view.span.request()} for code, _ in units])
    total: dict[str, int] = {}
    for reply in replies:
        for metric, value in reply["metrics"].items():
            total[metric] = total.get(metric, 0) + int(value)
    rows = tuple(
        Row(
            kind="province",
            scheme=view.scheme,
            code=code,
            name=name,
            metrics=reply["metrics"],
            point=_point(view, "province", code, localities),
        )
        for (code, name), reply in zip(units, replies, strict=True)
    )
    first = replies[0] if replies else {"as_of_seq": 0, "fold_version": 0, "stale": False}
    return PageData(
        view=view,
        name="",
        parent=None,
        current=total,
        previous=None,
        rows=rows,
        series=(),
        point=None,
        as_of_seq=max(int(r["as_of_seq"]) for r in replies) if replies else 0,
        fold_version=int(first["fold_version"]),
        stale=any(bool(r["stale"]) for r in replies),
        figures=None,
    )


async def unit_figures(ask: Ask, unit: Unit, span: Span, localities: Localities) -> Figures:
    """The report's figures of a unit. A 2025 province: its wards in the same request (``"by": "ward"``),
    so three requests in all instead of one per ward; other units as the report gathers them."""
    if unit.scheme != "gso-2025" or unit.kind != "province":
        return await gather_live(ask, unit, span, localities)
    names = names_of(unit, localities)
    place = unit.query_place()
    current, previous = await ask_all(
        ask, [{**place, **span.request(), "by": "ward"}, {**place, **span.previous().request()}]
    )
    by_ward: dict[str, dict[str, int]] = current["by_ward"]
    return Figures(
        unit=unit,
        names=names,
        span=span,
        current=current["metrics"],
        previous=previous["metrics"],
        wards=tuple(WardFigures(code=code, name=name, metrics=by_ward[code]) for code, name in names.wards),
        as_of_seq=int(current["as_of_seq"]),
        fold_version=int(current["fold_version"]),
        stale=bool(current["stale"]) or bool(previous["stale"]),
        source="read_model",
    )


def _chart_years(view: View) -> list[int]:
    last = view.span.last
    newest = REFORM_YEAR - 1 if view.pre2025 else last
    return [y for y in range(last - CHART_YEARS + 1, min(last, newest) + 1) if y >= 2000]


def _parent(unit: Unit, localities: Localities) -> tuple[str, str, str] | None:
    if unit.scheme == "gso-2025":
        if unit.kind == "ward":
            ward = localities.ward(unit.code)
            return ("province", ward.province, ward.province_name) if ward else None
        return None
    periods = (
        [
            p
            for c in sorted(
                localities.legacy_units(
                    commune=unit.code if unit.kind == "commune" else None,
                    district=unit.code if unit.kind == "district" else None,
                )
            )
            for p in localities.legacy_periods(c)
        ]
        if unit.kind != "province"
        else []
    )
    if not periods:
        return None
    latest = periods[-1]
    if unit.kind == "commune":
        return ("district", latest.district, latest.district_name)
    return ("province", latest.province, latest.province_name)


async def unit_page(ask: Ask, view: View, localities: Localities) -> PageData:
    unit = view.unit
    assert unit is not None
    names = names_of(unit, localities)  # UnknownUnit for a code that names no unit
    place = unit.query_place()
    years = _chart_years(view)
    chart_requests = [{**place, "year": y, "period": view.span.period} for y in years]
    figures, chart = await asyncio.gather(
        unit_figures(ask, unit, view.span, localities), ask_all(ask, chart_requests)
    )
    below = unit.below
    rows = tuple(
        Row(
            kind=below or "",
            scheme=view.scheme,
            code=w.code,
            name=w.name,
            metrics=w.metrics,
            point=_point(view, below or "", w.code, localities),
        )
        for w in figures.wards
    )
    return PageData(
        view=view,
        name=names.name,
        parent=_parent(unit, localities),
        current=figures.current,
        previous=figures.previous,
        rows=rows,
        series=tuple((y, int(r["metrics"].get(view.metric, 0))) for y, r in zip(years, chart, strict=True)),
        point=_point(view, unit.kind, unit.code, localities),
        as_of_seq=figures.as_of_seq,
        fold_version=figures.fold_version,
        stale=figures.stale,
        figures=figures,
    )


async def page_data(ask: Ask, view: View, localities: Localities) -> PageData:
    if view.kind == "country":
        return await country(ask, view, localities)
    return await unit_page(ask, view, localities)
