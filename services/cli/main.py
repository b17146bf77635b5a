"""The ``antq`` command line. Thin: each command delegates to a module that holds its logic."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import asyncpg
import msgspec
import nats
import typer

from infra.auth import AuthError, nats_connect_options
from infra.db import migrate
from infra.settings import Settings
from services.cli.audit import audit
from services.cli.plain import console as plain_console
from services.cli.plain import say

app = typer.Typer(no_args_is_help=True, help="ANTQ Ledger: the movement's event log and its statistics.")
dev = typer.Typer(no_args_is_help=True, help="The embedded development stack.")
db = typer.Typer(no_args_is_help=True, help="PostgreSQL schema.")
app.add_typer(dev, name="dev")
app.add_typer(db, name="db")
app.add_typer(audit, name="audit")
projections_cli = typer.Typer(no_args_is_help=True, help="Read models built from the log.")
app.add_typer(projections_cli, name="projections")
app.add_typer(__import__("services.cli.auth_cmd", fromlist=["auth"]).auth, name="auth")
app.add_typer(__import__("services.cli.contract", fromlist=["contract"]).contract, name="contract")
console = plain_console()
err = plain_console(stderr=True)


def _settings() -> Settings:
    return Settings.from_env()


def _nats_options(settings: Settings) -> dict[str, str]:
    """``nats.connect`` options of the identity in the settings (ANTQ_NATS_NKEY_SEED_FILE, ANTQ_NATS_CREDS)."""
    try:
        return nats_connect_options(settings)
    except AuthError as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _reported(what: str) -> Iterator[None]:
    """Turn what stops a command before it has an answer into one line on stderr and exit status 1."""
    from projections.errors import ProjectionError
    from services.cli.stats_view import QueryFailed

    try:
        yield
    except (QueryFailed, ProjectionError) as exc:
        say(err, exc, "red")
        raise typer.Exit(1) from None
    except nats.errors.NoRespondersError:
        err.print(f"[red]nothing answers on {what}: is that service running?[/red]")
        raise typer.Exit(1) from None
    except nats.errors.TimeoutError:
        err.print(f"[red]no answer in time on {what}[/red]")
        raise typer.Exit(1) from None
    except (OSError, nats.errors.Error, asyncpg.PostgresError) as exc:
        say(err, f"cannot reach the stack: {str(exc) or type(exc).__name__}", "red")
        raise typer.Exit(1) from None


def _require(url: str | None, name: str) -> str:
    if not url:
        err.print(f"[red]{name} is not set: start `antq dev up` and export the URL it prints[/red]")
        raise typer.Exit(2)
    return url


@dev.command("up")
def dev_up(
    offices: Annotated[Path | None, typer.Option(help="offices registry (TOML)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="keep server data here (default: a temp dir)")] = None,
) -> None:
    """Start embedded NATS and PostgreSQL (unless URLs are set), the streams and every service."""
    from services.cli.devstack import DEMO_OFFICES, embedded_servers, running_services

    settings = _settings()
    registry = offices or settings.offices_path or DEMO_OFFICES

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with embedded_servers(settings, data_dir or settings.data_dir) as urls:
            async with running_services(urls, settings, registry):
                print(
                    msgspec.json.encode(
                        {"nats_url": urls.nats_url, "database_url": urls.database_url}
                    ).decode(),
                    flush=True,
                )
                await stop.wait()

    asyncio.run(serve())


@db.command("migrate")
def db_migrate() -> None:
    """Apply pending SQL migrations to ANTQ_DATABASE_URL."""
    url = _require(_settings().database_url, "ANTQ_DATABASE_URL")

    async def run() -> list[str]:
        conn = await asyncpg.connect(url)
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    applied = asyncio.run(run())
    console.print(f"applied: {', '.join(applied) if applied else 'nothing (up to date)'}")


@app.command()
def publish(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON lines, one event per line")],
    office: Annotated[str, typer.Option(help="your office id")],
    batch_size: Annotated[int, typer.Option(min=1, max=1000)] = 500,
    rejected: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="write every rejected line here as JSON lines: line, event_id, code, message, path",
        ),
    ] = None,
) -> None:
    """Publish a file of events through the gateway; prints accepted / duplicate / rejected by code, and each
    rejected line (number, event id, code, path, message) on stderr. Exit 0: all accepted; 1: some rejected."""
    from services.cli.publish import (
        RejectedWriter,
        numbered_lines,
        print_rejections,
        publish_lines,
        summary_table,
    )

    settings = _settings()
    url = _require(settings.nats_url, "ANTQ_NATS_URL")
    options = _nats_options(settings)
    total = sum(1 for _ in numbered_lines(file))
    with contextlib.ExitStack() as files:
        try:
            sink = RejectedWriter(files.enter_context(rejected.open("wb")).write) if rejected else None
        except OSError as exc:
            say(err, f"--rejected {rejected}: {exc.strerror or exc}", "red")
            raise typer.Exit(2) from None
        lines = numbered_lines(file)
        with _reported("the gateway"):
            summary = asyncio.run(
                publish_lines(
                    url,
                    office,
                    lines,
                    batch_size=batch_size,
                    total=total,
                    nats_options=options,
                    on_rejected=sink,
                )
            )
    console.print(summary_table(summary))
    print_rejections(summary, err)
    if summary.rejected:
        raise typer.Exit(1)


app.command("rejected")(__import__("services.cli.rejected", fromlist=["command"]).command)


@app.command()
def stats(
    year: Annotated[int, typer.Option(help="statistics year")],
    ward: Annotated[str | None, typer.Option(help="2025 ward code")] = None,
    province: Annotated[str | None, typer.Option(help="2025 province code")] = None,
    period: Annotated[str, typer.Option(help="calendar | reporting")] = "calendar",
) -> None:
    """Print one ward's or one province's figures for a year."""
    from events.subjects import QUERY_SUBJECT
    from services.cli.stats_view import query_stats, stats_table

    settings = _settings()
    url = _require(settings.nats_url, "ANTQ_NATS_URL")
    options = _nats_options(settings)
    if (ward is None) == (province is None):
        err.print("[red]give exactly one of --ward or --province[/red]")
        raise typer.Exit(2)
    request = {"year": year, "period": period, **({"ward": ward} if ward else {"province": province})}

    async def run() -> dict[str, object]:
        nc = await nats.connect(url, **options)
        try:
            return await query_stats(nc, request)
        finally:
            await nc.drain()

    with _reported(f"{QUERY_SUBJECT} (the query service)"):
        reply = asyncio.run(run())
    console.print(
        stats_table(f"{'ward ' + ward if ward else 'province ' + str(province)}, {year} ({period})", reply)
    )


@projections_cli.command("rebuild")
def projections_rebuild(name: Annotated[str, typer.Argument(help="the read model: stats")]) -> None:
    """Build a fresh copy from sequence 1 beside the live one, switch atomically, drop the old copy."""
    from projections.rebuild import Rebuild
    from projections.store import NAME

    if name != NAME:
        say(err, f"unknown read model {name!r}; known: {NAME}", "red")
        raise typer.Exit(2)
    settings = _settings()
    nats_url = _require(settings.nats_url, "ANTQ_NATS_URL")
    database_url = _require(settings.database_url, "ANTQ_DATABASE_URL")
    options = _nats_options(settings)

    async def run() -> str:
        nc = await nats.connect(nats_url, **options)
        try:
            report = await Rebuild(nc, database_url).run()
        finally:
            await nc.drain()
        return (
            f"{name}: copy {report.new_copy} (fold v{report.fold_version}) active from seq {report.switch_seq}; "
            + (
                f"copy {report.old_copy} dropped"
                if report.old_dropped
                else f"copy {report.old_copy} retired (a runner still held it: the next rebuild drops it)"
            )
            + f"; {report.events} events folded"
        )

    with _reported("NATS or PostgreSQL"):
        console.print(asyncio.run(run()))


@app.command()
def demo() -> None:
    """Embedded stack + the Trà Lĩnh 2018 demo set; prints the district's table next to the article's."""
    from services.demo.run import run_demo

    ok = asyncio.run(run_demo(_settings(), console))
    if not ok:
        raise typer.Exit(1)


def main() -> None:
    app()
