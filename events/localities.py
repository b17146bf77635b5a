"""Vietnamese locality reference data: 2025 wards and the dated legacy → 2025 mapping.

The data files in ``events.data`` are project-owned: ``wards_2025.tsv`` and
``legacy_2025.tsv`` are extracted once from ``vietnamadminunits`` (MIT, see
``events/data/NOTICE``) by ``infra/scripts/extract_localities.py``;
``lineage.tsv`` is hand-written for pre-2025 changes the legacy table misses.

Two code schemes live here and must never be mixed: the 2025 scheme
(``gso-2025``: ``ward``, ``province``, ``wards_of``) and the pre-reform scheme
(``gso-pre2025``: ``resolve_legacy``, ``legacy_units``, ``successors``,
``district_wards``).  The same string often names different units in each
(a 2025 ward usually reuses one of its source communes' codes; province 24
was Bắc Giang before and is Bắc Ninh after), so legacy lookups only accept
legacy codes and only ever return 2025 codes as ``ward``/``successors``.

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

Build with ``Localities.load()`` once and keep the instance; every lookup is
pure and does no I/O.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from importlib.resources import files
from itertools import pairwise
from types import MappingProxyType

from events.errors import Invalid, UnknownLocality

__all__ = [
    "LEGACY_SCHEME",
    "REFORM_EVE",
    "LegacyAfterReform",
    "LegacyCommune",
    "LegacyMismatch",
    "LegacyResolution",
    "LegacyWardNotSuccessor",
    "Localities",
    "Province",
    "UnknownLegacyCommune",
    "Ward",
    "mapping_version",
]

LEGACY_SCHEME = "gso-pre2025"
REFORM_EVE = date(2025, 6, 30)
"""Last day of the pre-reform scheme (the 2025 units are in force from 1 July 2025)."""

_PACKAGE = "events.data"
_WARDS_FILE = "wards_2025.tsv"
_LEGACY_FILE = "legacy_2025.tsv"
_LINEAGE_FILE = "lineage.tsv"
_FILES = (_WARDS_FILE, _LEGACY_FILE, _LINEAGE_FILE)

_WARDS_HEADER = ("ward", "ward_name", "province", "province_name")
_LEGACY_HEADER = (
    "legacy_ward",
    "legacy_ward_name",
    "legacy_district",
    "legacy_district_name",
    "legacy_province",
    "legacy_province_name",
    "ward",
    "is_default",
)
_LINEAGE_HEADER = (
    "old_ward",
    "old_ward_name",
    "old_district",
    "old_district_name",
    "old_province",
    "old_province_name",
    "ward",
    "is_default",
    "valid_from",
    "valid_to",
    "source",
    "note",
)


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
class Ward:
    """A ward/commune of the 2025 scheme (5-digit code, 2-digit province)."""

    code: str
    name: str
    province: str
    province_name: str


@dataclass(frozen=True, slots=True)
class Province:
    """A province of the 2025 scheme with its ward codes, sorted."""

    code: str
    name: str
    wards: tuple[str, ...]


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


# --- loading


def _read(name: str) -> bytes:
    return files(_PACKAGE).joinpath(name).read_bytes()


def _rows(name: str, data: bytes, header: tuple[str, ...]) -> Iterator[dict[str, str]]:
    text = data.decode("utf-8")
    reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    first = next(reader, None)
    if first is None or tuple(first) != header:
        raise ValueError(f"{name}: unexpected header {first!r}")
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise ValueError(f"{name}:{lineno}: {len(row)} columns, want {len(header)}")
        yield dict(zip(header, row, strict=True))


def _flag(value: str, where: str) -> bool:
    if value not in ("0", "1"):
        raise ValueError(f"{where}: is_default must be 0 or 1, got {value!r}")
    return value == "1"


def _code(value: str, width: int, where: str) -> str:
    if len(value) != width or not value.isdigit():
        raise ValueError(f"{where}: bad code {value!r} (want {width} digits)")
    return value


def _day(value: str, where: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where}: bad date {value!r} (want YYYY-MM-DD or empty)") from None


def _ordered(targets: list[tuple[bool, str]]) -> tuple[str, ...]:
    """Default ward first, then the others by code, without duplicates."""
    out: list[str] = []
    for _, code in sorted(targets, key=lambda t: (not t[0], t[1])):
        if code not in out:
            out.append(code)
    return tuple(out)


def _version(blobs: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in _FILES:
        data = blobs[name]
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


@cache
def mapping_version() -> str:
    """Version of the packaged mapping: a short SHA-256 over the three TSV files' bytes.

    Part of the fold version: correcting any row of the mapping changes it, so
    the read model is rebuilt while the log stays as recorded.
    """
    return _version({name: _read(name) for name in _FILES})


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


class Localities:
    """Read-only lookups over the 2025 wards and the dated legacy → 2025 mapping."""

    __slots__ = (
        "_all_codes",
        "_by_district",
        "_by_province",
        "_district",
        "_lineage",
        "_list",
        "_list_applies",
        "_provinces",
        "_successors",
        "_version",
        "_wards",
    )

    def __init__(
        self,
        wards: Mapping[str, Ward],
        successors: Mapping[str, tuple[str, ...]],
        district: Mapping[str, tuple[str, ...]],
        *,
        legacy: Mapping[str, LegacyCommune] | None = None,
        lineage: Mapping[str, tuple[LegacyCommune, ...]] | None = None,
        version: str = "",
    ) -> None:
        self._wards: Mapping[str, Ward] = MappingProxyType(dict(wards))
        by_province: dict[str, list[Ward]] = {}
        for ward in self._wards.values():
            by_province.setdefault(ward.province, []).append(ward)
        provinces: dict[str, Province] = {}
        for code in sorted(by_province):
            members = by_province[code]
            names = {w.province_name for w in members}
            if len(names) != 1:
                raise ValueError(f"province {code} has several names: {sorted(names)}")
            provinces[code] = Province(code, names.pop(), tuple(sorted(w.code for w in members)))
        self._provinces: Mapping[str, Province] = MappingProxyType(provinces)
        for legacy_code, targets in (*successors.items(), *district.items()):
            unknown = [t for t in targets if t not in self._wards]
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
                unknown = [t for t in p.successors if t not in self._wards]
                if unknown:
                    raise ValueError(f"lineage {p.code} maps to unknown 2025 wards {unknown}")
        self._lineage: Mapping[str, tuple[LegacyCommune, ...]] = MappingProxyType(periods)
        # Codes for which the 30 June list still decides some date (lineage does not cover all).
        self._list_applies = frozenset(
            code for code in self._list if not _covers_to_eve(periods.get(code, ()))
        )
        self._version = version
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

    @classmethod
    def load(cls) -> Localities:
        """Read the packaged TSV files (every call reads them again)."""
        blobs = {name: _read(name) for name in _FILES}

        wards: dict[str, Ward] = {}
        for row in _rows(_WARDS_FILE, blobs[_WARDS_FILE], _WARDS_HEADER):
            ward = Ward(row["ward"], row["ward_name"], row["province"], row["province_name"])
            if ward.code in wards:
                raise ValueError(f"{_WARDS_FILE}: duplicate ward {ward.code}")
            wards[ward.code] = ward

        legacy_targets: dict[str, list[tuple[bool, str]]] = {}
        legacy_rows: dict[str, dict[str, str]] = {}
        district: dict[str, set[str]] = {}
        for row in _rows(_LEGACY_FILE, blobs[_LEGACY_FILE], _LEGACY_HEADER):
            default = _flag(row["is_default"], _LEGACY_FILE)
            # An empty legacy_ward is an island district without communes.
            code = row["legacy_ward"]
            if code:
                legacy_targets.setdefault(code, []).append((default, row["ward"]))
                first = legacy_rows.setdefault(code, row)
                if first["legacy_district"] != row["legacy_district"]:
                    raise ValueError(f"{_LEGACY_FILE}: {code} in two districts")
            district.setdefault(row["legacy_district"], set()).add(row["ward"])

        legacy: dict[str, LegacyCommune] = {}
        for code, row in legacy_rows.items():
            targets = legacy_targets[code]
            if sum(d for d, _ in targets) != 1:
                raise ValueError(f"{_LEGACY_FILE}: {code} needs exactly one default ward")
            legacy[code] = LegacyCommune(
                code=code,
                name=row["legacy_ward_name"],
                district=row["legacy_district"],
                district_name=row["legacy_district_name"],
                province=row["legacy_province"],
                province_name=row["legacy_province_name"],
                successors=_ordered(targets),
                valid_from=None,
                valid_to=REFORM_EVE,
                source=_LEGACY_FILE,
            )

        # Lineage: rows grouped into periods by (code, valid_from, valid_to).
        groups: dict[tuple[str, str, str], list[dict[str, str]]] = {}
        for lineno, row in enumerate(_rows(_LINEAGE_FILE, blobs[_LINEAGE_FILE], _LINEAGE_HEADER), 2):
            where = f"{_LINEAGE_FILE}:{lineno}"
            _code(row["old_ward"], 5, where)
            _code(row["old_district"], 3, where)
            _code(row["old_province"], 2, where)
            _code(row["ward"], 5, where)
            _flag(row["is_default"], where)
            start, end = _day(row["valid_from"], where), _day(row["valid_to"], where)
            if start is not None and end is not None and start > end:
                raise ValueError(f"{where}: valid_from after valid_to")
            if (start is not None and start > REFORM_EVE) or (end is not None and end > REFORM_EVE):
                raise ValueError(f"{where}: dates must not pass {REFORM_EVE}")
            if not row["source"]:
                raise ValueError(f"{where}: empty source")
            groups.setdefault((row["old_ward"], row["valid_from"], row["valid_to"]), []).append(row)
            district.setdefault(row["old_district"], set()).add(row["ward"])

        lineage: dict[str, list[LegacyCommune]] = {}
        lineage_targets: dict[str, list[tuple[bool, str]]] = {}
        for (code, start_s, end_s), rows in groups.items():
            head = rows[0]
            keys = ("old_ward_name", "old_district", "old_district_name", "old_province", "old_province_name")
            for row in rows[1:]:
                if any(row[k] != head[k] for k in keys):
                    raise ValueError(f"{_LINEAGE_FILE}: {code} {start_s}..{end_s}: rows disagree")
            targets = [(row["is_default"] == "1", row["ward"]) for row in rows]
            if sum(d for d, _ in targets) != 1:
                raise ValueError(f"{_LINEAGE_FILE}: {code} {start_s}..{end_s} needs exactly one default")
            lineage.setdefault(code, []).append(
                LegacyCommune(
                    code=code,
                    name=head["old_ward_name"],
                    district=head["old_district"],
                    district_name=head["old_district_name"],
                    province=head["old_province"],
                    province_name=head["old_province_name"],
                    successors=_ordered(targets),
                    valid_from=_day(start_s, _LINEAGE_FILE),
                    valid_to=_day(end_s, _LINEAGE_FILE),
                    source="; ".join(sorted({row["source"] for row in rows})),
                )
            )
            lineage_targets.setdefault(code, []).extend(targets)

        successors = {code: p.successors for code, p in legacy.items()}
        # Undated lookups: lineage.tsv wins for the codes it lists (all its periods' wards).
        for code, ps in lineage.items():
            latest = max(ps, key=lambda p: p.valid_to or date.max)
            rest = [(False, w) for w in _ordered(lineage_targets[code]) if w != latest.successors[0]]
            successors[code] = _ordered([(True, latest.successors[0]), *rest])
        return cls(
            wards,
            successors,
            {d: tuple(sorted(ws)) for d, ws in district.items()},
            legacy=legacy,
            lineage={code: tuple(ps) for code, ps in lineage.items()},
            version=_version(blobs),
        )

    @property
    def version(self) -> str:
        """The mapping version of the files this instance was loaded from (see ``mapping_version``)."""
        return self._version

    # --- 2025 scheme

    def __len__(self) -> int:
        """Number of 2025 wards."""
        return len(self._wards)

    def ward(self, code: str) -> Ward | None:
        """The 2025 ward with this code, or None."""
        return self._wards.get(code)

    def province(self, code: str) -> Province | None:
        """The 2025 province with this code, or None."""
        return self._provinces.get(code)

    def provinces(self) -> tuple[Province, ...]:
        """All 2025 provinces, by code."""
        return tuple(self._provinces.values())

    def wards_of(self, province: str) -> tuple[str, ...]:
        """Sorted 2025 ward codes of a 2025 province; empty if unknown."""
        found = self._provinces.get(province)
        return found.wards if found is not None else ()

    # --- legacy scheme, undated (inputs are legacy codes, outputs 2025 ward codes)

    def successors(self, legacy_ward: str) -> tuple[str, ...]:
        """2025 wards a legacy commune code went to over all its periods, default first; empty if unknown."""
        return self._successors.get(legacy_ward, ())

    def district_wards(self, legacy_district: str) -> tuple[str, ...]:
        """Sorted 2025 wards covering all communes a legacy district ever had; empty if unknown."""
        return self._district.get(legacy_district, ())

    # --- legacy scheme, dated

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
