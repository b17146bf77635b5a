"""The event catalogue: every event type declared once, beside what the rest of the system needs to know of it.

Each ``EventSpec`` holds an event type's Struct (its schema, in ``events/schema.py``), its subject rule (a plain
subject shared by independent events, or the entity it creates, refers to or retracts), and the figures it
contributes. Everything else derives from here:

- ``events.subjects.rest_of``: the last tokens of its subject;
- the gateway's entity rules (claims, references, expected sequences, versions; ``services/gateway/pipeline.py``);
- the fold (``projections/folds.py``): how each type is applied, and what a plain event adds (and a retraction
  of it takes away) by its declared figures;
- the list of metrics (``projections/metrics.py``) and the README's figure table (``figure_table``);
- the JSON Schemas and the AsyncAPI document (``antq contract export``).

``tests/test_catalogue.py`` walks every type of the ``Event`` union and proves each has its entry, its subject
and its fold. Adding a plain countable type: its Struct (and the union), its entry here, the test reference
model (``tests/test_fold_model.py``) and the README row (``figure_table``'s output).
"""

from __future__ import annotations

import collections
import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from events.schema import (
    EVENT_TYPES,
    TIP_SOURCES,
    BaseEvent,
    BroadcastAired,
    CampaignLaunched,
    CasesCleared,
    CommendationAwarded,
    ConsultationHeld,
    EntryCorrected,
    EntryRetracted,
    Event,
    MediationConcluded,
    ModelDissolved,
    ModelEstablished,
    ModelUpdated,
    PatrolHeld,
    PledgeSigned,
    SafetyAssessed,
    SafetyRegistered,
    SessionHeld,
    TipAssessed,
    TipReceived,
    WeaponsSurrendered,
    YouthEnrolled,
    YouthReleased,
)

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
    """Figures a ``tip`` rule counts (documented here; ``projections/folds.py`` keeps the tip's state)."""
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


TIP = Entity("tip", "tip_id", "creates", past="received")
TIP_LINK = Entity("tip", "tip_ids", "refers")
"""The tips a ``cases.cleared`` names (``EventSpec.links``)."""
_DVK = ("kind", "dan_van_kheo")
""""Dân vận khéo" models belong to another campaign: counted in their own breakdown only."""

CATALOGUE: tuple[EventSpec, ...] = (
    EventSpec(
        TipReceived,
        "a tip from the public received (tiếp nhận tin báo)",
        TIP,
        fold="tip",
        counts=("tips_received",),
        counts_by=("source", TIP_SOURCES),
    ),
    EventSpec(
        TipAssessed,
        "a tip assessed as of value or not (đánh giá tin); the latest assessment counts",
        Entity("tip", "tip_id", "refers", versioned=True),
        fold="tip",
        counts=("tips_valuable",),
        counts_by=("source", TIP_SOURCES),
    ),
    EventSpec(
        SessionHeld,
        "an outreach / legal-education session held (buổi tuyên truyền)",
        "session",
        figures=(
            Figure("sessions_held", by="level", description="sessions held"),
            Figure("session_attendance", amount="attendance", by="level", description="attendances"),
        ),
    ),
    EventSpec(
        PledgeSigned,
        "pledges signed (ký cam kết)",
        "pledge",
        figures=(Figure("pledge_signatures", amount="signatures", by="signer", description="signatures"),),
    ),
    EventSpec(
        MediationConcluded,
        "a dispute mediated at the grassroots (hòa giải)",
        Entity("mediation", "case_id", "creates", past="concluded", claim_prefix="case"),
        figures=(
            Figure("mediations_concluded", description="cases concluded"),
            Figure("mediations_successful", when=("outcome", "successful"), description="successful ones"),
        ),
    ),
    EventSpec(
        WeaponsSurrendered,
        "weapons, explosives or support tools surrendered (giao nộp vũ khí)",
        "weapons",
        figures=(
            Figure(
                "weapons_surrendered",
                amount="quantity",
                by="kind",
                each="items",
                unless=("kind", "ammunition"),
                description="items, all kinds but ammunition",
            ),
            Figure(
                "ammunition_surrendered",
                amount="quantity",
                each="items",
                when=("kind", "ammunition"),
                description="rounds of ammunition",
            ),
        ),
    ),
    # --- issue 10: the movement's plain types
    EventSpec(
        CommendationAwarded,
        "commendations awarded (khen thưởng), to collectives or individuals, by an authority",
        "commendation",
        figures=(
            Figure(
                "commendations",
                amount="count",
                by=("recipient", "authority"),
                description="collectives and individuals commended",
            ),
        ),
    ),
    EventSpec(
        PatrolHeld,
        "a patrol held (tuần tra)",
        "patrol",
        figures=(
            Figure("patrols_held", description="patrols held"),
            Figure("patrol_participants", amount="participants", description="participants in them"),
        ),
    ),
    EventSpec(
        ConsultationHeld,
        "a legal consultation held (tư vấn pháp luật)",
        "consultation",
        figures=(
            Figure("consultations_held", description="consultations held"),
            Figure("consultation_people", amount="people", description="people advised"),
        ),
    ),
    EventSpec(
        BroadcastAired,
        "an outreach broadcast aired (radio, loudspeakers, television, online)",
        "broadcast",
        figures=(Figure("broadcasts_aired", by="medium", description="broadcasts aired"),),
    ),
    EventSpec(
        CampaignLaunched,
        "a campaign launched (phát động), the 19 August movement day among them",
        "campaign",
        figures=(
            Figure("campaigns_launched", description="campaigns launched"),
            Figure(
                "campaign_participants", amount="participants", description="participants (0 when not given)"
            ),
        ),
    ),
    EventSpec(
        CasesCleared,
        "cases cleared with the public's help (điều tra làm rõ vụ), by category; `tip_ids`: the tips (of this ward, "
        "in the log) that led to them",
        "cases",
        figures=(
            Figure("cases_cleared", amount="cases", by="category", description="cases cleared"),
            Figure("offenders", amount="offenders", by="category", description="offenders in them"),
            Figure(
                "rings_dismantled", amount="rings_dismantled", by="category", description="rings dismantled"
            ),
        ),
        links=TIP_LINK,
        counts=("tips_leading_to_cases",),
    ),
    # --- end of issue 10's plain types
    EventSpec(
        ModelEstablished,
        "a self-management model set up (mô hình tự quản về ANTT); stands until dissolved",
        Entity("model", "model_id", "creates", past="established", state=2),
        fold="lifecycle",
        figures=(
            Figure("models_established", by=("level", "kind"), aside=_DVK, description="models set up"),
            Figure(
                "models_active", by=("level", "kind"), aside=_DVK, stock=True, description="models standing"
            ),
            Figure(
                "model_points", amount="points", unless=_DVK, stock=True, description="replication points"
            ),
            Figure("model_teams", amount="teams", unless=_DVK, stock=True, description="teams of the models"),
        ),
    ),
    EventSpec(
        ModelUpdated,
        "new absolute points / teams of a standing model, from `occurred_on` on",
        Entity("model", "model_id", "refers", versioned=True, state=2),
        fold="lifecycle",
    ),
    EventSpec(
        ModelDissolved,
        "a model dissolved: it no longer stands from `occurred_on` on",
        Entity("model", "model_id", "ends", past="dissolved", state=2),
        fold="lifecycle",
        figures=(
            Figure("models_dissolved", by=("level", "kind"), aside=_DVK, description="models dissolved"),
        ),
    ),
    EventSpec(
        YouthEnrolled,
        "an at-risk young person taken under management (`person_ref`: a random id, never personal data)",
        Entity("youth", "person_ref", "creates", past="enrolled", state=3),
        fold="lifecycle",
        figures=(
            Figure("youth_enrolled", description="people enrolled"),
            Figure("youth_under_management", stock=True, description="people under management"),
        ),
    ),
    EventSpec(
        YouthReleased,
        "management of that person ended",
        Entity("youth", "person_ref", "ends", past="released", state=3),
        fold="lifecycle",
    ),
    EventSpec(
        SafetyRegistered,
        'a unit registered for the "An toàn về ANTT" standard of `year` (once per unit and year)',
        Entity(
            "safety", "standard", "creates", past="registered", state=4, path="unit_id", counted_in="year"
        ),
        fold="lifecycle",
        figures=(
            Figure("safety_registered", by="unit_kind", description="units registered"),
            Figure(
                "safety_achieved",
                by="unit_kind",
                when=("achieved", True),
                final=True,
                description="units that achieved the standard (the latest assessment)",
            ),
        ),
    ),
    EventSpec(
        SafetyAssessed,
        "a registered unit assessed at year end: the standard achieved or not; the latest assessment counts",
        Entity("safety", "standard", "refers", versioned=True, state=4, path="unit_id", same=("unit_kind",)),
        fold="lifecycle",
    ),
    EventSpec(
        EntryRetracted,
        "an entry retracted (its contribution removed; both stay in history)",
        Entity("retraction", "target_event_id", "retracts", past="retracted"),
        fold="retraction",
    ),
    EventSpec(
        EntryCorrected,
        "an entry corrected: the latest version replaced by `corrected` (same type, entity and locality)",
        # on the target version's end subject, shared with retractions: one end per version
        Entity("retraction", "target_event_id", "retracts", past="corrected"),
        fold="correction",
    ),
)

SPECS: Mapping[type[BaseEvent], EventSpec] = MappingProxyType({s.struct: s for s in CATALOGUE})
BY_TAG: Mapping[str, EventSpec] = MappingProxyType({s.tag: s for s in CATALOGUE})


def spec_of(event: BaseEvent) -> EventSpec:
    return SPECS[type(event)]


def metric_names() -> tuple[str, ...]:
    """Every total metric, in catalogue order (each appears in every reply, zero included)."""
    out: list[str] = []
    for spec in CATALOGUE:
        figures = tuple(f.metric for f in spec.figures)
        for name in (*figures, *spec.counts) if spec.fold == "plain" else (*spec.counts, *figures):
            if name not in out:
                out.append(name)
    return tuple(out)


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


CONTRIBUTIONS: Mapping[type[BaseEvent], Callable[[Event], Contribution]] = MappingProxyType(
    {s.struct: _contribution_of(s) for s in CATALOGUE if s.fold == "plain"}
)
"""What a plain event adds to its ward-year, as (metric, amount) pairs, by its declared figures."""


def creator_of(entity: str) -> EventSpec:
    """The catalogue entry of the type that creates ``entity``."""
    for spec in CATALOGUE:
        if spec.entity is not None and spec.entity.name == entity and spec.entity.role == "creates":
            return spec
    raise KeyError(f"no event type creates {entity!r}")


def ended_entities() -> frozenset[str]:
    """Entities some type ends: a reference to one (an update) must find it not ended."""
    return frozenset(s.entity.name for s in CATALOGUE if s.entity is not None and s.entity.role == "ends")


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


def _lifecycle_of(entity: str) -> Lifecycle:
    specs = [
        s for s in CATALOGUE if s.fold == "lifecycle" and s.entity is not None and s.entity.name == entity
    ]
    creator = creator_of(entity)
    states = {s.entity.state for s in specs if s.entity is not None}
    if len(states) != 1 or None in states:
        raise TypeError(f"the types of {entity!r} must declare one state number: {states}")
    fields: list[str] = []
    counted_in = creator.entity.counted_in if creator.entity is not None else None
    if counted_in is not None:
        fields.append(counted_in)
    for spec in specs:
        for fig in spec.figures:
            fields += [n for n in fig.reads() if n not in fields]
    owner = creator.struct
    flows = {
        s.entity.role: _merged([_compile(owner, f) for f in s.figures if not f.stock and not f.final])
        for s in specs
        if s.entity is not None
    }
    if any(f.stock for s in specs if s is not creator for f in s.figures):
        raise TypeError(f"stocks of {entity!r} are declared on its creating type only")
    return Lifecycle(
        entity=entity,
        state=int(next(iter(states))),  # type: ignore[arg-type]
        fields=tuple(fields),
        roles=MappingProxyType({s.struct: s.entity.role for s in specs if s.entity is not None}),
        flows=MappingProxyType(flows),
        stocks=_merged([_compile(owner, f) for f in creator.figures if f.stock]),
        finals=_merged([_compile(owner, f) for f in creator.figures if f.final]),
        counted_in=counted_in,
    )


LIFECYCLES: Mapping[type[BaseEvent], Lifecycle] = MappingProxyType(
    {
        struct: life
        for life in (
            _lifecycle_of(name)
            for name in dict.fromkeys(
                s.entity.name for s in CATALOGUE if s.fold == "lifecycle" and s.entity is not None
            )
        )
        for struct in life.roles
    }
)
"""The compiled lifecycle of each ``lifecycle`` type's entity."""


def stock_metrics() -> frozenset[str]:
    """Every metric (totals and breakdowns) that is a stock: read as what stands at a year's end."""
    out: set[str] = set()
    for spec in CATALOGUE:
        for fig in spec.figures:
            if fig.stock:
                out.add(fig.metric)
                out.update(f"{fig.metric}.{v}" for v in fig.breakdowns(spec.owner))
    return frozenset(out)


def figure_table() -> str:
    """The README's table of event types and figures, generated from the catalogue."""
    lines = [
        "| event type | subject (after ward) | what it records | figures (flows count in the year of `occurred_on`; stocks in every year they stand) |",
        "|---|---|---|---|",
    ]
    for spec in CATALOGUE:
        entity = spec.entity
        end = ".end" if entity is not None and entity.role == "ends" else ""
        subject = f"`{entity.name}.<{entity.field}>{end}` ({entity.role})" if entity else f"`{spec.subject}`"
        figures: list[str] = [f"`{name}`" for name in spec.counts]
        if spec.counts_by is not None:
            field_name, values = spec.counts_by
            figures = [f"{text}, and `.<{field_name}>` (the tip's): {', '.join(values)}" for text in figures]
        for fig in spec.figures:
            text = f"`{fig.metric}`"
            if fig.amount:
                text += f" += `{fig.amount}`"
            if fig.each:
                text += f" per item of `{fig.each}`"
            if fig.when:
                text += f" when `{fig.when[0]}` = `{fig.when[1]}`"
            if fig.unless:
                text += f" unless `{fig.unless[0]}` = `{fig.unless[1]}`"
            if fig.aside:
                text += f" (`{fig.aside[0]}` = `{fig.aside[1]}`: only in `.{fig.aside[1]}`)"
            if fig.stock:
                text += " — **stock**: what stands at each year's end"
            if fig.final:
                text += " — on the latest assessment, counted once"
            for by in fig.by_fields:
                one = dataclasses.replace(fig, by=by)
                text += f", and `.<{by}>`: " + ", ".join(one.breakdowns(spec.owner))
            figures.append(text)
        if spec.links is not None and spec.fold == "plain":
            figures = [f for f in figures if f not in (f"`{n}`" for n in spec.counts)]
            figures += [
                f"`{name}`: each distinct tip of `{spec.links.field}` that stands, once however many cases name it, "
                "in the tip's ward and year of receipt"
                for name in spec.counts
            ]
        if spec.fold == "lifecycle" and entity is not None and entity.role == "refers":
            life = LIFECYCLES[spec.struct]
            sets = [
                n
                for n in life.fields
                if n in spec.struct.__struct_fields__ and n != life.counted_in and n not in entity.same
            ]
            change = " (stocks change)" if any(f.stock for f in creator_of(entity.name).figures) else ""
            named = ", ".join(f"`{n}`" for n in sets)
            figures.append(f"sets {named} of its {entity.name} from its day on{change}")
        if spec.fold == "lifecycle" and entity is not None and entity.role == "ends":
            figures.append(f"ends the stocks of its {entity.name} from its day on")
        if spec.fold == "retraction":
            figures.append("removes its target's contribution (a corrected version stands again)")
        if spec.fold == "correction":
            figures.append("replaces its target's contribution with the corrected copy's (in its year)")
        if entity is not None and entity.counted_in and figures:
            figures.append(f"all counted in the year `{entity.counted_in}` names (both kinds of year)")
        lines.append(f"| `{spec.tag}` | {subject} | {spec.summary} | {'; '.join(figures) or '—'} |")
    return "\n".join(lines) + "\n"


def _check() -> None:
    missing = [t.__name__ for t in EVENT_TYPES if t not in SPECS]
    if missing:
        raise TypeError(f"event types without a catalogue entry: {missing}")
    union = set(typing.get_args(Event))
    if union != set(EVENT_TYPES):
        raise TypeError("EVENT_TYPES and the Event union differ")


_check()
