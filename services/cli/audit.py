"""``antq audit …``: auditors' commands. Read-only against a running stack (NATS URL + credentials, PostgreSQL).

Exit status: 0 nothing found, 1 findings, 2 not configured or not reachable.
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import asyncpg
import msgspec
import nats.errors
import typer
from rich.console import Console
from rich.table import Table

from infra.settings import Settings
from infra.streams import EVENTS, SEALS
from services.sealer.verify import Report, verify_at

audit = typer.Typer(no_args_is_help=True, help="Auditors: verify the log and its seals (read access only).")
console = Console()
err = Console(stderr=True)

TRUSTED_KEYS_ENV = "ANTQ_SEAL_PUBLIC_KEYS"


@audit.callback()
def _group() -> None:
    """Auditors' commands (a group even while it holds one command)."""


def _require(value: str | None, name: str) -> str:
    if not value:
        err.print(f"[red]{name} is not set[/red]")
        raise typer.Exit(2)
    return value


def export_record(report: Report) -> dict[str, object]:
    """What goes on a printed report: enough to check the log later against this very seal."""
    seal = report.latest
    if seal is None:
        return {"stream": report.stream, "seal": None}
    return {
        "stream": seal.stream,
        "seal": seal.number,
        "first_seq": seal.first_seq,
        "last_seq": seal.last_seq,
        "events": seal.count,
        "digest": seal.digest,
        "sealed_at": seal.sealed_at.isoformat(),
        "stream_created": seal.stream_created.isoformat(),
        "signer": seal.signer,
    }


def _summary(report: Report) -> Table:
    table = Table(title=f"seals of {report.stream}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("seals in NATS / PostgreSQL", f"{report.seals_nats} / {report.seals_postgres}")
    table.add_row("sealed through sequence", str(report.sealed_through))
    table.add_row("stream last sequence", str(report.stream_last_seq) if report.stream_last_seq else "-")
    table.add_row("events recomputed", str(report.events_checked))
    table.add_row("not sealed yet", str(report.unsealed))
    return table


def _findings(report: Report) -> Table:
    table = Table(title="findings")
    for col in ("kind", "store", "seal", "range", "detail"):
        table.add_column(col)
    for f in report.findings:
        span = f"{f.first_seq}..{f.last_seq}" if f.first_seq is not None else ""
        table.add_row(f.kind, f.store or "", str(f.seal or ""), span, f.detail)
    return table


def _export_table(record: dict[str, object]) -> Table:
    table = Table(title="latest seal (for the printed report)", show_header=False)
    table.add_column("", style="bold", no_wrap=True)
    table.add_column("", overflow="fold")  # a digest is printed whole, folded if the terminal is narrow
    for key, value in record.items():
        table.add_row(key, str(value))
    return table


@audit.command("seals")
def seals(
    stream: Annotated[str, typer.Option(help="the sealed stream")] = EVENTS,
    seals_stream: Annotated[str, typer.Option(help="the stream holding the seals")] = SEALS,
    export: Annotated[
        bool, typer.Option("--export", help="print the latest seal's digest, range, time and key")
    ] = False,
    output: Annotated[str, typer.Option("--format", help="table | json")] = "table",
    trusted_key: Annotated[
        list[str] | None,
        typer.Option(help=f"trusted signer public key (repeatable; also ${TRUSTED_KEYS_ENV})"),
    ] = None,
) -> None:
    """Recompute the seal chain from the events; report altered ranges, gaps, a recreated stream, bad seals."""
    if output not in ("table", "json"):
        err.print("[red]--format is table or json[/red]")
        raise typer.Exit(2)
    settings = Settings.from_env()
    nats_url = _require(settings.nats_url, "ANTQ_NATS_URL")
    database_url = _require(settings.database_url, "ANTQ_DATABASE_URL")
    keys = set(trusted_key or []) | {
        k.strip() for k in os.environ.get(TRUSTED_KEYS_ENV, "").split(",") if k.strip()
    }
    try:
        report = asyncio.run(
            verify_at(
                nats_url=nats_url,
                database_url=database_url,
                nats_creds=str(settings.nats_creds) if settings.nats_creds else None,
                stream=stream,
                seals_stream=seals_stream,
                trusted_keys=frozenset(keys) if keys else None,
            )
        )
    except (OSError, TimeoutError, nats.errors.Error, asyncpg.PostgresError) as exc:
        err.print(f"[red]cannot reach the stack: {exc}[/red]")
        raise typer.Exit(2) from None
    if output == "json":
        body: dict[str, object] = {"ok": report.ok, "report": report}
        if export:
            body["export"] = export_record(report)
        print(msgspec.json.encode(body).decode())
    else:
        console.print(_summary(report))
        if export:
            console.print(_export_table(export_record(report)))
        if report.findings:
            console.print(_findings(report))
            console.print(f"[red bold]{len(report.findings)} finding(s)[/red bold]")
        else:
            console.print("[green bold]intact: every sealed range matches its seal[/green bold]")
    if not report.ok:
        raise typer.Exit(1)
