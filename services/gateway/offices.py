"""The offices registry: who may publish, and for which localities (TOML, one [[office]] table each)."""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from events.localities import Localities
from services.gateway.errors import OfficesFileError

_ID = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class Office:
    id: str
    name: str
    provinces: frozenset[str]
    wards: frozenset[str]

    def covers(self, ward: str, province: str) -> bool:
        return ward in self.wards or province in self.provinces


@dataclass(frozen=True)
class OfficeRegistry:
    offices: dict[str, Office]

    def get(self, office_id: str) -> Office | None:
        return self.offices.get(office_id)

    @classmethod
    def parse(cls, text: str, localities: Localities) -> OfficeRegistry:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise OfficesFileError(f"offices file is not valid TOML: {exc}") from None
        offices: dict[str, Office] = {}
        for i, table in enumerate(doc.get("office", [])):
            where = f"office[{i}]"
            office_id = table.get("id")
            if not isinstance(office_id, str) or not _ID.match(office_id):
                raise OfficesFileError(f"{where}: id must match {_ID.pattern} (it is a NATS subject token)")
            if office_id in offices:
                raise OfficesFileError(f"{where}: office id {office_id!r} appears twice")
            provinces: set[str] = set()
            wards: set[str] = set()
            for entry in table.get("jurisdiction", []):
                kind, _, code = str(entry).partition(":")
                if kind == "province" and localities.province(code) is not None:
                    provinces.add(code)
                elif kind == "ward" and localities.ward(code) is not None:
                    wards.add(code)
                else:
                    raise OfficesFileError(
                        f"{where} ({office_id}): jurisdiction {entry!r} is not 'province:PP' or 'ward:WWWWW' "
                        "with a 2025 code"
                    )
            name = unicodedata.normalize("NFC", str(table.get("name", office_id)))
            offices[office_id] = Office(office_id, name, frozenset(provinces), frozenset(wards))
        return cls(offices)

    @classmethod
    def load(cls, path: Path, localities: Localities) -> OfficeRegistry:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise OfficesFileError(f"cannot read offices file {path}: {exc}") from None
        return cls.parse(text, localities)
