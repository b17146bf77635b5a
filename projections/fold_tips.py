"""The fold's rules for tips: a tip's state (``TipState``) and the figures it counts in.

A received tip counts in ``tips_received``, in ``tips_valuable`` while its latest standing assessment says so,
and in ``tips_leading_to_cases`` while a standing ``cases.cleared`` version names it (each also by the tip's
source). ``TipFolding`` applies ``tip.received`` and ``tip.assessed``, stores a tip with the change of what it
counts (``set_tip``), and links or unlinks the versions naming a tip (``_link``/``_unlink``). Pure; no I/O.
"""

from __future__ import annotations

import sys
from typing import Final

import msgspec

from events.schema import TIP_SOURCES, Event, Locality, TipAssessed, TipReceived
from projections import metrics as m
from projections.errors import DuplicateEntity, UnknownTip, WardMismatch
from projections.fold_parts import FolderBase, other_ward, received_link
from projections.fold_state import EVENT_BIT, Key, Part, TipLink, TipState, YearKey, tip_key, year_key

_RECEIVED_BY: Final[dict[str, tuple[str, str]]] = {
    s: (m.TIPS_RECEIVED, f"{m.TIPS_RECEIVED}.{s}") for s in TIP_SOURCES
}
_VALUABLE_BY: Final[dict[str, tuple[str, str]]] = {
    s: (m.TIPS_VALUABLE, f"{m.TIPS_VALUABLE}.{s}") for s in TIP_SOURCES
}
"""Per source, the metrics a tip counts in: the total and its source's breakdown."""
_LEADING: Final = (m.TIPS_LEADING,)


class TipFolding(FolderBase):
    """The rules of tips (``tip.received``, ``tip.assessed``) and the links of versions naming tips."""

    def add_tip(self, tip: TipState, yk: YearKey, metric: str, amount: int) -> None:
        self.add(tip.ward, yk, metric, amount)
        if tip.approx:
            self.add(tip.ward, yk, m.APPROXIMATE + metric, amount)
        for unit in tip.units:
            self.add(unit, yk, metric, amount)

    def set_tip(self, key: Key, before: TipState | None, after: TipState) -> None:
        """Store the tip and add the change of its tips_received / tips_valuable contribution (each also by
        the tip's source)."""
        if before is not None and (before.day, before.ward, before.units, before.approx, before.source) != (
            after.day,
            after.ward,
            after.units,
            after.approx,
            after.source,
        ):  # a corrected tip.received: its year, its source (and a pre-2025 tip's place) may move
            self._count_tip(before, -1)
            before = None
        if before is None:
            was_counted = was_valuable = was_leading = False
        else:
            was_counted = not before.retracted
            was_valuable = before.valuable
            was_leading = was_counted and bool(before.cases)
        counted = not after.retracted
        valuable = after.valuable
        leading = counted and bool(after.cases)
        if was_counted != counted or was_valuable != valuable or was_leading != leading:
            deltas, ward, yk, plain = (
                self.deltas,
                after.ward,
                year_key(after.day),
                not after.units and not after.approx,
            )
            for changed, now, metrics in (
                (was_counted != counted, counted, _RECEIVED_BY[after.source]),
                (was_valuable != valuable, valuable, _VALUABLE_BY[after.source]),
                (was_leading != leading, leading, _LEADING),
            ):
                if changed:
                    n = 1 if now else -1
                    for metric in metrics:
                        if plain:  # a gso-2025 tip: its ward only (the common case, kept cheap)
                            k = (ward, yk, metric)
                            deltas[k] = deltas.get(k, 0) + n
                        else:
                            self.add_tip(after, yk, metric, n)
        self._written[key] = after

    def _count_tip(self, tip: TipState, n: int) -> None:
        """Add (or with -1 take away) everything a tip counts."""
        yk = year_key(tip.day)
        counted = not tip.retracted
        for now, metrics in (
            (counted, _RECEIVED_BY[tip.source]),
            (tip.valuable, _VALUABLE_BY[tip.source]),
            (counted and bool(tip.cases), _LEADING),
        ):
            if now:
                for metric in metrics:
                    self.add_tip(tip, yk, metric, n)

    def _tip_event(self, seq: int, event: Event) -> None:
        if isinstance(event, TipReceived):
            self._tip_received(seq, event)
        else:
            self._tip_assessed(seq, event)

    def _tip_received(self, seq: int, event: Event) -> None:
        assert isinstance(event, TipReceived)
        key = event.tip_id.int
        before = self.get(key)
        if before is not None and not (isinstance(before, TipState) and before.retracted):
            raise DuplicateEntity(
                f"tip {event.tip_id} was already received", seq=seq, event_id=event.event_id
            )
        # a retracted tip's id was freed: received again, it is a new tip (the old one's assessments stay
        # with the old one)
        link = received_link(event, seq)
        tip = TipState(
            ward=sys.intern(event.locality.ward) if isinstance(event.locality, Locality) else link.ward,
            day=link.day,
            retracted=False,
            assessments=(),
            source=link.source,
            since=seq,
            units=link.units,
            approx=link.approx,
        )
        self.set_tip(key, before if isinstance(before, TipState) else None, tip)
        self._written[event.event_id.int | EVENT_BIT] = link

    def _tip_assessed(self, seq: int, event: Event) -> None:
        assert isinstance(event, TipAssessed)
        key = event.tip_id.int
        tip = self.get(key)
        if not isinstance(tip, TipState):
            raise UnknownTip(f"tip {event.tip_id} is unknown", seq=seq, event_id=event.event_id)
        if other_ward(tip.ward, tip.units, event):
            raise WardMismatch(f"tip {event.tip_id} is in ward {tip.ward}", seq=seq, event_id=event.event_id)
        assessed = (*tip.assessments, (event.event_id.bytes, event.valuable))
        self.set_tip(key, tip, msgspec.structs.replace(tip, assessments=assessed))
        self._written[event.event_id.int | EVENT_BIT] = TipLink(
            tip=event.tip_id.bytes, assessment=True, valuable=event.valuable
        )

    def _link(self, version: bytes, part: Part) -> None:
        """A version naming tips stands: each tip it names, received before it in its ward, counts it."""
        for tip_id in part.tips:
            key = tip_key(tip_id)
            tip = self.get(key)
            # not a tip (an as-of replay left it out), received again since, or in another ward (a concurrent
            # retraction and new receipt elsewhere): the version speaks of no tip that stands here
            stands_here = isinstance(tip, TipState) and tip.since < part.seq and tip.ward == part.ward
            if stands_here and isinstance(tip, TipState) and version not in tip.cases:
                self.set_tip(key, tip, msgspec.structs.replace(tip, cases=(*tip.cases, version)))

    def _unlink(self, version: bytes, part: Part) -> None:
        """A version naming tips no longer stands (retracted, or replaced by a correction)."""
        for tip_id in part.tips:
            key = tip_key(tip_id)
            tip = self.get(key)
            if isinstance(tip, TipState) and version in tip.cases:
                kept = tuple(v for v in tip.cases if v != version)
                self.set_tip(key, tip, msgspec.structs.replace(tip, cases=kept))

    def _tip(self, key: Key, seq: int, event: Event, message: str) -> TipState:
        tip = self.get(key)
        if not isinstance(tip, TipState):
            raise UnknownTip(message, seq=seq, event_id=event.event_id)
        return tip
