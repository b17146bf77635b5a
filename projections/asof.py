"""Business time for auditors: keep only facts that occurred on or before a date. Pure.

A fact (a tip received, a session held, …) is kept when its ``occurred_on`` is at most the cut-off. An
assessment or a retraction is kept when its target is kept, whatever its own date: it speaks about the target.
An update or end of a lifecycle entity (a model, a person under management) is a fact of its own date, kept
only when the entity's creation was kept too.
"""

from __future__ import annotations

import datetime as dt
import uuid

from events.catalogue import LIFECYCLES, SPECS
from events.schema import EntryCorrected, EntryRetracted, Recorded, TipAssessed, TipReceived


class OccurredOnOrBefore:
    """A stateful filter over events in stream order."""

    def __init__(self, cutoff: dt.date) -> None:
        self._cutoff = cutoff
        self._dropped_events: set[uuid.UUID] = set()
        self._dropped_tips: set[uuid.UUID] = set()
        self._dropped_entities: set[tuple[int, uuid.UUID]] = set()

    def keep(self, recorded: Recorded) -> bool:
        event = recorded.event
        match event:
            case TipAssessed(tip_id=tip_id):
                kept = tip_id not in self._dropped_tips
            case EntryRetracted(target_event_id=target) | EntryCorrected(target_event_id=target):
                kept = target not in self._dropped_events
            case _ if type(event) in LIFECYCLES:
                entity = SPECS[type(event)].entity
                assert entity is not None
                key = (LIFECYCLES[type(event)].state, getattr(event, entity.field))
                kept = event.occurred_on <= self._cutoff
                if entity.role == "creates":  # a freed id created again: the latest creation decides
                    if kept:
                        self._dropped_entities.discard(key)
                    else:
                        self._dropped_entities.add(key)
                else:
                    kept = kept and key not in self._dropped_entities
            case _:
                kept = event.occurred_on <= self._cutoff
                if isinstance(event, TipReceived):  # a freed tip id received again: the latest tip decides
                    if kept:
                        self._dropped_tips.discard(event.tip_id)
                    else:
                        self._dropped_tips.add(event.tip_id)
        if not kept:
            self._dropped_events.add(event.event_id)
        return kept
