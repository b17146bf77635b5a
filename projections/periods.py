"""The two kinds of year a figure is counted in.

``calendar``: the year of ``occurred_on``. ``reporting``: the government's annual reporting period, from
15 December of year Y-1 to 14 December of year Y, is reporting year Y (so 2018-12-15 counts in 2019).
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

Period: TypeAlias = Literal["calendar", "reporting"]

CALENDAR: Final = "calendar"
REPORTING: Final = "reporting"
PERIODS: Final[tuple[Period, ...]] = (CALENDAR, REPORTING)

REPORTING_START_MONTH: Final = 12
REPORTING_START_DAY: Final = 15
