"""The credentials directory ``antq auth generate`` writes: seeds, ``auth.conf``, PostgreSQL roles' files.

``generate`` writes one ``<name>.nk`` seed per identity (``infra.auth.identities``), the server's ``auth.conf``,
and the SQL and password files of the PostgreSQL roles (``infra.auth.pg_roles``), every file mode 0600 from the
start. ``revoke`` and ``rotate`` take an office's key out or replace it; the server applies it on a reload,
without a restart.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.auth.errors import AuthError
from infra.auth.identities import Identity, identity, server_config
from infra.auth.permissions import SERVICE_ROLES, office_permissions, subscriber_permissions
from infra.auth.pg_roles import (
    PG_AUDITOR_ROLE,
    PG_OWNER,
    PG_ROLES,
    PG_ROLES_SQL,
    auditor_sql,
    pg_password,
    pg_password_file,
    pgpass_file,
    roles_sql,
    scram_verifier,
)
from infra.tls import write_private

SECRET_MODE = 0o600
SERVER_CONF = "auth.conf"
PG_AUDITOR_SQL = "postgres_auditor.sql"
PG_AUDITOR_PASSWORD = "postgres_auditor.password"  # as every role's: postgres_<role minus antq_>.password


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
    verifiers = {role.name: scram_verifier(_password(out, pg_password_file(role.name))) for role in PG_ROLES}
    _write_pgpass_files(out)
    password_file = out / PG_AUDITOR_PASSWORD
    sql = out / PG_AUDITOR_SQL
    _write_secret(sql, auditor_sql(verifiers[PG_AUDITOR_ROLE]).encode())
    roles = out / PG_ROLES_SQL
    _write_secret(roles, roles_sql(verifiers).encode())
    return Generated(out, identities, created, conf, sql, password_file, roles)


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
