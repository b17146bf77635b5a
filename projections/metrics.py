"""Names of the statistics metrics, and the version of the fold that produces them.

The metrics derive from the event catalogue (``events/catalogue.py``): base metrics are always present in a
reply (zero included); breakdown metrics are ``<base>.<sub>`` and appear only when non-zero.
"""

from __future__ import annotations

from typing import Final

from events.catalogue import metric_names
from events.locality_files import mapping_version

FOLD_LOGIC: Final = 6
"""Bump when the fold's output or its stored state changes meaning: a rebuild is then due. v2: a plain event's
stored contribution is the amounts of its figures, as declared in ``events/catalogue.py``. v3: corrections
(``Fix``, ``Superseded``; a ``TipLink`` keeps its assessment's valuable flag and its tip's day). v4: lifecycle
entities (``EntityState``, ``EntityLink``) and stocks, stored as each year's change. v5: pre-2025 localities
(``projections.places``: figures also under the units as recorded, ``~<metric>`` approximate). v6 (issue 10):
a tip keeps its source (``tips_received.<source>``, ``tips_valuable.<source>``), and so does a received tip's
``TipLink``; a tip keeps the sequence it was received at and the versions of ``cases.cleared`` that name it
(``tips_leading_to_cases``), and such a version's ``Part`` its tips and sequence."""
MAPPING_DIGITS: Final = int(mapping_version(), 16) % 1_000_000
"""Six decimal digits of the locality mapping's version (``events.locality_files.mapping_version``)."""
FOLD_VERSION: Final = FOLD_LOGIC * 1_000_000 + MAPPING_DIGITS
"""The fold's version: ``FOLD_LOGIC`` followed by six digits of the mapping's version, so that correcting the
mapping (any byte of the three locality files) is a new fold version: a rebuild, never a rewrite of the log.
Fits PostgreSQL's ``int`` (``projection_checkpoint.fold_version``) while ``FOLD_LOGIC`` < 2147."""

TIPS_RECEIVED: Final = "tips_received"
TIPS_VALUABLE: Final = "tips_valuable"
TIPS_LEADING: Final = "tips_leading_to_cases"
"""The two figures the tip rule of the fold counts from a tip's state (received, latest assessment)."""

BASE_METRICS: Final[tuple[str, ...]] = metric_names()
assert TIPS_RECEIVED in BASE_METRICS and TIPS_VALUABLE in BASE_METRICS and TIPS_LEADING in BASE_METRICS


APPROXIMATE: Final = "~"
"""``~<metric>`` holds the part of ``<metric>`` that is approximate (``projections.places``); never a metric of
its own in a reply: ``approximate`` shows it."""


def stock_base(metric: str) -> str:
    """The metric an approximate part (``~<metric>``) belongs to; any other metric itself. A stock's
    approximate part is read as a stock too."""
    return metric[len(APPROXIMATE) :] if metric.startswith(APPROXIMATE) else metric


def complete(figures: dict[str, int]) -> dict[str, int]:
    """Every base metric (zero if absent) plus the non-zero breakdowns, base metrics first, then sorted.
    Approximate parts (``~<metric>``) are left out: ``approximate`` gives them."""
    out = {name: figures.get(name, 0) for name in BASE_METRICS}
    for name in sorted(figures):
        if name not in out and figures[name] != 0 and not name.startswith(APPROXIMATE):
            out[name] = figures[name]
    return out


def approximate(figures: dict[str, int]) -> dict[str, int]:
    """``{metric: amount}``: the non-zero parts of the figures that are approximate (a split pre-2025 commune
    resolved to its default 2025 ward), sorted; empty when every figure is exact."""
    return {
        name[len(APPROXIMATE) :]: figures[name]
        for name in sorted(figures)
        if name.startswith(APPROXIMATE) and figures[name] != 0
    }
