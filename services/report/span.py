"""Which years a report covers: one year or a range, calendar or reporting years."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec

from services.report.errors import BadSpan

Period = Literal["calendar", "reporting"]


class Span(msgspec.Struct, frozen=True, kw_only=True):
    first: int
    last: int
    period: Period = "calendar"

    def __post_init__(self) -> None:
        if self.first > self.last:
            raise BadSpan(f"the first year {self.first} is after the last {self.last}")
        if self.first < 2000 or self.last > 2100:
            raise BadSpan(f"years {self.first}–{self.last}: give years from 2000 to 2100")

    @property
    def single(self) -> bool:
        return self.first == self.last

    def request(self) -> dict[str, Any]:
        """The time part of a query-service request."""
        when: dict[str, Any] = (
            {"year": self.last} if self.single else {"from_year": self.first, "to_year": self.last}
        )
        return {**when, "period": self.period}

    def previous(self) -> Span:
        """The span of the same length just before (the year before, for one year)."""
        n = self.last - self.first + 1
        return Span(first=self.first - n, last=self.last - n, period=self.period)

    def dates(self) -> tuple[dt.date, dt.date]:
        """First and last day: calendar years run 1/1–31/12; reporting year Y runs 15/12/(Y−1)–14/12/Y."""
        if self.period == "reporting":
            return dt.date(self.first - 1, 12, 15), dt.date(self.last, 12, 14)
        return dt.date(self.first, 1, 1), dt.date(self.last, 12, 31)

    def cli_flags(self) -> str:
        years = f"--year {self.last}" if self.single else f"--years {self.first}-{self.last}"
        return f"{years} --period {self.period}"
