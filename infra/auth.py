"""Auth generation: one NATS nkey identity per role, each with explicit publish/subscribe allow lists.

nats-server runs in its plain configuration mode (no operator, no JWTs): ``authorization { users = [...] }``
lists each user by its public nkey (``U…``) with its permissions, and a client proves it holds the seed by
signing the server's nonce (nats-py: ``nkeys_seed=<file>``). Those users live in the server's global account,
so the streams a server without auth created are the very same streams once auth is switched on.

Every identity also has a private inbox, ``_INBOX.<its public key>``: replies, JetStream answers and pulled
messages arrive there, and no other identity may subscribe to it (``_INBOX.>`` would let any office read what
is delivered to an auditor). Clients get the seed file and the inbox prefix from ``nats_connect_options``.

The auditor reads ANTQ_EVENTS and ANTQ_SEALS only, without any consumer: stream info, stored-message gets and
direct gets (single and batched, the reads of ``infra/direct_reader.py``; the audit commands use them with
``ANTQ_READ_MODE=direct``). It has no ``CONSUMER.*`` right at all, so it can neither create a consumer (unnamed,
named, filtered, durable, or a push consumer delivering stored events onto another subject: the risk of
nats-server issue 8274, where a push consumer's ``deliver_subject`` is not checked against its creator's
permissions, is gone with the right to create one), nor pull from, delete or replace a service's consumer
(``tests/test_auth.py`` checks every create form is refused). It may not publish to any stream subject or
intake, nor manage streams. Direct gets hold no state at the server, so reads under one auditor identity may
run in parallel. The sealer reads both streams the same way (its default ``SealerConfig.reader``), so no
service that only reads holds a consumer right either; it may also append to ``antq.seals``.

Roles for the consumers of the update feed and of rejections: ``web`` (queries, ordered consumers of
ANTQ_UPDATES), ``subscriber-<name>`` (one pull consumer per province of its own, created only with that
province's filter) and every ``office-<id>`` (its own rejections only); see ``role_permissions``. Nobody but
the gateway publishes on ``antq.events.>``, nobody but the projector on ``antq.updates.>``, nobody but the sealer
on ``antq.seals`` (``tests/test_secure_stack.py`` tries every role on every stream subject). ``revoke`` and
``rotate`` take an office's key out or replace it; the server applies it on a reload, without a restart.

The generator also writes the SQL of one PostgreSQL role per service (``PG_ROLES``: the gateway writes its
index and claims, the projection owns its tables, the query service and the auditors only read, the sealer
appends seals), read-only transactions by default for the readers, SCRAM-SHA-256 verifiers instead of
passwords in clear (each password in ``postgres_<role>.password``, and in a libpq password file
``postgres_<role>.pgpass`` a database URL names with ``?passfile=``; the server owner's likewise,
``postgres_owner.password`` / ``.pgpass``, for a server this deployment initialises: ``compose.yaml``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nkeys

from events.subjects import (
    EVENTS_PREFIX,
    INTAKE_PREFIX,
    QUERY_SUBJECT,
    REJECTED_PREFIX,
    SEALS_SUBJECT,
    UPDATES_PREFIX,
    query_subject,
)
from infra.errors import InfraError
from infra.settings import Settings
from infra.streams import EVENTS, REJECTED, SEALS, UPDATES
from infra.tls import TlsError, client_context, write_private

SECRET_MODE = 0o600
SERVER_CONF = "auth.conf"
PG_AUDITOR_SQL = "postgres_auditor.sql"
PG_AUDITOR_PASSWORD = "postgres_auditor.password"  # as every role's: postgres_<role minus antq_>.password
PG_AUDITOR_ROLE = "antq_auditor"
PG_AUDITOR_TABLES = ("stats", "projection_active", "projection_checkpoint", "projection_partition", "seals")
"""What ``antq audit verify`` and ``antq audit seals`` read: the active copy, its checkpoint, its figures, seals."""

READ_CONSUMER_PREFIX = "audit_"
SERVICE_ROLES = ("admin", "gateway", "projector", "query", "sealer", "auditor", "reader", "web")
_OFFICE_ID = re.compile(r"\A[A-Za-z0-9_-]+\Z")  # one subject token: no dots, no wildcards, no spaces
_PROVINCE = re.compile(r"\A[0-9]{2}\Z")
ANY_INBOX = "_INBOX.>"
_CONSUMER_NAME = _OFFICE_ID
JS = "$JS.API"
ALL_STREAMS = (EVENTS, REJECTED, UPDATES, SEALS)


class AuthError(InfraError):
    """A role, an office id or a seed file that cannot be used."""


@dataclass(frozen=True, kw_only=True)
class Permissions:
    """Explicit allow lists; anything not listed is denied. ``allow_responses``: may answer requests it got."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...] = ()
    allow_responses: bool = False


def _direct_read_streams(*streams: str) -> list[str]:
    """Read a stream without any consumer: info, stored-message gets, direct gets (single and batched)."""
    out: list[str] = []
    for s in streams:
        out += [
            f"{JS}.STREAM.INFO.{s}",
            f"{JS}.STREAM.MSG.GET.{s}",
            f"{JS}.DIRECT.GET.{s}",
            f"{JS}.DIRECT.GET.{s}.>",
        ]
    return out


def read_consumer_name(public_key: str) -> str:
    """The consumer name a consumer-mode audit read takes under an identity (``ANTQ_READ_MODE=consumer``: an
    identity with consumer rights, as admin; the generated auditor reads with direct gets and has none)."""
    return f"{READ_CONSUMER_PREFIX}{public_key[:10]}"


def role_permissions(role: str, public_key: str) -> Permissions:
    """The allow lists of a service role, for the identity whose public key is ``public_key``.

    Only the gateway may publish on ``antq.events.>`` (and ``antq.rejected.>``), only the projector on
    ``antq.updates.>``, only the sealer on ``antq.seals``. The responders (gateway, query service) answer on
    ``_INBOX.>`` only, not with ``allow_responses``: that right lets a responder publish once on whatever reply
    subject a request names (nats-server checks no deny list for it), so a request naming
    ``antq.events.…`` as its reply would have the gateway store its answer in the log, and the query service,
    which may publish nowhere else, write there too.
    """
    inbox = inbox_prefix(public_key)
    replies = (f"{inbox}.>",)
    if role == "admin":  # stream and consumer management, nothing else: it never writes events
        # $JS.SNAPSHOT.>: a snapshot's flow-control acks and a restore's upload (`antq backup` / `antq restore`)
        return Permissions(publish=(f"{JS}.>", "$JS.SNAPSHOT.>"), subscribe=replies)
    if role == "gateway":
        publish = [f"{EVENTS_PREFIX}.>", f"{REJECTED_PREFIX}.>", ANY_INBOX]
        for s in ALL_STREAMS:  # it runs ensure_streams on start
            publish += [f"{JS}.STREAM.INFO.{s}", f"{JS}.STREAM.CREATE.{s}", f"{JS}.STREAM.UPDATE.{s}"]
        publish += [
            f"{JS}.STREAM.MSG.GET.{EVENTS}",  # entity guards, duplicates
            f"{JS}.DIRECT.GET.{EVENTS}",
            f"{JS}.DIRECT.GET.{EVENTS}.>",
            f"{JS}.CONSUMER.CREATE.{EVENTS}",  # index catch-up reads the log with ephemeral consumers
            f"{JS}.CONSUMER.MSG.NEXT.{EVENTS}.*",
            f"{JS}.CONSUMER.DELETE.{EVENTS}.*",
        ]
        return Permissions(publish=tuple(publish), subscribe=(f"{INTAKE_PREFIX}.*", *replies))
    if role == "projector":  # the live runner, rebuilds, and the update feed
        return Permissions(
            publish=(
                f"{JS}.STREAM.INFO.{EVENTS}",
                f"{JS}.STREAM.MSG.GET.{EVENTS}",
                f"{JS}.DIRECT.GET.{EVENTS}",
                f"{JS}.DIRECT.GET.{EVENTS}.>",
                f"{JS}.CONSUMER.CREATE.{EVENTS}",  # a rebuild reads the log with ephemeral consumers
                f"{JS}.CONSUMER.DURABLE.CREATE.{EVENTS}.*",
                f"{JS}.CONSUMER.INFO.{EVENTS}.*",
                f"{JS}.CONSUMER.DELETE.{EVENTS}.*",
                f"{JS}.CONSUMER.MSG.NEXT.{EVENTS}.*",
                f"$JS.ACK.{EVENTS}.>",
                f"{UPDATES_PREFIX}.>",
            ),
            subscribe=replies,
        )
    if role == "query":
        return Permissions(publish=(ANY_INBOX,), subscribe=(QUERY_SUBJECT, f"{QUERY_SUBJECT}.*", *replies))
    if role == "reader":  # `antq stats` and dashboards: asks the query service, nothing else
        # its own query subject only: the query service counts waiting requests per identity by it
        return Permissions(publish=(query_subject(public_key),), subscribe=replies)
    if role == "web":  # read-only web front: queries, and the update feed through ordered consumers
        return Permissions(
            publish=(
                query_subject(public_key),
                f"{JS}.STREAM.INFO.{UPDATES}",
                # an ordered consumer is created unnamed (a name the server picks; no durable is accepted on
                # this subject); no CONSUMER right on any other stream, no pull from anyone's consumer
                f"{JS}.CONSUMER.CREATE.{UPDATES}",
                f"$JS.FC.{UPDATES}.>",  # flow-control answers of an ordered consumer
            ),
            subscribe=replies,
        )
    if role == "sealer":  # reads both streams with direct gets, like the auditor, and appends seals
        return Permissions(publish=(SEALS_SUBJECT, *_direct_read_streams(EVENTS, SEALS)), subscribe=replies)
    if role == "auditor":  # reads with direct gets (ANTQ_READ_MODE=direct): no consumer of any kind
        return Permissions(publish=tuple(_direct_read_streams(EVENTS, SEALS)), subscribe=replies)
    raise AuthError(
        f"unknown role {role!r}; roles: {', '.join(SERVICE_ROLES)}, office-<id>, subscriber-<name>"
    )


def _filtered_pull(stream: str, consumer: str, filters: Sequence[str]) -> list[str]:
    """A pull consumer of one fixed name, created only with one of ``filters`` as its filter subject (the
    filtered create subject ``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``: nats-server refuses a body
    whose filter differs from the subject's), read, inspected, deleted and acked by its owner only."""
    out = [f"{JS}.CONSUMER.CREATE.{stream}.{consumer}.{f}" for f in filters]
    out += [
        f"{JS}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"{JS}.CONSUMER.INFO.{stream}.{consumer}",
        f"{JS}.CONSUMER.DELETE.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    ]
    return out


def office_permissions(office_id: str, inbox: str) -> Permissions:
    """An office submits on its own intake subject, reads the gateway's answers, and reads its own rejections
    (``antq.rejected.<id>`` and below): a pull consumer filtered to them under the one name its identity reads
    with (``read_consumer_name``: what ``ANTQ_READ_MODE=consumer`` readers such as ``antq rejected`` take), or the
    last one of a subject by direct get. ``STREAM.INFO`` of ANTQ_REJECTED tells a reader where the stream ends
    (its totals over every office: counts, not contents)."""
    if not _OFFICE_ID.match(office_id):
        raise AuthError(f"office id {office_id!r} is not one subject token (letters, digits, - and _)")
    own = (f"{REJECTED_PREFIX}.{office_id}", f"{REJECTED_PREFIX}.{office_id}.>")
    consumer = read_consumer_name(inbox.removeprefix("_INBOX."))
    return Permissions(
        publish=(
            f"{INTAKE_PREFIX}.{office_id}",
            f"{JS}.STREAM.INFO.{REJECTED}",
            *_filtered_pull(REJECTED, consumer, own),
            *(f"{JS}.DIRECT.GET.{REJECTED}.{subject}" for subject in own),
        ),
        subscribe=(f"{inbox}.>",),
    )


def subscriber_consumer(name: str, province: str) -> str:
    """The consumer name a downstream subscriber reads one province's updates under."""
    return f"sub-{name}-{province}"


def subscriber_permissions(name: str, provinces: Sequence[str], inbox: str) -> Permissions:
    """A downstream subscriber: for each of its provinces, one pull consumer of ANTQ_UPDATES filtered to
    ``antq.updates.stats.<province>.>``; nothing else (no queries, no other stream, no other consumer)."""
    if not _OFFICE_ID.match(name):
        raise AuthError(f"subscriber name {name!r} is not one subject token (letters, digits, - and _)")
    if not provinces:
        raise AuthError(f"subscriber {name!r} needs at least one province")
    publish: list[str] = []
    for province in provinces:
        if not _PROVINCE.match(province):
            raise AuthError(f"province {province!r} is not a two-digit 2025 province code")
        prefix = f"{UPDATES_PREFIX}.{province}"
        publish += _filtered_pull(UPDATES, subscriber_consumer(name, province), (f"{prefix}.>",))
    return Permissions(publish=tuple(publish), subscribe=(f"{inbox}.>",))


def inbox_prefix(public_key: str) -> str:
    """The private inbox of an identity: derived from its public key, so the seed is all a client needs."""
    return f"_INBOX.{public_key}"


@dataclass(frozen=True)
class Identity:
    name: str  # "auditor", "office-ca-tra-linh"
    public_key: str
    seed: bytes = field(repr=False)
    permissions: Permissions

    @property
    def seed_file(self) -> str:
        return f"{self.name}.nk"


def new_seed() -> bytes:
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))


def public_key_of(seed: bytes) -> str:
    try:
        pair = nkeys.from_seed(bytearray(seed.strip()))
        public = bytes(pair.public_key).decode("ascii")
        pair.wipe()
    except Exception as exc:  # nkeys raises its own errors, binascii's and ValueError
        raise AuthError(f"not an nkey seed: {type(exc).__name__}") from exc
    if not public.startswith("U"):
        raise AuthError("not a user nkey seed (its public key must start with U)")
    return public


def identity(name: str, seed: bytes | None = None, provinces: Sequence[str] = ()) -> Identity:
    """A role (``auditor``), an office (``office-<id>``) or a downstream subscriber (``subscriber-<name>``, with
    its ``provinces``) with a given or a fresh seed."""
    seed = (seed or new_seed()).strip()
    public = public_key_of(seed)
    if name.startswith("office-"):
        permissions = office_permissions(name.removeprefix("office-"), inbox_prefix(public))
    elif name.startswith("subscriber-"):
        permissions = subscriber_permissions(
            name.removeprefix("subscriber-"), provinces, inbox_prefix(public)
        )
    else:
        permissions = role_permissions(name, public)
    return Identity(name, public, seed, permissions)


def _quoted(items: Iterable[str]) -> str:
    # quoted, so that "$JS…" is a subject and not a variable reference of the config language
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def server_config(identities: Sequence[Identity]) -> str:
    """The include file for nats-server: ``include "auth.conf"`` in the server's configuration."""
    lines = [
        "# Generated by `antq auth generate`: one nkey user per role, explicit allow lists (all else denied).",
        "authorization {",
        "  users = [",
    ]
    for ident in identities:
        p = ident.permissions
        perms = [f"publish: {{ allow: {_quoted(p.publish)} }}"]
        perms.append(f"subscribe: {{ allow: {_quoted(p.subscribe)} }}")
        if p.allow_responses:
            perms.append("allow_responses: true")
        lines.append(f"    # {ident.name}")
        lines.append(f'    {{ nkey: "{ident.public_key}", permissions: {{')
        lines += [f"        {perm}" for perm in perms]
        lines.append("    } }")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


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
    return (out / _pg_password_file(role)).read_text().strip()


def _pg_password_file(role: str) -> str:
    return f"postgres_{role.removeprefix('antq_')}.password"


def role_database_url(owner_url: str, role: str, password: str) -> str:
    """The owner's URL with a service role's name and password instead (same host, port and database)."""
    scheme, sep, rest = owner_url.partition("://")
    if not sep:
        raise AuthError("the database URL has no scheme (postgresql://…)")
    _, at, hostpart = rest.rpartition("@")
    return f"{scheme}://{role}:{quote(password, safe='')}@{hostpart if at else rest}"


@dataclass(frozen=True)
class Generated:
    directory: Path
    identities: list[Identity]
    created: list[str]  # names whose seed was generated now (the others were kept)
    server_conf: Path
    pg_sql: Path
    pg_password: Path
    pg_roles_sql: Path


REVOKED = "revoked.txt"
"""Office ids revoked (one a line): never given an identity again by ``generate``, until rotated."""


def _write_secret(path: Path, data: bytes) -> None:
    """Create with mode 0600 from the start (never readable by others, not even for an instant)."""
    write_private(path, data, SECRET_MODE)


def revoked_offices(out: Path) -> list[str]:
    path = out / REVOKED
    if not path.exists():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _provinces_file(out: Path, name: str) -> Path:
    return out / f"subscriber-{name}.provinces"


def _password(out: Path, file_name: str) -> str:
    path = out / file_name
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(24)
    _write_secret(path, password.encode() + b"\n")
    return password


def generate(
    out: Path, offices: Sequence[str] = (), subscribers: Mapping[str, Sequence[str]] | None = None
) -> Generated:
    """Write ``auth.conf``, one ``<name>.nk`` seed per identity and the PostgreSQL roles' SQL into ``out``.

    A seed already in ``out`` is kept, and so is every office and subscriber whose seed is there: adding one
    changes no other identity. ``subscribers``: name to provinces (kept in ``subscriber-<name>.provinces``).
    A revoked office (``revoke``) gets no identity, even when ``offices`` names it, until ``rotate`` gives it a
    new one. The server configuration lists exactly the identities written.
    """
    subscribers = dict(subscribers or {})
    for office in offices:
        office_permissions(office, "_INBOX")  # validate every id before writing anything
    for name, provinces in subscribers.items():
        subscriber_permissions(name, provinces, "_INBOX")
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    revoked = set(revoked_offices(out))
    known = sorted(p.name.removeprefix("office-").removesuffix(".nk") for p in out.glob("office-*.nk"))
    for path in sorted(out.glob("subscriber-*.provinces")):
        name = path.name.removeprefix("subscriber-").removesuffix(".provinces")
        subscribers.setdefault(name, path.read_text().split())
    office_names = [o for o in dict.fromkeys([*offices, *known]) if o not in revoked]
    names = [*SERVICE_ROLES, *(f"office-{o}" for o in office_names)]
    names += [f"subscriber-{n}" for n in sorted(subscribers)]
    identities: list[Identity] = []
    created: list[str] = []
    for name in names:
        path = out / f"{name}.nk"
        provinces = (
            subscribers.get(name.removeprefix("subscriber-"), ()) if name.startswith("subscriber-") else ()
        )
        if path.exists():
            ident = identity(name, path.read_bytes(), provinces)
        else:
            ident = identity(name, provinces=provinces)
            _write_secret(path, ident.seed + b"\n")
            created.append(name)
        if provinces:
            _write_secret(
                _provinces_file(out, name.removeprefix("subscriber-")), " ".join(provinces).encode()
            )
        identities.append(ident)
    conf = out / SERVER_CONF
    _write_secret(conf, server_config(identities).encode())
    verifiers = {role.name: scram_verifier(_password(out, _pg_password_file(role.name))) for role in PG_ROLES}
    _write_pgpass_files(out)
    password_file = out / PG_AUDITOR_PASSWORD
    sql = out / PG_AUDITOR_SQL
    _write_secret(sql, auditor_sql(verifiers[PG_AUDITOR_ROLE]).encode())
    roles = out / PG_ROLES_SQL
    _write_secret(roles, roles_sql(verifiers).encode())
    return Generated(out, identities, created, conf, sql, password_file, roles)


PG_OWNER = "postgres"
"""The superuser the PostgreSQL server is initialised with (the compose stack's ``POSTGRES_USER``): it runs
the migrations and ``postgres_roles.sql``; its password is ``postgres_owner.password``."""


def pgpass_file(role: str) -> str:
    """The libpq password file of a role (``postgres_<role minus antq_>.pgpass``; ``postgres_owner.pgpass`` for
    the owner): name it in the database URL, ``postgresql://<role>@host/db?passfile=<it>``, and the password
    never enters an environment variable."""
    return "postgres_owner.pgpass" if role == PG_OWNER else f"postgres_{role.removeprefix('antq_')}.pgpass"


def _write_pgpass_files(out: Path) -> None:
    """One password file per role (mode 0600, as libpq and asyncpg require), and the owner's password."""
    owner = _password(out, "postgres_owner.password")
    for role in (PG_OWNER, *(r.name for r in PG_ROLES)):
        password = owner if role == PG_OWNER else pg_password(out, role)
        _write_secret(out / pgpass_file(role), f"*:*:*:{role}:{password}\n".encode())


def revoke(out: Path, office: str) -> Generated:
    """Take an office's identity out of the server configuration and delete its seed; ``generate`` will not
    give it one again (``rotate`` does). Reload the server afterwards (``reload_nats``)."""
    office_permissions(office, "_INBOX")
    seed = out / f"office-{office}.nk"
    if not seed.exists() and office not in revoked_offices(out):
        raise AuthError(f"no identity for office {office!r} in {out}")
    _write_secret(out / REVOKED, "".join(f"{o}\n" for o in sorted({*revoked_offices(out), office})).encode())
    seed.unlink(missing_ok=True)
    return generate(out)


def rotate(out: Path, office: str) -> Generated:
    """Give an office a new seed (the old one is refused once the server has reloaded); a revoked office gets
    its identity back this way."""
    office_permissions(office, "_INBOX")
    remaining = [o for o in revoked_offices(out) if o != office]
    _write_secret(out / REVOKED, "".join(f"{o}\n" for o in remaining).encode())
    (out / f"office-{office}.nk").unlink(missing_ok=True)
    return generate(out, [office])


def _read_seed(seed_file: Path) -> bytes:
    try:
        return seed_file.read_bytes()
    except OSError as exc:
        raise AuthError(f"cannot read the nkey seed file {seed_file}: {exc.strerror}") from None


def nats_connect_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect``: the nkey seed and its private inbox, or a ``.creds`` file; and
    ``tls``, an ``ssl.SSLContext``, when ANTQ_NATS_TLS_CA (and ANTQ_NATS_TLS_CERT/KEY) are set.

    The seed is ANTQ_NATS_NKEY_SEED_FILE, else the process's identity in ANTQ_CREDENTIALS_DIR
    (``Settings.seed_file``). Every value is a string but ``tls``."""
    options: dict[str, Any] = {}
    seed_file = settings.seed_file
    if seed_file is not None:
        public = public_key_of(_read_seed(seed_file))
        options = {"nkeys_seed": str(seed_file), "inbox_prefix": inbox_prefix(public)}
    elif settings.nats_creds is not None:
        options = {"user_credentials": str(settings.nats_creds)}
    if settings.nats_tls_ca is not None or settings.nats_tls_cert is not None:
        try:
            options["tls"] = client_context(
                settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key
            )
        except TlsError as exc:  # the callers say an AuthError's message and stop: so is this one
            raise AuthError(str(exc)) from exc
    return options


def read_consumer(settings: Settings) -> str | None:
    """The consumer name the audit commands read with in consumer mode: ``ANTQ_READ_CONSUMER``, else the one
    derived from the nkey seed (``read_consumer_name``), else None (an unnamed consumer: a server without auth)."""
    if settings.read_consumer is not None:
        if not _CONSUMER_NAME.match(settings.read_consumer):
            raise AuthError(f"ANTQ_READ_CONSUMER {settings.read_consumer!r} is not a consumer name")
        return settings.read_consumer
    if settings.seed_file is not None:
        return read_consumer_name(public_key_of(_read_seed(settings.seed_file)))
    return None
