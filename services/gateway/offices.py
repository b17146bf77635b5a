"""The offices registry: who may publish, for which localities, how fast, and how much ``ANTQ_REJECTED`` keeps.

TOML: optional top-level defaults, then one ``[[office]]`` table per office::

    rate = { events_per_second = 200, burst = 1000 }   # default for every office (built in: these values)
    rejected_quota_bytes = 67108864                    # raw bodies kept per office per UTC day (64 MiB)

    [[office]]
    id = "ca-tra-linh"
    name = "Công an xã Trà Lĩnh"
    jurisdiction = ["ward:01447"]                      # or "province:04"; 2025 codes
    rate = { events_per_second = 50, burst = 500 }     # optional: this office's own
    rejected_quota_bytes = 1048576                     # optional: this office's own

Any problem with the file raises ``OfficesFileError`` with one line naming the file and the problem.
"""

from __future__ import annotations

import math
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from events.localities import Localities
from services.gateway.errors import GatewayError, OfficesFileError

_ID = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,63}\Z")
MAX_RATE = 1_000_000.0
"""Events per second and burst above this are surely a typo (and would overflow nothing, but mean nothing)."""


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket's settings: ``events_per_second`` refill, at most ``burst`` events at once."""

    events_per_second: float
    burst: int


DEFAULT_RATE = Rate(events_per_second=200.0, burst=1000)
DEFAULT_REJECTED_QUOTA = 64 * 1024 * 1024
"""Raw bytes of refused submissions ``ANTQ_REJECTED`` keeps per office per UTC day."""

UNKNOWN_OFFICE = "_unknown"
"""The one quota key shared by every intake subject that names no registered office."""


@dataclass(frozen=True, slots=True)
class Office:
    id: str
    name: str
    provinces: frozenset[str]
    wards: frozenset[str]
    rate: Rate = DEFAULT_RATE
    rejected_quota_bytes: int = DEFAULT_REJECTED_QUOTA

    def covers(self, ward: str, province: str) -> bool:
        return ward in self.wards or province in self.provinces


@dataclass(frozen=True)
class OfficeRegistry:
    offices: dict[str, Office]
    default_rate: Rate = DEFAULT_RATE
    default_rejected_quota: int = DEFAULT_REJECTED_QUOTA

    def get(self, office_id: str) -> Office | None:
        return self.offices.get(office_id)

    def rejected_quota(self, office_id: str) -> tuple[str, int]:
        """The quota key and bytes per day for refusals sent on ``office_id``'s intake subject."""
        office = self.offices.get(office_id)
        if office is None:
            return UNKNOWN_OFFICE, self.default_rejected_quota
        return office.id, office.rejected_quota_bytes

    @classmethod
    def parse(cls, text: str, localities: Localities, source: str = "<offices>") -> OfficeRegistry:
        try:
            return _parse(text, localities)
        except _Problem as exc:
            raise OfficesFileError(_one_line(f"offices file {source}: {exc}")) from None

    @classmethod
    def load(cls, path: Path, localities: Localities) -> OfficeRegistry:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise OfficesFileError(_one_line(f"offices file {path}: cannot be read ({reason})")) from None
        return cls.parse(text, localities, str(path))


# --- parsing ---------------------------------------------------------------------------------------------

_TOP_KEYS = ("office", "rate", "rejected_quota_bytes")
_OFFICE_KEYS = ("id", "name", "jurisdiction", "rate", "rejected_quota_bytes")
_RATE_KEYS = ("events_per_second", "burst")


class _Problem(GatewayError):
    """A problem found while parsing; ``OfficeRegistry.parse`` adds the file's name."""


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _show(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _no_unknown_keys(table: Mapping[str, object], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _Problem(f"{where}unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")


def _parse(text: str, localities: Localities) -> OfficeRegistry:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _Problem(f"not valid TOML: {exc}") from None
    _no_unknown_keys(doc, _TOP_KEYS, "")
    default_rate = _rate(doc["rate"], "rate") if "rate" in doc else DEFAULT_RATE
    default_quota = (
        _quota(doc["rejected_quota_bytes"], "rejected_quota_bytes")
        if "rejected_quota_bytes" in doc
        else DEFAULT_REJECTED_QUOTA
    )
    tables = doc.get("office", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise _Problem("'office' must be a list of [[office]] tables")
    if not tables:
        raise _Problem("no [[office]] table: no office could publish")
    offices: dict[str, Office] = {}
    for i, table in enumerate(tables):
        office = _office(table, i, localities, default_rate, default_quota)
        if office.id in offices:
            raise _Problem(f"office[{i}]: office id {office.id!r} appears twice")
        offices[office.id] = office
    return OfficeRegistry(offices, default_rate, default_quota)


def _office(
    table: dict[str, object], i: int, localities: Localities, default_rate: Rate, default_quota: int
) -> Office:
    office_id = table.get("id")
    if not isinstance(office_id, str) or not _ID.match(office_id):
        raise _Problem(
            f"office[{i}]: id {_show(office_id)} must match {_ID.pattern} (it is a NATS subject token)"
        )
    where = f"office[{i}] ({office_id}): "
    _no_unknown_keys(table, _OFFICE_KEYS, where)
    name = table.get("name", office_id)
    if not isinstance(name, str) or not name.strip():
        raise _Problem(f"{where}name must be a non-blank string, not {_show(name)}")
    jurisdiction = table.get("jurisdiction")
    if not isinstance(jurisdiction, list) or not jurisdiction:
        raise _Problem(f'{where}jurisdiction must be a non-empty list such as ["ward:01447", "province:04"]')
    provinces: set[str] = set()
    wards: set[str] = set()
    for entry in jurisdiction:
        kind, _, code = entry.partition(":") if isinstance(entry, str) else ("", "", "")
        if kind == "province" and localities.province(code) is not None:
            provinces.add(code)
        elif kind == "ward" and localities.ward(code) is not None:
            wards.add(code)
        else:
            raise _Problem(
                f"{where}jurisdiction {_show(entry)} is not 'province:PP' or 'ward:WWWWW' with a 2025 code"
            )
    rate = _rate(table["rate"], f"{where}rate") if "rate" in table else default_rate
    quota = (
        _quota(table["rejected_quota_bytes"], f"{where}rejected_quota_bytes")
        if "rejected_quota_bytes" in table
        else default_quota
    )
    return Office(
        office_id,
        unicodedata.normalize("NFC", name),
        frozenset(provinces),
        frozenset(wards),
        rate,
        quota,
    )


def _rate(value: object, where: str) -> Rate:
    if not isinstance(value, dict):
        raise _Problem(f"{where} must be a table such as {{ events_per_second = 200, burst = 1000 }}")
    _no_unknown_keys(value, _RATE_KEYS, f"{where}: ")
    per_second = value.get("events_per_second")
    if (
        isinstance(per_second, bool)
        or not isinstance(per_second, int | float)
        or not math.isfinite(per_second)
        or not 0 < per_second <= MAX_RATE
    ):
        raise _Problem(
            f"{where}.events_per_second must be a number above 0 and at most {MAX_RATE:,.0f}, "
            f"not {_show(per_second)}"
        )
    burst = value.get("burst")
    if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= MAX_RATE:
        raise _Problem(f"{where}.burst must be a whole number from 1 to {MAX_RATE:,.0f}, not {_show(burst)}")
    return Rate(float(per_second), burst)


def _quota(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Problem(f"{where} must be a whole number of bytes, 0 or more, not {_show(value)}")
    return value


# --- rate limiting -------------------------------------------------------------------------------------


_EPSILON = 1e-9


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """A token bucket per office, counting events (a batch of 25 costs 25). Time comes from the caller (the
    pipeline's clock), so tests move a clock instead of waiting. In memory, per gateway copy: with N copies
    sharing the queue group an office gets up to N times its rate (document and size ``rate`` for that)."""

    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, office: Office, wanted: int, now: float) -> tuple[int, int]:
        """Take up to ``wanted`` tokens at ``now`` (seconds); return (granted, retry_after_ms for the rest)."""
        rate = office.rate
        bucket = self._buckets.get(office.id)
        if bucket is None:
            bucket = self._buckets[office.id] = _Bucket(float(rate.burst), now)
        elapsed = max(0.0, now - bucket.at)  # a clock that steps back refills nothing
        bucket.tokens = min(float(rate.burst), bucket.tokens + elapsed * rate.events_per_second)
        bucket.at = max(bucket.at, now)
        granted = min(wanted, int(bucket.tokens + _EPSILON))  # 9.999999… tokens after float sums are 10
        bucket.tokens = max(0.0, bucket.tokens - granted)
        rest = wanted - granted
        if rest == 0:
            return granted, 0
        missing = min(rest, rate.burst) - bucket.tokens  # until the bucket holds the rest (or is full)
        return granted, max(1, math.ceil(round(missing / rate.events_per_second * 1000, 6)))
