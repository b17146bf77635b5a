"""The dated pre-2025 (``gso-pre2025``) lookups: pure, no servers.

The oracle never calls the code under test: expectations come from hand-written
facts (Trà Lĩnh and the articles' other places) or from the TSV rows read here
with the csv module, with the rule of the README applied independently: a
lineage row decides on the dates of its range, elsewhere the list of 30 June
2025 decides, and nothing pre-2025 is valid after 2025-06-30.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from importlib.resources import files
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import events.locality_files as locality_files
from events.errors import EventError, Invalid, UnknownLocality
from events.legacy_localities import (
    REFORM_EVE,
    LegacyAfterReform,
    LegacyMismatch,
    LegacyResolution,
    LegacyWardNotSuccessor,
    UnknownLegacyCommune,
)
from events.localities import Localities
from events.locality_files import mapping_version

MERGER = date(2020, 3, 1)  # NQ 897/NQ-UBTVQH14 in force
EVE_OF_MERGER = date(2020, 2, 29)


# --- the independent oracle


def _table(name: str) -> list[dict[str, str]]:
    text = files("events.data").joinpath(name).read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    return list(reader)


@dataclass(frozen=True)
class Expected:
    name: str
    district: str
    district_name: str
    province: str
    default: str
    wards: frozenset[str]


LIST_ROWS = [r for r in _table("legacy_2025.tsv") if r["legacy_ward"]]
LINEAGE_ROWS = _table("lineage.tsv")
WARDS_2025 = {r["ward"]: r for r in _table("wards_2025.tsv")}

LIST: dict[str, list[dict[str, str]]] = defaultdict(list)
for _r in LIST_ROWS:
    LIST[_r["legacy_ward"]].append(_r)
LINEAGE: dict[str, list[dict[str, str]]] = defaultdict(list)
for _r in LINEAGE_ROWS:
    LINEAGE[_r["old_ward"]].append(_r)

LEGACY_CODES = sorted(set(LIST) | set(LINEAGE))
SPLIT_CODES = sorted(c for c, rows in LIST.items() if len(rows) > 1 and c not in LINEAGE)
WHOLE_CODES = sorted(c for c, rows in LIST.items() if len(rows) == 1 and c not in LINEAGE)
ONLY_2025 = sorted(set(WARDS_2025) - set(LIST) - set(LINEAGE))
LEGACY_DISTRICTS = sorted(
    {r["legacy_district"] for r in LIST_ROWS} | {r["old_district"] for r in LINEAGE_ROWS}
)
LEGACY_PROVINCES = sorted({r["legacy_province"] for r in LIST_ROWS})


def _in_range(row: dict[str, str], on: date) -> bool:
    start, end = row["valid_from"], row["valid_to"]
    return (not start or date.fromisoformat(start) <= on) and (not end or on <= date.fromisoformat(end))


def expected(code: str, on: date) -> Expected | None:
    """What a legacy code names on a date, from the TSV rows alone (None: unknown then)."""
    if on > REFORM_EVE:
        return None
    rows = [r for r in LINEAGE.get(code, []) if _in_range(r, on)]
    if rows:
        return Expected(
            rows[0]["old_ward_name"],
            rows[0]["old_district"],
            rows[0]["old_district_name"],
            rows[0]["old_province"],
            next(r["ward"] for r in rows if r["is_default"] == "1"),
            frozenset(r["ward"] for r in rows),
        )
    rows = LIST.get(code, [])
    if rows:
        return Expected(
            rows[0]["legacy_ward_name"],
            rows[0]["legacy_district"],
            rows[0]["legacy_district_name"],
            rows[0]["legacy_province"],
            next(r["ward"] for r in rows if r["is_default"] == "1"),
            frozenset(r["ward"] for r in rows),
        )
    return None


# Dates: anywhere in the scheme's life, with the known boundaries drawn often.
BOUNDARIES = [EVE_OF_MERGER, MERGER, REFORM_EVE, date(2020, 2, 9), date(2020, 2, 10), date(2012, 1, 1)]
days = st.one_of(st.sampled_from(BOUNDARIES), st.dates(min_value=date(1990, 1, 1), max_value=REFORM_EVE))
after_reform = st.dates(min_value=REFORM_EVE + timedelta(days=1), max_value=date(2100, 1, 1))
codes = st.one_of(
    st.sampled_from(sorted(LINEAGE)),
    st.sampled_from(LEGACY_CODES),
    st.sampled_from(ONLY_2025),
    st.text(alphabet="0123456789", min_size=0, max_size=6),
)


@pytest.fixture(scope="module")
def loc() -> Localities:
    return Localities.load()


# Hypothesis and module fixtures: one instance for the whole file.
LOC = Localities.load()


# --- hand-written facts: Trà Lĩnh (Cao Bằng 04) around NQ 897/NQ-UBTVQH14

TRA_LINH_2018 = {
    # code: (name before the merger, 2025 ward)
    "01447": ("Thị trấn Hùng Quốc", "01447"),
    "01450": ("Xã Cô Mười", "01456"),
    "01453": ("Xã Tri Phương", "01465"),
    "01456": ("Xã Quang Hán", "01456"),
    "01459": ("Xã Quang Vinh", "01456"),
    "01462": ("Xã Xuân Nội", "01465"),
    "01465": ("Xã Quang Trung", "01465"),
    "01468": ("Xã Lưu Ngọc", "01456"),
    "01471": ("Xã Cao Chương", "01447"),
    "01474": ("Xã Quốc Toản", "01447"),
}
AFTER_MERGER = {
    # code: (name, district) from 2020-03-01; 01450 and 01459 are gone
    "01447": ("Thị trấn Trà Lĩnh", "047"),
    "01453": ("Xã Tri Phương", "047"),
    "01456": ("Xã Quang Hán", "047"),
    "01462": ("Xã Xuân Nội", "047"),
    "01465": ("Xã Quang Trung", "047"),
    "01468": ("Xã Quang Vinh", "047"),
    "01471": ("Xã Cao Chương", "047"),
    "01474": ("Xã Quốc Toản", "049"),
}


@pytest.mark.parametrize("code", sorted(TRA_LINH_2018))
@pytest.mark.parametrize("on", [date(2012, 5, 1), date(2018, 6, 15), EVE_OF_MERGER])
def test_tra_linh_communes_before_the_merger(loc: Localities, code: str, on: date) -> None:
    name, ward = TRA_LINH_2018[code]
    got = loc.resolve_legacy(code, on, district="046", province="04")
    assert got == LegacyResolution(
        commune=code,
        commune_name=name,
        district="046",
        district_name="Huyện Trà Lĩnh",
        province="04",
        province_name="Tỉnh Cao Bằng",
        ward=ward,
        approximate=False,
        successors=(ward,),
    )


@pytest.mark.parametrize("code", sorted(AFTER_MERGER))
@pytest.mark.parametrize("on", [MERGER, date(2022, 1, 1), REFORM_EVE])
def test_tra_linh_communes_after_the_merger(loc: Localities, code: str, on: date) -> None:
    name, district = AFTER_MERGER[code]
    got = loc.resolve_legacy(code, on, district=district, province="04")
    assert (got.commune_name, got.district, got.ward) == (name, district, TRA_LINH_2018[code][1])
    # District 046 no longer exists: naming it is unknown_locality on the district.
    with pytest.raises(LegacyMismatch) as caught:
        loc.resolve_legacy(code, on, district="046")
    assert caught.value.code == "unknown_locality"
    assert caught.value.path == "$.locality.district"


def test_01468_names_two_units(loc: Localities) -> None:
    before = loc.resolve_legacy("01468", EVE_OF_MERGER)
    after = loc.resolve_legacy("01468", MERGER)
    assert (before.commune_name, before.district) == ("Xã Lưu Ngọc", "046")
    assert (after.commune_name, after.district) == ("Xã Quang Vinh", "047")
    # Quang Vinh's own old code 01459 ends the day before.
    assert loc.resolve_legacy("01459", EVE_OF_MERGER).commune_name == "Xã Quang Vinh"
    with pytest.raises(UnknownLegacyCommune):
        loc.resolve_legacy("01459", MERGER)


@pytest.mark.parametrize("code", ["01450", "01459"])
@pytest.mark.parametrize("on", [MERGER, date(2021, 7, 1), REFORM_EVE])
def test_merged_away_communes_are_unknown_after_the_merger(loc: Localities, code: str, on: date) -> None:
    with pytest.raises(UnknownLegacyCommune) as caught:
        loc.resolve_legacy(code, on)
    err = caught.value
    assert isinstance(err, UnknownLocality)
    assert err.code == "unknown_locality"
    assert err.path == "$.locality.commune"
    assert "2020-02-29" in err.message  # says until when it was valid


def test_quoc_toan_went_to_quang_hoa(loc: Localities) -> None:
    assert loc.resolve_legacy("01474", MERGER, district="049").district_name == "Huyện Quảng Hòa"
    # Quảng Hòa (049) is not the district of Quốc Toản before the merger.
    with pytest.raises(LegacyMismatch):
        loc.resolve_legacy("01474", EVE_OF_MERGER, district="049")


def test_district_046_as_recorded(loc: Localities) -> None:
    assert loc.legacy_units(district="046") == frozenset(TRA_LINH_2018)
    assert loc.legacy_units(district="046", on=date(2018, 1, 1)) == frozenset(TRA_LINH_2018)
    assert loc.legacy_units(district="046", on=MERGER) == frozenset()
    assert loc.legacy_units(district="046", province="04") == frozenset(TRA_LINH_2018)
    assert loc.legacy_units(district="046", province="24") == frozenset()
    after_047 = loc.legacy_units(district="047", on=MERGER)
    assert {c for c, (_, d) in AFTER_MERGER.items() if d == "047"} <= after_047
    assert not (frozenset(TRA_LINH_2018) & loc.legacy_units(district="047", on=date(2018, 1, 1)))
    assert loc.legacy_units(commune="01450") == frozenset({"01450"})
    assert loc.legacy_units(commune="01450", on=MERGER) == frozenset()
    assert loc.legacy_units(commune="01450", district="047") == frozenset()
    assert loc.legacy_units(commune="99999") == frozenset()


def test_legacy_periods(loc: Localities) -> None:
    periods = loc.legacy_periods("01468")
    assert [(p.name, p.valid_from, p.valid_to) for p in periods] == [
        ("Xã Lưu Ngọc", None, EVE_OF_MERGER),
        ("Xã Quang Vinh", MERGER, None),
    ]
    assert all("897/NQ-UBTVQH14" in p.source for p in periods)
    hai_lang = loc.legacy_periods("06886")
    assert len(hai_lang) == 1
    assert hai_lang[0].source == "legacy_2025.tsv"
    assert hai_lang[0].valid_to == REFORM_EVE
    assert loc.legacy_periods("11948") == ()


# --- hand-written facts: the articles' other places, through the list of 30 June 2025


def test_article_places_resolve_through_the_list(loc: Localities) -> None:
    on = date(2018, 6, 1)
    hai_lang = loc.resolve_legacy("06886", on, district="199", province="22")
    assert (hai_lang.commune_name, hai_lang.ward, hai_lang.approximate) == ("Xã Hải Lạng", "06886", True)
    assert set(hai_lang.successors) == {"06886", "06799", "06970"}
    assert loc.resolve_legacy("06886", on, ward="06970").approximate is False
    assert loc.resolve_legacy("06862", on, district="199").ward == "06862"  # Thị trấn Tiên Yên
    assert loc.legacy_units(district="199") == frozenset(
        {"06862", "06865", "06868", "06871", "06874", "06877", "06880", "06883", "06886", "06889", "06892"}
    )
    assert len(loc.legacy_units(district="385", province="38")) == 15  # Quan Hóa
    assert loc.resolve_legacy("14869", on, district="385", province="38").commune_name == "Thị trấn Hồi Xuân"
    gia_binh = loc.legacy_units(district="263")
    assert len(gia_binh) == 14
    assert gia_binh <= loc.legacy_units(province="27")  # old Bắc Ninh was 27 ...
    assert not gia_binh & loc.legacy_units(province="24")  # ... legacy 24 was Bắc Giang
    for code in gia_binh:
        resolved = loc.resolve_legacy(code, on, province="27")
        ward = loc.ward(resolved.ward)
        assert ward is not None
        assert ward.province == "24"  # new Bắc Ninh, through the ward
        with pytest.raises(LegacyMismatch) as caught:
            loc.resolve_legacy(code, on, province="24")
        assert caught.value.path == "$.locality.province"
    vinh_dien = loc.resolve_legacy("20551", date(2015, 1, 1), district="507", province="49")
    assert (vinh_dien.commune_name, vinh_dien.ward) == ("Phường Vĩnh Điện", "20551")
    assert loc.ward("20551") is not None
    assert loc.ward("20551").province == "48"  # type: ignore[union-attr]


# --- properties against the TSV oracle


@settings(max_examples=400)
@given(code=codes, on=days)
def test_resolution_matches_the_rows(code: str, on: date) -> None:
    want = expected(code, on)
    if want is None:
        with pytest.raises(UnknownLegacyCommune) as caught:
            LOC.resolve_legacy(code, on)
        assert caught.value.code == "unknown_locality"
        assert caught.value.path == "$.locality.commune"
        return
    got = LOC.resolve_legacy(code, on)
    assert (got.commune, got.commune_name, got.district, got.district_name, got.province) == (
        code,
        want.name,
        want.district,
        want.district_name,
        want.province,
    )
    assert got.ward == want.default
    assert got.successors[0] == want.default
    assert set(got.successors) == want.wards
    assert len(got.successors) == len(want.wards)
    assert got.approximate is (len(want.wards) > 1)
    assert got.ward in WARDS_2025


@settings(max_examples=200)
@given(code=codes, on=after_reform, district=st.none() | st.sampled_from(LEGACY_DISTRICTS))
def test_after_the_reform_is_invalid(code: str, on: date, district: str | None) -> None:
    with pytest.raises(LegacyAfterReform) as caught:
        LOC.resolve_legacy(code, on, district=district)
    err = caught.value
    assert isinstance(err, Invalid)
    assert err.code == "invalid"
    assert err.path == "$.occurred_on"


@settings(max_examples=300)
@given(data=st.data(), code=st.sampled_from(SPLIT_CODES), on=days)
def test_split_commune_takes_a_given_successor_or_its_default(
    data: st.DataObject, code: str, on: date
) -> None:
    rows = LIST[code]
    successors = sorted(r["ward"] for r in rows)
    default = next(r["ward"] for r in rows if r["is_default"] == "1")
    plain = LOC.resolve_legacy(code, on)
    assert (plain.ward, plain.approximate) == (default, True)
    chosen = data.draw(st.sampled_from(successors))
    given_ward = LOC.resolve_legacy(code, on, ward=chosen)
    assert (given_ward.ward, given_ward.approximate) == (chosen, False)
    other = data.draw(st.sampled_from(sorted(set(WARDS_2025) - set(successors))))
    with pytest.raises(LegacyWardNotSuccessor) as caught:
        LOC.resolve_legacy(code, on, ward=other)
    assert caught.value.code == "invalid"
    assert caught.value.path == "$.locality.ward"


@settings(max_examples=300)
@given(data=st.data(), code=st.sampled_from(WHOLE_CODES), on=days)
def test_whole_commune_goes_to_its_one_ward(data: st.DataObject, code: str, on: date) -> None:
    (row,) = LIST[code]
    got = LOC.resolve_legacy(code, on)
    assert (got.ward, got.approximate, got.successors) == (row["ward"], False, (row["ward"],))
    assert LOC.resolve_legacy(code, on, ward=row["ward"]).ward == row["ward"]
    # A merged 2025 ward: every one of its sources lands on it.
    sources = [
        r["legacy_ward"] for r in LIST_ROWS if r["ward"] == row["ward"] and len(LIST[r["legacy_ward"]]) == 1
    ]
    other = data.draw(st.sampled_from(sources))
    if other not in LINEAGE:
        assert LOC.resolve_legacy(other, on).ward == row["ward"]


@settings(max_examples=400)
@given(
    code=st.sampled_from(LEGACY_CODES),
    on=days,
    district=st.none() | st.sampled_from(LEGACY_DISTRICTS),
    province=st.none() | st.sampled_from(LEGACY_PROVINCES),
)
def test_district_and_province_must_agree_on_the_date(
    code: str, on: date, district: str | None, province: str | None
) -> None:
    want = expected(code, on)
    if want is None:
        with pytest.raises(UnknownLegacyCommune):
            LOC.resolve_legacy(code, on, district=district, province=province)
        return
    if district is not None and district != want.district:
        with pytest.raises(LegacyMismatch) as caught:
            LOC.resolve_legacy(code, on, district=district, province=province)
        assert caught.value.path == "$.locality.district"
    elif province is not None and province != want.province:
        with pytest.raises(LegacyMismatch) as caught:
            LOC.resolve_legacy(code, on, district=district, province=province)
        assert caught.value.path == "$.locality.province"
    else:
        got = LOC.resolve_legacy(code, on, district=district, province=province)
        assert (got.district, got.province) == (want.district, want.province)


@settings(max_examples=100)
@given(code=st.sampled_from(ONLY_2025), on=days)
def test_a_2025_only_code_is_no_legacy_commune(code: str, on: date) -> None:
    with pytest.raises(UnknownLegacyCommune) as caught:
        LOC.resolve_legacy(code, on)
    assert "gso-2025" in caught.value.message
    assert LOC.legacy_units(commune=code) == frozenset()


def test_legacy_only_codes_are_no_2025_wards(loc: Localities) -> None:
    for code in ("01450", "01453", "01459", "01462", "01468", "01471", "01474"):
        assert loc.ward(code) is None, code
        assert loc.resolve_legacy(code, date(2018, 1, 1)).ward in WARDS_2025


@settings(max_examples=150)
@given(
    district=st.sampled_from(LEGACY_DISTRICTS),
    province=st.none() | st.sampled_from(LEGACY_PROVINCES),
    on=st.none() | days,
)
def test_legacy_units_match_the_rows(district: str, province: str | None, on: date | None) -> None:
    want: set[str] = set()
    for code in LEGACY_CODES:
        if on is not None:
            found = expected(code, on)
            hits = [found] if found is not None else []
            pairs = [(e.district, e.province) for e in hits]
        else:
            pairs = [(r["old_district"], r["old_province"]) for r in LINEAGE.get(code, [])]
            if code in LIST and not _lineage_covers_everything(code):
                pairs.append((LIST[code][0]["legacy_district"], LIST[code][0]["legacy_province"]))
        if any(d == district and (province is None or p == province) for d, p in pairs):
            want.add(code)
    assert LOC.legacy_units(district=district, province=province, on=on) == want


def _lineage_covers_everything(code: str) -> bool:
    # By hand for the lineage this file knows: every Trà Lĩnh code that survived has a
    # row up to 2020-02-29 and an open row from 2020-03-01.
    rows = LINEAGE.get(code, [])
    return any(not r["valid_from"] for r in rows) and any(
        r["valid_from"] == "2020-03-01" and not r["valid_to"] for r in rows
    )


# --- the lineage file itself


def test_lineage_rows_are_dated_and_sourced() -> None:
    assert LINEAGE_ROWS
    by_code: dict[str, list[tuple[date, date]]] = defaultdict(list)
    for r in LINEAGE_ROWS:
        assert r["source"].strip(), r
        start = date.fromisoformat(r["valid_from"]) if r["valid_from"] else date.min
        end = date.fromisoformat(r["valid_to"]) if r["valid_to"] else date.max
        assert start <= end
        assert r["ward"] in WARDS_2025
        by_code[r["old_ward"]].append((start, end))
    for code, spans in by_code.items():
        spans.sort()
        for (_, end), (start, _) in pairwise(spans):
            assert end < start, f"{code}: overlapping lineage periods"


def test_open_lineage_rows_agree_with_the_list_of_30_june_2025() -> None:
    for r in LINEAGE_ROWS:
        if r["valid_to"]:
            # A code whose last period ends before the reform must not still be in the list.
            if not any(not o["valid_to"] for o in LINEAGE[r["old_ward"]]):
                assert r["old_ward"] not in LIST, r
            continue
        listed = LIST[r["old_ward"]]
        assert listed, r
        assert (r["old_ward_name"], r["old_district"], r["old_province"]) == (
            listed[0]["legacy_ward_name"],
            listed[0]["legacy_district"],
            listed[0]["legacy_province"],
        )
        assert {x["ward"] for x in listed} == {o["ward"] for o in LINEAGE[r["old_ward"]] if not o["valid_to"]}


# --- version and errors


def test_mapping_version(loc: Localities) -> None:
    version = mapping_version()
    assert len(version) == 16
    int(version, 16)
    assert loc.version == version
    assert Localities.load().version == version


def test_mapping_version_changes_with_the_lineage(monkeypatch: pytest.MonkeyPatch) -> None:
    real = locality_files.read_file

    def edited(name: str) -> bytes:
        data = real(name)
        return data.replace("Xã Cô Mười".encode(), "Xã Cô Muời".encode()) if name == "lineage.tsv" else data

    monkeypatch.setattr(locality_files, "read_file", edited)
    assert Localities.load().version != mapping_version()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("\t\t2020-02-29\t", "\t2020-03-05\t2020-02-29\t", 1),
            "valid_from after valid_to",
        ),
        (lambda t: t.replace("\t2020-02-29\t", "\t2020-03-01\t", 1), "overlapping"),
        (lambda t: t.replace("\t2020-02-29\t", "\t29/02/2020\t", 1), "bad date"),
        (lambda t: t.replace("\t2020-02-29\t", "\t2025-07-01\t", 1), "must not pass"),
        (lambda t: t.replace("\t046\t", "\t46\t", 1), "bad code"),
    ],
)
def test_loader_refuses_a_broken_lineage(
    monkeypatch: pytest.MonkeyPatch, edit: Callable[[str], str], message: str
) -> None:
    real = locality_files.read_file

    def edited(name: str) -> bytes:
        data = real(name)
        if name != "lineage.tsv":
            return data
        return edit(data.decode()).encode()

    monkeypatch.setattr(locality_files, "read_file", edited)
    with pytest.raises(ValueError, match=message):
        Localities.load()


def test_error_classes_map_to_wire_codes() -> None:
    for cls, base, code in (
        (UnknownLegacyCommune, UnknownLocality, "unknown_locality"),
        (LegacyMismatch, UnknownLocality, "unknown_locality"),
        (LegacyWardNotSuccessor, Invalid, "invalid"),
        (LegacyAfterReform, Invalid, "invalid"),
    ):
        assert issubclass(cls, base)
        assert issubclass(cls, EventError)
        assert cls.code == code
