"""The catalogue's declaration types: what an entry of ``events.catalogue.CATALOGUE`` is made of. ``EventSpec``
(an event type's Struct, summary, subject rule, fold rule and figures), ``Entity`` (an entity subject and its
role), ``Figure`` (a figure an event contributes), the ``Role`` and ``FoldRule`` literals, and
``literal_values`` (the values of a ``Literal`` field, which name a figure's breakdowns). Plain frozen
dataclasses; the declarations themselves are in ``events.catalogue``.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from events.schema import BaseEvent

Role = Literal["creates", "refers", "ends", "retracts"]
FoldRule = Literal["plain", "tip", "lifecycle", "retraction", "correction"]
"""How the fold applies a type: ``plain`` adds its declared figures (and a retraction takes exactly those away);
``tip`` keeps a tip's state (received, assessments) and counts from it; ``lifecycle`` keeps an entity's history
(created, updated, ended: ``Entity.state``) and counts its declared flows and stocks from it; ``retraction`` undoes its target (a
correction's target stands again); ``correction`` replaces its target's contribution with its copy's."""


@dataclass(frozen=True)
class Entity:
    """An entity subject: ``…<name>.<value of field>``, guarded with ``Nats-Expected-Last-Subject-Sequence``."""

    name: str
    """The subject token before the id (``tip``), and the gateway's claim key prefix."""
    field: str
    """The event's field holding the entity's id."""
    role: Role
    """``creates`` (the first event on the subject; a second is ``conflict``), ``refers`` (the entity must exist,
    in the same ward), ``retracts`` (ends a version of an entry of the log: a retraction or a correction. Every
    end of a version lives on that version's subject ``retraction.<target_event_id>``, guarded with the
    subject's expected last sequence, so a version is retracted or corrected at most once; only a retracted
    correction of it makes it open again)."""
    versioned: bool = False
    """The event may carry ``expected_version`` (the entity's latest sequence), checked by the stream."""
    past: str = "created"
    """How a conflict says the entity was made: ``tip 7c… was already received``."""
    claim_prefix: str | None = None
    """The gateway index's key prefix for the entity (default: ``name``; stored claims keep theirs)."""
    state: int | None = None
    """For a ``lifecycle`` entity: the number of its key space in the fold's state (stored: never change it;
    unique per entity name, ``tests/test_catalogue.py``)."""
    path: str | None = None
    """The field an error about the entity points at (default: ``field``; ``standard`` is derived from
    ``unit_id`` and ``year``, so errors point at ``$.unit_id``)."""
    counted_in: str | None = None
    """For a ``lifecycle`` entity: a field holding the year all its figures count in (both kinds of year),
    instead of the year of each event's ``occurred_on``."""
    same: tuple[str, ...] = ()
    """For a ``refers`` event: fields that must equal its entity's creating event's (``invalid`` otherwise)."""

    @property
    def claim(self) -> str:
        return self.claim_prefix or self.name

    @property
    def error_path(self) -> str:
        return f"$.{self.path or self.field}"


@dataclass(frozen=True)
class Figure:
    """A figure an event contributes to its ward and year (of ``occurred_on``).

    A flow counts in the year of the event. A ``stock`` (declared on a ``lifecycle`` entity's creating event)
    is what stands at the end of a year: it counts from the year the entity was created (or updated) in every
    later year, up to the current year, until the year it ends."""

    metric: str
    amount: str | None = None
    """A count field of the event (or of the item, with ``each``); None: 1. Absent (None) counts 0."""
    by: str | tuple[str, ...] | None = None
    """Fields whose values name breakdowns, ``<metric>.<value>``, counted beside the total."""
    stock: bool = False
    """What stands at the end of each year (see above), not what happened in it."""
    final: bool = False
    """For a ``lifecycle`` entity: counted once, in the year of its creation, on its latest values (a
    superseding assessment replaces the earlier one's), never per update."""
    aside: tuple[str, object] | None = None
    """When this field has this value, counted only in that value's breakdown (``<metric>.<value>``): never
    in the total nor in other breakdowns (models of another campaign, ``dan_van_kheo``)."""
    each: str | None = None
    """A list field: the figure is counted per item, from the item's fields."""
    when: tuple[str, object] | None = None
    """Counted only when this field has this value."""
    unless: tuple[str, object] | None = None
    """Not counted when this field has this value."""
    description: str = ""

    @property
    def by_fields(self) -> tuple[str, ...]:
        """The fields of ``by``, as a tuple (empty without breakdowns)."""
        if self.by is None:
            return ()
        return (self.by,) if isinstance(self.by, str) else self.by

    def breakdowns(self, owner: type[Any]) -> tuple[str, ...]:
        """The breakdown values of ``by``: the fields' Literal values (minus ``unless``), in order."""
        out: list[str] = []
        for by in self.by_fields:
            values = literal_values(_field_type(owner, self.each, by))
            if self.unless is not None and self.unless[0] == by:
                values = tuple(v for v in values if v != self.unless[1])
            out += [v for v in values if v not in out]
        return tuple(out)

    def reads(self) -> tuple[str, ...]:
        """The event's fields this figure reads."""
        names = [self.amount, *self.by_fields, *(c[0] for c in (self.when, self.unless, self.aside) if c)]
        return tuple(dict.fromkeys(n for n in names if n is not None))


@dataclass(frozen=True)
class EventSpec:
    struct: type[BaseEvent]
    summary: str
    subject: str | Entity
    """A plain subject token (``session``), or the entity whose subject the event uses."""
    fold: FoldRule = "plain"
    figures: tuple[Figure, ...] = ()
    counts: tuple[str, ...] = ()
    """Figures a ``tip`` rule counts (documented here; ``projections/fold_tips.py`` keeps the tip's state)."""
    counts_by: tuple[str, tuple[str, ...]] | None = None
    """The tip's field whose value names a breakdown of each of ``counts`` (``tips_received.<source>``), and its
    values."""
    extra: Mapping[str, str] = field(default_factory=dict)
    links: Entity | None = None
    """Entities a plain event names in a list field beside its subject (``tip_ids``, role ``refers``): the gateway
    checks each is in the log, in the event's ward; the fold links each to this version of the event and counts
    ``counts`` through the entity (``tips_leading_to_cases``: in the tip's ward and year, once per tip)."""

    @property
    def tag(self) -> str:
        return str(self.struct.__struct_config__.tag)

    @property
    def owner(self) -> type[BaseEvent]:
        """The struct whose fields the figures read: the event's own, or for a ``lifecycle`` entity its
        creating type's (a dissolution counts by the level and kind its model was set up with)."""
        entity = self.entity
        if self.fold == "lifecycle" and entity is not None and entity.role != "creates":
            from events.catalogue import creator_of  # imported on use: events.catalogue imports this module

            return creator_of(entity.name).struct
        return self.struct

    @property
    def entity(self) -> Entity | None:
        return self.subject if isinstance(self.subject, Entity) else None

    def rest_of(self, event: BaseEvent) -> str:
        """The subject's tokens after the ward: ``session``; ``tip.<tip_id>``; an end of an entity on a subject
        of its own, ``model.<model_id>.end``, so that its one standing end is found with one read."""
        if isinstance(self.subject, Entity):
            end = ".end" if self.subject.role == "ends" else ""
            return f"{self.subject.name}.{getattr(event, self.subject.field)}{end}"
        return self.subject

    def metrics(self) -> tuple[str, ...]:
        """Every metric name this type can change: totals, then breakdowns."""
        names = [*self.counts] if self.fold != "plain" else []
        for fig in self.figures:
            if fig.metric not in names:
                names.append(fig.metric)
        if self.counts_by is not None:
            names += [f"{name}.{value}" for name in self.counts for value in self.counts_by[1]]
        if self.fold == "plain":
            names += [name for name in self.counts if name not in names]
        for fig in self.figures:
            names += [f"{fig.metric}.{value}" for value in fig.breakdowns(self.owner)]
        return tuple(names)


def literal_values(tp: Any) -> tuple[str, ...]:
    """The values of a ``Literal`` (possibly inside ``Annotated`` or a tuple)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return literal_values(typing.get_args(tp)[0])
    if origin is Literal:
        return tuple(str(v) for v in typing.get_args(tp))
    if origin is tuple:
        return literal_values(typing.get_args(tp)[0])
    raise TypeError(f"{tp!r} is not a Literal")


def _field_type(owner: type[Any], each: str | None, name: str) -> Any:
    hints = typing.get_type_hints(owner, include_extras=True)
    if each is not None:
        item = typing.get_args(typing.get_args(hints[each])[0])[0]  # Annotated[tuple[Item, ...], …]
        hints = typing.get_type_hints(item, include_extras=True)
    return hints[name]
