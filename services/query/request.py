"""The statistics query: request and reply shapes, and the request's validation."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from events.jsonscan import MAX_DEPTH, duplicate_key, key_path, too_deep
from events.legacy_localities import LEGACY_SCHEME
from events.localities import Localities
from projections.places import UnitKind, unit_key
from services.query.errors import BadRequest, UnknownLocality

# \A and \Z, not ^ and $: msgspec searches the pattern, and $ also matches before a trailing newline ("01447\n")
WardCode = Annotated[str, msgspec.Meta(pattern=r"\A[0-9]{5}\Z")]
ProvinceCode = Annotated[str, msgspec.Meta(pattern=r"\A[0-9]{2}\Z")]
DistrictCode = Annotated[str, msgspec.Meta(pattern=r"\A[0-9]{3}\Z")]
Scheme = Literal["gso-2025", "gso-pre2025"]
Period = Literal["calendar", "reporting"]
MAX_SEQ = 2**63 - 1  # a stream sequence as PostgreSQL stores it (bigint)
MAX_BODY_BYTES = 64 * 1024  # a query of 1,000 wards is about 9 KiB


Year = Annotated[int, msgspec.Meta(ge=2000, le=2100)]


class StatsQuery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One year (``year``), or a range (``from_year`` and ``to_year``: flows summed over the years of the
    range, stocks as they stand at its end)."""

    year: Year | None = None
    from_year: Year | None = None
    to_year: Year | None = None
    scheme: Scheme = "gso-2025"
    ward: WardCode | None = None
    province: ProvinceCode | None = None
    wards: Annotated[list[WardCode], msgspec.Meta(min_length=1, max_length=1000)] | None = None
    commune: WardCode | None = None
    """``gso-pre2025`` only: a pre-2025 commune code."""
    district: DistrictCode | None = None
    """``gso-pre2025`` only: a pre-2025 district code."""
    period: Period = "calendar"
    min_seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] | None = None
    timeout_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 0
    by: Literal["ward"] | None = None
    """``"ward"``: the reply also carries ``by_ward``, each 2025 ward's own figures (a province's wards in one
    request, at the same ``as_of_seq``); 2025 units only."""


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str
    path: str | None


class ErrorReply(msgspec.Struct, frozen=True, kw_only=True):
    error: ErrorBody


class StatsReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    year: int | None = None
    from_year: int | None = None
    to_year: int | None = None
    period: str
    metrics: dict[str, int]
    as_of_seq: int
    """Every event of ANTQ_EVENTS at or below this sequence is in the figures: the copy's checkpoint, which for
    a copy split across workers is the lowest of its partitions' (``projections/partitions.py``)."""
    stale: bool
    fold_version: int
    ward: str | None = None
    province: str | None = None
    wards: list[str] | None = None
    scheme: str | None = None
    """``gso-pre2025`` when the query named a pre-2025 unit (then ``commune``, ``district`` or ``province``)."""
    commune: str | None = None
    district: str | None = None
    approximate: dict[str, int] | None = None
    """The part of ``metrics`` that is approximate (split pre-2025 communes resolved to their default 2025
    ward); left out when every figure is exact."""
    by_ward: dict[str, dict[str, int]] | None = None
    """With ``"by": "ward"``: each ward's figures (every base metric, breakdowns when non-zero), by code."""


_decoder = msgspec.json.Decoder(StatsQuery)
_FIELDS = frozenset(StatsQuery.__struct_fields__)


def _unknown_field(body: bytes) -> str | None:
    """The path of the first field of ``body`` that the query does not have: read from the body itself, not
    from msgspec's message (a field name may hold backticks or `` - at ``)."""
    try:
        fields = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
    except msgspec.MsgspecError:
        return None
    return next((key_path("$", key) for key in fields if key not in _FIELDS), None)


def parse_query(body: bytes) -> StatsQuery:
    """The query in ``body`` (raw bytes, decoded here and nowhere before), or ``BadRequest`` with a path."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"the request is {len(body)} bytes; the limit is {MAX_BODY_BYTES}", "$")
    depth = too_deep(body)
    if depth is not None:
        raise BadRequest(f"the request is nested {depth} deep; the limit is {MAX_DEPTH}", "$")
    try:
        query = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if text.startswith("Object contains unknown field"):
            raise BadRequest(text, _unknown_field(body) or "$") from None
        message, at, path = text.partition(" - at `")
        raise BadRequest(message, path.rstrip("`") if at else "$") from None  # no path: the body itself
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the request is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec raises it (not DecodeError) for bad UTF-8 inside a string
        raise BadRequest(f"the request is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    duplicate = duplicate_key(body)
    if duplicate is not None:
        raise BadRequest("this key is given twice: give each key once", duplicate)
    if query.year is not None:
        if query.from_year is not None or query.to_year is not None:
            raise BadRequest("give either `year`, or `from_year` and `to_year`, not both", "$")
    elif query.from_year is None or query.to_year is None:
        missing = "from_year" if query.from_year is None else "to_year"
        raise BadRequest("give `year`, or both `from_year` and `to_year`", f"$.{missing}")
    elif query.from_year > query.to_year:
        raise BadRequest(f"`from_year` {query.from_year} is after `to_year` {query.to_year}", "$.from_year")
    if query.scheme == LEGACY_SCHEME:
        if query.by is not None:
            raise BadRequest('`by` lists 2025 wards: a gso-pre2025 query has no "by"', "$.by")
        for name in ("ward", "wards"):
            if getattr(query, name) is not None:
                raise BadRequest(
                    f"`{name}` is a 2025 code: a gso-pre2025 query names one `commune`, `district` or `province`",
                    f"$.{name}",
                )
        given = [name for name in ("commune", "district", "province") if getattr(query, name) is not None]
        if len(given) != 1:
            raise BadRequest(
                "a gso-pre2025 query gives exactly one of `commune`, `district` or `province`", "$"
            )
        return query
    for name in ("commune", "district"):
        if getattr(query, name) is not None:
            raise BadRequest(
                f'`{name}` is a pre-2025 unit: give "scheme": "gso-pre2025" with it', f"$.{name}"
            )
    given = [name for name in ("ward", "province", "wards") if getattr(query, name) is not None]
    if len(given) != 1:
        raise BadRequest("give exactly one of `ward`, `province` or `wards`", "$")
    return query


def legacy_unit(query: StatsQuery, localities: Localities) -> str:
    """The key of the pre-2025 unit a gso-pre2025 query names (``projections.places.unit_key``); a code that
    never named such a unit is refused, not answered with zeros. Exact, as recorded: no mapping."""
    kind: UnitKind
    if query.commune is not None:
        kind, code = "commune", query.commune
        known = bool(localities.legacy_periods(code))
    elif query.district is not None:
        kind, code = "district", query.district
        known = bool(localities.legacy_units(district=code))
    else:
        assert query.province is not None
        kind, code = "province", query.province
        known = bool(localities.legacy_units(province=code))
    if not known:
        raise UnknownLocality(f"{kind} {code} is no known pre-2025 {kind} code", f"$.{kind}")
    return unit_key(kind, code)


def years_of(query: StatsQuery) -> tuple[int, int]:
    """The first and last year a (validated) query covers."""
    if query.year is not None:
        return query.year, query.year
    assert query.from_year is not None and query.to_year is not None
    return query.from_year, query.to_year


def resolve_wards(query: StatsQuery, localities: Localities) -> list[str]:
    """The 2025 wards the query sums over (a gso-pre2025 query: its unit's key); unknown codes are refused, not
    answered with zeros."""
    if query.scheme == LEGACY_SCHEME:
        return [legacy_unit(query, localities)]
    if query.province is not None:
        wards = list(localities.wards_of(query.province))
        if not wards:
            raise UnknownLocality(
                f"province {query.province} is not an official 2025 province code", "$.province"
            )
        return wards
    if query.ward is not None:
        if localities.ward(query.ward) is None:
            raise UnknownLocality(f"ward {query.ward} is not an official 2025 ward code", "$.ward")
        return [query.ward]
    assert query.wards is not None
    for i, ward in enumerate(query.wards):
        if localities.ward(ward) is None:
            raise UnknownLocality(f"ward {ward} is not an official 2025 ward code", f"$.wards[{i}]")
    return sorted(set(query.wards))
