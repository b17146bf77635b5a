"""The outbox of the update feed (ANTQ_UPDATES): the payload of one ward-year (``StatsUpdate``), the rows a
batch writes in its transaction (``write_outbox``, ``write_updates``), and the publisher's reading and
deleting of the rows not yet published (``pending_outbox``, ``delete_outbox``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg
import msgspec

from projections.calendar_figures import read_calendar_figures
from projections.metrics import FOLD_VERSION, approximate, complete
from projections.periods import CALENDAR, Period

_encoder = msgspec.json.Encoder()


class StatsUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """What ANTQ_UPDATES carries for one ward-year (calendar): shaped like the query reply."""

    ward: str
    year: int
    period: Period
    metrics: dict[str, int]
    as_of_seq: int
    stale: bool = False
    fold_version: int = FOLD_VERSION  # added later: consumers of older payloads read the default
    province: str | None = None  # added with the signatures: the subject's province, signed with the rest
    approximate: dict[str, int] | msgspec.UnsetType = msgspec.UNSET
    """The approximate part of ``metrics``, as in the query reply; left out (not null) when every figure is exact,
    so the payload of exact figures is as before."""


class OutboxRow(msgspec.Struct, frozen=True, kw_only=True):
    copy: int
    province: str
    ward: str
    year: int
    seq: int
    payload: bytes

    @property
    def msg_id(self) -> str:
        """Ward, year and seq, so that a re-publish of the same row is a duplicate; and the copy, so that the
        figures a rebuild corrects at the switch sequence are not taken for the old copy's update of that seq."""
        return f"{self.ward}:{self.year}:{self.seq}:{self.copy}"


async def write_outbox(
    conn: asyncpg.Connection,
    copy: int,
    seq: int,
    figures: Mapping[tuple[str, int], dict[str, int]],
    provinces: Mapping[str, str],
) -> list[OutboxRow]:
    out = [
        OutboxRow(
            copy=copy,
            province=provinces[w],
            ward=w,
            year=y,
            seq=seq,
            payload=_encoder.encode(
                StatsUpdate(
                    ward=w,
                    year=y,
                    period=CALENDAR,
                    metrics=complete(values),
                    as_of_seq=seq,
                    fold_version=FOLD_VERSION,
                    province=provinces[w],
                    approximate=approximate(values) or msgspec.UNSET,
                )
            ),
        )
        for (w, y), values in sorted(figures.items())
    ]
    if out:
        await conn.execute(
            """INSERT INTO stats_outbox (copy, province, ward, year, seq, payload)
               SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int[], $5::bigint[], $6::bytea[])""",
            copy,
            [r.province for r in out],
            [r.ward for r in out],
            [r.year for r in out],
            [r.seq for r in out],
            [r.payload for r in out],
        )
    return out


async def write_updates(
    conn: asyncpg.Connection, copy: int, seq: int, ward_years: Mapping[tuple[str, int], str]
) -> list[OutboxRow]:
    """Outbox rows with the current figures of the given (ward, year) → province, as of ``seq``."""
    figures = await read_calendar_figures(conn, copy, list(ward_years))
    return await write_outbox(conn, copy, seq, figures, {ward: p for (ward, _), p in ward_years.items()})


async def pending_outbox(
    conn: asyncpg.Connection, copy: int, provinces: Sequence[str] | None = None
) -> tuple[list[OutboxRow], int]:
    """The copy's unpublished rows (of ``provinces`` only, for a partition's runner): the latest of each
    ward-year, in sequence order, and how many older ones those supersede."""
    rows = await conn.fetch(
        """SELECT province, ward, year, seq, payload, older FROM (
               SELECT DISTINCT ON (ward, year) province, ward, year, seq, payload,
                      count(*) OVER (PARTITION BY ward, year) - 1 AS older
               FROM stats_outbox
               WHERE copy = $1 AND ($2::text[] IS NULL OR province = ANY($2::text[]))
               ORDER BY ward, year, seq DESC) AS latest
           ORDER BY seq, ward, year""",
        copy,
        None if provinces is None else list(provinces),
    )
    latest = [
        OutboxRow(
            copy=copy,
            province=r["province"],
            ward=r["ward"],
            year=r["year"],
            seq=r["seq"],
            payload=r["payload"],
        )
        for r in rows
    ]
    return latest, sum(r["older"] for r in rows)


async def delete_outbox(conn: asyncpg.Connection, copy: int, rows: Sequence[OutboxRow]) -> None:
    """Delete ``rows`` (published) and every older row of their ward-years (superseded by them)."""
    if rows:
        await conn.execute(
            """DELETE FROM stats_outbox o USING unnest($2::bigint[], $3::text[], $4::int[]) AS d(seq, ward, year)
               WHERE o.copy = $1 AND o.seq <= $5 AND o.ward = d.ward AND o.year = d.year AND o.seq <= d.seq""",
            copy,
            [r.seq for r in rows],
            [r.ward for r in rows],
            [r.year for r in rows],
            max(r.seq for r in rows),
        )
