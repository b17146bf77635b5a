"""``antq audit replay``: statistics recomputed straight from ANTQ_EVENTS, no PostgreSQL.

Two time axes: record time (only what the stream had stored by an instant: resolved once to a sequence, and
reading stops there) and business time (only facts that occurred on or before a date).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client

from events.codec import vietnam_today
from events.legacy_localities import LEGACY_SCHEME
from events.localities import Localities
from events.subjects import ward_filter
from infra.reading import StreamReader
from infra.stream_reader import last_sequence
from infra.streams import EVENTS
from projections.periods import Period
from projections.places import UnitKind, unit_key
from projections.replay import InMemoryReplay
from services.audit.errors import AuditError
from services.audit.folding import LocalFold, ProcessFold
from services.audit.timeline import sequence_known_on

__all__ = ["AuditError", "ReplayResult", "ReplayScope", "replay"]

CHILD_FOLD_FROM = 50_000
FOLD_CHILDREN = max(1, min(4, (os.cpu_count() or 1) - 1))
"""Fold processes of a long replay, each folding its share of the provinces (``ProcessFold``): one core is
left to the reading process (on 2 cores, one child: a second one only shares the same cores, measured)."""
"""Sequences to read from which the fold runs in a child process (starting one costs a few tenths of a second)."""


@dataclass(frozen=True, kw_only=True)
class ReplayScope:
    ward: str | None = None
    province: str | None = None
    """A 2025 province; with ``scheme`` ``gso-pre2025``, a pre-2025 province."""
    scheme: str = "gso-2025"
    commune: str | None = None
    """``gso-pre2025``: a pre-2025 commune."""
    district: str | None = None
    """``gso-pre2025``: a pre-2025 district."""
    year: int | None = None
    from_year: int | None = None
    """With ``year``: the range from this year to ``year`` (flows summed, stocks at its end)."""
    period: Period = "calendar"
    as_of_occurred: dt.date | None = None
    as_known_on: dt.datetime | None = None
    stop_seq: int | None = None

    @property
    def legacy(self) -> bool:
        return self.scheme == LEGACY_SCHEME

    def _legacy_unit(self, localities: Localities) -> tuple[UnitKind, str, frozenset[str]]:
        """The pre-2025 unit named (kind, code) and its commune codes in any period; unknown: AuditError."""
        named: list[tuple[UnitKind, str | None]] = [
            ("commune", self.commune),
            ("district", self.district),
            ("province", self.province),
        ]
        given = [(kind, code) for kind, code in named if code is not None]
        if len(given) != 1 or self.ward is not None:
            raise AuditError("a gso-pre2025 replay names exactly one of --commune, --district or --province")
        kind, code = given[0]
        assert code is not None
        communes = localities.legacy_units(
            commune=code if kind == "commune" else None,
            district=code if kind == "district" else None,
            province=code if kind == "province" else None,
        )
        if not communes:
            raise AuditError(f"{kind} {code} is no known pre-2025 {kind} code")
        return kind, code, communes

    def wards(self, localities: Localities) -> list[str] | None:
        if self.legacy:
            kind, code, _ = self._legacy_unit(localities)
            return [unit_key(kind, code)]
        if self.commune is not None or self.district is not None:
            raise AuditError("--commune and --district are pre-2025 units: give --scheme gso-pre2025")
        if self.ward is not None:
            if localities.ward(self.ward) is None:
                raise AuditError(f"ward {self.ward} is not an official 2025 ward code")
            return [self.ward]
        if self.province is not None:
            wards = list(localities.wards_of(self.province))
            if not wards:
                raise AuditError(f"province {self.province} is not an official 2025 province code")
            return wards
        return None

    def subject(self, localities: Localities) -> str | None:
        """Filter by subject, so that one ward does not read the country. A pre-2025 unit: the one 2025
        province all its communes' successor wards are in (every event of it lies on one of those wards),
        else no filter."""
        if self.legacy:
            _, _, communes = self._legacy_unit(localities)
            provinces = set()
            for commune in communes:
                for ward in localities.successors(commune):
                    found = localities.ward(ward)
                    if found is not None:
                        provinces.add(found.province)
            return ward_filter(provinces.pop()) if len(provinces) == 1 else None
        if self.ward is not None:
            found = localities.ward(self.ward)
            assert found is not None
            return ward_filter(found.province, self.ward)
        if self.province is not None:
            return ward_filter(self.province)
        return None

    def until(self) -> int:
        """The last year a stock is listed in: the year of the cut (business or record time), or this year."""
        if self.as_of_occurred is not None:
            return self.as_of_occurred.year
        when = self.as_known_on or dt.datetime.now(dt.UTC)
        return vietnam_today(when).year


@dataclass(frozen=True)
class ReplayResult:
    replay: InMemoryReplay
    as_of_seq: int
    wards: list[str] | None
    foreign: int = 0
    """Foreign records set aside (``events.stored``), in the scope's subjects."""


Progress = Callable[[int, int], None]
"""(sequence reached, last sequence to read)"""


async def replay(
    nc: Client,
    scope: ReplayScope,
    localities: Localities,
    *,
    stream: str = EVENTS,
    progress: Progress | None = None,
    batch: int | None = None,
    child_process: bool | None = None,
    reader: StreamReader | None = None,
    children: int | None = None,
) -> ReplayResult:
    """Fold the scope's events up to the cut. ``child_process``: fold beside the reader in a second process
    (default: when at least ``CHILD_FOLD_FROM`` sequences are to be read). ``reader``: how to read the stream
    (``infra.reading.audit_reader``: a consumer, or direct gets); default: an unnamed consumer. ``batch``:
    messages per read batch (default: the reader's). ``children``: fold processes (default ``FOLD_CHILDREN``)."""
    reader = reader or StreamReader()
    wards = scope.wards(localities)
    js = nc.jetstream()
    stop = scope.stop_seq
    if scope.as_known_on is not None:
        known = await sequence_known_on(nc, stream, scope.as_known_on)
        stop = known if stop is None else min(stop, known)
    last = await last_sequence(js, stream)
    stop = last if stop is None else min(stop, last)  # a cut beyond the log stands at the log's last sequence
    if child_process is None:
        child_process = stop >= CHILD_FOLD_FROM
    subject = scope.subject(localities)
    if not child_process:
        local = LocalFold(scope.as_of_occurred, localities)
        async for cols in reader.columns(js, stream, stop_seq=stop, subject=subject, batch=batch):
            local.feed(cols.seqs, cols.subjects, cols.bodies)
            if progress is not None:
                progress(cols.seqs[-1], stop)
        return ReplayResult(local.replay, stop, wards, local.foreign)
    child = await ProcessFold.start(
        scope.as_of_occurred,
        children if children is not None else FOLD_CHILDREN,
        [p.code for p in localities.provinces()],
    )
    try:
        async for cols in reader.columns(js, stream, stop_seq=stop, subject=subject, batch=batch):
            await child.feed(cols.seqs, cols.subjects, cols.bodies)
            if progress is not None:
                progress(cols.seqs[-1], stop)
        folded, foreign = await child.result()
        return ReplayResult(folded, stop, wards, foreign)
    finally:
        await child.close()
