"""Event catalogue v1: frozen, keyword-only msgspec Structs in one tagged union (tag field ``type``).

Evolution rule: fields are only ever added, with defaults; a breaking change gets a new tag.
Events are past-tense facts. They carry no personal data: the log can never be erased.
"""

from __future__ import annotations

import datetime as dt
import typing
import uuid
from typing import Annotated, Literal, TypeAlias

import msgspec

WardCode = Annotated[str, msgspec.Meta(pattern=r"\A[0-9]{5}\Z", description="official 2025 GSO ward code")]
LegacyCommuneCode = Annotated[
    str, msgspec.Meta(pattern=r"\A[0-9]{5}\Z", description="pre-2025 GSO commune code (5 digits)")
]
LegacyDistrictCode = Annotated[
    str, msgspec.Meta(pattern=r"\A[0-9]{3}\Z", description="pre-2025 GSO district code (3 digits)")
]
LegacyProvinceCode = Annotated[
    str, msgspec.Meta(pattern=r"\A[0-9]{2}\Z", description="pre-2025 GSO province code (2 digits)")
]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Note = Annotated[str, msgspec.Meta(max_length=2000)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
Count = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=10_000_000)]
# Bounds keep every figure summable in PostgreSQL's bigint (stats.value): at most 10 million per count and
# 50 items per surrender, so a ward-year would need over 10**10 events to overflow. A version is a stream
# sequence (uint64 in JetStream, bigint `seq` in PostgreSQL): larger is never a real version, and is
# refused as `invalid` here rather than sent on to the stream as an expectation header.
Version = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]

Channel = Literal["in_person", "phone", "hotline", "online", "letter", "other", "vneid"]
"""``vneid``: reports through the national ID app VNeID (from 1 July 2022: ``DATED_VALUES``)."""
TipCategory = Literal["security_order", "border_security", "drugs", "crime", "social_evils", "other"]
TipSource = Literal["resident", "institution", "mass_organisation", "anonymous"]
SessionLevel = Literal["commune", "hamlet", "institution"]
Topic = Literal[
    "law",
    "drugs",
    "traffic_safety",
    "fire_prevention",
    "weapons",
    "school_violence",
    "crime_prevention",
    "epidemic",
    "other",
]
Signer = Literal["household", "individual", "institution"]
Outcome = Literal["successful", "unsuccessful", "referred"]
Dispute = Literal["land", "family", "neighbours", "debt", "other"]
WeaponKind = Literal[
    "military_firearm", "homemade_firearm", "air_gun", "ammunition", "explosive", "support_tool", "other"
]

TIP_SOURCES: tuple[TipSource, ...] = typing.get_args(TipSource)
ModelLevel = Literal["province", "district", "commune", "hamlet", "institution"]
ModelKind = Literal[
    "self_managed_team",
    "inter_household",
    "security_council",
    "security_order_team",
    "street_warden_team",
    "civil_defence_team",
    "mediation_team",
    "drug_free_area",
    "safe_school",
    "dan_van_kheo",
    "other",
]

SESSION_LEVELS: tuple[SessionLevel, ...] = ("commune", "hamlet", "institution")
SIGNERS: tuple[Signer, ...] = ("household", "individual", "institution")
WEAPON_KINDS: tuple[WeaponKind, ...] = (
    "military_firearm",
    "homemade_firearm",
    "air_gun",
    "ammunition",
    "explosive",
    "support_tool",
    "other",
)


class Locality(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="scheme",
    tag="gso-2025",
    gc=False,
):
    """Where an event happened, in 2025 units: a ward of the 34 provinces in force since 1 July 2025 (valid
    for any ``occurred_on``). Codes are reused across schemes: a code means nothing without its scheme."""

    ward: WardCode


class LegacyLocality(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    tag_field="scheme",
    tag="gso-pre2025",
    gc=False,
):
    """Where an event happened, in the units before the 1 July 2025 reform, as recorded at the time: a commune,
    optionally its district and province (which must then agree with the commune on ``occurred_on``), and
    optionally the 2025 ward it went to (one of its successors: picks one ward of a split commune). Resolved
    to a 2025 ward on ``occurred_on`` by ``events.localities``; stored exactly as recorded."""

    commune: LegacyCommuneCode
    district: LegacyDistrictCode | None = None
    province: LegacyProvinceCode | None = None
    ward: WardCode | None = None


AnyLocality: TypeAlias = Locality | LegacyLocality
"""A locality of either scheme (tagged by ``scheme``)."""


class WeaponItem(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    kind: WeaponKind
    quantity: Positive


class BaseEvent(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag_field="type",
    omit_defaults=True,
    forbid_unknown_fields=True,
    gc=False,
):
    """Fields every event carries. ``event_id`` is chosen by the client and is the idempotency key.

    Unknown fields are refused at every level (``forbid_unknown_fields``): a misspelt field is an error, never
    dropped. A stored record with a field this code does not know was written by a newer gateway: readers halt
    on it (``events.stored``), as on an unknown type.

    Defaults are left out of the encoding, so a field added later with a default does not change the stored
    form (nor the body hash that tells a retry from a reused id) of events sent before it existed.

    Events are never tracked by the garbage collector (``gc=False``, as their localities and items): they hold
    only values and cannot form a cycle, and a replay decodes millions of them.
    """

    event_id: uuid.UUID
    occurred_on: dt.date
    locality: AnyLocality
    hamlet: ShortText | None = None
    note: Note | None = None


class TipReceived(BaseEvent, frozen=True, kw_only=True, tag="tip.received"):
    tip_id: uuid.UUID
    channel: Channel
    category: TipCategory
    source: TipSource


class TipAssessed(BaseEvent, frozen=True, kw_only=True, tag="tip.assessed"):
    tip_id: uuid.UUID
    valuable: bool
    expected_version: Version | None = None


class SessionHeld(BaseEvent, frozen=True, kw_only=True, tag="session.held"):
    level: SessionLevel
    topics: Annotated[tuple[Topic, ...], msgspec.Meta(min_length=1, max_length=9)]
    attendance: Count


class PledgeSigned(BaseEvent, frozen=True, kw_only=True, tag="pledge.signed"):
    signer: Signer
    signatures: Positive


class MediationConcluded(BaseEvent, frozen=True, kw_only=True, tag="mediation.concluded"):
    case_id: uuid.UUID
    outcome: Outcome
    dispute: Dispute


class WeaponsSurrendered(BaseEvent, frozen=True, kw_only=True, tag="weapons.surrendered"):
    items: Annotated[tuple[WeaponItem, ...], msgspec.Meta(min_length=1, max_length=50)]


class ModelEstablished(BaseEvent, frozen=True, kw_only=True, tag="model.established"):
    """A self-management model set up (mô hình tự quản về ANTT): it stands from ``occurred_on`` until dissolved.

    ``points`` (places it was replicated to) and ``teams`` (its teams), counted as Hướng dẫn 22/HD-BCA-V05
    counts them, are absolute numbers that ``model.updated`` may set again."""

    model_id: uuid.UUID
    name: ShortText
    level: ModelLevel
    kind: ModelKind
    points: Count | None = None
    teams: Count | None = None


class ModelUpdated(BaseEvent, frozen=True, kw_only=True, tag="model.updated"):
    """New absolute ``points`` / ``teams`` of a standing model, from ``occurred_on`` on."""

    model_id: uuid.UUID
    points: Count | None = None
    teams: Count | None = None
    expected_version: Version | None = None


class ModelDissolved(BaseEvent, frozen=True, kw_only=True, tag="model.dissolved"):
    """A model ended: it no longer stands from ``occurred_on`` on (at most once; a retraction undoes it)."""

    model_id: uuid.UUID


class YouthEnrolled(BaseEvent, frozen=True, kw_only=True, tag="youth.enrolled"):
    """An at-risk young person taken under management. ``person_ref`` is a random UUID the office keeps for
    that person, never derived from who they are: the log holds no personal data (Nghị định 13/2023/NĐ-CP)."""

    person_ref: uuid.UUID


class YouthReleased(BaseEvent, frozen=True, kw_only=True, tag="youth.released"):
    """Management of that person ended (at most once; a retraction undoes it)."""

    person_ref: uuid.UUID


# --- issue 10: the movement's plain countable types (each: its Struct here and its line in ``Correctable``)

Recipient = Literal["collective", "individual"]
Authority = Literal["state", "ministry", "province_police", "province", "district", "commune"]
Medium = Literal["radio", "loudspeaker", "television", "online"]


class CommendationAwarded(BaseEvent, frozen=True, kw_only=True, tag="commendation.awarded"):
    """Commendations awarded (khen thưởng): how many, to collectives or to individuals (never who), and by
    which authority."""

    recipient: Recipient
    authority: Authority
    count: Positive


class PatrolHeld(BaseEvent, frozen=True, kw_only=True, tag="patrol.held"):
    """A patrol held (tuần tra) and how many took part in it."""

    participants: Positive


class ConsultationHeld(BaseEvent, frozen=True, kw_only=True, tag="consultation.held"):
    """A legal consultation held (tư vấn pháp luật) and how many people it advised."""

    people: Positive


class BroadcastAired(BaseEvent, frozen=True, kw_only=True, tag="broadcast.aired"):
    """An outreach broadcast aired (radio, loudspeakers, television, online), optionally how long it ran."""

    medium: Medium
    minutes: Annotated[int, msgspec.Meta(ge=1, le=1440)] | None = None


class CampaignLaunched(BaseEvent, frozen=True, kw_only=True, tag="campaign.launched"):
    """A campaign launched (phát động), the 19 August movement day among them: optionally its name (of the
    campaign, never of a person) and how many took part."""

    name: ShortText | None = None
    participants: Count | None = None


CaseCategory = Literal["social_order", "drugs", "public_disorder", "other"]


class CasesCleared(BaseEvent, frozen=True, kw_only=True, tag="cases.cleared"):
    """Cases cleared with the public's help (điều tra làm rõ vụ): how many, of which category, how many
    offenders and drug rings; optionally the tips that led to them (tips of this ward already in the log)."""

    category: CaseCategory
    cases: Positive
    offenders: Count
    rings_dismantled: Count = 0
    tip_ids: Annotated[tuple[uuid.UUID, ...], msgspec.Meta(max_length=100)] = ()


# --- end of issue 10's plain types


class EntryRetracted(BaseEvent, frozen=True, kw_only=True, tag="entry.retracted"):
    target_event_id: uuid.UUID
    reason: Reason


UnitKind = Literal["residential_area", "commune", "agency", "enterprise", "school"]
STANDARD_NAMESPACE = uuid.UUID("6f1c1f8e-3d3a-4c55-9a51-2a5b6f0e7d21")
"""Names a unit's registration for one year (``SafetyRegistered.standard``): uuid5 of unit_id and year."""


def standard_of(unit_id: uuid.UUID, year: int) -> uuid.UUID:
    """The id of a unit's registration for the "An toàn về ANTT" standard of one year (collision-resistant:
    uuid5, so no office can make two units' years share a subject)."""
    return uuid.uuid5(STANDARD_NAMESPACE, f"{unit_id}.{year}")


StandardYear = Annotated[int, msgspec.Meta(ge=2012, le=2100)]


class SafetyRegistered(BaseEvent, frozen=True, kw_only=True, tag="safety.registered"):
    """A unit registered for the "An toàn về ANTT" standard of ``year`` (Thông tư 23/2012/TT-BCA, then
    124/2021/TT-BCA; units register in the first quarter): once per unit and year. ``occurred_on`` lies in
    ``year``. Counted in ``year`` (both kinds of year), whatever the day."""

    unit_id: uuid.UUID
    unit_kind: UnitKind
    year: StandardYear

    @property
    def standard(self) -> uuid.UUID:
        return standard_of(self.unit_id, self.year)


class SafetyAssessed(BaseEvent, frozen=True, kw_only=True, tag="safety.assessed"):
    """The year-end assessment of a registered unit: the standard achieved or not. Needs the registration; a
    later assessment (by ``occurred_on``, then as recorded) supersedes. ``occurred_on`` lies in ``year`` or
    before 1 April of the next."""

    unit_id: uuid.UUID
    unit_kind: UnitKind
    """As registered (the gateway refuses another: the figures count by the registration's kind)."""
    year: StandardYear
    achieved: bool
    expected_version: Version | None = None

    @property
    def standard(self) -> uuid.UUID:
        return standard_of(self.unit_id, self.year)


Correctable: TypeAlias = (
    TipReceived
    | TipAssessed
    | SessionHeld
    | PledgeSigned
    | MediationConcluded
    | WeaponsSurrendered
    | ModelEstablished
    | ModelUpdated
    | ModelDissolved
    | YouthEnrolled
    | YouthReleased
    | CommendationAwarded
    | PatrolHeld
    | ConsultationHeld
    | BroadcastAired
    | CampaignLaunched
    | CasesCleared
    | SafetyRegistered
    | SafetyAssessed
)
"""The types an ``entry.corrected`` can carry: every event type but retractions and corrections. A new type is
added here only: the ``Event`` union and ``EVENT_TYPES`` follow."""


class EntryCorrected(BaseEvent, frozen=True, kw_only=True, tag="entry.corrected"):
    """A version of an entry replaced by ``corrected``: an event of the target's type, for the same entity and
    locality, with an event_id of its own. ``target_event_id`` names the latest version (the original entry,
    or the last correction of it)."""

    target_event_id: uuid.UUID
    corrected: Correctable
    reason: Reason


Event: TypeAlias = Correctable | EntryRetracted | EntryCorrected

CORRECTABLE_TYPES: tuple[type[BaseEvent], ...] = typing.get_args(Correctable)
EVENT_TYPES: tuple[type[BaseEvent], ...] = (*CORRECTABLE_TYPES, EntryRetracted, EntryCorrected)
TAGS: frozenset[str] = frozenset(str(t.__struct_config__.tag) for t in EVENT_TYPES)

FREE_TEXT_FIELDS: tuple[str, ...] = ("hamlet", "note", "reason", "name")
"""Every ``str`` field of an event that is neither a ``Literal`` nor a code with a pattern: checked as free
text (``events.text``). A test keeps this list complete."""
ID_FIELDS: tuple[str, ...] = (
    "event_id",
    "tip_id",
    "case_id",
    "target_event_id",
    "model_id",
    "person_ref",
    "unit_id",
)
"""Every UUID field of an event: the nil UUID (all zeros) and the max UUID (all ``f``) are refused in each.
A test keeps this list complete."""
ID_LIST_FIELDS: tuple[str, ...] = ("tip_ids",)
"""Every list-of-UUID field: each item is checked as an id, and an id given twice is refused (``$.tip_ids[1]``).
A test keeps this list complete."""


# --- issue 10: values tied to a date


class DatedValue(msgspec.Struct, frozen=True, kw_only=True):
    """A value of a field that exists only between two dates (of ``occurred_on``, inclusive; None: open).
    Outside them an event carrying it is refused as ``invalid`` at the field's path (``events.codec``); the
    JSON Schemas say it too (``if``/``then`` on ``occurred_on``, ``services/contract/schemas.py``)."""

    field: str
    """A top-level field of an event type (of every type whose field can hold ``value``)."""
    value: str
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None
    why: str
    """What the dates rest on, said in the refusal and in the contract."""


DATED_VALUES: tuple[DatedValue, ...] = (
    DatedValue(
        field="channel",
        value="vneid",
        valid_from=dt.date(2022, 7, 1),
        why="residents report through the national ID app VNeID from July 2022",
    ),
    DatedValue(
        field="authority",
        value="district",
        valid_to=dt.date(2025, 6, 30),
        why="districts were abolished on 1 July 2025 (two-level local government)",
    ),
    DatedValue(
        field="kind",
        value="security_order_team",
        valid_from=dt.date(2024, 7, 1),
        why="Tổ bảo vệ ANTT teams exist from 1 July 2024 under Law 30/2023/QH15",
    ),
    DatedValue(
        field="level",
        value="district",
        valid_to=dt.date(2025, 6, 30),
        why="districts were abolished on 1 July 2025 (two-level local government)",
    ),
)
"""Every value tied to a date: declared here once, checked by the gateway and stated by the contract."""


def _literals(tp: object) -> tuple[object, ...]:
    """The values a field's type can hold when it is a Literal (in ``Annotated``, optional or a tuple)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return typing.get_args(tp)
    if origin is typing.Annotated:
        return _literals(typing.get_args(tp)[0])
    return tuple(v for arg in typing.get_args(tp) for v in _literals(arg))


def dated_values_of(event_type: type[BaseEvent]) -> tuple[DatedValue, ...]:
    """The dated values an event type's fields can hold."""
    hints = typing.get_type_hints(event_type, include_extras=True)
    return tuple(d for d in DATED_VALUES if d.field in hints and d.value in _literals(hints[d.field]))


def _check_dated_values() -> None:
    for d in DATED_VALUES:
        if not any(d in dated_values_of(t) for t in EVENT_TYPES):
            raise TypeError(f"DATED_VALUES: no event type has a field {d.field!r} that can be {d.value!r}")


_check_dated_values()

# --- end of issue 10's values tied to a date


class Recorded(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What ``ANTQ_EVENTS`` stores: the normalised event plus the office that sent it.

    ``office`` comes only from the intake subject, never from the payload.
    """

    office: str
    event: Event


def ward_of(event: BaseEvent) -> str:
    """The 2025 ward a ``gso-2025`` event names. A pre-2025 locality has none of its own until it is resolved on
    its date (``events.localities``, ``projections.places``): ``ValueError``."""
    locality = event.locality
    if isinstance(locality, Locality):
        return locality.ward
    raise ValueError(f"a pre-2025 locality ({locality.commune}) has no 2025 ward until it is resolved")
