"""The map and the charts as inline SVG, drawn by us (no tiles, no script library).

The map: one circle per unit at its coordinates (equirectangular, longitude scaled by the cosine of the mean
latitude), its area proportional to the chosen metric (a unit at zero is a small hollow ring). The charts: bars
of one metric across years, or across the units below.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

from services.web.coords import Point

Labelled = tuple[str, str, Point | None, int, str]
"""(code, name, point, value, link)"""

WIDTH = 560
HEIGHT = 620
PAD = 24
MAX_R = 22.0


def _fit(points: Sequence[Point]) -> tuple[Callable[[Point], tuple[float, float]], float]:
    """The projection of the points into the map's width, and the height they need (at most ``HEIGHT``)."""
    lats = [p[0] for p in points]
    lons = [p[1] for p in points]
    mid = math.cos(math.radians((min(lats) + max(lats)) / 2))
    span_x = max((max(lons) - min(lons)) * mid, 0.05)
    span_y = max(max(lats) - min(lats), 0.05)
    scale = min((WIDTH - 2 * PAD) / span_x, (HEIGHT - 2 * PAD) / span_y)
    height = max(min(HEIGHT, span_y * scale + 2 * PAD + 2 * MAX_R), 160.0)
    mid_lat = (min(lats) + max(lats)) / 2
    mid_lon = (min(lons) + max(lons)) / 2

    def project(p: Point) -> tuple[float, float]:  # centred: a single point sits in the middle
        return WIDTH / 2 + (p[1] - mid_lon) * mid * scale, height / 2 - (p[0] - mid_lat) * scale

    return project, height


def map_svg(units: Sequence[Labelled], metric: str, title: str, fmt: Callable[[int], str]) -> str:
    placed = [u for u in units if u[2] is not None]
    project, height = _fit([u[2] for u in placed if u[2] is not None]) if placed else (None, float(HEIGHT))
    out = [
        f'<svg id="map" class="map" viewBox="0 0 {WIDTH} {height:.0f}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" data-metric="{escape(metric)}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height:.0f}" class="sea"/>',
    ]
    if project is not None:
        top = max((u[3] for u in placed), default=0)
        for code, name, point, value, link in sorted(placed, key=lambda u: -u[3]):
            assert point is not None
            x, y = project(point)
            r = MAX_R * math.sqrt(value / top) if top > 0 and value > 0 else 0.0
            cls = "dot" if value > 0 else "dot zero"
            r = max(r, 2.5)
            out.append(
                f'<a href="{escape(link)}"><circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" '
                f'data-place="{escape(code)}" data-value="{value}">'
                f"<title>{escape(name)}: {escape(fmt(value))}</title></circle></a>"
            )
    out.append("</svg>")
    return "".join(out)


def bars_svg(
    bars: Sequence[tuple[str, int]], title: str, fmt: Callable[[int], str], *, chart_id: str = "chart"
) -> str:
    """Vertical bars (one per label), value above each; labels below, rotated when many."""
    n = max(len(bars), 1)
    width = max(WIDTH, 28 * n + 2 * PAD)
    height = 260
    base = height - 60
    top = max((v for _, v in bars), default=0)
    step = (width - 2 * PAD) / n
    out = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD}" y1="{base}" x2="{width - PAD}" y2="{base}" class="axis"/>',
    ]
    rotate = n > 12
    for i, (label, value) in enumerate(bars):
        h = (base - 30) * value / top if top > 0 else 0.0
        x = PAD + i * step + step * 0.15
        w = step * 0.7
        cx = x + w / 2
        out.append(
            f'<rect class="bar" x="{x:.1f}" y="{base - h:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'data-label="{escape(label)}" data-value="{value}"><title>{escape(label)}: {escape(fmt(value))}'
            "</title></rect>"
        )
        out.append(f'<text class="v" x="{cx:.1f}" y="{base - h - 4:.1f}">{escape(fmt(value))}</text>')
        if rotate:
            out.append(
                f'<text class="l" transform="translate({cx:.1f},{base + 10}) rotate(50)" '
                f'text-anchor="start">{escape(label)}</text>'
            )
        else:
            out.append(f'<text class="l" x="{cx:.1f}" y="{base + 16}">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)
