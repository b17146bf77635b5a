"""The figures a report prints, gathered from the query service (live) or from the log alone (replay).

Every number comes from one of those two sources, never typed by hand. A live report asks the query service
for the unit in the span and in the previous span, and for each ward below a province, all standing at one
stream sequence (``as_of_seq``): the first answer's sequence is asked of every other request as ``min_seq``,
and when an answer stands further on (an event arrived meanwhile) the whole set is asked again at that sequence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec

from events.localities import Localities
from services.audit.replay import ReplayResult
from services.report.errors import MovingLog
from services.report.span import Span
from services.report.unit import Unit, UnitNames, names_of

Ask = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Sends one query-service request and returns its reply (``services.cli.stats_view.query_stats``)."""

Source = Literal["read_model", "log"]
ATTEMPTS = 5
WAIT_MS = 10_000
PARALLEL = 16


class WardFigures(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    name: str
    metrics: dict[str, int]


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    unit: Unit
    names: UnitNames
    span: Span
    current: dict[str, int]
    previous: dict[str, int]
    wards: tuple[WardFigures, ...]
    as_of_seq: int
    fold_version: int
    stale: bool
    source: Source
    approximate: dict[str, int] = {}
    """The parts of ``current`` that are approximate (pre-2025 communes split over several 2025 wards,
    recorded without the ward: counted in the default one), marked in the tables."""


async def gather_live(ask: Ask, unit: Unit, span: Span, localities: Localities) -> Figures:
    """The unit's figures from the query service, every answer at one stream sequence."""
    names = names_of(unit, localities)
    place = unit.query_place()
    requests = [
        {**place, **span.request()},
        {**place, **span.previous().request()},
        *({**unit.sub_place(code), **span.request()} for code, _ in names.wards),
    ]
    limit = asyncio.Semaphore(PARALLEL)

    async def one(request: dict[str, Any]) -> dict[str, Any]:
        async with limit:
            return await ask(request)

    at: int | None = None
    for _ in range(ATTEMPTS):
        wait = {} if at is None else {"min_seq": at, "timeout_ms": WAIT_MS}
        replies = await asyncio.gather(*(one({**r, **wait}) for r in requests))
        seqs = {int(r["as_of_seq"]) for r in replies}
        if len(seqs) == 1:
            current, previous, *wards = replies
            return Figures(
                unit=unit,
                names=names,
                span=span,
                current=current["metrics"],
                approximate=dict(current.get("approximate") or {}),
                previous=previous["metrics"],
                wards=tuple(
                    WardFigures(code=code, name=name, metrics=reply["metrics"])
                    for (code, name), reply in zip(names.wards, wards, strict=True)
                ),
                as_of_seq=seqs.pop(),
                fold_version=int(current["fold_version"]),
                stale=any(bool(r["stale"]) for r in replies),
                source="read_model",
            )
        at = max(seqs)
    raise MovingLog(
        f"the figures moved on with every one of {ATTEMPTS} attempts (events are arriving): run the report "
        "again, or run it from the log at a fixed sequence with --from-log --to-seq N"
    )


def from_replay(result: ReplayResult, unit: Unit, span: Span, localities: Localities) -> Figures:
    """The same figures folded from the log alone (``services.audit.replay.replay`` with ``stop_seq``)."""
    from projections.metrics import FOLD_VERSION

    names = names_of(unit, localities)
    folded = result.replay

    def metrics(wards: list[str] | None, s: Span) -> dict[str, int]:
        return folded.metrics(
            wards=wards, year=s.last, period=s.period, from_year=None if s.single else s.first
        )

    from projections.metrics import approximate

    sums = folded.sums(
        wards=result.wards, year=span.last, period=span.period, from_year=None if span.single else span.first
    )
    return Figures(
        unit=unit,
        names=names,
        span=span,
        approximate=approximate(sums),
        current=metrics(result.wards, span),
        previous=metrics(result.wards, span.previous()),
        wards=tuple(
            WardFigures(code=code, name=name, metrics=metrics([unit.sub_key(code)], span))
            for code, name in names.wards
        ),
        as_of_seq=result.as_of_seq,
        fold_version=FOLD_VERSION,
        stale=False,
        source="log",
    )
