"""The fold's rules for retractions and corrections: ending a version, and replacing one by another.

A retraction (``entry.retracted``) subtracts exactly what its target version contributes and deletes its key;
retracting a correction lets the version it replaced stand again. A correction (``entry.corrected``) swaps
its target's contribution for its copy's in one step (``_swap``): the correction's key then holds a ``Fix``,
the replaced version's a ``Superseded`` (both declared in ``projections.fold_state``). ``VersionFolding``
builds on the rules of tips and of lifecycle entities, whose versions it ends and replaces. Pure; no I/O.
"""

from __future__ import annotations

import msgspec

from events.catalogue import LIFECYCLES
from events.schema import EntryCorrected, EntryRetracted, Event, TipAssessed, TipReceived
from projections.errors import UnknownTarget, WardMismatch
from projections.fold_lifecycles import EntityFolding, entity_key_of, mark_of
from projections.fold_parts import other_ward, part_of, received_link
from projections.fold_state import (
    EVENT_BIT,
    EntityLink,
    EntityState,
    Fix,
    Part,
    Superseded,
    TipLink,
    TipState,
    event_key,
    key_bytes,
    tip_key,
    year_key,
)
from projections.fold_tips import TipFolding


class VersionFolding(TipFolding, EntityFolding):
    """The rules of ``entry.retracted`` and ``entry.corrected``, over tips, lifecycle entities and parts."""

    def _retracted(self, seq: int, event: Event) -> None:
        assert isinstance(event, EntryRetracted)
        target = event.target_event_id
        tkey = target.int | EVENT_BIT
        value = self.get(tkey)
        if value is None or isinstance(value, TipState | EntityState | Superseded):
            raise UnknownTarget(
                f"no retractable event {target} (unknown, already retracted, or corrected)",
                seq=seq,
                event_id=event.event_id,
            )
        if isinstance(value, Fix):  # the version it replaced stands again
            pkey = event_key(value.replaces)
            previous = self.get(pkey)
            if not isinstance(previous, Superseded) or previous.by != target.bytes:
                raise UnknownTarget(
                    f"the version correction {target} replaced is missing", seq=seq, event_id=event.event_id
                )
            restored = previous.value
            self._swap(seq, event, target.bytes, value.value, value.replaces, _current(restored))
            self._written[pkey] = restored
        elif isinstance(value, EntityLink):
            self._retract_mark(seq, event, value)
        elif isinstance(value, TipLink):
            key = tip_key(value.tip)
            tip = self._tip(key, seq, event, "the retracted entry's tip is unknown")
            if value.assessment and not _assessed(tip, target.bytes):
                pass  # an assessment of an earlier tip of this id (retracted, its id received again)
            elif other_ward(tip.ward, tip.units, event):
                raise WardMismatch(
                    f"the retracted entry is in ward {tip.ward}", seq=seq, event_id=event.event_id
                )
            elif value.assessment:
                kept = tuple(a for a in tip.assessments if a[0] != target.bytes)
                self.set_tip(key, tip, msgspec.structs.replace(tip, assessments=kept))
            else:
                self.set_tip(key, tip, msgspec.structs.replace(tip, retracted=True))
        else:
            if other_ward(value.ward, value.units, event):
                raise WardMismatch(
                    f"the retracted entry is in ward {value.ward}", seq=seq, event_id=event.event_id
                )
            yk = year_key(value.day)
            for metric, amount in value.amounts:
                self.add(value.ward, yk, metric, -amount)
            if value.tips:
                self._unlink(target.bytes, value)
            if value.units:
                self.spread(value, yk, -1)
        self._written[tkey] = None

    def _corrected(self, seq: int, event: Event) -> None:
        assert isinstance(event, EntryCorrected)
        target = event.target_event_id
        tkey = target.int | EVENT_BIT
        value = self.get(tkey)
        if not isinstance(value, Part | TipLink | EntityLink | Fix):
            raise UnknownTarget(
                f"no correctable version {target} (unknown, retracted, or already corrected)",
                seq=seq,
                event_id=event.event_id,
            )
        copy = event.corrected
        new: Part | TipLink | EntityLink
        if type(copy) in LIFECYCLES:
            new = EntityLink(entity=key_bytes(entity_key_of(copy)), mark=mark_of(copy, event.event_id.bytes))
        elif isinstance(copy, TipReceived):
            new = received_link(copy, seq)
        elif isinstance(copy, TipAssessed):
            new = TipLink(tip=copy.tip_id.bytes, assessment=True, valuable=copy.valuable)
        else:
            new = part_of(copy, seq)
        self._swap(seq, event, target.bytes, _current(value), event.event_id.bytes, new)
        self._written[event.event_id.int | EVENT_BIT] = Fix(value=new, replaces=target.bytes)
        self._written[tkey] = Superseded(value=value, by=event.event_id.bytes)

    def _swap(
        self,
        seq: int,
        event: Event,
        old_id: bytes,
        old: Part | TipLink | EntityLink,
        new_id: bytes,
        new: Part | TipLink | EntityLink,
    ) -> None:
        """Replace one version's contribution (``old``, of version ``old_id``) by another's, in one step."""
        if isinstance(old, EntityLink) or isinstance(new, EntityLink):
            if not (isinstance(old, EntityLink) and isinstance(new, EntityLink) and old.entity == new.entity):
                raise UnknownTarget(
                    "a correction must keep its target's type and entity", seq=seq, event_id=event.event_id
                )
            found = self._entity_of(old, old_id, seq, event)
            if found is None:
                return  # an event of an earlier entity of this id
            life, key, state = found
            marks = tuple(new.mark if m[0] == old_id else m for m in state.marks)
            self.set_entity(life, key, state, msgspec.structs.replace(state, marks=marks))
            return
        if isinstance(old, Part) and isinstance(new, Part):
            if other_ward(old.ward, old.units, event) or other_ward(new.ward, new.units, event):
                raise WardMismatch(
                    f"the corrected entry is in ward {old.ward}", seq=seq, event_id=event.event_id
                )
            # each version counts where its own place says (a pre-2025 copy's date may move it)
            oyk, nyk = year_key(old.day), year_key(new.day)
            for metric, amount in old.amounts:
                self.add(old.ward, oyk, metric, -amount)
            if old.units:
                self.spread(old, oyk, -1)
            for metric, amount in new.amounts:
                self.add(new.ward, nyk, metric, amount)
            if new.units:
                self.spread(new, nyk, 1)
            if old.tips:
                self._unlink(old_id, old)
            if new.tips:
                self._link(new_id, new)
            return
        if not (
            isinstance(old, TipLink)
            and isinstance(new, TipLink)
            and old.tip == new.tip
            and old.assessment == new.assessment
        ):
            raise UnknownTarget(
                "a correction must keep its target's type and tip", seq=seq, event_id=event.event_id
            )
        key = tip_key(old.tip)
        tip = self._tip(key, seq, event, "the corrected entry's tip is unknown")
        if new.assessment and not _assessed(tip, old_id):
            return  # an assessment of an earlier tip of this id (retracted, its id received again)
        if other_ward(tip.ward, tip.units, event):
            raise WardMismatch(f"the corrected entry is in ward {tip.ward}", seq=seq, event_id=event.event_id)
        if not new.assessment:
            after = msgspec.structs.replace(tip, day=new.day, source=new.source)
            if new.ward:  # a pre-2025 tip: the version's own place
                after = msgspec.structs.replace(after, ward=new.ward, units=new.units, approx=new.approx)
        else:
            kept = tuple((new_id, new.valuable) if a[0] == old_id else a for a in tip.assessments)
            after = msgspec.structs.replace(tip, assessments=kept)
        self.set_tip(key, tip, after)


def _assessed(tip: TipState, event_id: bytes) -> bool:
    return any(a[0] == event_id for a in tip.assessments)


def _current(value: Part | TipLink | EntityLink | Fix) -> Part | TipLink | EntityLink:
    """What a standing version contributes."""
    return value.value if isinstance(value, Fix) else value
