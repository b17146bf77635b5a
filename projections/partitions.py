"""The statistics projection split across worker processes by province (migration 014).

Assignment: the 34 province codes (2025) sorted, code number i (0-based) goes to partition ``i % parts``:
deterministic, the same in every process, documented; worker k of n folds the events of its provinces only,
with a durable consumer of its own (``stats-<copy>-p<k>of<n>``).

Its consumer delivers every message and the worker passes over the other provinces' by their subject, without
decoding them (``RunnerConfig.server_filter`` makes it a filtered consumer, ``filter_subjects`` one per
province, instead). Measured on nats-server 2.15.1 with 40,000 events on ~40,000 subjects: an unfiltered
consumer delivered 24,600 messages/s, one filter ``antq.events.01.>`` 12,600/s, and two filters did not answer a
2,000-message pull within 5.5 s (a partition of 2 has 17 filters); reading every message twice is the cheaper
way here. Either way every event is folded once, by the worker of its province.

Why a partition is enough: every key of the fold's state (a tip, a lifecycle entity, a retracted or corrected
entry, the tips a case names) belongs to one ward, and a ward to one province. The gateway refuses an
assessment, a retraction, a correction, an update of an entity, or a case naming a tip, filed in another ward
than the entry it is about (``services/gateway/checks.py``: ``_check_links``, the entity and retraction
subjects share the ward's head), and the fold itself checks it (``WardMismatch``). So the fold, a pure function
of a ward's events in stream order, gives the same figures whether the other provinces' events are interleaved
or not. The runner's calendar cache and the outbox rows are per ward-year: partition-local too.

Checkpoints: each partition has its own (``projection_partition.seq``), advanced in the same transaction as its
figures (``advance``); every event of the partition's provinces at or below it is folded. An unfiltered
partition's checkpoint is the last stream sequence it saw (a batch of other provinces' events only still moves
it); a filtered one with nothing pending is moved up to the stream's last sequence (``cover``). The copy's checkpoint
(``projection_checkpoint.seq``) is the lowest of them (``raise_copy_checkpoint``): every event at or below it
is in the figures, which is what ``as_of_seq`` means and what ``min_seq`` waits for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import asyncpg
import msgspec

from events.localities import Localities
from events.subjects import EVENTS_PREFIX
from projections.errors import ProjectionError
from projections.store import NAME, CheckpointMoved

MAX_PARTS: Final = 34
COPY_LOCK_CLASS: Final = 0x414E5453  # the class of ``store.try_lock``: partition runners hold it SHARED
_PART_LOCK_CLASS: Final = 0x414E5450  # 'ANTP': one runner per (copy, parts, part)
CREATE_LOCK_CLASS: Final = (
    0x414E5443  # 'ANTC': runners creating a copy's tables and checkpoint, one at a time
)


class PartitionMismatch(ProjectionError):
    """The copy is split in another number of partitions, at different sequences: it cannot be re-split."""


class Part(msgspec.Struct, frozen=True, kw_only=True):
    """Worker ``part`` of ``parts`` (0-based)."""

    parts: int
    part: int

    def __post_init__(self) -> None:
        if not 1 <= self.parts <= MAX_PARTS or not 0 <= self.part < self.parts:
            raise ValueError(
                f"a partition is k of n with 0 <= k < n <= {MAX_PARTS}, not {self.part} of {self.parts}"
            )

    @property
    def label(self) -> str:
        return f"p{self.part}of{self.parts}"


class PartCheckpoint(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    halted: str | None


def province_codes(localities: Localities | None = None) -> list[str]:
    """The 2025 province codes, sorted."""
    return sorted(p.code for p in (localities or Localities.load()).provinces())


def assignment(parts: int, codes: Sequence[str]) -> list[list[str]]:
    """Partition k's provinces, for each k: code number i of the sorted codes goes to ``i % parts``."""
    ordered = sorted(codes)
    return [ordered[k::parts] for k in range(parts)]


def provinces_of(part: Part, localities: Localities | None = None) -> list[str]:
    return assignment(part.parts, province_codes(localities))[part.part]


def province_of_subject(subject: str) -> str:
    """The province token of ``antq.events.<province>.<ward>.…`` (empty for another subject)."""
    parts = subject.split(".", 3)
    return parts[2] if len(parts) > 3 else ""


def filter_subjects(provinces: Sequence[str]) -> list[str]:
    return [f"{EVENTS_PREFIX}.{p}.>" for p in provinces]


async def try_lock(conn: asyncpg.Connection, copy: int, part: Part, name: str = NAME) -> bool:
    """Hold the copy SHARED (no single runner and no drop while any partition runs; ``store.try_lock`` is the
    exclusive form) and the partition EXCLUSIVE, for as long as ``conn`` lives."""
    if not await conn.fetchval(
        "SELECT pg_try_advisory_lock_shared($1, hashtext($2) # $3)", COPY_LOCK_CLASS, name, copy
    ):
        return False
    if await conn.fetchval(
        "SELECT pg_try_advisory_lock($1, hashtext($2))",
        _PART_LOCK_CLASS,
        f"{name}:{copy}:{part.parts}:{part.part}",
    ):
        return True
    await conn.fetchval(
        "SELECT pg_advisory_unlock_shared($1, hashtext($2) # $3)", COPY_LOCK_CLASS, name, copy
    )
    return False


async def open_partition(conn: asyncpg.Connection, copy: int, part: Part, name: str = NAME) -> PartCheckpoint:
    """The partition's checkpoint, after splitting the copy in ``part.parts`` if it was split otherwise.

    A copy folded by one runner up to S is split at S (every partition at S). A copy split in m partitions can
    be split again only when they all stand at the same sequence (an idle projection); otherwise
    ``PartitionMismatch``: run m workers, or rebuild. Call after ``store.open_checkpoint``.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT seq, parts, halted FROM projection_checkpoint WHERE name = $1 AND copy = $2 FOR UPDATE",
            name,
            copy,
        )
        if row is None:
            raise LookupError(f"no checkpoint for projection {name!r} copy {copy}")
        if row["parts"] != part.parts:
            base = int(row["seq"])
            if row["parts"] > 1:
                rows = await conn.fetch(
                    "SELECT seq, halted FROM projection_partition WHERE name = $1 AND copy = $2 AND parts = $3",
                    name,
                    copy,
                    row["parts"],
                )
                seqs = {int(r["seq"]) for r in rows}
                if len(seqs) > 1 or any(r["halted"] is not None for r in rows):
                    raise PartitionMismatch(
                        f"copy {copy} is split in {row['parts']} partitions at sequences {sorted(seqs)}: run "
                        f"{row['parts']} workers until they are idle (all at one sequence), or rebuild with "
                        f"{part.parts}"
                    )
                base = seqs.pop() if seqs else base
            await conn.execute("DELETE FROM projection_partition WHERE name = $1 AND copy = $2", name, copy)
            await conn.execute(
                "UPDATE projection_checkpoint SET parts = $3, seq = $4 WHERE name = $1 AND copy = $2",
                name,
                copy,
                part.parts,
                base,
            )
            if part.parts > 1:
                await conn.execute(
                    """INSERT INTO projection_partition (name, copy, parts, part, seq)
                       SELECT $1, $2, $3, k, $4 FROM generate_series(0, $3 - 1) AS k""",
                    name,
                    copy,
                    part.parts,
                    base,
                )
        if part.parts == 1:
            seq = await conn.fetchval(
                "SELECT seq FROM projection_checkpoint WHERE name = $1 AND copy = $2", name, copy
            )
            return PartCheckpoint(seq=int(seq), halted=row["halted"])
        found = await conn.fetchrow(
            """SELECT seq, halted FROM projection_partition
               WHERE name = $1 AND copy = $2 AND parts = $3 AND part = $4""",
            name,
            copy,
            part.parts,
            part.part,
        )
        assert found is not None  # inserted with the split, all at once
        return PartCheckpoint(seq=int(found["seq"]), halted=found["halted"])


async def advance(
    conn: asyncpg.Connection, copy: int, part: Part, from_seq: int, to_seq: int, name: str = NAME
) -> None:
    """Inside the batch's transaction: move the partition's checkpoint from ``from_seq`` to ``to_seq``.

    Holds the copy's checkpoint row FOR KEY SHARE (partitions do not wait on each other; a rebuild's switch,
    which holds it FOR UPDATE, makes them wait). ``CheckpointMoved`` if the copy was retired or re-split, or the
    partition is not at ``from_seq`` (another runner writes it)."""
    live = await conn.fetchrow(
        """SELECT retired_at_seq FROM projection_checkpoint
           WHERE name = $1 AND copy = $2 AND parts = $3 FOR KEY SHARE""",
        name,
        copy,
        part.parts,
    )
    if live is None or live["retired_at_seq"] is not None:
        raise CheckpointMoved(f"copy {copy} of {name} was retired or split otherwise")
    moved = await conn.execute(
        """UPDATE projection_partition SET seq = $6, halted = NULL, halted_seq = NULL, updated_at = now()
           WHERE name = $1 AND copy = $2 AND parts = $3 AND part = $4 AND seq = $5""",
        name,
        copy,
        part.parts,
        part.part,
        from_seq,
        to_seq,
    )
    if moved != "UPDATE 1":
        raise CheckpointMoved(f"partition {part.label} of {name} copy {copy} is no longer at {from_seq}")


async def cover(
    conn: asyncpg.Connection, copy: int, part: Part, from_seq: int, to_seq: int, name: str = NAME
) -> None:
    """A partition with nothing pending up to ``to_seq`` (a stream sequence read BEFORE its consumer said so):
    its checkpoint moves there, and the copy's with it."""
    async with conn.transaction():
        await advance(conn, copy, part, from_seq, to_seq, name)
    await raise_copy_checkpoint(conn, copy, part.parts, name)


async def raise_copy_checkpoint(conn: asyncpg.Connection, copy: int, parts: int, name: str = NAME) -> None:
    """Set the copy's checkpoint to the lowest of its partitions' if that is higher (never lower it).

    Run by each worker after its commit, in a statement of its own: of two workers committing at once, the one
    that commits last reads both commits (READ COMMITTED takes the statement's snapshot after its own commit),
    and the guard ``> seq`` keeps the highest value written; a crash before it leaves the copy's checkpoint
    behind (never ahead) until the next commit of any partition."""
    await conn.execute(
        """UPDATE projection_checkpoint c SET seq = m.s, updated_at = now()
           FROM (SELECT min(seq) AS s, count(*) AS n FROM projection_partition
                 WHERE name = $1 AND copy = $2 AND parts = $3) m
           WHERE c.name = $1 AND c.copy = $2 AND c.parts = $3 AND m.n = $3 AND c.retired_at_seq IS NULL
             AND m.s > c.seq""",
        name,
        copy,
        parts,
    )


async def mark_halted(
    conn: asyncpg.Connection, copy: int, part: Part, seq: int, reason: str, name: str = NAME
) -> None:
    """The partition halted: recorded on it, and on the copy (queries answer ``stale``)."""
    await conn.execute(
        """UPDATE projection_partition SET halted = $5, halted_seq = $6, updated_at = now()
           WHERE name = $1 AND copy = $2 AND parts = $3 AND part = $4""",
        name,
        copy,
        part.parts,
        part.part,
        f"{part.label}: {reason}",
        seq,
    )
    await conn.execute(
        """UPDATE projection_checkpoint SET halted = $3, halted_seq = $4, updated_at = now()
           WHERE name = $1 AND copy = $2""",
        name,
        copy,
        f"{part.label}: {reason}",
        seq,
    )


async def partition_seqs(conn: asyncpg.Connection, copy: int, name: str = NAME) -> dict[int, int]:
    """Each partition's checkpoint of a split copy (empty for a copy folded by one runner)."""
    rows = await conn.fetch(
        """SELECT p.part, p.seq FROM projection_partition p
           JOIN projection_checkpoint c ON c.name = p.name AND c.copy = p.copy AND c.parts = p.parts
           WHERE p.name = $1 AND p.copy = $2 ORDER BY p.part""",
        name,
        copy,
    )
    return {int(r["part"]): int(r["seq"]) for r in rows}
