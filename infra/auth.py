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

The generator also writes the SQL of the PostgreSQL role ``antq_auditor``: SELECT on the tables the audit
commands read, read-only transactions by default, a SCRAM-SHA-256 verifier instead of a password in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nkeys

from events.subjects import (
    EVENTS_PREFIX,
    INTAKE_PREFIX,
    QUERY_SUBJECT,
    REJECTED_PREFIX,
    SEALS_SUBJECT,
    UPDATES_PREFIX,
)
from infra.errors import InfraError
from infra.settings import Settings
from infra.streams import EVENTS, REJECTED, SEALS, UPDATES

SECRET_MODE = 0o600
SERVER_CONF = "auth.conf"
PG_AUDITOR_SQL = "postgres_auditor.sql"
PG_AUDITOR_PASSWORD = "postgres_auditor.password"
PG_AUDITOR_ROLE = "antq_auditor"
PG_AUDITOR_TABLES = ("stats", "projection_active", "projection_checkpoint", "seals")
"""What ``antq audit verify`` and ``antq audit seals`` read: the active copy, its checkpoint, its figures, seals."""

READ_CONSUMER_PREFIX = "audit_"
SERVICE_ROLES = ("admin", "gateway", "projector", "query", "sealer", "auditor", "reader")
_OFFICE_ID = re.compile(r"\A[A-Za-z0-9_-]+\Z")  # one subject token: no dots, no wildcards, no spaces
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
    """The allow lists of a service role, for the identity whose public key is ``public_key``."""
    inbox = inbox_prefix(public_key)
    replies = (f"{inbox}.>",)
    if role == "admin":  # stream and consumer management, nothing else: it never writes events
        return Permissions(publish=(f"{JS}.>",), subscribe=replies)
    if role == "gateway":
        publish = [f"{EVENTS_PREFIX}.>", f"{REJECTED_PREFIX}.>"]
        for s in ALL_STREAMS:  # it runs ensure_streams on start
            publish += [f"{JS}.STREAM.INFO.{s}", f"{JS}.STREAM.CREATE.{s}", f"{JS}.STREAM.UPDATE.{s}"]
        publish += [
            f"{JS}.STREAM.MSG.GET.{EVENTS}",  # entity guards, duplicates
            f"{JS}.CONSUMER.CREATE.{EVENTS}",  # index catch-up reads the log with ephemeral consumers
            f"{JS}.CONSUMER.MSG.NEXT.{EVENTS}.*",
            f"{JS}.CONSUMER.DELETE.{EVENTS}.*",
        ]
        return Permissions(
            publish=tuple(publish), subscribe=(f"{INTAKE_PREFIX}.*", *replies), allow_responses=True
        )
    if role == "projector":  # the live runner, rebuilds, and the update feed
        return Permissions(
            publish=(
                f"{JS}.STREAM.INFO.{EVENTS}",
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
        return Permissions(publish=(), subscribe=(QUERY_SUBJECT, *replies), allow_responses=True)
    if role == "reader":  # `antq stats` and dashboards: asks the query service, nothing else
        return Permissions(publish=(QUERY_SUBJECT,), subscribe=replies)
    if role == "sealer":  # reads both streams with direct gets, like the auditor, and appends seals
        return Permissions(publish=(SEALS_SUBJECT, *_direct_read_streams(EVENTS, SEALS)), subscribe=replies)
    if role == "auditor":  # reads with direct gets (ANTQ_READ_MODE=direct): no consumer of any kind
        return Permissions(publish=tuple(_direct_read_streams(EVENTS, SEALS)), subscribe=replies)
    raise AuthError(f"unknown role {role!r}; roles: {', '.join(SERVICE_ROLES)}, office:<id>")


def office_permissions(office_id: str, inbox: str) -> Permissions:
    """An office submits on its own intake subject and reads the gateway's answers."""
    if not _OFFICE_ID.match(office_id):
        raise AuthError(f"office id {office_id!r} is not one subject token (letters, digits, - and _)")
    return Permissions(publish=(f"{INTAKE_PREFIX}.{office_id}",), subscribe=(f"{inbox}.>",))


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


def identity(name: str, seed: bytes | None = None) -> Identity:
    """A role (``auditor``) or an office (``office-<id>``) with a given or a fresh seed."""
    seed = (seed or new_seed()).strip()
    public = public_key_of(seed)
    if name.startswith("office-"):
        permissions = office_permissions(name.removeprefix("office-"), inbox_prefix(public))
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


def auditor_sql(verifier: str | None = None, tables: Sequence[str] = PG_AUDITOR_TABLES) -> str:
    """Create or reset the read-only role: run it as the owner of the tables, in the ledger's database."""
    role = PG_AUDITOR_ROLE
    password = f" PASSWORD '{verifier}'" if verifier else ""
    listed = ", ".join(tables)
    return f"""-- Generated by `antq auth generate`: the auditors' read-only PostgreSQL role.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role};
    END IF;
END
$$;
ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS{password};
ALTER ROLE {role} SET default_transaction_read_only = on;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role};
REVOKE CREATE ON SCHEMA public FROM {role};
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT ON {listed} TO {role};
"""


@dataclass(frozen=True)
class Generated:
    directory: Path
    identities: list[Identity]
    created: list[str]  # names whose seed was generated now (the others were kept)
    server_conf: Path
    pg_sql: Path
    pg_password: Path


def _write_secret(path: Path, data: bytes) -> None:
    """Create with mode 0600 from the start (never readable by others, not even for an instant)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def generate(out: Path, offices: Sequence[str] = ()) -> Generated:
    """Write ``auth.conf``, one ``<name>.nk`` seed per identity and the auditor's PostgreSQL SQL into ``out``.

    A seed already in ``out`` is kept, and so is every office whose seed is there: adding an office changes no
    other identity. To rotate a key, delete its seed file and run again; to revoke an office, delete its seed
    file and run again (the server configuration lists exactly the seeds in ``out``).
    """
    for office in offices:
        office_permissions(office, "_INBOX")  # validate every id before writing anything
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    known = sorted(p.name.removeprefix("office-").removesuffix(".nk") for p in out.glob("office-*.nk"))
    names = [*SERVICE_ROLES, *(f"office-{o}" for o in dict.fromkeys([*offices, *known]))]
    identities: list[Identity] = []
    created: list[str] = []
    for name in names:
        path = out / f"{name}.nk"
        if path.exists():
            ident = identity(name, path.read_bytes())
        else:
            ident = identity(name)
            _write_secret(path, ident.seed + b"\n")
            created.append(name)
        identities.append(ident)
    conf = out / SERVER_CONF
    _write_secret(conf, server_config(identities).encode())
    password_file = out / PG_AUDITOR_PASSWORD
    if password_file.exists():
        password = password_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(24)
        _write_secret(password_file, password.encode() + b"\n")
    sql = out / PG_AUDITOR_SQL
    _write_secret(sql, auditor_sql(scram_verifier(password)).encode())
    return Generated(out, identities, created, conf, sql, password_file)


def _read_seed(seed_file: Path) -> bytes:
    try:
        return seed_file.read_bytes()
    except OSError as exc:
        raise AuthError(f"cannot read the nkey seed file {seed_file}: {exc.strerror}") from None


def nats_connect_options(settings: Settings) -> dict[str, str]:
    """Keyword arguments for ``nats.connect``: the nkey seed and its private inbox, or a ``.creds`` file."""
    if settings.nats_nkey_seed_file is not None:
        seed_file = settings.nats_nkey_seed_file
        public = public_key_of(_read_seed(seed_file))
        return {"nkeys_seed": str(seed_file), "inbox_prefix": inbox_prefix(public)}
    if settings.nats_creds is not None:
        return {"user_credentials": str(settings.nats_creds)}
    return {}


def read_consumer(settings: Settings) -> str | None:
    """The consumer name the audit commands read with in consumer mode: ``ANTQ_READ_CONSUMER``, else the one
    derived from the nkey seed (``read_consumer_name``), else None (an unnamed consumer: a server without auth)."""
    if settings.read_consumer is not None:
        if not _CONSUMER_NAME.match(settings.read_consumer):
            raise AuthError(f"ANTQ_READ_CONSUMER {settings.read_consumer!r} is not a consumer name")
        return settings.read_consumer
    if settings.nats_nkey_seed_file is not None:
        return read_consumer_name(public_key_of(_read_seed(settings.nats_nkey_seed_file)))
    return None
