"""The ``antq`` command line. Thin: each command delegates to a module that holds its logic."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
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
from infra.nats_client import connect as fast_connect
from infra.nats_client import server_urls
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
app.add_typer(__import__("services.cli.outbox", fromlist=["outbox"]).outbox, name="outbox")
console = plain_console()
err = plain_console(stderr=True)

COMMAND_IDENTITY = {"audit": "auditor", "stats": "reader", "report": "reader", "projections": "projector"}
"""The identity each command connects as in the credentials directory (``publish``: the office's own)."""


@app.callback()
def _root(
    ctx: typer.Context,
    credentials_dir: Annotated[
        Path | None,
        typer.Option(
            "--credentials-dir",
            envvar="ANTQ_CREDENTIALS_DIR",
            file_okay=False,
            help="the identities (`antq auth generate`, `antq dev up`): each command connects as its own",
        ),
    ] = None,
) -> None:
    """Pass the credentials directory, and the identity the command runs as there, to its settings."""
    chosen: dict[str, str] = {}
    if credentials_dir is not None:
        chosen["ANTQ_CREDENTIALS_DIR"] = str(credentials_dir)
    identity = COMMAND_IDENTITY.get(ctx.invoked_subcommand or "")
    if identity is not None and not os.environ.get("ANTQ_IDENTITY"):
        chosen["ANTQ_IDENTITY"] = identity
    saved = {name: os.environ.get(name) for name in chosen}
    os.environ.update(chosen)

    def restore() -> None:  # in-process callers (tests) get their environment back
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    ctx.call_on_close(restore)


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
    except AuthError as exc:  # an identity, an office id, a registry that cannot be used
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
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
        if "authorization" in str(exc).lower():
            say(
                err,
                "the NATS server requires an identity: give --credentials-dir (ANTQ_CREDENTIALS_DIR), "
                "the directory `antq dev up` prints as credentials_dir",
                "red",
            )
        raise typer.Exit(1) from None


async def _quiet(exc: Exception) -> None:
    """nats-py's default prints a traceback for what the command reports itself on one line."""


def _require(url: str | None, name: str) -> str:
    if not url:
        err.print(f"[red]{name} is not set: start `antq dev up` and export the URL it prints[/red]")
        raise typer.Exit(2)
    return url


def secure_stack(settings: Settings, insecure: bool) -> bool:
    """Whether ``dev up`` / ``demo`` run the secure stack; the open one is announced on stderr every start.

    With an external NATS (ANTQ_NATS_URL) and no credentials directory, the services connect as the settings'
    one identity, as before: that server's authorization is its own."""
    if insecure:
        from services.cli.devstack import INSECURE_WARNING

        err.print(INSECURE_WARNING, style="bold red", markup=False, highlight=False)
        return False
    return not settings.nats_url or settings.credentials_dir is not None


def _check_offices(registry: Path) -> None:
    """A registry the gateway cannot load stops ``dev up`` with one line before any server starts."""
    from events.localities import Localities
    from services.gateway.errors import OfficesFileError
    from services.gateway.offices import OfficeRegistry

    try:
        OfficeRegistry.load(registry, Localities.load())
    except OfficesFileError as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None


@dev.command("up")
def dev_up(
    offices: Annotated[Path | None, typer.Option(help="offices registry (TOML)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="keep server data here (default: a temp dir, removed on exit)")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="the open stack: no identities, anyone may publish anything")
    ] = False,
    cluster: Annotated[
        int,
        typer.Option(
            min=1,
            max=5,
            help="nats-servers in one JetStream cluster on loopback, every stream at that many replicas "
            "(default: one server)",
        ),
    ] = 1,
) -> None:
    """Start embedded NATS and PostgreSQL (unless URLs are set), the streams and every service.

    Secure by default: identities in <data dir>/credentials (or --credentials-dir), generated on the first
    start; nats-server refuses anonymous connections; every service runs as its own role. With --cluster 3,
    three nats-servers and every stream at 3 replicas; the ready line's nats_url lists every node."""
    from services.cli.devstack import DEMO_OFFICES, embedded_servers, running_services

    settings = _settings()
    if cluster > 1:
        if settings.nats_url:
            err.print(
                f"--cluster {cluster} starts an embedded cluster, but ANTQ_NATS_URL is set: unset it, or drop "
                "--cluster and set ANTQ_STREAM_REPLICAS for the cluster you run",
                style="red",
                markup=False,
                highlight=False,
            )
            raise typer.Exit(2)
        settings = dataclasses.replace(settings, stream_replicas=cluster)
    registry = offices or settings.offices_path or DEMO_OFFICES
    _check_offices(registry)
    secure = secure_stack(settings, insecure)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with embedded_servers(
            settings, data_dir or settings.data_dir, secure=secure, offices=registry, cluster=cluster
        ) as urls:
            async with running_services(urls, settings, registry, web=True) as web_url:
                ready = {
                    "nats_url": urls.nats_url,
                    "database_url": urls.database_url,
                    "credentials_dir": str(urls.credentials_dir) if urls.credentials_dir else None,
                    "web_url": web_url,
                }
                print(msgspec.json.encode(ready).decode(), flush=True)
                await stop.wait()

    with _reported("the development stack"):
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


app.command("publish")(__import__("services.cli.publish", fromlist=["command"]).command)
app.command("rejected")(__import__("services.cli.rejected", fromlist=["command"]).command)
app.command("report")(__import__("services.cli.report_cmd", fromlist=["command"]).command)
app.command("backup")(__import__("services.cli.backup", fromlist=["backup"]).backup)
app.command("restore")(__import__("services.cli.backup", fromlist=["restore"]).restore)
app.add_typer(__import__("services.cli.backup", fromlist=["seals"]).seals, name="seals")


@app.command()
def stats(
    year: Annotated[int | None, typer.Option(help="statistics year")] = None,
    years: Annotated[
        str | None, typer.Option(help="a range of years, e.g. 2014-2019: flows summed, stocks at its end")
    ] = None,
    ward: Annotated[str | None, typer.Option(help="2025 ward code")] = None,
    province: Annotated[
        str | None, typer.Option(help="2025 province code (with --scheme gso-pre2025: a pre-2025 province)")
    ] = None,
    period: Annotated[str, typer.Option(help="calendar | reporting")] = "calendar",
    scheme: Annotated[
        str, typer.Option(help="gso-2025 | gso-pre2025 (units as recorded, no mapping)")
    ] = "gso-2025",
    commune: Annotated[str | None, typer.Option(help="pre-2025 commune code (--scheme gso-pre2025)")] = None,
    district: Annotated[
        str | None, typer.Option(help="pre-2025 district code (--scheme gso-pre2025)")
    ] = None,
) -> None:
    """Print one ward's or one province's figures for a year, or for a range of years (or a pre-2025 unit's,
    as recorded, with --scheme gso-pre2025)."""
    from events.subjects import QUERY_SUBJECT
    from services.cli.stats_view import parse_years, query_stats, stats_table

    settings = _settings()
    url = _require(settings.nats_url, "ANTQ_NATS_URL")
    options = _nats_options(settings)
    named = {
        k: v
        for k, v in (("ward", ward), ("province", province), ("commune", commune), ("district", district))
        if v
    }
    if len(named) != 1:
        err.print("[red]give exactly one of --ward, --province, --commune or --district[/red]")
        raise typer.Exit(2)
    if (year is None) == (years is None):
        err.print("[red]give exactly one of --year or --years[/red]")
        raise typer.Exit(2)
    when: dict[str, int]
    if years is not None:
        try:
            first, last = parse_years(years)
        except ValueError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        when = {"from_year": first, "to_year": last}
        label = f"{first}–{last}"
    else:
        assert year is not None
        when, label = {"year": year}, str(year)
    request: dict[str, object] = {**when, "period": period, **named}
    if scheme != "gso-2025":
        request["scheme"] = scheme
    ((kind, code),) = named.items()
    title = f"{'pre-2025 ' if scheme == 'gso-pre2025' else ''}{kind} {code}, {label} ({period})"

    async def run() -> dict[str, object]:
        # no retries: a server that is away or refuses the identity is said at once
        nc = await nats.connect(
            server_urls(url),
            allow_reconnect=False,
            max_reconnect_attempts=1,
            connect_timeout=5,
            error_cb=_quiet,
            **options,
        )
        try:
            return await query_stats(nc, request)
        finally:
            await nc.drain()

    with _reported(f"{QUERY_SUBJECT} (the query service)"):
        reply = asyncio.run(run())
    console.print(stats_table(title, reply))


def _projector_database(settings: Settings, url: str) -> str:
    """With a credentials directory holding the projector's PostgreSQL password, the rebuild connects as the
    projector's role (the new copy's tables are then the projection's own, as the live runner's are)."""
    from infra.auth.pg_roles import PG_SERVICE_ROLE, pg_password, role_database_url

    role = PG_SERVICE_ROLE["projector"]
    if (
        settings.credentials_dir is None
        or not (settings.credentials_dir / "postgres_projector.password").exists()
    ):
        return url
    return role_database_url(url, role, pg_password(settings.credentials_dir, role))


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
    database_url = _projector_database(settings, _require(settings.database_url, "ANTQ_DATABASE_URL"))
    options = _nats_options(settings)

    async def run() -> str:
        # the fast client: a one-worker rebuild reads the whole stream through it (raw routes, infra/pull.py)
        nc = await fast_connect(nats_url, **options)
        try:
            # ANTQ_PROJECTION_WORKERS > 1: one worker process per partition (projections/partitions.py)
            report = await Rebuild(
                nc, database_url, workers=settings.projection_workers, nats_url=nats_url
            ).run()
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
def demo(
    name: Annotated[
        str | None, typer.Argument(metavar="[SET]", help="the set to run (default tra-linh-2018; --list)")
    ] = None,
    list_sets: Annotated[bool, typer.Option("--list", help="list the sets and exit")] = False,
    insecure: Annotated[bool, typer.Option("--insecure", help="the open stack (see `antq dev up`)")] = False,
) -> None:
    """Embedded stack + one article's set, published through the gateway; prints the set's figures from the query
    service beside the article's, each ✓ or ✗; exit 1 unless every row is ✓."""
    from services.demo.sets import DEFAULT, SETS

    if list_sets:
        for demo_set in SETS.values():
            say(
                console,
                f"{demo_set.name}{' (default)' if demo_set.name == DEFAULT else ''}: {demo_set.title}",
            )
        return
    chosen = SETS.get(name or DEFAULT)
    if chosen is None:
        say(err, f"no demo set {name!r}; the sets are: {', '.join(SETS)} (antq demo --list)", "red")
        raise typer.Exit(2)
    from services.demo.run import run_demo

    settings = _settings()
    secure = secure_stack(settings, insecure)
    with _reported("the demo stack"):
        ok = asyncio.run(run_demo(settings, console, chosen, secure=secure))
    if not ok:
        raise typer.Exit(1)


def main() -> None:
    app()
