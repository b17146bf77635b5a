"""The dashboard's words, Vietnamese first and English second; numbers as each language writes them."""

from __future__ import annotations

from services.report import vietnamese as vi
from services.web.view import Lang

WORDS: dict[str, tuple[str, str]] = {
    "app": ("Phong trào Toàn dân bảo vệ an ninh Tổ quốc", "All people protect national security"),
    "country": ("Cả nước", "Whole country"),
    "country_pre": (
        "Cả nước (đơn vị hành chính trước 01/07/2025)",
        "Whole country (units before 1 July 2025)",
    ),
    "year": ("Năm", "Year"),
    "years": ("Các năm", "Years"),
    "period": ("Loại năm", "Kind of year"),
    "calendar": ("Năm dương lịch", "Calendar year"),
    "reporting": ("Năm báo cáo (15/12–14/12)", "Reporting year (15 Dec–14 Dec)"),
    "metric": ("Chỉ tiêu trên bản đồ và biểu đồ", "Metric of the map and the chart"),
    "show": ("Xem", "Show"),
    "figures": ("Số liệu", "Figures"),
    "previous": ("Cùng kỳ trước", "Previous"),
    "change": ("Tăng/giảm", "Change"),
    "unit": ("Đơn vị", "Unit"),
    "code": ("Mã", "Code"),
    "total": ("Tổng cộng", "Total"),
    "map": ("Bản đồ", "Map"),
    "chart_years": ("Qua các năm", "Across the years"),
    "chart_units": ("Theo đơn vị", "By unit"),
    "download": ("Tải về", "Download"),
    "scheme_2025": ("Đơn vị hành chính từ 01/07/2025", "Units since 1 July 2025"),
    "scheme_pre": (
        "Đơn vị hành chính trước cải cách (năm trước 2025)",
        "Pre-reform units (years before 2025)",
    ),
    "as_of": ("Số liệu tại sự kiện số", "Figures as of event"),
    "stale": ("DỮ LIỆU CÓ THỂ CHƯA CẬP NHẬT", "FIGURES MAY BE OUT OF DATE"),
    "live": ("Cập nhật trực tiếp", "Live"),
    "read_only": ("Chỉ đọc: số liệu từ bảng đọc, không ghi.", "Read only: figures from the read model."),
    "stock": ("(*) số tại cuối kỳ", "(*) what stands at the end of the span"),
    "up": ("Lên", "Up"),
    "below_province": ("Tỉnh, thành phố", "Provinces"),
    "below_ward": ("Xã, phường, đặc khu", "Wards and communes"),
    "below_district": ("Quận, huyện, thị xã", "Districts"),
    "below_commune": ("Xã, phường, thị trấn", "Communes"),
    "language": ("English", "Tiếng Việt"),
}


def w(key: str, lang: Lang) -> str:
    vi_text, en_text = WORDS[key]
    return vi_text if lang == "vi" else en_text


def number(n: int, lang: Lang) -> str:
    return vi.number(n) if lang == "vi" else f"{n:,}"


def change(n: int, lang: Lang) -> str:
    return f"+{number(n, lang)}" if n > 0 else number(n, lang)


def metric_label(metric: str, lang: Lang) -> str:
    if lang == "vi":
        return vi.label(metric)
    base, _, part = metric.partition(".")
    return ("– " + part.replace("_", " ")) if part else base.replace("_", " ").capitalize()
