"""What a report is about: a unit as a small value (scheme, kind, code), and its official names."""

from __future__ import annotations

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
        if self.scheme == "gso-2025" and self.kind in ("province", "ward"):
            return {self.kind: self.code}
        # TODO(pre-2025 units): the query is being taught the pre-reform shape
        # {"scheme": "gso-pre2025", "district": "046", "year": 2018}; return
        # {"scheme": self.scheme, self.kind: self.code} here once it answers it, and name the unit in
        # ``UnitNames.of`` from ``Localities.legacy_units`` (marking the figures approximate where a commune
        # was split over several 2025 wards).
        raise UnsupportedUnit(
            f"{self.scheme} {self.kind} {self.code}: the query service does not answer for pre-2025 units yet; "
            "give a 2025 --province or --ward"
        )

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
    if unit.scheme != "gso-2025":
        unit.query_place()  # raises UnsupportedUnit with its TODO
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
    if unit.kind == "ward":
        ward = localities.ward(unit.code)
        if ward is None:
            raise UnknownUnit(f"ward {unit.code} is not an official 2025 ward code (e.g. 01447)")
        return UnitNames(name=ward.name, province_name=ward.province_name)
    raise UnsupportedUnit(f"a {unit.kind} is a pre-2025 unit: give --province or --ward")
