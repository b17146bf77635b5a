"""The HTML of a view: a header with the choices (years, kind of year, metric, language, scheme), then the
content (``#content``, also served alone as ``fragment=1`` for the live refresh): the figures with the previous
span, the map, the chart, the units below, the downloads. No script but ``/static/live.js`` (ours)."""

from __future__ import annotations

from html import escape

from events.catalogue import stock_metrics
from events.localities import Localities
from projections.metrics import BASE_METRICS
from services.report import vietnamese as vi
from services.web import svg
from services.web.gather import PageData
from services.web.text import change, metric_label, number, w
from services.web.view import FORMATS, REFORM_YEAR, View

STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 0; color: #1a1a1a; background: #fafafa; }
header { background: #8b1a1a; color: #fff; padding: .6rem 1rem; }
header a { color: #ffe9a8; } header h1 { font-size: 1.15rem; margin: 0 0 .3rem; }
nav.crumbs { font-size: .9rem; } form.choose { margin-top: .4rem; font-size: .85rem; }
form.choose label { margin-right: .6rem; } main { padding: .5rem 1rem 2rem; max-width: 76rem; }
h2 { font-size: 1.25rem; margin: .6rem 0; } h3 { font-size: 1rem; margin: 1rem 0 .3rem; }
.grid { display: grid; grid-template-columns: minmax(20rem, 1fr) minmax(20rem, 36rem); gap: 1rem; }
table { border-collapse: collapse; font-size: .85rem; background: #fff; }
th, td { border: 1px solid #bbb; padding: .15rem .45rem; } th { background: #eee; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } td.code { color: #666; font-family: monospace; }
tr.part td:first-child { padding-left: 1.2rem; color: #444; } tr.total td { font-weight: bold; }
svg.map { width: 100%; max-width: 36rem; background: #fff; border: 1px solid #ccc; }
svg.map .sea { fill: #eef4fa; } svg.map .dot { fill: rgba(178, 34, 34, .55); stroke: #7a1010; }
svg.map .dot.zero { fill: none; stroke: #999; } svg.map a:hover .dot { fill: #e0a000; }
svg.chart { width: 100%; max-width: 52rem; background: #fff; border: 1px solid #ccc; }
svg.chart .bar { fill: #b22222; } svg.chart .axis { stroke: #333; }
svg.chart text { font-size: 10px; text-anchor: middle; } svg.chart text.l { fill: #333; }
.meta { font-size: .8rem; color: #555; } .stale { color: #b00; font-weight: bold; }
.downloads a { margin-right: .6rem; } .live { font-size: .8rem; color: #2a7; }
"""


def _metric_order(*replies: dict[str, int]) -> list[str]:
    present = {name for reply in replies for name in reply}
    out: list[str] = []
    for base in BASE_METRICS:
        out.append(base)
        out += sorted(n for n in present if n.startswith(base + "."))
    return out


def _below_word(kind: str) -> str:
    return {"province": "below_province", "ward": "below_ward", "district": "below_district"}.get(
        kind, "below_commune"
    )


def figures_table(d: PageData) -> str:
    v, lang = d.view, d.view.lang
    stocks = stock_metrics()
    place = v.code or "country"
    head = [w("figures", lang), w("code", lang), vi.span_short(v.span)]
    if d.previous is not None:
        head += [vi.span_short(v.span.previous()), w("change", lang)]
    out = [
        '<table id="figures"><thead><tr>',
        *(f"<th>{escape(h)}</th>" for h in head),
        "</tr></thead><tbody>",
    ]
    for metric in _metric_order(d.current, d.previous or {}):
        now = d.current.get(metric, 0)
        label = metric_label(metric, lang) + (" (*)" if metric in stocks else "")
        cls = ' class="part"' if "." in metric else ""
        cells = [
            f"<td>{escape(label)}</td>",
            f'<td class="code">{escape(metric)}</td>',
            f'<td class="n" data-place="{escape(place)}" data-metric="{escape(metric)}">{number(now, lang)}</td>',
        ]
        if d.previous is not None:
            before = d.previous.get(metric, 0)
            cells += [
                f'<td class="n">{number(before, lang)}</td>',
                f'<td class="n">{change(now - before, lang)}</td>',
            ]
        out.append(f"<tr{cls}>{''.join(cells)}</tr>")
    out.append(f'</tbody></table><p class="meta">{escape(w("stock", lang))}</p>')
    return "".join(out)


def rows_table(d: PageData) -> str:
    if not d.rows:
        return ""
    v, lang = d.view, d.view.lang
    kind = d.rows[0].kind
    columns: tuple[str, ...] = vi.WARD_COLUMNS
    head = [
        w("unit", lang),
        w("code", lang),
        *(metric_label(m, lang) if lang == "en" else vi.WARD_HEADERS[m] for m in columns),
    ]
    if v.metric not in columns:
        head.append(metric_label(v.metric, lang))
        columns = (*columns, v.metric)
    out = [
        f"<h3>{escape(w(_below_word(kind), lang))}</h3>",
        '<table id="units"><thead><tr>',
        *(f"<th>{escape(h)}</th>" for h in head),
        "</tr></thead><tbody>",
    ]
    for row in d.rows:
        link = v.at(kind, row.code)  # type: ignore[arg-type]
        cells = [
            f'<td><a href="{escape(link)}">{escape(row.name)}</a></td>',
            f'<td class="code">{row.code}</td>',
        ]
        cells += [
            f'<td class="n" data-place="{row.code}" data-metric="{m}">{number(row.metrics.get(m, 0), lang)}</td>'
            for m in columns
        ]
        out.append(f'<tr data-row="{row.code}">{"".join(cells)}</tr>')
    total = [f"<td>{escape(w('total', lang))}</td>", '<td class="code"></td>']
    total += [f'<td class="n">{number(d.current.get(m, 0), lang)}</td>' for m in columns]
    out.append(f'<tr class="total">{"".join(total)}</tr></tbody></table>')
    return "".join(out)


def content(d: PageData) -> str:
    v, lang = d.view, d.view.lang
    fmt = lambda n: number(n, lang)  # noqa: E731
    metric_name = metric_label(v.metric, lang)
    title = d.name or w("country_pre" if v.pre2025 else "country", lang)
    if d.rows:
        units = [(r.code, r.name, r.point, r.metrics.get(v.metric, 0), v.at(r.kind, r.code)) for r in d.rows]  # type: ignore[arg-type]
    else:
        units = [(v.code, d.name, d.point, d.current.get(v.metric, 0), v.url())]
    map_part = svg.map_svg(units, v.metric, f"{w('map', lang)}: {metric_name}", fmt)
    if d.series:
        chart = svg.bars_svg(
            [(str(y), n) for y, n in d.series], f"{metric_name} — {w('chart_years', lang)}", fmt
        )
        chart_title = w("chart_years", lang)
    else:
        chart = svg.bars_svg([(r.name, r.metrics.get(v.metric, 0)) for r in d.rows], metric_name, fmt)
        chart_title = w("chart_units", lang)
    out = [
        f'<h2 id="title">{escape(title)} — {escape(vi.span_title(v.span) if lang == "vi" else _span_en(v))} '
        f'<span class="meta">({escape(vi.span_dates(v.span))})</span></h2>',
        f'<p class="meta" id="as-of">{escape(w("as_of", lang))} <span id="seq">{d.as_of_seq}</span> · '
        f"fold {d.fold_version}"
        + (f' · <span class="stale">{escape(w("stale", lang))}</span>' if d.stale else "")
        + "</p>",
    ]
    if d.figures is not None:
        links = " ".join(f'<a href="{escape(v.url(format=f))}" download>{f.upper()}</a>' for f in FORMATS)
        out.append(f'<p class="downloads">{escape(w("download", lang))}: {links}</p>')
    out += [
        '<div class="grid"><div>',
        figures_table(d),
        "</div><div>",
        f"<h3>{escape(w('map', lang))}: {escape(metric_name)}</h3>",
        map_part,
        "</div></div>",
        f"<h3>{escape(chart_title)}: {escape(metric_name)}</h3>",
        chart,
        rows_table(d),
    ]
    return "\n".join(out)


def _span_en(v: View) -> str:
    kind = "Reporting year" if v.span.period == "reporting" else "Year"
    return f"{kind} {v.span.last}" if v.span.single else f"{kind}s {v.span.first}–{v.span.last}"


def _crumbs(d: PageData) -> str:
    v, lang = d.view, d.view.lang
    root = "/pre2025" if v.pre2025 else "/"
    country = msg_url(v, root)
    parts = [f'<a href="{escape(country)}">{escape(w("country_pre" if v.pre2025 else "country", lang))}</a>']
    if d.parent is not None:
        kind, code, name = d.parent
        parts.append(f'<a href="{escape(v.at(kind, code))}">{escape(name)}</a>')  # type: ignore[arg-type]
    if d.name:
        parts.append(escape(d.name))
    return '<nav class="crumbs">' + " › ".join(parts) + "</nav>"


def msg_url(v: View, path: str) -> str:
    return v.url().replace(v.path() + "?", path + "?", 1)


def _chooser(v: View) -> str:
    lang = v.lang
    years = str(v.span.last) if v.span.single else f"{v.span.first}-{v.span.last}"
    name = "year" if v.span.single else "years"
    periods = "".join(
        f'<option value="{p}"{" selected" if v.span.period == p else ""}>{escape(w(p, lang))}</option>'
        for p in ("calendar", "reporting")
    )
    metrics = "".join(
        f'<option value="{m}"{" selected" if v.metric == m else ""}>{escape(metric_label(m, lang))}</option>'
        for m in BASE_METRICS
    )
    other_lang = "en" if lang == "vi" else "vi"
    scheme = ""
    if not v.pre2025 and v.span.last < REFORM_YEAR:
        scheme = (
            f' · <a id="to-pre" href="{escape(msg_url(v, "/pre2025"))}">{escape(w("scheme_pre", lang))}</a>'
        )
    elif v.pre2025:
        scheme = f' · <a id="to-2025" href="{escape(msg_url(v, "/"))}">{escape(w("scheme_2025", lang))}</a>'
    return (
        f'<form class="choose" method="get" action="{escape(v.path())}">'
        f'<label>{escape(w("year", lang))} <input name="{name}" value="{years}" size="9"></label>'
        f'<label>{escape(w("period", lang))} <select name="period">{periods}</select></label>'
        f'<label>{escape(w("metric", lang))} <select name="metric">{metrics}</select></label>'
        f'<input type="hidden" name="lang" value="{lang}"><button type="submit">{escape(w("show", lang))}</button>'
        f' · <a id="lang" href="{escape(v.url(lang=other_lang))}">{escape(w("language", lang))}</a>{scheme}'
        f' · <span class="live" id="live">{escape(w("live", lang))}: …</span></form>'
    )


def live_provinces(v: View, localities: Localities) -> str:
    """The 2025 provinces whose updates change this view (``*``: all)."""
    if v.kind == "country":
        return "*"
    if not v.pre2025:
        if v.kind == "province":
            return v.code
        ward = localities.ward(v.code)
        return ward.province if ward else ""
    units = localities.legacy_units(
        province=v.code if v.kind == "province" else None,
        district=v.code if v.kind == "district" else None,
        commune=v.code if v.kind == "commune" else None,
    )
    wards = {s for c in units for s in localities.successors(c)}
    return ",".join(sorted({p.province for p in (localities.ward(x) for x in wards) if p is not None}))


def html_page(d: PageData, localities: Localities) -> str:
    v, lang = d.view, d.view.lang
    title = d.name or w("country", lang)
    fragment = v.url(fragment="1")
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} — ANTQ</title><style>{STYLE}</style></head>"
        f'<body data-provinces="{escape(live_provinces(v, localities))}" data-carried="{int(v.carried)}" '
        f'data-year="{v.span.last}" data-lang="{lang}" data-fragment="{escape(fragment)}">'
        f"<header><h1>{escape(w('app', lang))}</h1>{_crumbs(d)}{_chooser(v)}</header>"
        f'<main><div id="content">{content(d)}</div>'
        f'<p class="meta">{escape(w("read_only", lang))}</p></main>'
        '<script src="/static/live.js"></script></body></html>\n'
    )
