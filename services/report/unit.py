"""What a report is about: a unit as a small value (scheme, kind, code), and its official names."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import msgspec

from events.localities import Localities
from services.report.errors import UnknownUnit, UnsupportedUnit

Scheme = Literal["gso-2025", "gso-pre2025"]
Kind = Literal["province", "ward", "district", "commune"]


class Unit(msgspec.Struct, frozen=True, kw_only=True):
    scheme: Scheme = "gso-2025"
    kind: Kind
    code: str

    def query_place(self) -> dict[str, Any]:
        """The place part of a query-service request (``services/query/request.py``)."""
        if self.scheme == "gso-2025":
            if self.kind not in ("province", "ward"):
                raise UnsupportedUnit(f"a {self.kind} is a pre-2025 unit: give --scheme gso-pre2025")
            return {self.kind: self.code}
        if self.kind == "ward":
            raise UnsupportedUnit("a ward is a 2025 unit: give --commune, --district or --province")
        return {"scheme": self.scheme, self.kind: self.code}  # as recorded, exact, no mapping

    @property
    def below(self) -> Kind | None:
        """The kind of the units the report lists below this one: a 2025 province's wards, a pre-2025
        province's districts, a district's communes."""
        if self.scheme == "gso-2025":
            return "ward" if self.kind == "province" else None
        return {"province": "district", "district": "commune"}.get(self.kind)  # type: ignore[return-value]

    def sub_place(self, code: str) -> dict[str, Any]:
        """The query place of a unit below this one."""
        assert self.below is not None
        if self.scheme == "gso-2025":
            return {"ward": code}
        return {"scheme": self.scheme, self.below: code}

    def sub_key(self, code: str) -> str:
        """The key a replay counts a unit below this one under (a 2025 ward's code, or a pre-2025 unit's key)."""
        assert self.below is not None
        if self.scheme == "gso-2025":
            return code
        return f"pre2025:{self.below}:{code}"

    def cli_flags(self) -> str:
        """The same unit as ``antq`` options (``--province 04``)."""
        flags = f"--{self.kind} {self.code}"
        return flags if self.scheme == "gso-2025" else f"--scheme {self.scheme} {flags}"


class UnitNames(msgspec.Struct, frozen=True, kw_only=True):
    """Official names: ``name`` as written at the start of a title (``Xã Trà Lĩnh``), ``province_name``
    (``Tỉnh Cao Bằng``) for a ward; ``wards``: the 2025 wards below a province, (code, name), by code."""

    name: str
    province_name: str | None = None
    wards: tuple[tuple[str, str], ...] = ()


def names_of(unit: Unit, localities: Localities) -> UnitNames:
    unit.query_place()  # a kind the scheme does not have is refused here
    if unit.scheme == "gso-pre2025":
        return _legacy_names(unit, localities)
    if unit.kind == "province":
        province = localities.province(unit.code)
        if province is None:
            raise UnknownUnit(f"province {unit.code} is not an official 2025 province code (e.g. 04)")
        wards = []
        for code in province.wards:
            ward = localities.ward(code)
            assert ward is not None
            wards.append((code, ward.name))
        return UnitNames(name=province.name, wards=tuple(wards))
    ward = localities.ward(unit.code)
    if ward is None:
        raise UnknownUnit(f"ward {unit.code} is not an official 2025 ward code (e.g. 01447)")
    return UnitNames(name=ward.name, province_name=ward.province_name)


def _legacy_names(unit: Unit, localities: Localities) -> UnitNames:
    """A pre-2025 unit's names as recorded (the latest period the data knows of it), and the units below it."""
    code = unit.code
    communes = sorted(
        localities.legacy_units(
            commune=code if unit.kind == "commune" else None,
            district=code if unit.kind == "district" else None,
            province=code if unit.kind == "province" else None,
        )
    )
    periods = [
        p for c in communes for p in localities.legacy_periods(c) if getattr(p, _CODE[unit.kind]) == unit.code
    ]
    if not periods:
        raise UnknownUnit(f"{unit.kind} {unit.code} is no known pre-2025 {unit.kind} code")
    latest = max(periods, key=lambda p: p.valid_from or dt.date.min)
    if unit.kind == "commune":
        return UnitNames(name=latest.name, province_name=latest.province_name)
    below: dict[str, str] = {}
    for p in sorted(periods, key=lambda p: p.valid_from or dt.date.min):
        if unit.kind == "district":
            below[p.code] = p.name
        else:
            below[p.district] = p.district_name
    if unit.kind == "district":
        return UnitNames(
            name=latest.district_name, province_name=latest.province_name, wards=tuple(sorted(below.items()))
        )
    return UnitNames(name=latest.province_name, wards=tuple(sorted(below.items())))


_CODE = {"commune": "code", "district": "district", "province": "province"}
