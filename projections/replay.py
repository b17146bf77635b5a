"""In-memory replay: the statistics fold over a whole history, with no database. Pure.

Auditors' figures come from here; the live projection uses the very same fold, so the two cannot disagree
unless the stored figures were altered.
"""

from __future__ import annotations

from collections.abc import Iterable

from events.schema import Recorded
from projections import metrics as m
from projections.folds import Deltas, Figures, Key, Value, by_period, fold_into
from projections.periods import Period
from projections.places import is_unit_key


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

    def sums(self, *, wards: Iterable[str] | None, year: int, period: Period) -> dict[str, int]:
        """The raw sums over ``wards`` (None: every 2025 ward; a pre-2025 unit only when named) for one year."""
        wanted = None if wards is None else set(wards)
        sums: dict[str, int] = {}
        for (p, ward, y, metric), value in self.figures.items():
            if (
                p == period
                and y == year
                and (ward in wanted if wanted is not None else not is_unit_key(ward))
            ):
                sums[metric] = sums.get(metric, 0) + value
        return sums

    def metrics(self, *, wards: Iterable[str] | None, year: int, period: Period) -> dict[str, int]:
        """The sum over ``wards`` (None: every ward) for one year, shaped like a query reply's metrics."""
        return m.complete(self.sums(wards=wards, year=year, period=period))

    def years(self, period: Period) -> list[int]:
        return sorted({y for (p, _, y, _) in self.figures if p == period})
