"""Vietnamese locality reference data: the 2025 wards and provinces, and the entry to the legacy lookups.

Two code schemes exist and must never be mixed: the 2025 scheme (``gso-2025``: ``ward``, ``province``,
``wards_of``, held here) and the pre-reform scheme (``gso-pre2025``: ``resolve_legacy``, ``legacy_units``,
``successors``, ``district_wards``, which ``Localities`` hands to ``events.legacy_localities``, where the
dating rules and the known gaps are written down). The same string often names different units in each
(a 2025 ward usually reuses one of its source communes' codes; province 24 was Bắc Giang before and is Bắc
Ninh after), so legacy lookups only accept legacy codes and only ever return 2025 codes as
``ward``/``successors``.

The packaged files are read by ``events.locality_files`` (``mapping_version`` is there too). Build with
``Localities.load()`` once and keep the instance; every lookup is pure and does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

from events.legacy_localities import LegacyCommune, LegacyLocalities, LegacyResolution
from events.locality_files import (
    WARDS_FILE,
    WARDS_HEADER,
    files_version,
    read_files,
    read_legacy_tables,
    tsv_rows,
)

__all__ = ["Localities", "Province", "Ward"]


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


class Localities:
    """Read-only lookups over the 2025 wards and the dated legacy → 2025 mapping."""

    __slots__ = ("_legacy", "_provinces", "_version", "_wards")

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
        self._legacy = LegacyLocalities(
            successors, district, legacy=legacy, lineage=lineage, wards=self._wards
        )
        self._version = version

    @classmethod
    def load(cls) -> Localities:
        """Read the packaged TSV files (every call reads them again)."""
        blobs = read_files()

        wards: dict[str, Ward] = {}
        for row in tsv_rows(WARDS_FILE, blobs[WARDS_FILE], WARDS_HEADER):
            ward = Ward(row["ward"], row["ward_name"], row["province"], row["province_name"])
            if ward.code in wards:
                raise ValueError(f"{WARDS_FILE}: duplicate ward {ward.code}")
            wards[ward.code] = ward

        tables = read_legacy_tables(blobs)
        return cls(
            wards,
            tables.successors,
            tables.district,
            legacy=tables.legacy,
            lineage=tables.lineage,
            version=files_version(blobs),
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

    # --- legacy scheme (inputs are legacy codes, outputs 2025 ward codes): ``LegacyLocalities``

    def successors(self, legacy_ward: str) -> tuple[str, ...]:
        """2025 wards a legacy commune code went to over all its periods, default first; empty if unknown."""
        return self._legacy.successors(legacy_ward)

    def district_wards(self, legacy_district: str) -> tuple[str, ...]:
        """Sorted 2025 wards covering all communes a legacy district ever had; empty if unknown."""
        return self._legacy.district_wards(legacy_district)

    def legacy_periods(self, commune: str) -> tuple[LegacyCommune, ...]:
        """Every known period of a legacy commune code, oldest first (``LegacyLocalities.legacy_periods``)."""
        return self._legacy.legacy_periods(commune)

    def legacy_commune(self, commune: str, on: date) -> LegacyCommune | None:
        """The legacy commune a code named on a date, or None (unknown, or not valid then)."""
        return self._legacy.legacy_commune(commune, on)

    def resolve_legacy(
        self,
        commune: str,
        on: date,
        *,
        district: str | None = None,
        province: str | None = None,
        ward: str | None = None,
    ) -> LegacyResolution:
        """Resolve a ``gso-pre2025`` locality on the event's date (``LegacyLocalities.resolve_legacy``: the
        errors it raises and their paths)."""
        return self._legacy.resolve_legacy(commune, on, district=district, province=province, ward=ward)

    def legacy_units(
        self,
        district: str | None = None,
        province: str | None = None,
        commune: str | None = None,
        *,
        on: date | None = None,
    ) -> frozenset[str]:
        """Legacy commune codes that belonged to the given units, in some period or on ``on``
        (``LegacyLocalities.legacy_units``)."""
        return self._legacy.legacy_units(district, province, commune, on=on)
