"""Tests of the project-owned locality reference data and its loader."""

from __future__ import annotations

import csv
import io
import unicodedata
from importlib.resources import files

import pytest

from events.localities import Localities, Province, Ward


@pytest.fixture(scope="module")
def loc() -> Localities:
    return Localities.load()


def _tsv(name: str) -> list[list[str]]:
    text = files("events.data").joinpath(name).read_text(encoding="utf-8")
    return list(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))


def test_counts(loc: Localities) -> None:
    assert len(loc) == 3321
    assert len(loc.provinces()) == 34
    assert sum(len(p.wards) for p in loc.provinces()) == 3321
    assert [p.code for p in loc.provinces()] == sorted(p.code for p in loc.provinces())


def test_codes_are_zero_padded(loc: Localities) -> None:
    for p in loc.provinces():
        assert len(p.code) == 2
        assert p.code.isdigit()
        for code in p.wards:
            ward = loc.ward(code)
            assert ward is not None
            assert len(ward.code) == 5
            assert ward.code.isdigit()
            assert ward.province == p.code
            assert ward.province_name == p.name


def test_ward_lookup(loc: Localities) -> None:
    assert loc.ward("01447") == Ward("01447", "Xã Trà Lĩnh", "04", "Tỉnh Cao Bằng")
    assert "01447" in loc.wards_of("04")
    province = loc.province("04")
    assert isinstance(province, Province)
    assert province.name == "Tỉnh Cao Bằng"


def test_vinh_dien_moves_to_da_nang(loc: Localities) -> None:
    # Legacy 20551 (Phường Vĩnh Điện, Quảng Nam 49) -> 2025 20551 (Phường Điện Bàn, Đà Nẵng 48).
    ward = loc.ward("20551")
    assert ward is not None
    assert ward.province == "48"
    assert ward.name == "Phường Điện Bàn"
    assert loc.province("48") is not None
    assert loc.province("48").name == "Thành phố Đà Nẵng"  # type: ignore[union-attr]
    assert loc.successors("20551") == ("20551",)
    assert loc.wards_of("49") == ()  # Quảng Nam is no 2025 province


def test_province_24_changed_meaning(loc: Localities) -> None:
    # 2025 province 24 is Bắc Ninh; legacy 24 was Bắc Giang, legacy Bắc Ninh was 27.
    province = loc.province("24")
    assert province is not None
    assert province.name == "Tỉnh Bắc Ninh"


def test_gia_binh(loc: Localities) -> None:
    wards = loc.district_wards("263")
    assert wards == ("09454", "09466", "09469", "09475", "09487")
    assert all(loc.ward(w) is not None and loc.ward(w).province == "24" for w in wards)  # type: ignore[union-attr]


def test_quan_hoa(loc: Localities) -> None:
    assert loc.district_wards("385") == (
        "14869",
        "14872",
        "14875",
        "14878",
        "14890",
        "14896",
        "14902",
        "14908",
    )


def test_hai_lang_split_three_ways_with_default(loc: Localities) -> None:
    successors = loc.successors("06886")
    assert successors[0] == "06886"  # the default: Xã Hải Lạng
    assert set(successors) == {"06886", "06799", "06970"}
    assert len(successors) == 3
    rows = [r for r in _tsv("legacy_2025.tsv")[1:] if r[0] == "06886"]
    assert sorted((r[6], r[7]) for r in rows) == [("06799", "0"), ("06886", "1"), ("06970", "0")]


def test_tien_yen(loc: Localities) -> None:
    assert loc.district_wards("199") == ("06799", "06862", "06874", "06877", "06886", "06970")


def test_tra_linh_lineage(loc: Localities) -> None:
    assert loc.district_wards("046") == ("01447", "01456", "01465")
    expected = {
        "01447": "01447",  # Thị trấn Hùng Quốc -> Xã Trà Lĩnh
        "01450": "01456",  # Cô Mười -> Xã Quang Hán
        "01453": "01465",  # Tri Phương -> Xã Quang Trung
        "01456": "01456",  # Quang Hán -> Xã Quang Hán
        "01459": "01456",  # Quang Vinh -> Xã Quang Hán
        "01462": "01465",  # Xuân Nội -> Xã Quang Trung
        "01465": "01465",  # Quang Trung -> Xã Quang Trung
        "01468": "01456",  # Lưu Ngọc -> Xã Quang Hán
        "01471": "01447",  # Cao Chương -> Xã Trà Lĩnh
        "01474": "01447",  # Quốc Toản -> Xã Trà Lĩnh
    }
    for old, new in expected.items():
        assert loc.successors(old) == (new,), old
    names = {w: loc.ward(w).name for w in loc.district_wards("046")}  # type: ignore[union-attr]
    assert names == {"01447": "Xã Trà Lĩnh", "01456": "Xã Quang Hán", "01465": "Xã Quang Trung"}


def test_lineage_agrees_with_legacy_table_where_codes_overlap() -> None:
    legacy: dict[str, set[str]] = {}
    for r in _tsv("legacy_2025.tsv")[1:]:
        legacy.setdefault(r[0], set()).add(r[6])
    header, *lineage = _tsv("lineage.tsv")
    col = {name: i for i, name in enumerate(header)}
    assert len(lineage) == 18
    overlap = [r for r in lineage if r[col["old_ward"]] in legacy]
    assert {r[0] for r in overlap} == {"01447", "01453", "01456", "01462", "01465", "01468", "01471", "01474"}
    for r in overlap:
        assert legacy[r[0]] == {r[col["ward"]]}, r[0]
    # Trùng Khánh (047) as of 30 June 2025 still lists the surviving Trà Lĩnh communes.
    assert {"01447", "01456", "01465"} <= set(Localities.load().district_wards("047"))


def test_island_districts_without_communes(loc: Localities) -> None:
    assert loc.district_wards("318") == ("11948",)  # Bạch Long Vĩ
    assert loc.district_wards("755") == ("26732",)  # Côn Đảo
    assert loc.successors("") == ()


def test_every_legacy_unit_resolves(loc: Localities) -> None:
    rows = _tsv("legacy_2025.tsv")[1:]
    assert len(rows) == 10602
    defaults: dict[tuple[str, str], int] = {}
    for r in rows:
        assert loc.ward(r[6]) is not None
        key = (r[2], r[0])
        defaults[key] = defaults.get(key, 0) + int(r[7])
    assert len(defaults) == 10040
    assert set(defaults.values()) == {1}
    covered = {r[6] for r in rows}
    assert covered == {w for p in loc.provinces() for w in p.wards}
    for code in {r[0] for r in rows if r[0]}:
        succ = loc.successors(code)
        assert succ
        assert loc.ward(succ[0]) is not None


def test_names_are_nfc(loc: Localities) -> None:
    for p in loc.provinces():
        assert unicodedata.is_normalized("NFC", p.name)
        for code in p.wards:
            ward = loc.ward(code)
            assert ward is not None
            assert unicodedata.is_normalized("NFC", ward.name)
            assert ward.name == ward.name.strip()
            assert ward.name
    for name in ("wards_2025.tsv", "legacy_2025.tsv", "lineage.tsv"):
        text = files("events.data").joinpath(name).read_text(encoding="utf-8")
        assert unicodedata.is_normalized("NFC", text), name


def test_unknown_codes(loc: Localities) -> None:
    assert loc.ward("99999") is None
    assert loc.ward("1447") is None  # not zero-padded
    assert loc.province("99") is None
    assert loc.province("4") is None
    assert loc.wards_of("99") == ()
    assert loc.successors("99999") == ()
    assert loc.district_wards("999") == ()
    assert loc.district_wards("46") == ()


def test_schemes_are_not_mixed(loc: Localities) -> None:
    # 01459 (Quang Vinh, retired 2020) is only a legacy code, never a 2025 ward.
    assert loc.ward("01459") is None
    assert loc.successors("01459") == ("01456",)
    # 11948 is a 2025 ward (Đặc khu Bạch Long Vĩ) but no legacy commune.
    assert loc.ward("11948") is not None
    assert loc.successors("11948") == ()
    # 00097 is both: legacy Phường Tứ Liên (split, default 00097) and 2025 Phường Hồng Hà.
    assert loc.successors("00097") == ("00097", "00103")
    assert loc.ward("00097").name == "Phường Hồng Hà"  # type: ignore[union-attr]


def test_immutable(loc: Localities) -> None:
    ward = loc.ward("01447")
    assert ward is not None
    with pytest.raises(AttributeError):
        ward.name = "x"  # type: ignore[misc]
    assert isinstance(loc.wards_of("04"), tuple)
