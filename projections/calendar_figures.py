"""The calendar figures of ward-years as the update feed publishes them: flows in their year, stocks as they
stand at a year's end (stored as each year's change, summed up to it: ``standing_figures``), read from the copy's
rows (``read_calendar_figures``) or from the runner's write-through cache of what it committed (``CalendarCache``).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from typing import Final, TypeAlias

import asyncpg

from events.catalogue import stock_metrics
from events.codec import vietnam_today
from projections.fold_state import Figures
from projections.metrics import APPROXIMATE
from projections.periods import CALENDAR
from projections.places import is_unit_key

STOCKS: Final = sorted({*stock_metrics(), *(APPROXIMATE + name for name in stock_metrics())})
"""Stock metrics, and their approximate parts (``~<metric>``, ``projections.places``): both stored as each
year's change and read as what stands at a year's end."""
_STOCK_SET: Final = frozenset(STOCKS)
Figures2: TypeAlias = dict[tuple[str, int], dict[str, int]]
"""Figures of (ward, year) pairs: metric → value."""


def this_year() -> int:
    """The current year in Vietnam: stocks are published for every year up to it."""
    return vietnam_today(dt.datetime.now(dt.UTC)).year


async def _calendar_rows(
    conn: asyncpg.Connection, copy: int, pairs: Collection[tuple[str, int]]
) -> dict[tuple[str, int], dict[str, int]]:
    """The stored calendar rows of some (ward, year) pairs (a pair with none maps to an empty dict)."""
    figures: dict[tuple[str, int], dict[str, int]] = {pair: {} for pair in pairs}
    if not figures:
        return figures
    # ward = ANY and year = ANY use the primary key; the few extra (ward, year) pairs are filtered here
    rows = await conn.fetch(
        """SELECT ward, year, metric, value FROM stats
           WHERE copy = $1 AND period = 'calendar' AND ward = ANY($2::text[]) AND year = ANY($3::int[])""",
        copy,
        sorted({w for w, _ in figures}),
        sorted({y for _, y in figures}),
    )
    for r in rows:
        found = figures.get((r["ward"], r["year"]))
        if found is not None:
            found[r["metric"]] = r["value"]
    return figures


StockRows: TypeAlias = dict[int, dict[str, int]]
"""A ward's stored stock changes: year → metric → change in that year."""


async def _stock_rows(conn: asyncpg.Connection, copy: int, wards: Collection[str]) -> dict[str, StockRows]:
    """Every stored calendar stock change of some wards (a ward with none maps to an empty dict)."""
    out: dict[str, StockRows] = {ward: {} for ward in wards}
    if not out:
        return out
    rows = await conn.fetch(
        """SELECT ward, year, metric, value FROM stats WHERE copy = $1 AND period = 'calendar'
           AND ward = ANY($2::text[]) AND metric = ANY($3::text[])""",
        copy,
        sorted(out),
        STOCKS,
    )
    for r in rows:
        out[r["ward"]].setdefault(r["year"], {})[r["metric"]] = r["value"]
    return out


def standing_figures(
    rows: Mapping[tuple[str, int], dict[str, int]], stocks: Mapping[str, StockRows]
) -> Figures2:
    """The figures of each (ward, year): its flows, and its stocks as they stand at the year's end.

    Each ward's stock changes are summed once, in year order; a (ward, year) then takes the running sums of
    the last year at or before it (a stock in an old year changes many later ward-years at once)."""
    running: dict[str, tuple[list[int], list[dict[str, int]]]] = {}
    for ward in {w for w, _ in rows}:
        changes = stocks.get(ward)
        if not changes:
            continue
        years: list[int] = []
        sums: list[dict[str, int]] = []
        acc: dict[str, int] = {}
        for y in sorted(changes):
            for metric, change in changes[y].items():
                acc[metric] = acc.get(metric, 0) + change
            years.append(y)
            sums.append({m: v for m, v in acc.items() if v})
        running[ward] = (years, sums)
    out: Figures2 = {}
    for (ward, year), values in rows.items():
        figures = {m: v for m, v in values.items() if m not in _STOCK_SET}
        found = running.get(ward)
        if found is not None:
            at = bisect.bisect_right(found[0], year)
            if at:
                for metric, value in found[1][at - 1].items():
                    figures[metric] = figures.get(metric, 0) + value
        out[(ward, year)] = figures
    return out


async def read_calendar_figures(
    conn: asyncpg.Connection, copy: int, pairs: Collection[tuple[str, int]]
) -> Figures2:
    """The calendar figures of some (ward, year) pairs, stocks as they stand at each year's end."""
    rows = await _calendar_rows(conn, copy, pairs)
    return standing_figures(rows, await _stock_rows(conn, copy, {w for w, _ in pairs}))


class CalendarCache:
    """A runner's write-through copy of the calendar rows of the ward-years it last changed, and of those
    wards' stock changes.

    The runner is the only writer of its copy, so what it committed is what PostgreSQL holds: an update's
    figures are the cached ones plus the batch's changes, with no read of the table. Entries are loaded
    before the batch's changes are applied and replaced only after its commit; least recently used ones go.
    """

    def __init__(self, capacity: int = 20_000, year_now: Callable[[], int] = this_year) -> None:
        self._capacity = capacity
        self._data: OrderedDict[tuple[str, int], dict[str, int]] = OrderedDict()
        self._stocks: OrderedDict[str, StockRows] = OrderedDict()
        self._year_now = year_now

    def changed(self, deltas: Figures) -> list[tuple[str, int]]:
        """The calendar ward-years whose published figures the deltas change: a flow's year; a stock's year and
        every later one up to the current year."""
        pairs: set[tuple[str, int]] = set()
        now = self._year_now()
        for (period, ward, year, metric), _v in deltas.items():
            if period != CALENDAR or is_unit_key(ward):  # the feed carries 2025 wards only
                continue
            if metric in _STOCK_SET:
                pairs.update((ward, y) for y in range(year, max(year, now) + 1))
            else:
                pairs.add((ward, year))
        return sorted(pairs)

    async def load(self, conn: asyncpg.Connection, copy: int, pairs: Collection[tuple[str, int]]) -> None:
        missing = [pair for pair in pairs if pair not in self._data]
        self._data.update(await _calendar_rows(conn, copy, missing))
        wards = {w for w, _ in pairs if w not in self._stocks}
        self._stocks.update(await _stock_rows(conn, copy, wards))

    def after(
        self, pairs: Collection[tuple[str, int]], deltas: Figures
    ) -> tuple[Figures2, dict[str, StockRows]]:
        """The rows of ``pairs`` and their wards' stock changes once ``deltas`` apply (the cache itself is
        left as it is)."""
        rows = {pair: dict(self._data[pair]) for pair in pairs}
        stocks = {w: {y: dict(c) for y, c in self._stocks[w].items()} for w in {w for w, _ in pairs}}
        for (period, ward, year, metric), amount in deltas.items():
            if period != CALENDAR:
                continue
            found = rows.get((ward, year))
            if found is not None:
                found[metric] = found.get(metric, 0) + amount
            if metric in _STOCK_SET and ward in stocks:
                changes = stocks[ward].setdefault(year, {})
                changes[metric] = changes.get(metric, 0) + amount
        return rows, stocks

    def committed(
        self, rows: Mapping[tuple[str, int], dict[str, int]], stocks: Mapping[str, StockRows]
    ) -> None:
        for pair, values in rows.items():
            self._data[pair] = values
            self._data.move_to_end(pair)
        for ward, changes in stocks.items():
            self._stocks[ward] = changes
            self._stocks.move_to_end(ward)
        while len(self._data) > self._capacity:
            self._data.popitem(last=False)
        while len(self._stocks) > self._capacity:
            self._stocks.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()
        self._stocks.clear()
