"""Vietnamese locality reference data: 2025 wards and the legacy → 2025 mapping.

The data files in ``events.data`` are project-owned: ``wards_2025.tsv`` and
``legacy_2025.tsv`` are extracted once from ``vietnamadminunits`` (MIT, see
``events/data/NOTICE``) by ``infra/scripts/extract_localities.py``;
``lineage.tsv`` is hand-written for pre-2025 changes the legacy table misses.

Two code schemes live here and must never be mixed: the 2025 scheme
(``ward``, ``province``, ``wards_of``) and the legacy scheme (``successors``,
``district_wards``).  The same string often names different units in each
(a 2025 ward usually reuses one of its source communes' codes; province 24
was Bắc Giang before and is Bắc Ninh after), so legacy lookups only accept
legacy codes and only ever return 2025 codes.

Build with ``Localities.load()`` once and keep the instance.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.resources import files
from types import MappingProxyType

__all__ = ["Localities", "Province", "Ward"]

_PACKAGE = "events.data"
_WARDS_FILE = "wards_2025.tsv"
_LEGACY_FILE = "legacy_2025.tsv"
_LINEAGE_FILE = "lineage.tsv"

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
    "ward",
    "is_default",
    "note",
)


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


def _rows(name: str, header: tuple[str, ...]) -> Iterator[dict[str, str]]:
    text = files(_PACKAGE).joinpath(name).read_text(encoding="utf-8")
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


def _ordered(targets: list[tuple[bool, str]]) -> tuple[str, ...]:
    """Default ward first, then the others by code, without duplicates."""
    out: list[str] = []
    for _, code in sorted(targets, key=lambda t: (not t[0], t[1])):
        if code not in out:
            out.append(code)
    return tuple(out)


class Localities:
    """Read-only lookups over the 2025 wards and the legacy → 2025 mapping."""

    __slots__ = ("_district", "_provinces", "_successors", "_wards")

    def __init__(
        self,
        wards: Mapping[str, Ward],
        successors: Mapping[str, tuple[str, ...]],
        district: Mapping[str, tuple[str, ...]],
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
        for legacy, targets in (*successors.items(), *district.items()):
            unknown = [t for t in targets if t not in self._wards]
            if unknown:
                raise ValueError(f"legacy {legacy} maps to unknown 2025 wards {unknown}")
        self._successors: Mapping[str, tuple[str, ...]] = MappingProxyType(dict(successors))
        self._district: Mapping[str, tuple[str, ...]] = MappingProxyType(dict(district))

    @classmethod
    def load(cls) -> Localities:
        """Read the packaged TSV files (every call reads them again)."""
        wards: dict[str, Ward] = {}
        for row in _rows(_WARDS_FILE, _WARDS_HEADER):
            ward = Ward(row["ward"], row["ward_name"], row["province"], row["province_name"])
            if ward.code in wards:
                raise ValueError(f"{_WARDS_FILE}: duplicate ward {ward.code}")
            wards[ward.code] = ward

        legacy: dict[str, list[tuple[bool, str]]] = {}
        district: dict[str, set[str]] = {}
        for row in _rows(_LEGACY_FILE, _LEGACY_HEADER):
            default = _flag(row["is_default"], _LEGACY_FILE)
            # An empty legacy_ward is an island district without communes.
            if row["legacy_ward"]:
                legacy.setdefault(row["legacy_ward"], []).append((default, row["ward"]))
            district.setdefault(row["legacy_district"], set()).add(row["ward"])

        lineage: dict[str, list[tuple[bool, str]]] = {}
        for row in _rows(_LINEAGE_FILE, _LINEAGE_HEADER):
            lineage.setdefault(row["old_ward"], []).append(
                (_flag(row["is_default"], _LINEAGE_FILE), row["ward"])
            )
            district.setdefault(row["old_district"], set()).add(row["ward"])

        successors = {code: _ordered(targets) for code, targets in legacy.items()}
        # lineage.tsv wins for the codes it lists.
        successors.update({code: _ordered(targets) for code, targets in lineage.items()})
        return cls(wards, successors, {d: tuple(sorted(ws)) for d, ws in district.items()})

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

    # --- legacy scheme (inputs are legacy codes, outputs 2025 ward codes)

    def successors(self, legacy_ward: str) -> tuple[str, ...]:
        """2025 wards a legacy commune went to, default first; empty if unknown."""
        return self._successors.get(legacy_ward, ())

    def district_wards(self, legacy_district: str) -> tuple[str, ...]:
        """Sorted 2025 wards covering all communes of a legacy district; empty if unknown."""
        return self._district.get(legacy_district, ())
