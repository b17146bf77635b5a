"""What a page shows, all of it in its URL (so every URL can be shared): the unit (path), the years, the kind
of year, the metric of the map and the chart, the language.

Paths: ``/`` (the country, 2025 provinces), ``/province/04``, ``/ward/01447``; the pre-reform scheme:
``/pre2025`` (its provinces), ``/pre2025/province/04``, ``/pre2025/district/046``, ``/pre2025/commune/01447``.
Query: ``year=2018`` or ``years=2014-2019``, ``period=calendar|reporting``, ``metric=sessions_held``,
``lang=vi|en``; ``format=md|html|pdf|xlsx|csv`` downloads the view as the report (``services/report``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlencode

import msgspec

from projections.metrics import BASE_METRICS
from services.report.errors import ReportError
from services.report.span import Span
from services.report.unit import Unit
from services.web.errors import BadView

Lang = Literal["vi", "en"]
Kind = Literal["country", "province", "ward", "district", "commune"]
FORMATS = ("md", "html", "pdf", "xlsx", "csv")
DEFAULT_METRIC = "sessions_held"
REFORM_YEAR = 2025


def this_year() -> int:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=7)).year  # Vietnam time, as the update feed's years


class View(msgspec.Struct, frozen=True, kw_only=True):
    scheme: Literal["gso-2025", "gso-pre2025"] = "gso-2025"
    kind: Kind = "country"
    code: str = ""
    span: Span
    metric: str = DEFAULT_METRIC
    lang: Lang = "vi"

    @property
    def unit(self) -> Unit | None:
        """The report's unit (None for a country)."""
        if self.kind == "country":
            return None
        return Unit(scheme=self.scheme, kind=self.kind, code=self.code)

    @property
    def pre2025(self) -> bool:
        return self.scheme == "gso-pre2025"

    @property
    def carried(self) -> bool:
        """Whether the update feed carries this view's figures as they are (2025 wards, calendar, one year):
        the page then changes its cells from the update itself; other views ask again."""
        return not self.pre2025 and self.span.period == "calendar" and self.span.single

    def path(self) -> str:
        prefix = "/pre2025" if self.pre2025 else ""
        if self.kind == "country":
            return prefix or "/"
        return f"{prefix}/{self.kind}/{self.code}"

    def params(self, **changes: str | None) -> dict[str, str]:
        years = str(self.span.last) if self.span.single else f"{self.span.first}-{self.span.last}"
        out = {"year" if self.span.single else "years": years, "period": self.span.period}
        out |= {"metric": self.metric, "lang": self.lang}
        for key, value in changes.items():
            if value is None:
                out.pop(key, None)
            else:
                if key in ("year", "years"):
                    out.pop("year", None)
                    out.pop("years", None)
                out[key] = value
        return out

    def url(self, **changes: str | None) -> str:
        return f"{self.path()}?{urlencode(self.params(**changes))}"

    def at(self, kind: Kind, code: str, scheme: str | None = None) -> str:
        """The URL of another unit with this view's years, metric and language."""
        other = msgspec.structs.replace(self, kind=kind, code=code)
        if scheme == "gso-pre2025" or (scheme is None and self.pre2025):
            other = msgspec.structs.replace(other, scheme="gso-pre2025")
        elif scheme == "gso-2025":
            other = msgspec.structs.replace(other, scheme="gso-2025")
        return other.url()


def _year(text: str, field: str) -> int:
    if not text.isdigit() or len(text) != 4:
        raise BadView(f"{field}={text!r}: give a year such as 2018", field=field)
    return int(text)


def parse(path_kind: str, code: str, scheme: str, query: Mapping[str, str]) -> View:
    """The view of a request; ``BadView`` names the field that is wrong."""
    if path_kind not in ("country", "province", "ward", "district", "commune"):
        raise BadView(f"no such page: {path_kind}", field="path", status=404)
    if scheme == "gso-2025" and path_kind in ("district", "commune"):
        raise BadView(
            f"a {path_kind} is a pre-reform unit: /pre2025/{path_kind}/{code}", field="path", status=404
        )
    if scheme == "gso-pre2025" and path_kind == "ward":
        raise BadView("a ward is a 2025 unit: /ward/" + code, field="path", status=404)
    year, years = query.get("year"), query.get("years")
    if year and years:
        raise BadView("give year or years, not both", field="years")
    if years:
        first_text, sep, last_text = years.partition("-")
        if not sep:
            raise BadView(f"years={years!r}: give a range such as 2014-2019", field="years")
        first, last = _year(first_text, "years"), _year(last_text, "years")
    else:
        default = this_year() if scheme == "gso-2025" else REFORM_YEAR - 1
        first = last = _year(year, "year") if year else default
    period = query.get("period") or "calendar"
    if period not in ("calendar", "reporting"):
        raise BadView(f"period={period!r}: calendar or reporting", field="period")
    try:
        span = Span(first=first, last=last, period="reporting" if period == "reporting" else "calendar")
    except ReportError as exc:
        raise BadView(str(exc), field="years" if years else "year") from None
    if scheme == "gso-pre2025" and span.last >= REFORM_YEAR:
        raise BadView(
            f"the pre-reform units end on 30/06/{REFORM_YEAR}: give a year before {REFORM_YEAR}", field="year"
        )
    metric = query.get("metric") or DEFAULT_METRIC
    if metric.partition(".")[0] not in BASE_METRICS:
        raise BadView(f"metric={metric!r}: one of {', '.join(BASE_METRICS)}", field="metric")
    lang = query.get("lang") or "vi"
    if lang not in ("vi", "en"):
        raise BadView(f"lang={lang!r}: vi or en", field="lang")
    kind: Kind = path_kind  # type: ignore[assignment]
    return View(
        scheme="gso-pre2025" if scheme == "gso-pre2025" else "gso-2025",
        kind=kind,
        code=code,
        span=span,
        metric=metric,
        lang="en" if lang == "en" else "vi",
    )
