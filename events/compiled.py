"""The compile step of the catalogue: a declared ``Figure`` turned into the function the fold calls per event or
item (``_compile``: names precomputed, no formatting while folding), an entry's figures into one function
giving a plain event's ``Contribution`` (``_contribution_of``), and ``Lifecycle``, the compiled form of a
lifecycle entity (its fields, roles, flows, stocks and finals). ``events.catalogue`` applies these to its
declarations (``CONTRIBUTIONS``, ``LIFECYCLES``).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from events.declarations import EventSpec, Figure, Role
from events.schema import BaseEvent, Event

Contribution = tuple[tuple[str, int], ...]


def _compile(owner: type[Any], fig: Figure) -> Callable[[Any], Contribution]:
    """What one figure adds for one event or item: precomputed names, no formatting while folding."""
    names = {value: f"{fig.metric}.{value}" for value in fig.breakdowns(owner)}
    metric, amount, when, unless, aside = fig.metric, fig.amount, fig.when, fig.unless, fig.aside
    bys = fig.by_fields

    if len(bys) == 1 and aside is None and amount is not None and not fig.stock:
        (by,) = bys
        field_name = amount

        def one_by(obj: Any) -> Contribution:  # the common shape, kept fast
            if when is not None and getattr(obj, when[0]) != when[1]:
                return ()
            if unless is not None and getattr(obj, unless[0]) == unless[1]:
                return ()
            n = int(getattr(obj, field_name))
            return ((metric, n), (names[getattr(obj, by)], n))

        return one_by

    def add(obj: Any) -> Contribution:
        if when is not None and getattr(obj, when[0]) != when[1]:
            return ()
        if unless is not None and getattr(obj, unless[0]) == unless[1]:
            return ()
        n = 1 if amount is None else int(getattr(obj, amount) or 0)
        if not n:
            return ()
        if aside is not None and getattr(obj, aside[0]) == aside[1]:
            return ((names[str(aside[1])], n),)
        return ((metric, n), *((names[getattr(obj, by)], n) for by in bys))

    return add


def _contribution_of(spec: EventSpec) -> Callable[[Event], Contribution]:
    """Specialised per shape (the fold calls this once per event): figures of the event itself give distinct
    metrics and are concatenated; figures counted per item are added up per metric."""
    plain = [_compile(spec.struct, f) for f in spec.figures if f.each is None]
    per_item = [(f.each, _compile(spec.struct, f)) for f in spec.figures if f.each is not None]
    if not per_item and len(plain) == 1:
        (only,) = plain
        return only
    if not per_item and len(plain) == 2:
        first, second = plain

        def two(event: Event) -> Contribution:
            return first(event) + second(event)

        return two

    def contribution(event: Event) -> Contribution:
        merged: dict[str, int] = {}
        for add in plain:
            for name, n in add(event):
                merged[name] = merged.get(name, 0) + n
        for each, add in per_item:
            for item in getattr(event, each):
                for name, n in add(item):
                    merged[name] = merged.get(name, 0) + n
        return tuple(merged.items())

    return contribution


@dataclass(frozen=True)
class Lifecycle:
    """How the fold counts a ``lifecycle`` entity, compiled from its types' entries.

    The entity's state is its history of marks ``(event id, role, day, values)`` (values: of ``fields``, in
    order; None where the event does not set one). Its figures are a pure function of that history: the
    creating mark's flows in its year, the ending mark's flows in its year, and its stocks from the creation on
    (changed where an update sets new values) until the end."""

    entity: str
    state: int
    fields: tuple[str, ...]
    roles: Mapping[type[BaseEvent], Role]
    flows: Mapping[Role, Callable[[Any], Contribution]]
    stocks: Callable[[Any], Contribution]
    finals: Callable[[Any], Contribution] = lambda _: ()
    counted_in: str | None = None
    """The field (of ``fields``) holding the year every figure counts in; None: each mark's own day."""
    _make_attrs: Callable[[tuple[object, ...]], tuple[object, ...]] = field(
        init=False, repr=False, compare=False
    )

    def values_of(self, event: BaseEvent) -> tuple[object, ...]:
        return tuple(getattr(event, name, None) for name in self.fields)

    def __post_init__(self) -> None:
        attrs_type: Any = collections.namedtuple("Attrs", self.fields)  # type: ignore[misc]
        object.__setattr__(self, "_make_attrs", attrs_type._make)

    def attrs(self, values: tuple[object, ...]) -> tuple[object, ...]:
        """An entity's attributes at one point of its history, read by its figures like an event's fields
        (a named tuple of ``fields``: each read is a plain attribute, the fold reads them often)."""
        made: tuple[object, ...] = self._make_attrs(values)
        return made


def _merged(adds: list[Callable[[Any], Contribution]]) -> Callable[[Any], Contribution]:
    def contribution(obj: Any) -> Contribution:
        merged: dict[str, int] = {}
        for add in adds:
            for name, n in add(obj):
                merged[name] = merged.get(name, 0) + n
        return tuple(merged.items())

    return contribution
