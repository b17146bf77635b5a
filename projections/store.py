"""PostgreSQL side of the statistics projection (asyncpg, no ORM).

Writes: one transaction per batch applies the deltas, the fold state, the checkpoint and the outbox rows
(``commit_batch``). Reads: ``read_stats`` / ``read_province_stats`` answer from the active copy, together with
the checkpoint, in one REPEATABLE READ snapshot.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Final, TypeAlias

import asyncpg
import msgspec

from events.catalogue import stock_metrics
from events.codec import vietnam_today
from projections.errors import ProjectionError
from projections.folds import Figures, Key, StateUpdate, Value, decode_value, encode_value, key_bytes, key_of
from projections.metrics import APPROXIMATE, FOLD_VERSION, approximate, complete
from projections.periods import CALENDAR, PERIODS, Period
from projections.places import is_unit_key

NAME: Final = "stats"
_STOCKS: Final = sorted({*stock_metrics(), *(APPROXIMATE + name for name in stock_metrics())})
"""Stock metrics, and their approximate parts (``~<metric>``, ``projections.places``): both stored as each
year's change and read as what stands at a year's end."""
_STOCK_SET: Final = frozenset(_STOCKS)
Figures2: TypeAlias = dict[tuple[str, int], dict[str, int]]
"""Figures of (ward, year) pairs: metric → value."""
_LOCK_CLASS: Final = 0x414E5453  # 'ANTS': one runner per (projection, copy)

_encoder = msgspec.json.Encoder()


Pause = Callable[[], Awaitable[None]]


class StatsSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Summed figures of some wards for one year: every base metric, breakdowns when non-zero."""

    metrics: dict[str, int]
    as_of_seq: int
    stale: bool
    fold_version: int
    approximate: dict[str, int] = {}
    """The approximate part of ``metrics`` (``projections.metrics.approximate``)."""
    by_ward: dict[str, dict[str, int]] | None = None
    """With ``read_stats(by_ward=True)``: each ward's own figures, from the same snapshot."""


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


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    copy: int
    seq: int
    fold_version: int
    halted: str | None


class CheckpointMoved(ProjectionError):
    """The checkpoint is not where this runner left it: another runner writes the same copy."""


async def active_copy(conn: asyncpg.Connection, name: str = NAME) -> int:
    copy = await conn.fetchval("SELECT copy FROM projection_active WHERE name = $1", name)
    if copy is None:
        raise LookupError(f"no active copy for projection {name!r}: run the migrations")
    return int(copy)


async def try_lock(conn: asyncpg.Connection, copy: int, name: str = NAME) -> bool:
    """Session advisory lock held by the one runner of (name, copy) for as long as its connection lives."""
    return bool(
        await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2) # $3)", _LOCK_CLASS, name, copy)
    )


async def unlock(conn: asyncpg.Connection, copy: int, name: str = NAME) -> None:
    """Release the session lock ``try_lock`` took on (name, copy)."""
    await conn.fetchval("SELECT pg_advisory_unlock($1, hashtext($2) # $3)", _LOCK_CLASS, name, copy)


async def hold_copies(conn: asyncpg.Connection) -> None:
    """Inside a reading transaction, before it reads which copy is active: no copy's tables can be dropped
    until it ends (``copies.drop_copy`` waits for it), so a read that found the old copy active reads its rows
    even while a rebuild finishes. Needs SELECT on ``stats`` only."""
    await conn.execute("LOCK TABLE stats IN ACCESS SHARE MODE")


async def open_checkpoint(conn: asyncpg.Connection, copy: int, name: str = NAME) -> Checkpoint:
    """The copy's checkpoint, created at 0 with the current fold version if it has none; and the copy's own
    tables (partitions of ``stats``, ``stats_fold_state``, ``stats_outbox``), created if missing."""
    await conn.execute("SELECT antq_create_copy($1)", copy)
    await conn.execute(
        "INSERT INTO projection_checkpoint (name, copy, seq, fold_version) VALUES ($1, $2, 0, $3)"
        " ON CONFLICT (name, copy) DO NOTHING",
        name,
        copy,
        FOLD_VERSION,
    )
    return await read_checkpoint(conn, copy, name)


async def read_checkpoint(conn: asyncpg.Connection, copy: int, name: str = NAME) -> Checkpoint:
    row = await conn.fetchrow(
        "SELECT seq, fold_version, halted FROM projection_checkpoint WHERE name = $1 AND copy = $2",
        name,
        copy,
    )
    if row is None:
        raise LookupError(f"no checkpoint for projection {name!r} copy {copy}")
    return Checkpoint(copy=copy, seq=row["seq"], fold_version=row["fold_version"], halted=row["halted"])


async def load_state(conn: asyncpg.Connection, copy: int, keys: Collection[Key]) -> dict[Key, Value]:
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT key, value FROM stats_fold_state WHERE copy = $1 AND key = ANY($2::bytea[])",
        copy,
        [key_bytes(k) for k in keys],
    )
    return {key_of(r["key"]): decode_value(r["value"]) for r in rows}


_SEP = "\x1f"
"""Separates the items of a column sent as one text (the ASCII unit separator: no code or metric name has it)."""


def _column_texts(rows: Sequence[tuple[Any, ...]], width: int) -> list[str]:
    """Each column of ``rows`` as one text of its items joined by ``_SEP``, which PostgreSQL splits with
    ``string_to_array``: asyncpg encodes an array item by item in Python, a text in one copy, so a batch's
    tens of thousands of rows cost the projector's one core almost nothing and PostgreSQL's core the split."""
    out = []
    for i in range(width):
        text = _SEP.join([str(row[i]) for row in rows])
        if text.count(_SEP) != len(rows) - 1:
            raise ValueError(f"an item of column {i} holds the separator U+001F")
        out.append(text)
    return out


async def _apply_deltas(
    conn: asyncpg.Connection, copy: int, deltas: Figures, provinces: Mapping[str, str]
) -> None:
    if not deltas:
        return
    rows = sorted((p, provinces[w], w, y, metric, v) for (p, w, y, metric), v in deltas.items())
    period, province, ward, year, metric, value = _column_texts(rows, 6)
    await conn.execute(
        """INSERT INTO stats AS s (copy, period, province, ward, year, metric, value)
           SELECT $1, * FROM unnest(string_to_array($2, chr(31)), string_to_array($3, chr(31)),
                                    string_to_array($4, chr(31)), string_to_array($5, chr(31))::int[],
                                    string_to_array($6, chr(31)), string_to_array($7, chr(31))::bigint[])
           ON CONFLICT (copy, period, ward, year, metric) DO UPDATE SET value = s.value + EXCLUDED.value""",
        copy,
        period,
        province,
        ward,
        year,
        metric,
        value,
    )


async def _save_state(conn: asyncpg.Connection, copy: int, update: StateUpdate) -> None:
    """Upsert and delete fold state; keys and values travel as hex in one text each (``_column_texts``)."""
    upserts = sorted((key_bytes(k), encode_value(v)) for k, v in update.items() if v is not None)
    deletes = sorted(key_bytes(k) for k, v in update.items() if v is None)
    if upserts:
        await conn.execute(
            """INSERT INTO stats_fold_state AS f (copy, key, value)
               SELECT $1, decode(k, 'hex'), decode(v, 'hex')
               FROM unnest(string_to_array($2, ','), string_to_array($3, ',')) AS u(k, v)
               ON CONFLICT (copy, key) DO UPDATE SET value = EXCLUDED.value""",
            copy,
            ",".join([k.hex() for k, _ in upserts]),
            ",".join([v.hex() for _, v in upserts]),
        )
    if deletes:
        await conn.execute(
            """DELETE FROM stats_fold_state WHERE copy = $1
               AND key = ANY(SELECT decode(k, 'hex') FROM unnest(string_to_array($2, ',')) AS u(k))""",
            copy,
            ",".join([k.hex() for k in deletes]),
        )


def this_year() -> int:
    """The current year in Vietnam: stocks are published for every year up to it."""
    return vietnam_today(dt.datetime.now(dt.UTC)).year


async def _calendar_rows(
    conn: asyncpg.Connection, copy: int, pairs: Collection[tuple[str, int]]
) -> dict[tuple[str, int], dict[str, int]]:
    """The stored calendar rows of some (ward, year) pairs (a pair with none maps to an empty dict)."""
    figures: dict[tuple[str, int], dict[str, int]] = {pair: {} for pair in pairs}
    if not figures:
        return figures
    # ward = ANY and year = ANY use the primary key; the few extra (ward, year) pairs are filtered here
    rows = await conn.fetch(
        """SELECT ward, year, metric, value FROM stats
           WHERE copy = $1 AND period = 'calendar' AND ward = ANY($2::text[]) AND year = ANY($3::int[])""",
        copy,
        sorted({w for w, _ in figures}),
        sorted({y for _, y in figures}),
    )
    for r in rows:
        found = figures.get((r["ward"], r["year"]))
        if found is not None:
            found[r["metric"]] = r["value"]
    return figures


StockRows: TypeAlias = dict[int, dict[str, int]]
"""A ward's stored stock changes: year → metric → change in that year."""


async def _stock_rows(conn: asyncpg.Connection, copy: int, wards: Collection[str]) -> dict[str, StockRows]:
    """Every stored calendar stock change of some wards (a ward with none maps to an empty dict)."""
    out: dict[str, StockRows] = {ward: {} for ward in wards}
    if not out:
        return out
    rows = await conn.fetch(
        """SELECT ward, year, metric, value FROM stats WHERE copy = $1 AND period = 'calendar'
           AND ward = ANY($2::text[]) AND metric = ANY($3::text[])""",
        copy,
        sorted(out),
        _STOCKS,
    )
    for r in rows:
        out[r["ward"]].setdefault(r["year"], {})[r["metric"]] = r["value"]
    return out


def _standing(rows: Mapping[tuple[str, int], dict[str, int]], stocks: Mapping[str, StockRows]) -> Figures2:
    """The figures of each (ward, year): its flows, and its stocks as they stand at the year's end.

    Each ward's stock changes are summed once, in year order; a (ward, year) then takes the running sums of
    the last year at or before it (a stock in an old year changes many later ward-years at once)."""
    running: dict[str, tuple[list[int], list[dict[str, int]]]] = {}
    for ward in {w for w, _ in rows}:
        changes = stocks.get(ward)
        if not changes:
            continue
        years: list[int] = []
        sums: list[dict[str, int]] = []
        acc: dict[str, int] = {}
        for y in sorted(changes):
            for metric, change in changes[y].items():
                acc[metric] = acc.get(metric, 0) + change
            years.append(y)
            sums.append({m: v for m, v in acc.items() if v})
        running[ward] = (years, sums)
    out: Figures2 = {}
    for (ward, year), values in rows.items():
        figures = {m: v for m, v in values.items() if m not in _STOCK_SET}
        found = running.get(ward)
        if found is not None:
            at = bisect.bisect_right(found[0], year)
            if at:
                for metric, value in found[1][at - 1].items():
                    figures[metric] = figures.get(metric, 0) + value
        out[(ward, year)] = figures
    return out


async def _calendar_figures(
    conn: asyncpg.Connection, copy: int, pairs: Collection[tuple[str, int]]
) -> Figures2:
    """The calendar figures of some (ward, year) pairs, stocks as they stand at each year's end."""
    rows = await _calendar_rows(conn, copy, pairs)
    return _standing(rows, await _stock_rows(conn, copy, {w for w, _ in pairs}))


class CalendarCache:
    """A runner's write-through copy of the calendar rows of the ward-years it last changed, and of those
    wards' stock changes.

    The runner is the only writer of its copy, so what it committed is what PostgreSQL holds: an update's
    figures are the cached ones plus the batch's changes, with no read of the table. Entries are loaded
    before the batch's changes are applied and replaced only after its commit; least recently used ones go.
    """

    def __init__(self, capacity: int = 20_000, year_now: Callable[[], int] = this_year) -> None:
        self._capacity = capacity
        self._data: OrderedDict[tuple[str, int], dict[str, int]] = OrderedDict()
        self._stocks: OrderedDict[str, StockRows] = OrderedDict()
        self._year_now = year_now

    def changed(self, deltas: Figures) -> list[tuple[str, int]]:
        """The calendar ward-years whose published figures the deltas change: a flow's year; a stock's year and
        every later one up to the current year."""
        pairs: set[tuple[str, int]] = set()
        now = self._year_now()
        for (period, ward, year, metric), _v in deltas.items():
            if period != CALENDAR or is_unit_key(ward):  # the feed carries 2025 wards only
                continue
            if metric in _STOCK_SET:
                pairs.update((ward, y) for y in range(year, max(year, now) + 1))
            else:
                pairs.add((ward, year))
        return sorted(pairs)

    async def load(self, conn: asyncpg.Connection, copy: int, pairs: Collection[tuple[str, int]]) -> None:
        missing = [pair for pair in pairs if pair not in self._data]
        self._data.update(await _calendar_rows(conn, copy, missing))
        wards = {w for w, _ in pairs if w not in self._stocks}
        self._stocks.update(await _stock_rows(conn, copy, wards))

    def after(
        self, pairs: Collection[tuple[str, int]], deltas: Figures
    ) -> tuple[Figures2, dict[str, StockRows]]:
        """The rows of ``pairs`` and their wards' stock changes once ``deltas`` apply (the cache itself is
        left as it is)."""
        rows = {pair: dict(self._data[pair]) for pair in pairs}
        stocks = {w: {y: dict(c) for y, c in self._stocks[w].items()} for w in {w for w, _ in pairs}}
        for (period, ward, year, metric), amount in deltas.items():
            if period != CALENDAR:
                continue
            found = rows.get((ward, year))
            if found is not None:
                found[metric] = found.get(metric, 0) + amount
            if metric in _STOCK_SET and ward in stocks:
                changes = stocks[ward].setdefault(year, {})
                changes[metric] = changes.get(metric, 0) + amount
        return rows, stocks

    def committed(
        self, rows: Mapping[tuple[str, int], dict[str, int]], stocks: Mapping[str, StockRows]
    ) -> None:
        for pair, values in rows.items():
            self._data[pair] = values
            self._data.move_to_end(pair)
        for ward, changes in stocks.items():
            self._stocks[ward] = changes
            self._stocks.move_to_end(ward)
        while len(self._data) > self._capacity:
            self._data.popitem(last=False)
        while len(self._stocks) > self._capacity:
            self._stocks.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()
        self._stocks.clear()


async def _write_outbox(
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
    figures = await _calendar_figures(conn, copy, list(ward_years))
    return await _write_outbox(conn, copy, seq, figures, {ward: p for (ward, _), p in ward_years.items()})


async def commit_batch(
    conn: asyncpg.Connection,
    *,
    copy: int,
    from_seq: int,
    to_seq: int,
    update: StateUpdate,
    deltas: Figures,
    provinces: Mapping[str, str],
    outbox: CalendarCache | None,
    name: str = NAME,
    during: Callable[[], Awaitable[None]] | None = None,
    checkpoint: Callable[[], Awaitable[None]] | None = None,
) -> list[OutboxRow]:
    """One transaction: deltas, fold state, checkpoint from_seq → to_seq, and with ``outbox`` (the
    runner's cache of its figures) the outbox rows of the changed ward-years (returned).

    Raises ``CheckpointMoved`` (and writes nothing) if the checkpoint is not at ``from_seq``. ``checkpoint``:
    moves another checkpoint instead, first in the transaction (a partition's: ``projections.partitions``).
    """
    async with conn.transaction():
        if checkpoint is not None:
            await checkpoint()
        else:
            moved = await conn.execute(
                """UPDATE projection_checkpoint SET seq = $3, halted = NULL, halted_seq = NULL, updated_at = now()
                   WHERE name = $1 AND copy = $2 AND seq = $4 AND retired_at_seq IS NULL""",
                name,
                copy,
                to_seq,
                from_seq,
            )
            if moved != "UPDATE 1":
                raise CheckpointMoved(f"checkpoint of {name} copy {copy} is no longer at {from_seq}")
        changed = outbox.changed(deltas) if outbox is not None else []
        if outbox is not None:
            await outbox.load(conn, copy, changed)  # before the changes: the cache holds committed figures
        await _apply_deltas(conn, copy, deltas, provinces)
        if during is not None:
            await during()  # a crash here rolls the whole batch back
        await _save_state(conn, copy, update)
        if outbox is None:
            return []
        after, stocks = outbox.after(changed, deltas)
        rows = await _write_outbox(conn, copy, to_seq, _standing(after, stocks), provinces)
    outbox.committed(after, stocks)
    return rows


async def mark_halted(conn: asyncpg.Connection, copy: int, seq: int, reason: str, name: str = NAME) -> None:
    await conn.execute(
        """UPDATE projection_checkpoint SET halted = $3, halted_seq = $4, updated_at = now()
           WHERE name = $1 AND copy = $2""",
        name,
        copy,
        reason,
        seq,
    )


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


_SNAPSHOT_HEAD = """
SELECT a.copy, c.seq, c.fold_version, c.halted
FROM projection_active a
LEFT JOIN projection_checkpoint c ON c.name = a.name AND c.copy = a.copy
WHERE a.name = $1"""


def _check_period(period: str) -> None:
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, not {period!r}")


async def _snapshot(
    conn: asyncpg.Connection,
    sums_sql: str,
    *args: Any,
    pause: Pause | None = None,
    by_ward_sql: str | None = None,
) -> StatsSnapshot:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await hold_copies(conn)
        head = await conn.fetchrow(_SNAPSHOT_HEAD, NAME)
        if head is None:
            raise LookupError(f"no active copy for projection {NAME!r}: run the migrations")
        if pause is not None:
            await pause()  # test hook: hold a query between the pointer and the figures
        rows = await conn.fetch(sums_sql, head["copy"], *args)
        ward_rows = await conn.fetch(by_ward_sql, head["copy"], *args) if by_ward_sql is not None else None
    sums = {r["metric"]: int(r["value"]) for r in rows}
    by_ward: dict[str, dict[str, int]] | None = None
    if ward_rows is not None:
        raw: dict[str, dict[str, int]] = {ward: {} for ward in args[-1]}
        for r in ward_rows:
            raw[r["ward"]][r["metric"]] = int(r["value"])
        by_ward = {ward: complete(figures) for ward, figures in raw.items()}
    return StatsSnapshot(
        metrics=complete(sums),
        approximate=approximate(sums),
        as_of_seq=head["seq"] or 0,
        stale=head["halted"] is not None,
        fold_version=head["fold_version"] or FOLD_VERSION,
        by_ward=by_ward,
    )


# Flows count in the years asked for ($3 to $4); a stock is stored as its change in each year, so what stands at
# the end of year $4 is the sum of its changes up to it
_IN_YEARS: Final = """((year BETWEEN $3 AND $4 AND NOT metric = ANY($5::text[]))
                          OR (year <= $4 AND metric = ANY($5::text[])))"""


async def read_stats(
    conn: asyncpg.Connection,
    *,
    wards: Sequence[str],
    year: int,
    period: str,
    from_year: int | None = None,
    pause: Pause | None = None,
    by_ward: bool = False,
) -> StatsSnapshot:
    """The sum of the figures of ``wards`` (2025 codes) for ``year`` of ``period`` ('calendar'|'reporting'),
    or over the years ``from_year`` to ``year``: flows summed over them, stocks as they stand at the end.
    ``by_ward``: each ward's own figures too, read in the same snapshot (one statement for all of them)."""
    _check_period(period)
    return await _snapshot(
        conn,
        f"""SELECT metric, sum(value) AS value FROM stats
           WHERE copy = $1 AND period = $2 AND {_IN_YEARS} AND ward = ANY($6::text[]) GROUP BY metric""",
        period,
        year if from_year is None else from_year,
        year,
        _STOCKS,
        list(wards),
        pause=pause,
        by_ward_sql=f"""SELECT ward, metric, sum(value) AS value FROM stats
           WHERE copy = $1 AND period = $2 AND {_IN_YEARS} AND ward = ANY($6::text[]) GROUP BY ward, metric"""
        if by_ward
        else None,
    )


async def read_province_stats(
    conn: asyncpg.Connection, *, province: str, year: int, period: str, from_year: int | None = None
) -> StatsSnapshot:
    """The province's figures: the sum over its wards (2025 codes)."""
    _check_period(period)
    return await _snapshot(
        conn,
        f"""SELECT metric, sum(value) AS value FROM stats
           WHERE copy = $1 AND period = $2 AND {_IN_YEARS} AND province = $6 GROUP BY metric""",
        period,
        year if from_year is None else from_year,
        year,
        _STOCKS,
        province,
    )


async def all_figures(conn: asyncpg.Connection, copy: int) -> dict[tuple[str, str, int, str], int]:
    """Every non-zero figure of a copy, keyed (period, ward, year, metric): for checks and audits."""
    rows = await conn.fetch(
        "SELECT period, ward, year, metric, value FROM stats WHERE copy = $1 AND value <> 0", copy
    )
    return {(r["period"], r["ward"], r["year"], r["metric"]): int(r["value"]) for r in rows}
