"""Vietnamese forms: numbers (1.546), dates (15/12/2017), spans, unit names and metric labels, and the prose
paragraphs of a report, written in the movement's own articles' form: a sentence only for figures present."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from services.report.span import Span
from services.report.unit import Unit, UnitNames


def number(n: int) -> str:
    """1546 → ``1.546``; −1546 → ``-1.546`` (a dot groups thousands)."""
    text = f"{abs(n):,}".replace(",", ".")
    return f"-{text}" if n < 0 else text


def count(n: int) -> str:
    """Counts of items below ten written as the reports write them: ``01``, ``06``."""
    return f"{n:02d}" if 0 <= n < 10 else number(n)


def change(n: int) -> str:
    """The change from the previous span: ``+12``, ``-3``, ``0``."""
    return f"+{number(n)}" if n > 0 else number(n)


def date(day: dt.date) -> str:
    return f"{day.day:02d}/{day.month:02d}/{day.year}"


def span_dates(span: Span) -> str:
    """``15/12/2017 – 14/12/2018`` (a reporting year), ``01/01/2018 – 31/12/2018``."""
    first, last = span.dates()
    return f"{date(first)} – {date(last)}"


def span_title(span: Span) -> str:
    kind = "Năm báo cáo" if span.period == "reporting" else "Năm"
    if span.single:
        return f"{kind} {span.last}"
    return f"{'Các năm báo cáo' if span.period == 'reporting' else 'Giai đoạn'} {span.first}–{span.last}"


def span_short(span: Span) -> str:
    return str(span.last) if span.single else f"{span.first}–{span.last}"


def span_opening(span: Span) -> str:
    """How a paragraph opens: ``Trong năm 2018``, ``Trong năm báo cáo 2018 (15/12/2017 – 14/12/2018)``."""
    if span.single:
        if span.period == "reporting":
            return f"Trong năm báo cáo {span.last} (từ {span_dates(span).replace(' – ', ' đến ')})"
        return f"Trong năm {span.last}"
    first, last = span.dates()
    return f"Từ {date(first)} đến {date(last)}"


def lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def unit_title(names: UnitNames) -> str:
    """``Xã Trà Lĩnh, tỉnh Cao Bằng``; ``Tỉnh Cao Bằng``."""
    if names.province_name:
        return f"{names.name}, {lower_first(names.province_name)}"
    return names.name


def unit_in_text(names: UnitNames) -> str:
    """In the middle of a sentence: ``xã Trà Lĩnh, tỉnh Cao Bằng``."""
    return lower_first(unit_title(names))


METRIC_LABELS: Mapping[str, str] = {
    "tips_received": "Tin báo, nguồn tin tiếp nhận",
    "tips_valuable": "Tin có giá trị",
    "sessions_held": "Cuộc tuyên truyền",
    "session_attendance": "Lượt người nghe tuyên truyền",
    "pledge_signatures": "Lượt ký cam kết",
    "mediations_concluded": "Vụ mâu thuẫn, tranh chấp được hòa giải",
    "mediations_successful": "Vụ hòa giải thành",
    "weapons_surrendered": "Vũ khí, vật liệu nổ, công cụ hỗ trợ giao nộp",
    "ammunition_surrendered": "Viên đạn giao nộp",
    "models_established": "Mô hình tự quản về ANTT thành lập mới",
    "models_active": "Mô hình tự quản về ANTT đang hoạt động",
    "model_points": "Điểm nhân rộng mô hình",
    "model_teams": "Tổ thuộc mô hình",
    "models_dissolved": "Mô hình giải thể",
    "youth_enrolled": "Thanh thiếu niên được tiếp nhận quản lý",
    "youth_under_management": "Thanh thiếu niên đang quản lý, giáo dục",
}

LEVELS = {
    "province": "cấp tỉnh",
    "district": "cấp huyện",
    "commune": "cấp xã",
    "hamlet": "cấp thôn, tổ dân phố",
    "institution": "tại cơ quan, doanh nghiệp, trường học",
}
MODEL_KINDS = {
    "self_managed_team": "tổ an ninh tự quản",
    "inter_household": "tổ liên gia tự quản",
    "security_council": "Hội đồng ANTT",
    "security_order_team": "Tổ bảo vệ ANTT ở cơ sở",
    "street_warden_team": "Tổ bảo vệ dân phố",
    "civil_defence_team": "tổ dân phòng",
    "mediation_team": "Tổ hòa giải",
    "drug_free_area": "xã, phường không ma túy",
    "safe_school": "“5 không” trong cơ sở giáo dục",
    "dan_van_kheo": "“Dân vận khéo”",
    "other": "loại khác",
}
BREAKDOWN_LABELS: Mapping[str, Mapping[str, str]] = {
    "sessions_held": {
        "commune": "tại các xã, phường, thị trấn",
        "hamlet": "tại các thôn, xóm, tổ dân phố",
        "institution": "tại cơ quan, doanh nghiệp, trường học",
    },
    "pledge_signatures": {
        "household": "hộ gia đình",
        "individual": "cá nhân",
        "institution": "cơ quan, doanh nghiệp, trường học",
    },
    "weapons_surrendered": {
        "military_firearm": "súng quân dụng",
        "homemade_firearm": "súng tự chế",
        "air_gun": "súng hơi",
        "explosive": "vật liệu nổ",
        "support_tool": "công cụ hỗ trợ",
        "other": "loại khác",
    },
    "models_established": {**LEVELS, **MODEL_KINDS},
    "models_active": {**LEVELS, **MODEL_KINDS},
    "models_dissolved": {**LEVELS, **MODEL_KINDS},
}
BREAKDOWN_LABELS = {**BREAKDOWN_LABELS, "session_attendance": BREAKDOWN_LABELS["sessions_held"]}

WARD_COLUMNS = (
    "sessions_held",
    "session_attendance",
    "tips_received",
    "tips_valuable",
    "pledge_signatures",
    "mediations_concluded",
    "weapons_surrendered",
    "models_active",
    "youth_under_management",
)
WARD_HEADERS = {
    "sessions_held": "Cuộc TT",
    "session_attendance": "Lượt nghe",
    "tips_received": "Tin",
    "tips_valuable": "Tin giá trị",
    "pledge_signatures": "Ký cam kết",
    "mediations_concluded": "Hòa giải",
    "weapons_surrendered": "Vũ khí",
    "models_active": "Mô hình",
    "youth_under_management": "TTN quản lý",
}


def label(metric: str) -> str:
    """``sessions_held.commune`` → ``– tại các xã, phường, thị trấn``; unknown names are shown as they are."""
    base, _, part = metric.partition(".")
    if not part:
        return METRIC_LABELS.get(base, base)
    return "– " + BREAKDOWN_LABELS.get(base, {}).get(part, part)


def _list(parts: list[str]) -> str:
    """``a, b và c``."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " và " + parts[-1]


def _parts(metrics: Mapping[str, int], base: str) -> list[tuple[str, int]]:
    labels = BREAKDOWN_LABELS.get(base, {})
    return [(part, metrics[f"{base}.{part}"]) for part in labels if metrics.get(f"{base}.{part}", 0) > 0]


def paragraphs(unit: Unit, names: UnitNames, span: Span, m: Mapping[str, int]) -> list[str]:
    """The report's prose: one sentence per kind of figure present (zero: no sentence)."""
    where = unit_in_text(names)
    opening = span_opening(span)
    _, end = span.dates()
    out: list[str] = []

    sentences: list[str] = []
    if m.get("sessions_held", 0) > 0:
        levels = _parts(m, "sessions_held")
        noun = {"commune": "cuộc", "hamlet": "đợt", "institution": "buổi"}
        if levels:
            said = [
                f"{number(n)} {noun.get(lv, 'cuộc')} "
                f"{BREAKDOWN_LABELS['sessions_held'][lv]} với "
                f"{number(m.get(f'session_attendance.{lv}', 0))} lượt người nghe"
                for lv, n in levels
            ]
            whole = len(levels) == 1 and levels[0][1] == m["sessions_held"]
            total = (
                ""
                if whole
                else f", tổng cộng {number(m['sessions_held'])} cuộc với "
                f"{number(m.get('session_attendance', 0))} lượt người nghe"
            )
            sentences.append(f"{opening}, trên địa bàn {where} đã tổ chức tuyên truyền {_list(said)}{total}.")
        else:
            sentences.append(
                f"{opening}, trên địa bàn {where} đã tổ chức {number(m['sessions_held'])} cuộc tuyên truyền "
                f"với {number(m.get('session_attendance', 0))} lượt người nghe."
            )
    if m.get("tips_received", 0) > 0 or m.get("tips_valuable", 0) > 0:
        lead = "Quần chúng nhân dân" if sentences else f"{opening}, quần chúng nhân dân trên địa bàn {where}"
        text = f"{lead} cung cấp cho cơ quan Công an {number(m.get('tips_received', 0))} tin"
        if m.get("tips_valuable", 0) > 0:
            text += f", trong đó {number(m['tips_valuable'])} tin có giá trị"
        sentences.append(text + ".")
    if m.get("pledge_signatures", 0) > 0:
        signers = [
            f"{number(n)} lượt {BREAKDOWN_LABELS['pledge_signatures'][s]}"
            for s, n in _parts(m, "pledge_signatures")
        ]
        text = f"Vận động {number(m['pledge_signatures'])} lượt ký cam kết bảo đảm an ninh, trật tự"
        sentences.append(text + (f", trong đó {_list(signers)}." if signers else "."))
    if m.get("mediations_concluded", 0) > 0:
        text = f"Hòa giải {number(m['mediations_concluded'])} vụ mâu thuẫn, tranh chấp ngay tại cơ sở"
        if m.get("mediations_successful", 0) > 0:
            text += f", trong đó {number(m['mediations_successful'])} vụ hòa giải thành"
        sentences.append(text + ".")
    weapons = _parts(m, "weapons_surrendered")
    if m.get("weapons_surrendered", 0) > 0 or m.get("ammunition_surrendered", 0) > 0:
        items = [f"{count(n)} {BREAKDOWN_LABELS['weapons_surrendered'][k]}" for k, n in weapons]
        listed = sum(n for _, n in weapons)
        if m.get("weapons_surrendered", 0) > listed:
            items.append(f"{count(m['weapons_surrendered'] - listed)} vũ khí, vật phẩm khác")
        if m.get("ammunition_surrendered", 0) > 0:
            items.append(f"{number(m['ammunition_surrendered'])} viên đạn")
        sentences.append(
            "Thực hiện Cuộc vận động toàn dân giao nộp vũ khí, vật liệu nổ, công cụ hỗ trợ, nhân dân tự giác "
            f"giao nộp {_list(items)}."
        )
    if sentences:
        out.append(" ".join(sentences))

    models: list[str] = []
    if m.get("models_active", 0) > 0 or m.get("models_active.dan_van_kheo", 0) > 0:
        text = f"Tính đến {date(end)}, trên địa bàn {where} duy trì hoạt động {number(m.get('models_active', 0))} "
        text += "mô hình tự quản về ANTT"
        levels = [(p, n) for p, n in _parts(m, "models_active") if p in LEVELS]
        if levels:
            text += f" ({_list([f'{number(n)} mô hình {LEVELS[p]}' for p, n in levels])})"
        if m.get("models_active.dan_van_kheo", 0) > 0:
            text += f", {number(m['models_active.dan_van_kheo'])} mô hình “Dân vận khéo” trong bảo đảm ANTT"
        text += "."
        kinds = [(p, n) for p, n in _parts(m, "models_active") if p in MODEL_KINDS and p != "dan_van_kheo"]
        if kinds:
            text += f" Trong đó có {_list([f'{number(n)} {MODEL_KINDS[p]}' for p, n in kinds])}."
        models.append(text)
        extent = []
        if m.get("model_points", 0) > 0:
            extent.append(f"{number(m['model_points'])} điểm nhân rộng")
        if m.get("model_teams", 0) > 0:
            extent.append(f"{number(m['model_teams'])} tổ")
        if extent:
            models.append(f"Các mô hình có {_list(extent)}.")
    flows = []
    if m.get("models_established", 0) > 0:
        flows.append(f"thành lập mới {number(m['models_established'])} mô hình")
    if m.get("models_dissolved", 0) > 0:
        flows.append(f"giải thể {number(m['models_dissolved'])} mô hình")
    if flows:
        models.append(f"{'Trong năm' if span.single else 'Trong giai đoạn'}, {_list(flows)}.")
    if m.get("youth_under_management", 0) > 0:
        models.append(
            f"Đến {date(end)}, đang quản lý, giáo dục {number(m['youth_under_management'])} thanh thiếu niên "
            "có nguy cơ vi phạm pháp luật."
        )
    if m.get("youth_enrolled", 0) > 0:
        models.append(
            f"{'Trong năm' if span.single else 'Trong giai đoạn'}, tiếp nhận quản lý "
            f"{number(m['youth_enrolled'])} trường hợp thanh thiếu niên."
        )
    if models:
        out.append(" ".join(models))
    if not out:
        out.append(f"{opening}, chưa có số liệu nào được ghi nhận trên địa bàn {where}.")
    return out
