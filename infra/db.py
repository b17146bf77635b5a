"""PostgreSQL: connection pools and the plain-SQL migrations, applied in order and recorded."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from infra.errors import InfraError

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x414E5451  # 'ANTQ'


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(InfraError):
    """An applied migration was changed, or a file name is out of order."""


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("infra.migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations under an advisory lock; return the names applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                 version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT * FROM schema_migrations")}
        for mig in migrations():
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(f"migration {mig.name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    mig.version,
                    mig.name,
                    mig.checksum,
                )
            applied_now.append(mig.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A pool's reset that sends nothing (asyncpg has already rolled back any open transaction)."""


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float | None = None,
    server_settings: dict[str, str] | None = None,
    reset_session: bool = True,
) -> asyncpg.Pool:
    """A pool; with ``command_timeout``, a statement (and a new connection) that takes longer raises
    ``TimeoutError`` instead of waiting for a database that does not answer (a lock held, a stalled disk).
    ``server_settings``: PostgreSQL settings of every connection of the pool (``synchronous_commit``, say).
    ``reset_session=False``: a connection goes back to the pool without asyncpg's reset statement (one round trip
    per use: advisory locks, cursors, LISTEN and settings reset), for a pool whose statements leave none of these;
    an open transaction is still rolled back."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        server_settings=server_settings,
        timeout=60.0 if command_timeout is None else command_timeout,  # 60 s: asyncpg's own default
        reset=None if reset_session else _keep_session,
    )
    assert pool is not None
    return pool
