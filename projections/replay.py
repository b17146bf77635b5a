"""In-memory replay: the statistics fold over a whole history, with no database. Pure.

Auditors' figures come from here; the live projection uses the very same fold, so the two cannot disagree
unless the stored figures were altered.
"""

from __future__ import annotations

from collections.abc import Iterable

from events.catalogue import stock_metrics
from events.schema import Recorded
from projections import metrics as m
from projections.fold_state import Deltas, Figures, Key, Value, by_period
from projections.folds import fold_into
from projections.periods import Period
from projections.places import is_unit_key

_STOCKS = stock_metrics()


class InMemoryReplay:
    def __init__(self) -> None:
        self._state: dict[Key, Value | None] = {}
        self._totals: Deltas = {}
        self._figures: Figures | None = None
        self.last_seq = 0
        self.events = 0

    @classmethod
    def restored(cls, totals: Deltas, *, last_seq: int, events: int) -> InMemoryReplay:
        """A replay's result rebuilt from its totals (folded elsewhere, e.g. in another process)."""
        replay = cls()
        replay._totals = totals
        replay.last_seq = last_seq
        replay.events = events
        return replay

    @property
    def totals(self) -> Deltas:
        """Running totals keyed (ward, year key, metric), zeros possibly included."""
        return self._totals

    def feed(self, events: Iterable[tuple[int, Recorded]]) -> None:
        batch = events if isinstance(events, list) else list(events)
        if not batch:
            return
        self._figures = None
        fold_into(self._state, self._totals, batch)
        self.last_seq = batch[-1][0]
        self.events += len(batch)

    @property
    def figures(self) -> Figures:
        """Every non-zero figure, keyed (period, ward, year, metric)."""
        if self._figures is None:
            self._figures = by_period(self._totals)
        return self._figures

    def sums(
        self, *, wards: Iterable[str] | None, year: int, period: Period, from_year: int | None = None
    ) -> dict[str, int]:
        """The raw sums over ``wards`` (None: every 2025 ward; a pre-2025 unit only when named) for one year (or
        the years ``from_year`` to ``year``: flows summed over them, stocks as they stand at the end)."""
        wanted = None if wards is None else set(wards)
        first = year if from_year is None else from_year
        sums: dict[str, int] = {}
        for (p, ward, y, metric), value in self.figures.items():
            if p != period or y > year:
                continue
            if (ward not in wanted) if wanted is not None else is_unit_key(ward):
                continue
            if y >= first or m.stock_base(metric) in _STOCKS:  # a stock stands as the sum of its changes
                sums[metric] = sums.get(metric, 0) + value
        return sums

    def metrics(
        self, *, wards: Iterable[str] | None, year: int, period: Period, from_year: int | None = None
    ) -> dict[str, int]:
        """The sum over ``wards`` (None: every 2025 ward) for one year (or the years ``from_year`` to ``year``:
        flows summed over them, stocks as they stand at the end), shaped like a query reply's metrics."""
        return m.complete(self.sums(wards=wards, year=year, period=period, from_year=from_year))

    def years(self, period: Period, until: int | None = None) -> list[int]:
        """The years with figures: those with flows, and from a stock's first year every year up to
        ``until`` (the current year)."""
        years = {
            y for (p, _, y, metric) in self.figures if p == period and m.stock_base(metric) not in _STOCKS
        }
        first_stock = min(
            (y for (p, _, y, mt) in self.figures if p == period and m.stock_base(mt) in _STOCKS), default=None
        )
        if first_stock is not None:
            years.update(range(first_stock, max(first_stock, until or first_stock) + 1))
        return sorted(years)
