"""The logic behind ``antq audit replay`` and ``antq audit verify`` (the commands live in audit.py)."""

from __future__ import annotations

import csv
import io
from typing import Any

import asyncpg
import typer
from nats.aio.client import Client
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from events.localities import Localities
from infra.auth import nats_connect_options
from infra.nats_client import connect as nats_connect
from infra.reading import audit_reader
from infra.settings import Settings
from projections.metrics import FOLD_VERSION, approximate, complete
from services.audit.foreign import ForeignScan, scan_foreign
from services.audit.replay import ReplayResult, ReplayScope, replay
from services.audit.verify import Verification, verify
from services.cli.plain import cell
from services.cli.plain import console as plain_console


async def connect(settings: Settings, url: str, err: Console) -> Client:
    """Connect as the identity of the settings; fail at once (no retries) when the server is away or refuses.

    What the server reports afterwards (a permissions violation) is printed on one line, not as a traceback."""
    options = nats_connect_options(settings)
    connected = False

    async def report(exc: Exception) -> None:
        if connected:
            err.print(f"[yellow]NATS: {escape(str(exc))}[/yellow]")

    nc = await nats_connect(
        url,
        name="antq-audit",
        connect_timeout=5,
        allow_reconnect=False,
        max_reconnect_attempts=1,
        error_cb=report,
        **options,
    )
    connected = True
    return nc


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[dim]replaying ANTQ_EVENTS[/dim]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


async def run_replay(settings: Settings, url: str, scope: ReplayScope, err: Console) -> ReplayResult:
    reader = audit_reader(settings)
    nc = await connect(settings, url, err)
    try:
        with _progress(err) as bar:
            task = bar.add_task("replay", total=None)

            def advance(seq: int, stop: int) -> None:
                bar.update(task, completed=seq, total=stop)

            return await replay(nc, scope, Localities.load(), progress=advance, reader=reader)
    finally:
        await nc.close()


def replies(result: ReplayResult, scope: ReplayScope) -> list[dict[str, Any]]:
    """One query-service-shaped reply per year (the given year, or every year with figures)."""
    years = [scope.year] if scope.year is not None else result.replay.years(scope.period, scope.until())
    place: dict[str, Any] = {"scheme": scope.scheme} if scope.legacy else {}
    if scope.ward is not None:
        place["ward"] = scope.ward
    elif scope.commune is not None:
        place["commune"] = scope.commune
    elif scope.district is not None:
        place["district"] = scope.district
    elif scope.province is not None:
        place["province"] = scope.province
    out = []
    for year in years:
        sums = result.replay.sums(
            wards=result.wards, year=year, period=scope.period, from_year=scope.from_year
        )
        reply = {
            **place,
            **(
                {"from_year": scope.from_year, "to_year": year}
                if scope.from_year is not None
                else {"year": year}
            ),
            "period": scope.period,
            "metrics": complete(sums),
            "as_of_seq": result.as_of_seq,
            "stale": False,
            "fold_version": FOLD_VERSION,
        }
        if approximate(sums):
            reply["approximate"] = approximate(sums)
        out.append(reply)
    return out


def as_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["place", "year", "period", "metric", "value", "as_of_seq"])
    for reply in rows:
        place = (
            reply.get("ward")
            or reply.get("commune")
            or reply.get("district")
            or reply.get("province")
            or "all"
        )
        for metric, value in reply["metrics"].items():
            when = reply.get("year") or f"{reply['from_year']}-{reply['to_year']}"
            writer.writerow([place, when, reply["period"], metric, value, reply["as_of_seq"]])
    return out.getvalue()


async def run_verify(settings: Settings, nats_url: str, database_url: str, err: Console) -> Verification:
    """The verification, when it can be trusted; otherwise its problems (and any differences) are printed and
    the command exits 1."""
    reader = audit_reader(settings)
    nc = await connect(settings, nats_url, err)
    try:
        conn = await asyncpg.connect(database_url)
        try:
            with _progress(err) as bar:
                task = bar.add_task("verify", total=None)

                def advance(seq: int, stop: int) -> None:
                    bar.update(task, completed=seq, total=stop)

                result = await verify(nc, conn, Localities.load(), progress=advance, reader=reader)
        finally:
            await conn.close()
    finally:
        await nc.close()
    err.print(position_line(result), markup=False, emoji=False)
    if result.problems:
        for problem in result.problems:
            err.print(f"[red bold]cannot verify as it stands:[/red bold] [red]{escape(str(problem))}[/red]")
        if result.differences:
            plain_console().print(differences_table(result))
        raise typer.Exit(1)
    return result


def position_line(result: Verification) -> str:
    """Where the read model stands against the log, always printed by verify."""
    state = "HALTED" if result.halted is not None else "running"
    distance = "caught up" if not result.behind else f"{result.behind} sequence(s) behind the log"
    line = (
        f"read model copy {result.copy}: checkpoint seq {result.as_of_seq}, log last seq {result.log_last_seq}"
        f" ({distance}; projection {state})"
    )
    if result.foreign:
        line += f"; {result.foreign} foreign record(s) set aside (antq audit foreign)"
    return line


def differences_table(result: Verification) -> Table:
    table = Table(title=f"read model (copy {result.copy}) vs replay, at seq {result.as_of_seq}")
    for column in ("period", "ward", "year", "metric", "live", "replayed", "difference"):
        numeric = column in ("live", "replayed", "difference")
        # fold rather than cut: two breakdowns of one metric must not look alike at any terminal width
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for d in result.differences:
        period, ward, year, metric = d.key
        table.add_row(
            cell(period),
            cell(ward),
            str(year),
            cell(metric),
            str(d.live),
            str(d.replayed),
            f"{d.live - d.replayed:+d}",
        )
    return table


async def run_foreign(settings: Settings, url: str, from_seq: int, err: Console) -> ForeignScan:
    reader = audit_reader(settings)
    nc = await connect(settings, url, err)
    try:
        return await scan_foreign(nc, Localities.load(), reader=reader, start_seq=from_seq)
    finally:
        await nc.close()
