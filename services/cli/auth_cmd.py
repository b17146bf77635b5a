"""``antq auth generate``: the deployment's NATS identities (nkeys), the PostgreSQL roles, the CA and TLS
certificates of the NATS nodes, and the projection's and the sealer's signing keys.

The logic lives in ``infra/auth/`` and ``infra/tls.py``; this module reads the options, writes the directory
and says what to do with each file. Seeds and private keys are never printed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from infra.auth import AuthError
from infra.auth.credentials import Generated, generate, revoke, rotate
from infra.embedded import PID_FILE, EmbeddedError, reload_nats
from infra.seal_keys import SealKeyError, load_or_create
from infra.settings import Settings
from infra.tls import TlsError, TlsFiles, generate_tls
from infra.update_signing import KEY_FILE_NAME, load_or_create_update_key
from services.cli.plain import cell, say
from services.cli.plain import console as plain_console

auth = typer.Typer(
    no_args_is_help=True, help="Access control: NATS nkey identities per role, read-only auditors."
)
console = plain_console()
err = plain_console(stderr=True)


@auth.callback()
def _group() -> None:
    """Access control (a group even while it holds one command)."""


def offices_in(registry: Path) -> list[str]:
    """The office ids of an offices registry (TOML, ``[[office]] id = …``)."""
    try:
        data = tomllib.loads(registry.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AuthError(f"cannot read the offices registry {registry}: {exc}") from None
    offices = data.get("office", [])
    if not isinstance(offices, list):
        raise AuthError(f"{registry}: [[office]] entries expected")
    ids: list[str] = []
    for entry in offices:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise AuthError(f"{registry}: an [[office]] without an id")
        ids.append(entry["id"])
    return ids


SEAL_KEY_FILE = "seal.nk"
"""The sealer's signing key in the credentials directory (ANTQ_SEAL_SEED_FILE); not its NATS identity,
``sealer.nk``."""
UPDATE_KEY_FILE = KEY_FILE_NAME
"""The projection's update signing key in the credentials directory (ANTQ_UPDATE_KEY_FILE)."""


def _identities_table(result: Generated) -> Table:
    table = Table(title=cell(f"NATS identities in {result.directory}", "table.title"))
    for col in ("identity", "public key", "seed file", ""):
        table.add_column(col, overflow="fold")
    for ident in result.identities:
        state = "new" if ident.name in result.created else "kept"
        table.add_row(cell(ident.name), ident.public_key, cell(ident.seed_file), state)
    return table


def _subscribers(values: list[str]) -> dict[str, list[str]]:
    """``NAME=04,24`` options: a downstream subscriber and its provinces."""
    out: dict[str, list[str]] = {}
    for value in values:
        name, sep, provinces = value.partition("=")
        if not sep or not provinces:
            raise AuthError(f"--subscriber {value!r}: expected NAME=PROVINCE[,PROVINCE…], e.g. web-04=04")
        out[name] = [p.strip() for p in provinces.split(",") if p.strip()]
    return out


def _directory(out: Path | None) -> Path:
    """``--out``, else the credentials directory (``--credentials-dir`` / ANTQ_CREDENTIALS_DIR)."""
    directory = out or Settings.from_env().credentials_dir
    if directory is None:
        raise AuthError(
            "give --out DIR or --credentials-dir DIR (ANTQ_CREDENTIALS_DIR): the identities' directory"
        )
    return directory


@auth.command("generate")
def generate_command(
    out: Annotated[
        Path | None,
        typer.Option(
            help="directory for the server include, the seeds and the SQL (default: credentials dir)"
        ),
    ] = None,
    office: Annotated[
        list[str] | None, typer.Option(help="an office id that gets its own identity (repeatable)")
    ] = None,
    offices: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="also every office of this registry (ANTQ_OFFICES)"),
    ] = None,
    subscriber: Annotated[
        list[str] | None,
        typer.Option(help="a downstream subscriber and its provinces, NAME=04,24 (repeatable)"),
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(help="another DNS name or IP of the NATS nodes for their TLS certificate (repeatable)"),
    ] = None,
    tls_client: Annotated[
        list[str] | None,
        typer.Option(help="also a TLS client certificate NAME, for servers that verify clients (repeatable)"),
    ] = None,
) -> None:
    """Write auth.conf (nats-server include), one seed per role and office (mode 0600), the PostgreSQL roles'
    SQL, a CA and the NATS nodes' TLS certificate (tls/), the projection's and the sealer's signing keys.

    Files already in OUT are kept: run it again with a new office and no other identity changes; a server
    certificate is issued again (same CA) only when a --host name is missing from it or it nears its end.
    """
    registry = offices or Settings.from_env().offices_path
    try:
        ids = list(office or []) + (offices_in(registry) if registry is not None else [])
        directory = _directory(out)
        result = generate(directory, ids, _subscribers(subscriber or []))
        tls = generate_tls(directory, host or [], tls_client or [])
        update_key = load_or_create_update_key(directory / UPDATE_KEY_FILE).public_key
        seal_key = load_or_create(directory / SEAL_KEY_FILE)[0].public_key
    except (AuthError, TlsError, SealKeyError) as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None
    console.print(_identities_table(result))
    console.print(_tls_table(tls))
    console.print(
        f'nats-server: add [bold]include "{result.server_conf.name}"[/bold] to its configuration (the path is '
        f"relative to that file; copy {result.server_conf.name} beside it) and reload it.\n"
        "Each process: [bold]ANTQ_CREDENTIALS_DIR=<this directory>[/bold] (or --credentials-dir): every "
        "service and command picks its own seed there; or ANTQ_NATS_NKEY_SEED_FILE=<seed file> of its role.\n"
        f"PostgreSQL: run [bold]{result.pg_roles_sql.name}[/bold] as the tables' owner (or a superuser) in the "
        "ledger's database after every migration (psql -1 -f): one role per service, passwords in "
        "postgres_<role>.password; auditors alone: "
        f"{result.pg_sql.name}, password in {result.pg_password.name}.\n"
        f"TLS: nats-server's tls {{}} blocks take {tls.directory.name}/ca.pem, server.pem, server-key.pem; "
        f"each process: [bold]ANTQ_NATS_TLS_CA={tls.ca_cert}[/bold] (and ANTQ_NATS_TLS_CERT / "
        "ANTQ_NATS_TLS_KEY for a client certificate). Keep ca-key.pem offline once the certificates exist.\n"
        f"Signing keys: projection ANTQ_UPDATE_KEY_FILE={UPDATE_KEY_FILE}, public key {update_key} "
        f"(the dashboard's ANTQ_WEB_UPDATE_KEY); sealer ANTQ_SEAL_SEED_FILE={SEAL_KEY_FILE}, public key "
        f"{seal_key} (the auditors' ANTQ_SEAL_PUBLIC_KEYS)."
    )


def _tls_table(tls: TlsFiles) -> Table:
    table = Table(title=cell(f"TLS files in {tls.directory}", "table.title"))
    for col in ("file", "what", ""):
        table.add_column(col, overflow="fold")
    rows = [
        (tls.ca_cert, "CA certificate (every client and node trusts it)"),
        (tls.ca_key, "CA key (signs the certificates: keep it offline)"),
        (tls.server_cert, "certificate of every NATS node (clients and routes)"),
        (tls.server_key, "its key"),
    ]
    for name, (cert, key) in tls.clients.items():
        rows += [(cert, f"client certificate {name}"), (key, "its key")]
    for path, what in rows:
        table.add_row(cell(path.name), what, "new" if path.name in tls.created else "kept")
    return table


def _reload(directory: Path, pid_file: Path | None, no_reload: bool) -> None:
    """Reload nats-server: the one whose pid is in ``pid_file``, else the one ``antq dev up`` started beside
    the credentials directory (``<data dir>/nats/nats.pid``)."""
    if no_reload:
        console.print("nats-server not reloaded (--no-reload): send it SIGHUP to apply the change")
        return
    nats_dir = directory.parent / "nats"
    given = pid_file is not None
    pid_file = pid_file or nats_dir / PID_FILE
    # `antq dev up --cluster N` runs N nodes, each with its pid file in <data dir>/nats/n<i>/: all are reloaded
    nodes = sorted(nats_dir.glob(f"n*/{PID_FILE}")) if not given and not pid_file.exists() else []
    if not pid_file.exists() and not nodes:
        console.print(
            f"no nats-server pid file at {pid_file}: reload the server yourself "
            "(`nats-server --signal reload=<pid>`, or SIGHUP)"
        )
        return
    for each in nodes or [pid_file]:
        pid = reload_nats(each)
        console.print(f"nats-server {pid} reloaded: the others stay connected")


@auth.command("revoke")
def revoke_command(
    office: Annotated[str, typer.Option(help="the office whose key is lost")],
    out: Annotated[
        Path | None, typer.Option(help="the identities' directory (default: credentials dir)")
    ] = None,
    nats_pid_file: Annotated[Path | None, typer.Option(help="nats-server's pid file, to reload it")] = None,
    no_reload: Annotated[bool, typer.Option("--no-reload", help="rewrite the config only")] = False,
) -> None:
    """Revoke an office's identity: its seed is deleted, the server config rewritten and nats-server reloaded
    (its connections are closed; no other identity changes). `antq auth rotate` gives it a new one."""
    try:
        directory = _directory(out)
        revoke(directory, office)
        _reload(directory, nats_pid_file, no_reload)
    except (AuthError, EmbeddedError) as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    console.print(f"office {office}: revoked")


@auth.command("rotate")
def rotate_command(
    office: Annotated[str, typer.Option(help="the office that gets a new key")],
    out: Annotated[
        Path | None, typer.Option(help="the identities' directory (default: credentials dir)")
    ] = None,
    nats_pid_file: Annotated[Path | None, typer.Option(help="nats-server's pid file, to reload it")] = None,
    no_reload: Annotated[bool, typer.Option("--no-reload", help="rewrite the config only")] = False,
) -> None:
    """Replace an office's key: a new seed file office-<id>.nk (the old seed is refused after the reload)."""
    try:
        directory = _directory(out)
        result = rotate(directory, office)
        _reload(directory, nats_pid_file, no_reload)
    except (AuthError, EmbeddedError) as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    new = next(i for i in result.identities if i.name == f"office-{office}")
    console.print(f"office {office}: new key {new.public_key} in {directory / new.seed_file}; hand it over")
