"""The event catalogue: every event type declared once, beside what the rest of the system needs to know of it.

Each ``EventSpec`` holds an event type's Struct (its schema, in ``events/schema.py``), its subject rule (a plain
subject shared by independent events, or the entity it creates, refers to or retracts), and the figures it
contributes. Everything else derives from here:

- ``events.subjects.rest_of``: the last tokens of its subject;
- the gateway's entity rules (claims, references, expected sequences, versions; ``services/gateway/checks.py``);
- the fold (``projections/folds.py``, its rules in ``projections/fold_*.py``): how each type is applied, and
  what a plain event adds (and a retraction of it takes away) by its declared figures;
- the list of metrics (``projections/metrics.py``) and the README's figure table (``events.figure_table``);
- the JSON Schemas and the AsyncAPI document (``antq contract export``).

``tests/test_catalogue.py`` walks every type of the ``Event`` union and proves each has its entry, its subject
and its fold. Adding a plain countable type: its Struct (and the union), its entry here, the test reference
model (``tests/test_fold_model.py``) and the README row (``events.figure_table``'s output).

The declaration types are in ``events.declarations``, the compile step's functions and ``Lifecycle`` in
``events.compiled``; this module declares the entries, applies the compile step to them (``CONTRIBUTIONS``,
``LIFECYCLES``) and re-exports the names others import from it.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from types import MappingProxyType

from events.compiled import Contribution, Lifecycle, _compile, _contribution_of, _merged
from events.declarations import Entity, EventSpec, Figure, FoldRule, Role, literal_values
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

__all__ = [  # the declarations, and the names others import (types: events.declarations, events.compiled)
    "BY_TAG",
    "CATALOGUE",
    "CONTRIBUTIONS",
    "LIFECYCLES",
    "SPECS",
    "TIP",
    "TIP_LINK",
    "Contribution",
    "Entity",
    "EventSpec",
    "Figure",
    "FoldRule",
    "Lifecycle",
    "Role",
    "creator_of",
    "ended_entities",
    "literal_values",
    "metric_names",
    "spec_of",
    "stock_metrics",
]


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


def _check() -> None:
    missing = [t.__name__ for t in EVENT_TYPES if t not in SPECS]
    if missing:
        raise TypeError(f"event types without a catalogue entry: {missing}")
    union = set(typing.get_args(Event))
    if union != set(EVENT_TYPES):
        raise TypeError("EVENT_TYPES and the Event union differ")


_check()
