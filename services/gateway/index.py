"""The gateway's own index of the log in PostgreSQL: event_id -> seq and body hash, and entity claims.

It answers duplicates after JetStream's dedup window has passed, and lets the gateway check targets and
entities before publishing. Rows are written after the stream acknowledged an event; on start the index is
caught up by reading the stream in order from its checkpoint, so a crash between publish and insert loses
nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
import msgspec


class IndexRow(msgspec.Struct, frozen=True):
    """One event's row (a Struct: built in C, 10 times faster than a frozen dataclass, once per event)."""

    event_id: uuid.UUID
    seq: int
    body_hash: bytes
    type: str
    ward: str
    subject: str


class Claim(msgspec.Struct, frozen=True):
    entity: str
    event_id: uuid.UUID
    ward: str
    subject: str


_INSERT_ROWS = """
    INSERT INTO event_index (event_id, seq, body_hash, type, ward, subject)
    SELECT r.event_id, r.seq, decode(r.body_hash, 'base64'), r.type, r.ward, r.subject
    FROM json_to_recordset($1::text::json)
         AS r(event_id uuid, seq bigint, body_hash text, type text, ward text, subject text)
    ON CONFLICT DO NOTHING"""

_json = msgspec.json.Encoder()


def _as_json(items: Iterable[Any]) -> str:
    """Rows (Structs: an object each, a UUID as text, bytes as base64) or values as one JSON text.

    A batch's hundreds of rows travel as one text PostgreSQL parses (``json_to_recordset``,
    ``json_array_elements_text``) instead of six arrays asyncpg would encode item by item in Python."""
    return _json.encode(list(items)).decode()


_IN_IDS = "ANY(ARRAY(SELECT json_array_elements_text($1::text::json))::uuid[])"
_IN_KEYS = "ANY(ARRAY(SELECT json_array_elements_text($1::text::json)))"


class EventIndex:
    def __init__(self, pool: asyncpg.Pool, *, claims_pool: asyncpg.Pool | None = None) -> None:
        """``claims_pool``: where the claims are made and taken over (``claim``, ``claims``, ``take_over``),
        when it is not ``pool``. The gateway gives it a pool that commits to disk: a claim is the only thing that
        keeps an entity's id from being created twice (in two wards), while the rows and the checkpoint (on a
        pool that need not wait for the disk) are read again from the stream by the catch-up."""
        self._pool = pool
        self._claims_pool = claims_pool if claims_pool is not None else pool

    async def lookup(self, event_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, IndexRow]:
        ids = list(set(event_ids))
        if not ids:
            return {}
        rows = await self._pool.fetch(
            f"SELECT event_id, seq, body_hash, type, ward, subject FROM event_index WHERE event_id = {_IN_IDS}",
            _as_json(ids),
        )
        return {r["event_id"]: IndexRow(**dict(r)) for r in rows}

    async def find(self, event_id: uuid.UUID) -> tuple[IndexRow | None, int]:
        """One event's row (or None) and the catch-up checkpoint, read in one statement (one snapshot): every
        event stored at or below that checkpoint has its row, written in the same transaction."""
        found = await self._pool.fetchrow(
            """SELECT c.seq AS checkpoint, i.event_id, i.seq, i.body_hash, i.type, i.ward, i.subject
               FROM event_index_checkpoint c LEFT JOIN event_index i ON i.event_id = $1""",
            event_id,
        )
        assert found is not None  # migration 001 inserts the checkpoint's one row
        row = None
        if found["event_id"] is not None:
            row = IndexRow(
                found["event_id"],
                found["seq"],
                found["body_hash"],
                found["type"],
                found["ward"],
                found["subject"],
            )
        return row, int(found["checkpoint"])

    async def count_rejected_bytes(self, office: str, day: dt.date, raw_bytes: int) -> int:
        """Add raw bytes an office asked ``ANTQ_REJECTED`` to keep on ``day``; return its count before them."""
        total = await self._pool.fetchval(
            """INSERT INTO rejected_usage (office, day, raw_bytes) VALUES ($1, $2, $3)
               ON CONFLICT (office, day) DO UPDATE SET raw_bytes = rejected_usage.raw_bytes + EXCLUDED.raw_bytes
               RETURNING raw_bytes""",
            office,
            day,
            raw_bytes,
        )
        return int(total) - raw_bytes

    async def record(self, rows: Sequence[IndexRow], released: Sequence[uuid.UUID] = ()) -> None:
        """Store the rows of events just stored and, in the same transaction, free the entities of the
        creating events they retract (``release``): a row in the index then always has its release done, so
        the catch-up may pass over a range where every sequence has its row (``covered_until``)."""
        if not rows and not released:
            return
        if not released:  # one statement: atomic without a transaction of its own
            await self._pool.execute(_INSERT_ROWS, _as_json(rows))
            return
        async with self._pool.acquire() as conn, conn.transaction():
            if rows:
                await conn.execute(_INSERT_ROWS, _as_json(rows))
            if released:
                await conn.execute("DELETE FROM entity_claims WHERE event_id = ANY($1)", list(released))

    async def covered_until(self, start: int, stop: int) -> int:
        """The last sequence L (start - 1 <= L <= stop) such that every sequence from ``start`` to L has its
        row: what the request path already indexed, rows and releases (``record``), which the catch-up need
        not read again. One statement; PostgreSQL walks the unique index on seq up to the first hole."""
        if stop < start:
            return start - 1
        hole = await self._pool.fetchval(
            """SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM event_index WHERE seq = $1) THEN $1 ELSE (
                   SELECT i.seq + 1 FROM event_index i
                   WHERE i.seq >= $1 AND i.seq <= $2
                     AND NOT EXISTS (SELECT 1 FROM event_index n WHERE n.seq = i.seq + 1)
                   ORDER BY i.seq LIMIT 1) END""",
            start,
            stop,
        )
        return min(stop, int(hole) - 1) if hole is not None else stop

    async def advance(self, seq: int) -> None:
        """Move the checkpoint to ``seq`` (never back)."""
        await self._pool.execute("UPDATE event_index_checkpoint SET seq = greatest(seq, $1)", seq)

    async def claim(self, claims: Sequence[Claim]) -> dict[str, Claim]:
        """Claim entities for their creating events; return every entity's owner (first claim wins).

        The claims inserted come back from the insert itself; only the entities already claimed (a retry, a
        create racing another) are read in a second statement, which sees the claims committed meanwhile."""
        if not claims:
            return {}
        async with self._claims_pool.acquire() as conn:
            rows = await conn.fetch(
                """INSERT INTO entity_claims (entity, event_id, ward, subject)
                   SELECT r.entity, r.event_id, r.ward, r.subject
                   FROM json_to_recordset($1::text::json) AS r(entity text, event_id uuid, ward text, subject text)
                   ON CONFLICT DO NOTHING
                   RETURNING entity, event_id, ward, subject""",
                _as_json(claims),
            )
            owners = {r["entity"]: Claim(**dict(r)) for r in rows}
            taken = {c.entity for c in claims} - owners.keys()
            if taken:
                rows = await conn.fetch(
                    f"SELECT entity, event_id, ward, subject FROM entity_claims WHERE entity = {_IN_KEYS}",
                    _as_json(taken),
                )
                owners.update((r["entity"], Claim(**dict(r))) for r in rows)
        return owners

    async def claims(self, entities: Iterable[str]) -> dict[str, Claim]:
        keys = list(set(entities))
        if not keys:
            return {}
        rows = await self._claims_pool.fetch(
            f"SELECT entity, event_id, ward, subject FROM entity_claims WHERE entity = {_IN_KEYS}",
            _as_json(keys),
        )
        return {r["entity"]: Claim(**dict(r)) for r in rows}

    async def take_over(self, orphan: Claim, claim: Claim, older_than_s: float) -> bool:
        """Give an entity to ``claim`` if ``orphan`` still holds it and has held it for long enough."""
        done = await self._claims_pool.execute(
            """UPDATE entity_claims SET event_id = $3, ward = $4, subject = $5, claimed_at = now()
               WHERE entity = $1 AND event_id = $2 AND claimed_at < now() - make_interval(secs => $6)""",
            claim.entity,
            orphan.event_id,
            claim.event_id,
            claim.ward,
            claim.subject,
            older_than_s,
        )
        return bool(done == "UPDATE 1")

    async def checkpoint(self) -> int:
        return int(await self._pool.fetchval("SELECT seq FROM event_index_checkpoint"))

    async def record_caught_up(
        self, rows: Sequence[IndexRow], claims: Sequence[Claim | uuid.UUID], seq: int
    ) -> None:
        """Store rows read from the stream in order, with the sequence read up to, in one transaction.

        ``claims``, in stream order: a ``Claim`` of a creating event, or the id of a retracted event (its
        claim, if it holds one, is released: ``release``)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if rows:
                await conn.execute(_INSERT_ROWS, _as_json(rows))
            run: list[Claim] = []
            for change in [*claims, None]:
                if isinstance(change, Claim):
                    run.append(change)
                    continue
                if run:
                    await conn.executemany(
                        """INSERT INTO entity_claims (entity, event_id, ward, subject)
                           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
                        [(c.entity, c.event_id, c.ward, c.subject) for c in run],
                    )
                    run = []
                if change is not None:
                    await conn.execute("DELETE FROM entity_claims WHERE event_id = $1", change)
            await conn.execute("UPDATE event_index_checkpoint SET seq = greatest(seq, $1)", seq)
