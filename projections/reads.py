"""Reads of the statistics read model: the figures of some wards or of a province for a year or a range of
years (``read_stats``, ``read_province_stats``), answered from the active copy together with its checkpoint in
one REPEATABLE READ snapshot (``StatsSnapshot``); and every figure of a copy, for checks and audits
(``all_figures``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import asyncpg
import msgspec

from projections.calendar_figures import STOCKS
from projections.checkpoints import NAME, hold_copies
from projections.metrics import FOLD_VERSION, approximate, complete
from projections.periods import PERIODS

Pause = Callable[[], Awaitable[None]]


class StatsSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Summed figures of some wards for one year: every base metric, breakdowns when non-zero."""

    metrics: dict[str, int]
    as_of_seq: int
    stale: bool
    fold_version: int
    approximate: dict[str, int] = {}
    """The approximate part of ``metrics`` (``projections.metrics.approximate``)."""
    by_ward: dict[str, dict[str, int]] | None = None
    """With ``read_stats(by_ward=True)``: each ward's own figures, from the same snapshot."""


_SNAPSHOT_HEAD = """
SELECT a.copy, c.seq, c.fold_version, c.halted
FROM projection_active a
LEFT JOIN projection_checkpoint c ON c.name = a.name AND c.copy = a.copy
WHERE a.name = $1"""


def _check_period(period: str) -> None:
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, not {period!r}")


async def _snapshot(
    conn: asyncpg.Connection,
    sums_sql: str,
    *args: Any,
    pause: Pause | None = None,
    by_ward_sql: str | None = None,
) -> StatsSnapshot:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await hold_copies(conn)
        head = await conn.fetchrow(_SNAPSHOT_HEAD, NAME)
        if head is None:
            raise LookupError(f"no active copy for projection {NAME!r}: run the migrations")
        if pause is not None:
            await pause()  # test hook: hold a query between the pointer and the figures
        rows = await conn.fetch(sums_sql, head["copy"], *args)
        ward_rows = await conn.fetch(by_ward_sql, head["copy"], *args) if by_ward_sql is not None else None
    sums = {r["metric"]: int(r["value"]) for r in rows}
    by_ward: dict[str, dict[str, int]] | None = None
    if ward_rows is not None:
        raw: dict[str, dict[str, int]] = {ward: {} for ward in args[-1]}
        for r in ward_rows:
            raw[r["ward"]][r["metric"]] = int(r["value"])
        by_ward = {ward: complete(figures) for ward, figures in raw.items()}
    return StatsSnapshot(
        metrics=complete(sums),
        approximate=approximate(sums),
        as_of_seq=head["seq"] or 0,
        stale=head["halted"] is not None,
        fold_version=head["fold_version"] or FOLD_VERSION,
        by_ward=by_ward,
    )


# Flows count in the years asked for ($3 to $4); a stock is stored as its change in each year, so what stands at
# the end of year $4 is the sum of its changes up to it
_IN_YEARS: Final = """((year BETWEEN $3 AND $4 AND NOT metric = ANY($5::text[]))
                          OR (year <= $4 AND metric = ANY($5::text[])))"""


async def read_stats(
    conn: asyncpg.Connection,
    *,
    wards: Sequence[str],
    year: int,
    period: str,
    from_year: int | None = None,
    pause: Pause | None = None,
    by_ward: bool = False,
) -> StatsSnapshot:
    """The sum of the figures of ``wards`` (2025 codes) for ``year`` of ``period`` ('calendar'|'reporting'),
    or over the years ``from_year`` to ``year``: flows summed over them, stocks as they stand at the end.
    ``by_ward``: each ward's own figures too, read in the same snapshot (one statement for all of them)."""
    _check_period(period)
    return await _snapshot(
        conn,
        f"""SELECT metric, sum(value) AS value FROM stats
           WHERE copy = $1 AND period = $2 AND {_IN_YEARS} AND ward = ANY($6::text[]) GROUP BY metric""",
        period,
        year if from_year is None else from_year,
        year,
        STOCKS,
        list(wards),
        pause=pause,
        by_ward_sql=f"""SELECT ward, metric, sum(value) AS value FROM stats
           WHERE copy = $1 AND period = $2 AND {_IN_YEARS} AND ward = ANY($6::text[]) GROUP BY ward, metric"""
        if by_ward
        else None,
    )


async def read_province_stats(
    conn: asyncpg.Connection, *, province: str, year: int, period: str, from_year: int | None = None
) -> StatsSnapshot:
    """The province's figures: the sum over its wards (2025 codes)."""
    _check_period(period)
    return await _snapshot(
        conn,
        f"""SELECT metric, sum(value) AS value FROM stats
           WHERE copy = $1 AND period = $2 AND {_IN_YEARS} AND province = $6 GROUP BY metric""",
        period,
        year if from_year is None else from_year,
        year,
        STOCKS,
        province,
    )


async def all_figures(conn: asyncpg.Connection, copy: int) -> dict[tuple[str, str, int, str], int]:
    """Every non-zero figure of a copy, keyed (period, ward, year, metric): for checks and audits."""
    rows = await conn.fetch(
        "SELECT period, ward, year, metric, value FROM stats WHERE copy = $1 AND value <> 0", copy
    )
    return {(r["period"], r["ward"], r["year"], r["metric"]): int(r["value"]) for r in rows}
