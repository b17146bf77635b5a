"""RFC 3339 timestamps as nats-server writes them, to exact nanoseconds (the seal chain hashes them)."""

from __future__ import annotations

import datetime as dt
import re

_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z")


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp with up to 9 fractional digits (no float on the way)."""
    m = _TS.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    head, frac, zone = m.groups()
    base = dt.datetime.fromisoformat(head + ("+00:00" if zone == "Z" else zone))
    return int(base.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))
