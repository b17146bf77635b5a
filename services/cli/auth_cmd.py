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

from infra.auth import AuthError, Generated, generate
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


@auth.command("generate")
def generate_command(
    out: Annotated[Path, typer.Option(help="directory for the server include, the seeds and the SQL")],
    office: Annotated[
        list[str] | None, typer.Option(help="an office id that gets its own identity (repeatable)")
    ] = None,
    offices: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="also every office of this registry (ANTQ_OFFICES)"),
    ] = None,
) -> None:
    """Write auth.conf (nats-server include), one seed per role and office (mode 0600), the auditor's SQL.

    Seeds already in OUT are kept: run it again with a new office and no other identity changes.
    """
    registry = offices or Settings.from_env().offices_path
    try:
        ids = list(office or []) + (offices_in(registry) if registry is not None else [])
        result = generate(out, ids)
    except AuthError as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None
    console.print(_identities_table(result))
    console.print(
        f'nats-server: add [bold]include "{result.server_conf.name}"[/bold] to its configuration (the path is '
        f"relative to that file; copy {result.server_conf.name} beside it) and reload it.\n"
        "Each process: [bold]ANTQ_NATS_NKEY_SEED_FILE=<seed file>[/bold] of its role; auditors use "
        "auditor.nk.\n"
        f"PostgreSQL: run [bold]{result.pg_sql.name}[/bold] as the tables' owner in the ledger's database "
        f"(psql -1 -f); auditors connect as antq_auditor with the password in {result.pg_password.name}."
    )
