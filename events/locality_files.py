"""The packaged locality files of ``events.data``: reading and checking them, their version, the legacy tables.

The data files are project-owned: ``wards_2025.tsv`` and ``legacy_2025.tsv`` are extracted once from
``vietnamadminunits`` (MIT, see ``events/data/NOTICE``) by ``infra/scripts/extract_localities.py``;
``lineage.tsv`` is hand-written for pre-2025 changes the legacy table misses. ``read_legacy_tables`` turns the
last two into the dated periods ``events.legacy_localities.LegacyLocalities`` looks up; the 2025 wards are read
by ``events.localities.Localities.load``. ``mapping_version`` is the short hash of all three files.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib.resources import files

from events.legacy_localities import REFORM_EVE, LegacyCommune

__all__ = [
    "FILES",
    "WARDS_FILE",
    "WARDS_HEADER",
    "LegacyTables",
    "files_version",
    "mapping_version",
    "read_file",
    "read_files",
    "read_legacy_tables",
    "tsv_rows",
]

_PACKAGE = "events.data"
WARDS_FILE = "wards_2025.tsv"
_LEGACY_FILE = "legacy_2025.tsv"
_LINEAGE_FILE = "lineage.tsv"
FILES = (WARDS_FILE, _LEGACY_FILE, _LINEAGE_FILE)

WARDS_HEADER = ("ward", "ward_name", "province", "province_name")
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


def read_file(name: str) -> bytes:
    """The bytes of one packaged file."""
    return files(_PACKAGE).joinpath(name).read_bytes()


def read_files() -> dict[str, bytes]:
    """The bytes of every packaged file, by name (every call reads them again)."""
    return {name: read_file(name) for name in FILES}


def tsv_rows(name: str, data: bytes, header: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """The rows of one tab-separated file as dicts, after checking its header and every row's width."""
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


def files_version(blobs: Mapping[str, bytes]) -> str:
    """A short SHA-256 over the files' names, lengths and bytes."""
    digest = hashlib.sha256()
    for name in FILES:
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
    return files_version(read_files())


@dataclass(frozen=True, slots=True)
class LegacyTables:
    """The legacy mapping as read from ``legacy_2025.tsv`` and ``lineage.tsv``.

    ``legacy``: the list of 30 June 2025, one entry per commune code; ``lineage``: the dated periods of the
    codes ``lineage.tsv`` lists; ``successors``: the undated 2025 wards of every code, default first (lineage
    wins for the codes it lists); ``district``: the sorted 2025 wards of every legacy district.
    """

    legacy: dict[str, LegacyCommune]
    lineage: dict[str, tuple[LegacyCommune, ...]]
    successors: dict[str, tuple[str, ...]]
    district: dict[str, tuple[str, ...]]


def read_legacy_tables(blobs: Mapping[str, bytes]) -> LegacyTables:
    """Parse and check ``legacy_2025.tsv`` and ``lineage.tsv`` (``ValueError`` on any bad row)."""
    legacy_targets: dict[str, list[tuple[bool, str]]] = {}
    legacy_rows: dict[str, dict[str, str]] = {}
    district: dict[str, set[str]] = {}
    for row in tsv_rows(_LEGACY_FILE, blobs[_LEGACY_FILE], _LEGACY_HEADER):
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
    for lineno, row in enumerate(tsv_rows(_LINEAGE_FILE, blobs[_LINEAGE_FILE], _LINEAGE_HEADER), 2):
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
    return LegacyTables(
        legacy=legacy,
        lineage={code: tuple(ps) for code, ps in lineage.items()},
        successors=successors,
        district={d: tuple(sorted(ws)) for d, ws in district.items()},
    )
