"""``antq auth generate``: the deployment's NATS identities (nkeys) and the auditors' PostgreSQL role.

The logic lives in ``infra/auth.py``; this module reads the options, writes the directory and says what to do
with each file. Seeds are never printed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from infra.auth import AuthError, Generated, generate, revoke, rotate
from infra.embedded import PID_FILE, EmbeddedError, reload_nats
from infra.settings import Settings
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
) -> None:
    """Write auth.conf (nats-server include), one seed per role and office (mode 0600), the auditor's SQL.

    Seeds already in OUT are kept: run it again with a new office and no other identity changes.
    """
    registry = offices or Settings.from_env().offices_path
    try:
        ids = list(office or []) + (offices_in(registry) if registry is not None else [])
        result = generate(_directory(out), ids, _subscribers(subscriber or []))
    except AuthError as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None
    console.print(_identities_table(result))
    console.print(
        f'nats-server: add [bold]include "{result.server_conf.name}"[/bold] to its configuration (the path is '
        f"relative to that file; copy {result.server_conf.name} beside it) and reload it.\n"
        "Each process: [bold]ANTQ_CREDENTIALS_DIR=<this directory>[/bold] (or --credentials-dir): every "
        "service and command picks its own seed there; or ANTQ_NATS_NKEY_SEED_FILE=<seed file> of its role.\n"
        f"PostgreSQL: run [bold]{result.pg_roles_sql.name}[/bold] as the tables' owner (or a superuser) in the "
        "ledger's database after every migration (psql -1 -f): one role per service, passwords in "
        "postgres_<role>.password; auditors alone: "
        f"{result.pg_sql.name}, password in {result.pg_password.name}."
    )


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
