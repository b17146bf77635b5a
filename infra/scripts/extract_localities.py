"""Extract Vietnamese locality reference data from ``vietnamadminunits`` (MIT).

Run once, by hand, whenever the source package is upgraded::

    .venv/bin/python infra/scripts/extract_localities.py

It reads the installed package's data files *by path* (the package is never
imported: it pulls numpy/shapely and its converter may call an online
geocoder) and writes project-owned files under ``events/data/``:

* ``wards_2025.tsv`` -- the 3,321 wards/communes of the 34 provinces in force
  since 1 July 2025, with official zero-padded GSO codes.
* ``legacy_2025.tsv`` -- every unit of the pre-reform scheme (state of
  30 June 2025) joined to the 2025 ward(s) it went to.  The source mapping
  (``converter_2025.json``) is keyed by normalised *names*; here it is joined
  to the code columns of ``admin_units_legacy`` / ``admin_units``.  The five
  island districts that had no communes (Bạch Long Vĩ, Cồn Cỏ, Hoàng Sa,
  Lý Sơn, Côn Đảo) appear as rows with an empty ``legacy_ward``: the district
  itself is the unit that became a 2025 special zone.
* ``NOTICE`` -- the source's MIT licence.

``lineage.tsv`` (pre-2025 changes the legacy table misses, with ``valid_from``/
``valid_to``/``source`` per row) is hand-written and is not written by this
script; the script checks it against the source: a lineage period left open
(or ending on 2025-06-30) must match the source's unit of that code (name,
district, province), and a code whose lineage ends earlier must be absent
from the source (it was merged away).  ``--gaps DISTRICT`` lists the source's
former-name aliases of a legacy district's communes: each marks an older
merger or rename that ``lineage.tsv`` may still have to cover.

Codes are reused across the reform (a 2025 ward usually keeps one of its
source communes' codes; province 24 was Bắc Giang and is now Bắc Ninh), so the
two schemes are kept in separate columns and never compared directly.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

SOURCE_DIST = "vietnamadminunits"
SOURCE_VERSION = "1.0.4"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "events" / "data"

EXPECTED_WARDS = 3321
EXPECTED_PROVINCES = 34
EXPECTED_LEGACY_UNITS = 10040  # 10,035 communes + 5 island districts without communes
EXPECTED_LEGACY_COMMUNES = 10035
EXPECTED_LEGACY_PROVINCES = 63
EXPECTED_LEGACY_DISTRICTS = 696
EXPECTED_PAIRS = 10602
EXPECTED_WHOLE = 9569  # 9,564 communes + 5 island districts
EXPECTED_SPLIT = 471

WARDS_HEADER = ("ward", "ward_name", "province", "province_name")
LEGACY_HEADER = (
    "legacy_ward",
    "legacy_ward_name",
    "legacy_district",
    "legacy_district_name",
    "legacy_province",
    "legacy_province_name",
    "ward",
    "is_default",
)


@dataclass(frozen=True, slots=True)
class NewWard:
    code: str
    name: str
    province: str
    province_name: str


@dataclass(frozen=True, slots=True)
class LegacyUnit:
    ward: str  # "" for an island district without communes
    ward_name: str
    district: str
    district_name: str
    province: str
    province_name: str


@dataclass(frozen=True, slots=True)
class Pair:
    legacy: LegacyUnit
    ward: str
    is_default: bool


def clean(value: object) -> str:
    """Return ``value`` as an NFC-normalised, stripped string ('' for NULL)."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFC", str(value)).strip()
    if any(ch in text for ch in "\t\r\n"):
        raise ValueError(f"control character in {text!r}")
    return text


def check_code(code: str, width: int, what: str) -> str:
    if len(code) != width or not code.isdigit():
        raise ValueError(f"bad {what} code {code!r} (want {width} digits)")
    return code


def source_files(source: Path | None) -> tuple[Path, Path, Path]:
    """Locate dataset.db, converter_2025.json and LICENSE without importing."""
    if source is not None:
        data = source / "data"
        licence = source.parent / f"{SOURCE_DIST}-{SOURCE_VERSION}.dist-info" / "licenses" / "LICENSE"
    else:
        try:
            dist = distribution(SOURCE_DIST)
        except PackageNotFoundError:
            sys.exit(f"{SOURCE_DIST} is not installed: pip install {SOURCE_DIST}=={SOURCE_VERSION}")
        if dist.version != SOURCE_VERSION:
            print(
                f"warning: {SOURCE_DIST} {dist.version} installed, expected {SOURCE_VERSION}", file=sys.stderr
            )
        data = Path(str(dist.locate_file(f"{SOURCE_DIST}/data")))
        licences = [f for f in dist.files or () if f.name.upper().startswith(("LICENSE", "LICENCE"))]
        if not licences:
            sys.exit(f"no licence file found in {SOURCE_DIST}'s dist-info")
        licence = Path(str(licences[0].locate()))
    files = (data / "dataset.db", data / "converter_2025.json", licence)
    for f in files:
        if not f.is_file():
            sys.exit(f"missing source file: {f}")
    return files


def read_new(db: sqlite3.Connection) -> tuple[dict[str, NewWard], dict[tuple[str, str], str]]:
    """2025 wards by code, and (provinceKey, wardKey) -> code for the name join."""
    wards: dict[str, NewWard] = {}
    by_key: dict[tuple[str, str], str] = {}
    rows = db.execute("SELECT wardCode, ward, provinceCode, province, provinceKey, wardKey FROM admin_units")
    for code, name, pcode, pname, pkey, wkey in rows:
        ward = NewWard(
            code=check_code(clean(code), 5, "ward"),
            name=clean(name),
            province=check_code(clean(pcode), 2, "province"),
            province_name=clean(pname),
        )
        assert ward.code not in wards, f"duplicate 2025 ward code {ward.code}"
        assert (pkey, wkey) not in by_key, f"duplicate 2025 key {pkey}/{wkey}"
        wards[ward.code] = ward
        by_key[(pkey, wkey)] = ward.code
    return wards, by_key


def read_legacy(db: sqlite3.Connection) -> dict[str, LegacyUnit]:
    """Legacy units by the converter's key ``provinceKey_districtKey_wardKey``."""
    units: dict[str, LegacyUnit] = {}
    rows = db.execute(
        "SELECT wardCode, ward, districtCode, district, provinceCode, province,"
        " provinceKey, districtKey, wardKey FROM admin_units_legacy"
    )
    for wcode, wname, dcode, dname, pcode, pname, pkey, dkey, wkey in rows:
        unit = LegacyUnit(
            ward=check_code(clean(wcode), 5, "legacy ward") if wcode is not None else "",
            ward_name=clean(wname),
            district=check_code(clean(dcode), 3, "legacy district"),
            district_name=clean(dname),
            province=check_code(clean(pcode), 2, "legacy province"),
            province_name=clean(pname),
        )
        key = f"{pkey}_{dkey}_{wkey or ''}"
        assert key not in units, f"duplicate legacy key {key}"
        units[key] = unit
    return units


def join(
    converter: dict[str, dict[str, object]],
    new_by_key: dict[tuple[str, str], str],
    legacy: dict[str, LegacyUnit],
) -> list[Pair]:
    pairs: list[Pair] = []
    unresolved: list[str] = []
    whole = converter["DICT_PROVINCE_WARD_NO_DIVIDED"]
    split = converter["DICT_PROVINCE_WARD_DIVIDED"]
    for pkey, by_ward in whole.items():
        assert isinstance(by_ward, dict)
        for wkey, sources in by_ward.items():
            code = new_by_key.get((pkey, wkey))
            for src in sources:
                if code is None or src not in legacy:
                    unresolved.append(f"{src} -> {pkey}/{wkey}")
                    continue
                pairs.append(Pair(legacy[src], code, True))
    for pkey, by_src in split.items():
        assert isinstance(by_src, dict)
        for src, targets in by_src.items():
            defaults = sum(bool(t["isDefaultNewWard"]) for t in targets)
            assert defaults == 1, f"{src}: {defaults} default wards"
            for t in targets:
                code = new_by_key.get((pkey, t["newWardKey"]))
                if code is None or src not in legacy:
                    unresolved.append(f"{src} -> {pkey}/{t['newWardKey']}")
                    continue
                pairs.append(Pair(legacy[src], code, bool(t["isDefaultNewWard"])))
    assert not unresolved, f"{len(unresolved)} unresolved: {unresolved[:10]}"
    return pairs


LINEAGE_NAME = "lineage.tsv"
REFORM_EVE = "2025-06-30"


def check_lineage(path: Path, legacy: dict[str, LegacyUnit]) -> list[str]:
    """Disagreements between ``lineage.tsv`` and the source's list of 30 June 2025."""
    if not path.is_file():
        return [f"{path}: missing"]
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:] if line]
    by_code = {u.ward: u for u in legacy.values() if u.ward}
    problems: list[str] = []
    for code in sorted({r["old_ward"] for r in rows}):
        mine = [r for r in rows if r["old_ward"] == code]
        last = [r for r in mine if r["valid_to"] in ("", REFORM_EVE)]
        unit = by_code.get(code)
        if not last:
            if unit is not None:
                problems.append(
                    f"{code}: lineage ends before the reform but the source lists {unit.ward_name}"
                )
            continue
        if unit is None:
            problems.append(f"{code}: lineage runs to the reform but the source has no such commune")
            continue
        for r in last:
            got = (r["old_ward_name"], r["old_district"], r["old_province"])
            want = (unit.ward_name, unit.district, unit.province)
            if got != want:
                problems.append(f"{code}: lineage {got} != source {want}")
    return problems


def aliases(db: sqlite3.Connection, district: str) -> list[tuple[str, str, str]]:
    """(code, name, former-name aliases) of a legacy district's communes that carry aliases."""
    rows = db.execute(
        "SELECT wardCode, ward, wardAlias FROM admin_units_legacy"
        " WHERE districtCode = ? AND wardAlias IS NOT NULL AND wardAlias != '' ORDER BY wardCode",
        (district,),
    )
    return [(clean(c), clean(n), ", ".join(json.loads(a))) for c, n, a in rows]


def write_tsv(path: Path, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    lines = ["\t".join(header)] + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--source", type=Path, help="package directory (default: the installed one)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--gaps", metavar="DISTRICT", help="list former-name aliases of a legacy district, then stop"
    )
    args = parser.parse_args(argv)

    db_path, converter_path, licence_path = source_files(args.source)
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        if args.gaps:
            for code, name, alias in aliases(db, args.gaps):
                print(f"{code}\t{name}\t{alias}")
            return 0
        new, new_by_key = read_new(db)
        legacy = read_legacy(db)
    converter = json.loads(converter_path.read_text(encoding="utf-8"))

    # --- 2025 units
    provinces = {w.province: w.province_name for w in new.values()}
    assert len(new) == EXPECTED_WARDS, len(new)
    assert len(provinces) == EXPECTED_PROVINCES, len(provinces)
    assert len({w.province_name for w in new.values()}) == EXPECTED_PROVINCES

    # --- legacy units
    communes = [u for u in legacy.values() if u.ward]
    assert len(legacy) == EXPECTED_LEGACY_UNITS, len(legacy)
    assert len(communes) == EXPECTED_LEGACY_COMMUNES, len(communes)
    assert len({u.ward for u in communes}) == EXPECTED_LEGACY_COMMUNES, "legacy ward codes not unique"
    assert len({u.province for u in legacy.values()}) == EXPECTED_LEGACY_PROVINCES
    assert len({u.district for u in legacy.values()}) == EXPECTED_LEGACY_DISTRICTS
    district_province = {u.district: u.province for u in legacy.values()}
    assert all(district_province[u.district] == u.province for u in legacy.values())

    # --- mapping
    pairs = join(converter, new_by_key, legacy)
    per_unit = Counter((p.legacy.district, p.legacy.ward) for p in pairs)
    per_new = Counter(p.ward for p in pairs)
    whole = sum(1 for n in per_unit.values() if n == 1)
    split = sum(1 for n in per_unit.values() if n > 1)
    assert len(pairs) == EXPECTED_PAIRS, len(pairs)
    assert len({(p.legacy, p.ward) for p in pairs}) == len(pairs), "duplicate pairs"
    assert len(per_unit) == EXPECTED_LEGACY_UNITS, "some legacy unit has no successor"
    assert (whole, split) == (EXPECTED_WHOLE, EXPECTED_SPLIT), (whole, split)
    assert set(per_new) == set(new), "some 2025 ward has no source"
    per_unit_defaults = Counter((p.legacy.district, p.legacy.ward) for p in pairs if p.is_default)
    assert per_unit_defaults == Counter(dict.fromkeys(per_unit, 1)), "not exactly one default per legacy unit"

    args.out.mkdir(parents=True, exist_ok=True)
    ward_rows = [
        (w.code, w.name, w.province, w.province_name) for w in sorted(new.values(), key=lambda w: w.code)
    ]
    write_tsv(args.out / "wards_2025.tsv", WARDS_HEADER, ward_rows)

    pairs.sort(key=lambda p: (p.legacy.province, p.legacy.district, p.legacy.ward, not p.is_default, p.ward))
    legacy_rows = [
        (
            p.legacy.ward,
            p.legacy.ward_name,
            p.legacy.district,
            p.legacy.district_name,
            p.legacy.province,
            p.legacy.province_name,
            p.ward,
            "1" if p.is_default else "0",
        )
        for p in pairs
    ]
    write_tsv(args.out / "legacy_2025.tsv", LEGACY_HEADER, legacy_rows)

    problems = check_lineage(DEFAULT_OUT / LINEAGE_NAME, legacy)
    for problem in problems:
        print(f"lineage.tsv: {problem}", file=sys.stderr)
    assert not problems, f"lineage.tsv disagrees with the source in {len(problems)} places"

    licence = licence_path.read_text(encoding="utf-8").rstrip("\n")
    notice = (
        f"wards_2025.tsv and legacy_2025.tsv in this directory derive from {SOURCE_DIST} {SOURCE_VERSION}\n"
        "(data/dataset.db tables admin_units and admin_units_legacy, data/converter_2025.json),\n"
        "extracted by infra/scripts/extract_localities.py; lineage.tsv is written by hand.\n"
        f"{SOURCE_DIST} is distributed under the following licence:\n\n"
        f"{licence}\n"
    )
    (args.out / "NOTICE").write_text(notice, encoding="utf-8", newline="\n")

    sizes = Counter(per_unit.values())
    print(f"source: {db_path.parent}")
    print(f"wards_2025.tsv: {len(ward_rows)} wards in {len(provinces)} provinces")
    print(
        f"legacy_2025.tsv: {len(legacy_rows)} rows from {len(legacy)} legacy units "
        f"({len(communes)} communes + {len(legacy) - len(communes)} island districts; "
        f"{len({u.district for u in legacy.values()})} districts, "
        f"{len({u.province for u in legacy.values()})} provinces)"
    )
    print(f"  whole into one ward: {whole}; split: {split} ({dict(sorted(sizes.items()))} by ward count)")
    print(f"  sources per 2025 ward: {min(per_new.values())}..{max(per_new.values())}; unresolved: 0")
    print(f"lineage.tsv: agrees with the source ({DEFAULT_OUT / LINEAGE_NAME})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
