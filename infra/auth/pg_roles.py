"""PostgreSQL roles: one login role per service, the SQL that creates them, their passwords' files and URLs.

``PG_ROLES``: the gateway writes its index and claims, the projection owns its tables, the query service and
the auditors only read, the sealer appends seals; read-only transactions by default for the readers,
SCRAM-SHA-256 verifiers instead of passwords in clear (each password in ``postgres_<role>.password``, and in a
libpq password file ``postgres_<role>.pgpass`` a database URL names with ``?passfile=``; the server owner's
likewise, ``postgres_owner.password`` / ``.pgpass``, for a server this deployment initialises:
``compose.yaml``). ``infra.auth.credentials`` writes those files.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from infra.auth.errors import AuthError

PG_AUDITOR_ROLE = "antq_auditor"
PG_AUDITOR_TABLES = ("stats", "projection_active", "projection_checkpoint", "projection_partition", "seals")
"""What ``antq audit verify`` and ``antq audit seals`` read: the active copy, its checkpoint, its figures, seals."""


def scram_verifier(password: str, *, iterations: int = 4096, salt: bytes | None = None) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier (RFC 7677), so the SQL file never holds the password itself."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


@dataclass(frozen=True, kw_only=True)
class PgRole:
    """A PostgreSQL login role of one service: what it may read, write and own; nothing else."""

    name: str
    select: tuple[str, ...] = ()
    append: tuple[str, ...] = ()  # SELECT, INSERT
    write: tuple[str, ...] = ()  # SELECT, INSERT, UPDATE, DELETE
    own: tuple[str, ...] = ()  # parents of partitioned tables it creates partitions of and drops (and those)
    create: bool = False  # CREATE on the schema: tables it makes at run time
    read_only: bool = False  # default_transaction_read_only


PG_ROLES = (
    PgRole(
        name="antq_gateway",
        # rejected_usage: the per-office quota of ANTQ_REJECTED (the gateway's migration 013), and the refusals'
        # records waiting for ANTQ_REJECTED (migration 015), once they exist
        write=(
            "event_index",
            "event_index_checkpoint",
            "entity_claims",
            "rejected_usage",
            "gateway_rejected_pending",
            "gateway_rejected_pending_total",
        ),
    ),
    PgRole(
        name="antq_projector",
        write=("projection_active", "projection_checkpoint", "projection_partition"),
        own=("stats", "stats_fold_state", "stats_outbox"),
        create=True,
    ),
    PgRole(
        name="antq_query",
        select=("stats", "projection_active", "projection_checkpoint", "projection_partition"),
        read_only=True,
    ),
    PgRole(name="antq_sealer", append=("seals",)),
    PgRole(name=PG_AUDITOR_ROLE, select=PG_AUDITOR_TABLES, read_only=True),
)
"""The projection owns its tables (attaching and detaching a copy's partitions needs the parent's owner);
the gateway writes its index and claims; the query service only reads; the sealer only appends seals (the
``seals`` table's trigger refuses updates and deletes; its grant is SELECT and INSERT)."""
PG_SERVICE_ROLE = {
    "gateway": "antq_gateway",
    "projector": "antq_projector",
    "query": "antq_query",
    "sealer": "antq_sealer",
    "auditor": PG_AUDITOR_ROLE,
}
PG_ROLES_SQL = "postgres_roles.sql"


def pg_role(name: str) -> PgRole:
    for role in PG_ROLES:
        if role.name == name:
            return role
    raise AuthError(f"unknown PostgreSQL role {name!r}")


def role_sql(role: PgRole, verifier: str | None = None) -> str:
    """Create or reset one role: run it as the owner of the tables (or a superuser) in the ledger's database."""
    name = role.name
    password = f" PASSWORD '{verifier}'" if verifier else ""
    lines = [
        f"-- {name}",
        "DO $$",
        "BEGIN",
        f"    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN",
        f"        CREATE ROLE {name};",
        "    END IF;",
        "END",
        "$$;",
        f"ALTER ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS{password};",
        f"ALTER ROLE {name} SET default_transaction_read_only = {'on' if role.read_only else 'off'};",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {name};",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {name};",
        f"{'GRANT' if role.create else 'REVOKE'} CREATE ON SCHEMA public {'TO' if role.create else 'FROM'} {name};",
        f"GRANT USAGE ON SCHEMA public TO {name};",
    ]
    for tables, rights in (
        (role.select, "SELECT"),
        (role.append, "SELECT, INSERT"),
        (role.write, "SELECT, INSERT, UPDATE, DELETE"),
    ):
        if tables:  # a table a later migration adds is granted once it exists (the SQL is run on every start)
            lines += [
                "DO $$",
                "DECLARE",
                "    t text;",
                "BEGIN",
                f"    FOREACH t IN ARRAY ARRAY[{', '.join(repr(t) for t in tables)}] LOOP",
                "        IF to_regclass(t) IS NOT NULL THEN",
                f"            EXECUTE format('GRANT {rights} ON %I TO {name}', t);",
                "        END IF;",
                "    END LOOP;",
                "END",
                "$$;",
            ]
    if role.own:
        parents = ", ".join(f"'{t}'" for t in role.own)
        lines += [
            "-- the parents and every partition of them (each copy's tables): owned by the projection",
            "DO $$",
            "DECLARE",
            "    t record;",
            "BEGIN",
            "    FOR t IN",
            "        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace",
            f"        WHERE n.nspname = 'public' AND (c.relname IN ({parents}) OR c.oid IN (",
            "            SELECT i.inhrelid FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent",
            f"            WHERE p.relname IN ({parents})))",
            "    LOOP",
            f"        EXECUTE format('ALTER TABLE %I OWNER TO {name}', t.relname);",
            # the REVOKE above took the owner's own rights away when it owned them already: back again
            f"        EXECUTE format('GRANT ALL ON %I TO {name}', t.relname);",
            "    END LOOP;",
            "END",
            "$$;",
        ]
    return "\n".join(lines) + "\n"


def roles_sql(verifiers: dict[str, str] | None = None) -> str:
    """Every service role, then what the tables the projection creates later grant to the readers."""
    verifiers = verifiers or {}
    head = (
        "-- Generated by `antq auth generate`: one PostgreSQL role per service (run as the tables' owner).\n"
    )
    body = "".join(role_sql(role, verifiers.get(role.name)) for role in PG_ROLES)
    readers = ", ".join(r.name for r in PG_ROLES if r.read_only)
    # a copy's tables are created by the projection at run time; reads go through the parents, and these
    # grants keep a direct read of a partition possible for the read-only roles as well
    tail = f"ALTER DEFAULT PRIVILEGES FOR ROLE antq_projector IN SCHEMA public GRANT SELECT ON TABLES TO {readers};\n"
    return head + body + tail


def auditor_sql(verifier: str | None = None, tables: Sequence[str] = PG_AUDITOR_TABLES) -> str:
    """Create or reset the auditors' read-only role: run it as the owner of the tables, in the ledger's
    database."""
    header = "-- Generated by `antq auth generate`: the auditors' read-only PostgreSQL role.\n"
    return header + role_sql(PgRole(name=PG_AUDITOR_ROLE, select=tuple(tables), read_only=True), verifier)


def pg_password(out: Path, role: str) -> str:
    """The password of a service's PostgreSQL role, kept in ``<out>/postgres_<role minus antq_>.password``."""
    return (out / pg_password_file(role)).read_text().strip()


def pg_password_file(role: str) -> str:
    """``postgres_<role minus antq_>.password``."""
    return f"postgres_{role.removeprefix('antq_')}.password"


def role_database_url(owner_url: str, role: str, password: str) -> str:
    """The owner's URL with a service role's name and password instead (same host, port and database)."""
    scheme, sep, rest = owner_url.partition("://")
    if not sep:
        raise AuthError("the database URL has no scheme (postgresql://…)")
    _, at, hostpart = rest.rpartition("@")
    return f"{scheme}://{role}:{quote(password, safe='')}@{hostpart if at else rest}"


PG_OWNER = "postgres"
"""The superuser the PostgreSQL server is initialised with (the compose stack's ``POSTGRES_USER``): it runs
the migrations and ``postgres_roles.sql``; its password is ``postgres_owner.password``."""


def pgpass_file(role: str) -> str:
    """The libpq password file of a role (``postgres_<role minus antq_>.pgpass``; ``postgres_owner.pgpass`` for
    the owner): name it in the database URL, ``postgresql://<role>@host/db?passfile=<it>``, and the password
    never enters an environment variable."""
    return "postgres_owner.pgpass" if role == PG_OWNER else f"postgres_{role.removeprefix('antq_')}.pgpass"
