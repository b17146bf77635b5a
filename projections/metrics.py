"""Names of the statistics metrics, and the version of the fold that produces them.

The metrics derive from the event catalogue (``events/catalogue.py``): base metrics are always present in a
reply (zero included); breakdown metrics are ``<base>.<sub>`` and appear only when non-zero.
"""

from __future__ import annotations

from typing import Final

from events.catalogue import metric_names

FOLD_VERSION: Final = 5
"""Bump when the fold's output or its stored state changes meaning: a rebuild is then due. v2: a plain event's
stored contribution is the amounts of its figures, as declared in ``events/catalogue.py``. v3: corrections
(``Fix``, ``Superseded``; a ``TipLink`` keeps its assessment's valuable flag and its tip's day). v4: lifecycle entities (``EntityState``, ``EntityLink``) and stocks, stored as each year's
change. v5 (issue 10): a tip keeps its source (``tips_received.<source>``, ``tips_valuable.<source>``), and so
does a received tip's ``TipLink``; a tip keeps the sequence it was received at and the versions of
``cases.cleared`` that name it (``tips_leading_to_cases``), and such a version's ``Part`` its tips and sequence."""

TIPS_RECEIVED: Final = "tips_received"
TIPS_VALUABLE: Final = "tips_valuable"
TIPS_LEADING: Final = "tips_leading_to_cases"
"""The two figures the tip rule of the fold counts from a tip's state (received, latest assessment)."""

BASE_METRICS: Final[tuple[str, ...]] = metric_names()
assert TIPS_RECEIVED in BASE_METRICS and TIPS_VALUABLE in BASE_METRICS and TIPS_LEADING in BASE_METRICS


def complete(figures: dict[str, int]) -> dict[str, int]:
    """Every base metric (zero if absent) plus the non-zero breakdowns, base metrics first, then sorted."""
    out = {name: figures.get(name, 0) for name in BASE_METRICS}
    for name in sorted(figures):
        if name not in out and figures[name] != 0:
            out[name] = figures[name]
    return out
