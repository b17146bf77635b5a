"""Names of the statistics metrics, and the version of the fold that produces them.

Base metrics are always present in a reply (zero included); breakdown metrics are ``<base>.<sub>`` and appear
only when non-zero.
"""

from __future__ import annotations

from typing import Final

from events.schema import WEAPON_KINDS

FOLD_VERSION: Final = 1
"""Bump when the fold's output or its stored state changes meaning: a rebuild is then due."""

TIPS_RECEIVED: Final = "tips_received"
TIPS_VALUABLE: Final = "tips_valuable"
SESSIONS_HELD: Final = "sessions_held"
SESSION_ATTENDANCE: Final = "session_attendance"
PLEDGE_SIGNATURES: Final = "pledge_signatures"
MEDIATIONS_CONCLUDED: Final = "mediations_concluded"
MEDIATIONS_SUCCESSFUL: Final = "mediations_successful"
WEAPONS_SURRENDERED: Final = "weapons_surrendered"
AMMUNITION_SURRENDERED: Final = "ammunition_surrendered"

BASE_METRICS: Final[tuple[str, ...]] = (
    TIPS_RECEIVED,
    TIPS_VALUABLE,
    SESSIONS_HELD,
    SESSION_ATTENDANCE,
    PLEDGE_SIGNATURES,
    MEDIATIONS_CONCLUDED,
    MEDIATIONS_SUCCESSFUL,
    WEAPONS_SURRENDERED,
    AMMUNITION_SURRENDERED,
)

AMMUNITION: Final = "ammunition"
WEAPON_KINDS_COUNTED: Final[tuple[str, ...]] = tuple(k for k in WEAPON_KINDS if k != AMMUNITION)


def breakdown(base: str, sub: str) -> str:
    return f"{base}.{sub}"


def complete(figures: dict[str, int]) -> dict[str, int]:
    """Every base metric (zero if absent) plus the non-zero breakdowns, base metrics first, then sorted."""
    out = {name: figures.get(name, 0) for name in BASE_METRICS}
    for name in sorted(figures):
        if name not in out and figures[name] != 0:
            out[name] = figures[name]
    return out
