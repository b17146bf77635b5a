"""The pre-reform locality scheme (``gso-pre2025``): dated legacy communes and their resolution to 2025 wards.

``LegacyLocalities`` answers ``resolve_legacy``, ``legacy_units``, ``legacy_periods``, ``legacy_commune``,
``successors`` and ``district_wards``; ``events.localities.Localities`` hands these lookups to it. Its inputs
are legacy codes only, and it only ever returns 2025 codes as ``ward``/``successors`` (the same string often
names different units in each scheme). ``events.locality_files`` reads its tables from the packaged files.

Dating (``gso-pre2025``)
    A legacy code means nothing without its date.  ``lineage.tsv`` rows carry
    ``valid_from``/``valid_to`` (inclusive ISO dates, empty = open) and a
    ``source``; where lineage rows of a code cover a date, they decide.  For
    any other date up to 2025-06-30 the list of 30 June 2025
    (``legacy_2025.tsv``) decides.  A date after 2025-06-30 is refused: the
    scheme ended with the reform of 1 July 2025.

Known gaps (say them plainly)
    Lineage covers only Trà Lĩnh district (046, Cao Bằng) and its ten
    communes around NQ 897/NQ-UBTVQH14 (in force 2020-03-01).  Every other
    change before 30 June 2025 is *not* covered: a commune merged away earlier
    is ``unknown_locality`` under its old code, and a commune that moved
    district or was renamed is reported with its district and name of 30 June
    2025 for every date (a district given as it was then is refused).  Among
    the articles' places and their neighbours: the rest of NQ 897 (Quảng Uyên
    + Phục Hòa → Quảng Hòa 049, and the communes Trùng Khánh 047 absorbed:
    Đình Minh, Ngọc Chung, Lăng Yên, Cảnh Tiên, Thông Huề, Thân Giáp, Đoài
    Côn); Thông Nông → Hà Quảng (NQ 864, 2020-02-01); Quan Hóa (385): xã Hồi
    Xuân, Thanh Xuân and Xuân Phú, merged into Hồi Xuân town, Phú Xuân and Phú
    Nghiêm; Tiên Yên (199): Đại Thành into Đại Dực; Gia Bình (263): Nhân Thắng
    before it became a town; Điện Bàn (507): communes before they became
    wards.  The old codes of merged-away communes are not in the source, so
    they are not guessed here.  The source marks 1,234 legacy units with
    former-name aliases (``extract_localities.py --gaps DISTRICT`` lists them):
    each is a possible older change.  The five island districts without
    communes (Bạch Long Vĩ, Cồn Cỏ, Hoàng Sa, Lý Sơn, Côn Đảo) cannot be named
    by a commune code.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise
from types import MappingProxyType

from events.errors import Invalid, UnknownLocality

__all__ = [
    "LEGACY_SCHEME",
    "REFORM_EVE",
    "LegacyAfterReform",
    "LegacyCommune",
    "LegacyLocalities",
    "LegacyMismatch",
    "LegacyResolution",
    "LegacyWardNotSuccessor",
    "UnknownLegacyCommune",
]

LEGACY_SCHEME = "gso-pre2025"
REFORM_EVE = date(2025, 6, 30)
"""Last day of the pre-reform scheme (the 2025 units are in force from 1 July 2025)."""


# --- errors (subclasses of the events package's wire errors)


class UnknownLegacyCommune(UnknownLocality):
    """The commune code is no pre-2025 commune on the event's date."""


class LegacyMismatch(UnknownLocality):
    """A district or province was given that the commune did not belong to on that date."""


class LegacyWardNotSuccessor(Invalid):
    """The 2025 ward given is not one the legacy commune went to."""


class LegacyAfterReform(Invalid):
    """A pre-2025 locality dated after 30 June 2025."""


# --- value types


@dataclass(frozen=True, slots=True)
class LegacyCommune:
    """One legacy commune code over one validity period, with its units of that period.

    ``valid_from``/``valid_to`` are inclusive; ``None`` is open.  ``source`` is
    ``"legacy_2025.tsv"`` for the list of 30 June 2025, else the lineage row's
    source.  ``successors`` are 2025 ward codes, default first.
    """

    code: str
    name: str
    district: str
    district_name: str
    province: str
    province_name: str
    successors: tuple[str, ...]
    valid_from: date | None
    valid_to: date | None
    source: str

    def valid_on(self, on: date) -> bool:
        return (self.valid_from is None or self.valid_from <= on) and (
            self.valid_to is None or on <= self.valid_to
        )


@dataclass(frozen=True, slots=True)
class LegacyResolution:
    """A ``gso-pre2025`` commune resolved on a date.

    ``commune``/``district``/``province`` are legacy codes as of that date;
    ``ward`` is the resolved 2025 ward (the one given if it is a successor,
    else the default); ``approximate`` is True when the commune was split over
    several 2025 wards and no ward was given.
    """

    commune: str
    commune_name: str
    district: str
    district_name: str
    province: str
    province_name: str
    ward: str
    approximate: bool
    successors: tuple[str, ...]


def _span(p: LegacyCommune) -> str:
    start, end = p.valid_from, p.valid_to or REFORM_EVE
    if start is None:
        return f"{p.name} in district {p.district} until {end.isoformat()}"
    return f"{p.name} in district {p.district} from {start.isoformat()} to {end.isoformat()}"


def _covers_to_eve(periods: tuple[LegacyCommune, ...]) -> bool:
    """True when the periods (sorted, not overlapping) leave no date up to REFORM_EVE uncovered."""
    if not periods or periods[0].valid_from is not None:
        return False
    reached = periods[0].valid_to
    for p in periods[1:]:
        if reached is None:
            return True
        if p.valid_from is None or p.valid_from > reached + timedelta(days=1):
            return False
        reached = p.valid_to
    return reached is None or reached >= REFORM_EVE


class LegacyLocalities:
    """Read-only lookups of the dated legacy → 2025 mapping (inputs legacy codes, outputs 2025 ward codes)."""

    __slots__ = (
        "_all_codes",
        "_by_district",
        "_by_province",
        "_district",
        "_lineage",
        "_list",
        "_list_applies",
        "_successors",
        "_wards",
    )

    def __init__(
        self,
        successors: Mapping[str, tuple[str, ...]],
        district: Mapping[str, tuple[str, ...]],
        *,
        legacy: Mapping[str, LegacyCommune] | None = None,
        lineage: Mapping[str, tuple[LegacyCommune, ...]] | None = None,
        wards: Collection[str],
    ) -> None:
        """``wards``: the 2025 ward codes; every successor must be one of them."""
        self._wards = wards
        for legacy_code, targets in (*successors.items(), *district.items()):
            unknown = [t for t in targets if t not in wards]
            if unknown:
                raise ValueError(f"legacy {legacy_code} maps to unknown 2025 wards {unknown}")
        self._successors: Mapping[str, tuple[str, ...]] = MappingProxyType(dict(successors))
        self._district: Mapping[str, tuple[str, ...]] = MappingProxyType(dict(district))

        self._list: Mapping[str, LegacyCommune] = MappingProxyType(dict(legacy or {}))
        periods = {code: tuple(ps) for code, ps in (lineage or {}).items()}
        for code, ps in periods.items():
            ordered = sorted(ps, key=lambda p: (p.valid_from is not None, p.valid_from or date.min))
            for a, b in pairwise(ordered):
                if a.valid_to is None or b.valid_from is None or a.valid_to >= b.valid_from:
                    raise ValueError(f"lineage {code}: overlapping periods {a.valid_to} / {b.valid_from}")
            periods[code] = tuple(ordered)
        for ps in periods.values():
            for p in ps:
                unknown = [t for t in p.successors if t not in wards]
                if unknown:
                    raise ValueError(f"lineage {p.code} maps to unknown 2025 wards {unknown}")
        self._lineage: Mapping[str, tuple[LegacyCommune, ...]] = MappingProxyType(periods)
        # Codes for which the 30 June list still decides some date (lineage does not cover all).
        self._list_applies = frozenset(
            code for code in self._list if not _covers_to_eve(periods.get(code, ()))
        )
        self._all_codes = frozenset((*self._lineage, *self._list))
        by_district: dict[str, set[str]] = {}
        by_legacy_province: dict[str, set[str]] = {}
        for code in (*self._lineage, *self._list):
            for p in self.legacy_periods(code):
                by_district.setdefault(p.district, set()).add(code)
                by_legacy_province.setdefault(p.province, set()).add(code)
        self._by_district: Mapping[str, frozenset[str]] = MappingProxyType(
            {k: frozenset(v) for k, v in by_district.items()}
        )
        self._by_province: Mapping[str, frozenset[str]] = MappingProxyType(
            {k: frozenset(v) for k, v in by_legacy_province.items()}
        )

    def successors(self, legacy_ward: str) -> tuple[str, ...]:
        """2025 wards a legacy commune code went to over all its periods, default first; empty if unknown."""
        return self._successors.get(legacy_ward, ())

    def district_wards(self, legacy_district: str) -> tuple[str, ...]:
        """Sorted 2025 wards covering all communes a legacy district ever had; empty if unknown."""
        return self._district.get(legacy_district, ())

    def legacy_periods(self, commune: str) -> tuple[LegacyCommune, ...]:
        """Every known period of a legacy commune code, oldest first; empty if never known.

        The 30 June 2025 list's entry is included (as valid up to REFORM_EVE with an
        open start) only when lineage leaves some date to it; it decides only on
        the dates the lineage periods do not cover.
        """
        out = list(self._lineage.get(commune, ()))
        listed = self._list.get(commune)
        if listed is not None and commune in self._list_applies:
            out.append(listed)
        return tuple(out)

    def legacy_commune(self, commune: str, on: date) -> LegacyCommune | None:
        """The legacy commune a code named on a date, or None (unknown, or not valid then)."""
        if on > REFORM_EVE:
            return None
        for p in self._lineage.get(commune, ()):
            if p.valid_on(on):
                return p
        return self._list.get(commune)

    def resolve_legacy(
        self,
        commune: str,
        on: date,
        *,
        district: str | None = None,
        province: str | None = None,
        ward: str | None = None,
    ) -> LegacyResolution:
        """Resolve a ``gso-pre2025`` locality on the event's date.

        Raises ``LegacyAfterReform`` (invalid, ``$.occurred_on``) after 2025-06-30,
        ``UnknownLegacyCommune`` (unknown_locality, ``$.locality.commune``) when the
        code names no commune on that date, ``LegacyMismatch`` (unknown_locality,
        ``$.locality.district`` / ``$.locality.province``) when a given district or
        province is not the commune's on that date, and ``LegacyWardNotSuccessor``
        (invalid, ``$.locality.ward``) when a given 2025 ward is not a successor.
        """
        if on > REFORM_EVE:
            raise LegacyAfterReform(
                f"a {LEGACY_SCHEME} locality is dated {on.isoformat()}, after the reform: pre-2025 "
                f"units ended on {REFORM_EVE.isoformat()}; record it in gso-2025 units",
                "$.occurred_on",
            )
        found = self.legacy_commune(commune, on)
        if found is None:
            raise UnknownLegacyCommune(self._unknown_message(commune, on), "$.locality.commune")
        if district is not None and district != found.district:
            raise LegacyMismatch(
                f"district {district!r} does not agree with commune {commune} ({found.name}): on "
                f"{on.isoformat()} it was in district {found.district} ({found.district_name})",
                "$.locality.district",
            )
        if province is not None and province != found.province:
            raise LegacyMismatch(
                f"province {province!r} does not agree with commune {commune} ({found.name}): on "
                f"{on.isoformat()} it was in province {found.province} ({found.province_name}); "
                "give the pre-2025 province code",
                "$.locality.province",
            )
        if ward is not None:
            if ward not in found.successors:
                raise LegacyWardNotSuccessor(
                    f"2025 ward {ward!r} is not one that commune {commune} ({found.name}) went to; "
                    f"give one of {', '.join(found.successors)} or omit it",
                    "$.locality.ward",
                )
            resolved, approximate = ward, False
        else:
            resolved, approximate = found.successors[0], len(found.successors) > 1
        return LegacyResolution(
            commune=found.code,
            commune_name=found.name,
            district=found.district,
            district_name=found.district_name,
            province=found.province,
            province_name=found.province_name,
            ward=resolved,
            approximate=approximate,
            successors=found.successors,
        )

    def _unknown_message(self, commune: str, on: date) -> str:
        periods = self.legacy_periods(commune)
        if periods:
            spans = "; ".join(_span(p) for p in periods)
            return f"commune {commune} names no pre-2025 commune on {on.isoformat()}; it was: {spans}"
        hint = " (it is a 2025 ward code: use scheme gso-2025)" if commune in self._wards else ""
        return f"{commune!r} is no known pre-2025 commune code{hint}"

    def legacy_units(
        self,
        district: str | None = None,
        province: str | None = None,
        commune: str | None = None,
        *,
        on: date | None = None,
    ) -> frozenset[str]:
        """Legacy commune codes that belonged to the given units, as recorded.

        Without ``on``, a code is in the answer if in *some* period it matched
        every filter given (so district 046 finds the ten communes it had before
        2020, although none is in 046 on 30 June 2025); with ``on``, only the
        period valid on that date counts.  No filter: every legacy commune code.
        """
        candidates = self._all_codes
        if commune is not None:
            candidates = candidates & {commune}
        if district is not None:
            candidates = candidates & self._by_district.get(district, frozenset())
        if province is not None:
            candidates = candidates & self._by_province.get(province, frozenset())
        out: set[str] = set()
        for code in candidates:
            if on is not None:
                found = self.legacy_commune(code, on)
                periods: tuple[LegacyCommune, ...] = (found,) if found is not None else ()
            else:
                periods = self.legacy_periods(code)
            if any(
                (district is None or p.district == district) and (province is None or p.province == province)
                for p in periods
            ):
                out.add(code)
        return frozenset(out)
