"""The SQL migrations: plain files applied in order, recorded in ``schema_migrations``, run by ``antq db migrate``.

Every test works on a database of its own created empty (from ``template0``, not the migrated test template).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

import infra.db
import infra.migrations
from infra.db import Migration, MigrationError, migrate, migrations
from projections import copies
from tests.servers import Servers, fresh_database

pytestmark = pytest.mark.servers

MIGRATIONS_DIR = Path(infra.migrations.__file__).parent
EmptyDatabase = Callable[[], AbstractAsyncContextManager[str]]


def files_on_disk() -> list[str]:
    """The migration files as they lie in infra/migrations/, in the order of their number."""
    return sorted(p.name for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))


async def recorded(url: str) -> list[tuple[int, str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    return [(r["version"], r["name"], r["checksum"]) for r in rows]


@pytest.fixture
def empty_database(servers: Servers) -> EmptyDatabase:
    """Creates an empty database on the session's PostgreSQL for the duration of a ``with`` block."""

    @asynccontextmanager
    async def create() -> AsyncIterator[str]:
        url = await fresh_database(servers, "template0")
        name = url.rpartition("/")[2]
        try:
            yield url
        finally:
            admin = await asyncpg.connect(servers.database_url)
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            finally:
                await admin.close()

    return create


def test_the_migrations_are_the_files_in_order() -> None:
    found = migrations()
    assert [m.name for m in found] == files_on_disk() != []
    assert [m.version for m in found] == sorted({m.version for m in found})  # strictly increasing
    for m in found:
        assert m.checksum == hashlib.sha256((MIGRATIONS_DIR / m.name).read_bytes()).hexdigest()


@pytest.mark.timeout(90)
async def test_first_migrate_applies_every_file_in_order_and_a_second_applies_nothing(
    empty_database: EmptyDatabase,
) -> None:
    async with empty_database() as url:
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None  # really empty
            applied = await migrate(conn)
            assert applied == files_on_disk()
            # the order they were applied in: one transaction each, so applied_at does not go back
            by_time = await conn.fetch("SELECT name FROM schema_migrations ORDER BY applied_at, version")
            assert [r["name"] for r in by_time] == applied
            for table in ("event_index", "stats", "seals"):  # made by the first, a middle and the last file
                assert await conn.fetchval("SELECT to_regclass($1)::text", table) == table
            assert await migrate(conn) == []
        finally:
            await conn.close()
        rows = await recorded(url)
        assert [(v, n) for v, n, _ in rows] == [(m.version, m.name) for m in migrations()]
        assert [c for _, _, c in rows] == [m.checksum for m in migrations()]


@pytest.mark.timeout(90)
async def test_a_migration_changed_after_it_was_applied_is_refused(
    empty_database: EmptyDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with empty_database() as url:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            before = await recorded(url)
            original = migrations()
            changed = [
                dataclasses.replace(m, sql=m.sql + "\n-- edited\n") if m.version == original[1].version else m
                for m in original
            ]
            later = Migration(999, "999_later.sql", "CREATE TABLE never_created (x int);")
            monkeypatch.setattr(infra.db, "migrations", lambda: [*changed, later])
            with pytest.raises(MigrationError, match=original[1].name):
                await migrate(conn)
            # nothing after the refusal was applied, nothing recorded
            assert await conn.fetchval("SELECT to_regclass('never_created')") is None
            assert await recorded(url) == before
            monkeypatch.undo()
            assert await migrate(conn) == []  # the files as they are still match the records
        finally:
            await conn.close()
        # the advisory lock was released on the error: another session can take it
        other = await asyncpg.connect(url)
        try:
            assert await other.fetchval("SELECT pg_try_advisory_lock($1)", infra.db._LOCK_KEY) is True
        finally:
            await other.close()


@pytest.mark.timeout(90)
async def test_a_tampered_checksum_record_is_refused(empty_database: EmptyDatabase) -> None:
    async with empty_database() as url:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
            first = migrations()[0]
            await conn.execute(
                "UPDATE schema_migrations SET checksum = 'x' WHERE version = $1", first.version
            )
            with pytest.raises(MigrationError, match=first.name):
                await migrate(conn)
        finally:
            await conn.close()


@pytest.mark.timeout(120)
async def test_antq_db_migrate_on_a_fresh_database(empty_database: EmptyDatabase) -> None:
    async def antq_db_migrate(url: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "db",
            "migrate",
            env={**os.environ, "ANTQ_DATABASE_URL": url, "COLUMNS": "1000"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=90)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    async with empty_database() as url:
        code, out = await antq_db_migrate(url)
        assert code == 0, out
        assert all(name in out for name in files_on_disk()), out
        assert [(v, n) for v, n, _ in await recorded(url)] == [(m.version, m.name) for m in migrations()]
        code, out = await antq_db_migrate(url)
        assert code == 0, out
        assert "nothing (up to date)" in out, out


@pytest.mark.timeout(90)
async def test_versioned_tables_keep_every_copy_s_rows_and_drop_a_copy_whole(
    empty_database: EmptyDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """011 moves a deployment's read model, every copy of it, into tables per copy; a copy is dropped whole."""
    before_011 = [m for m in migrations() if m.version < 11]
    async with empty_database() as url:
        conn = await asyncpg.connect(url)
        try:
            monkeypatch.setattr(infra.db, "migrations", lambda: before_011)
            await migrate(conn)
            monkeypatch.undo()
            await conn.execute(
                """INSERT INTO projection_checkpoint (name, copy, seq, fold_version) VALUES ('stats', 3, 7, 1);
                   INSERT INTO stats VALUES (1, 'calendar', '04', '01447', 2018, 'sessions_held', 2),
                                            (3, 'calendar', '04', '01447', 2018, 'sessions_held', 5);
                   INSERT INTO stats_fold_state VALUES (1, '\\x01', '\\x02'), (3, '\\x03', '\\x04');
                   INSERT INTO stats_outbox VALUES (3, '04', '01447', 2018, 7, '\\x05');"""
            )
            reader = f"antq_test_reader_{uuid.uuid4().hex[:8]}"  # roles are cluster-wide: a name of its own
            await conn.execute(f"CREATE ROLE {reader}; GRANT SELECT ON stats, stats_outbox TO {reader}")
            assert [m.version for m in migrations() if m.version >= 11] and await migrate(conn)
            # what was granted on the old tables holds on the new ones (the auditor's SELECT)
            granted = "SELECT has_table_privilege($1, $2, 'SELECT')"
            assert await conn.fetchval(granted, reader, "stats") is True
            assert await conn.fetchval(granted, reader, "stats_outbox") is True
            assert await conn.fetchval(granted, reader, "stats_fold_state") is False
            await conn.execute(f"DROP OWNED BY {reader}; DROP ROLE {reader}")
            for copy in (1, 3):
                for table in ("stats", "stats_fold_state", "stats_outbox"):
                    name = f"{table}_c{copy}"
                    assert await conn.fetchval("SELECT to_regclass($1)::text", name) == name
            rows = await conn.fetch("SELECT copy, value FROM stats ORDER BY copy")
            assert [(r["copy"], r["value"]) for r in rows] == [(1, 2), (3, 5)]
            assert await conn.fetchval("SELECT count(*) FROM stats_c3") == 1  # in the copy's own table
            assert await conn.fetchval("SELECT count(*) FROM stats_fold_state") == 2
            assert await conn.fetchval("SELECT count(*) FROM stats_outbox WHERE copy = 3") == 1

            await copies.drop_copy(conn, 3)
            assert await conn.fetchval("SELECT to_regclass('stats_c3')") is None
            assert await conn.fetchval("SELECT count(*) FROM stats") == 1  # copy 1 untouched
            with pytest.raises(asyncpg.PostgresError, match="no partition"):
                await conn.execute("INSERT INTO stats VALUES (3, 'calendar', '04', '01447', 2018, 'x', 1)")
            await conn.execute("SELECT antq_create_copy(3)")  # a copy's tables come back on demand, empty
            assert await conn.fetchval("SELECT count(*) FROM stats_c3") == 0
        finally:
            await conn.close()
