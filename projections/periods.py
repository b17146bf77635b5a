"""The two kinds of year a figure is counted in.

``calendar``: the year of ``occurred_on``. ``reporting``: the government's annual reporting period, from
15 December of year Y-1 to 14 December of year Y, is reporting year Y (so 2018-12-15 counts in 2019).
"""

from __future__ import annotations

import datetime as dt
from typing import Final, Literal, TypeAlias

Period: TypeAlias = Literal["calendar", "reporting"]

CALENDAR: Final = "calendar"
REPORTING: Final = "reporting"
PERIODS: Final[tuple[Period, ...]] = (CALENDAR, REPORTING)

REPORTING_START_MONTH: Final = 12
REPORTING_START_DAY: Final = 15


def calendar_year(day: dt.date) -> int:
    return day.year


def reporting_year(day: dt.date) -> int:
    if day.month == REPORTING_START_MONTH and day.day >= REPORTING_START_DAY:
        return day.year + 1
    return day.year


def year_in(period: Period, day: dt.date) -> int:
    return calendar_year(day) if period == CALENDAR else reporting_year(day)


def years_of(day: dt.date) -> tuple[tuple[Period, int], tuple[Period, int]]:
    """(period, year) for both periods, calendar first."""
    return ((CALENDAR, calendar_year(day)), (REPORTING, reporting_year(day)))


def reporting_range(year: int) -> tuple[dt.date, dt.date]:
    """First and last day (inclusive) of reporting year ``year``."""
    return dt.date(year - 1, REPORTING_START_MONTH, REPORTING_START_DAY), dt.date(
        year, REPORTING_START_MONTH, REPORTING_START_DAY - 1
    )
