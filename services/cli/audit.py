"""``antq audit …``: auditors' commands. Read-only against a running stack (NATS URL + credentials, PostgreSQL).

With a server that requires auth, ANTQ_NATS_NKEY_SEED_FILE names the auditor's seed (``antq auth generate``)
and ANTQ_READ_MODE=direct makes the commands read with batched direct gets, the only reads that identity may
make (no consumer: ``infra.reading.audit_reader``). Exit status: 0 nothing found, 1 findings, 2 not configured, not
reachable, refused, or a read that could not complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import msgspec
import nats.errors
import typer
from rich.markup import escape
from rich.table import Table

from infra.auth import AuthError, nats_connect_options
from infra.reading import audit_reader
from infra.settings import Settings, SettingsError
from infra.stream_reader import StreamReadError
from infra.streams import EVENTS, SEALS
from services.cli.plain import cell, say
from services.cli.plain import console as plain_console
from services.sealer.chain import Seal
from services.sealer.findings import Expected, Report
from services.sealer.verify import verify_at

audit = typer.Typer(no_args_is_help=True, help="Auditors: verify the log and its seals (read access only).")
console = plain_console()
err = plain_console(stderr=True)

TRUSTED_KEYS_ENV = "ANTQ_SEAL_PUBLIC_KEYS"


@audit.callback()
def _group() -> None:
    """Auditors' commands (a group even while it holds one command)."""


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None


def _require(value: str | None, name: str) -> str:
    if not value:
        err.print(f"[red]{name} is not set[/red]")
        raise typer.Exit(2)
    return value


@contextlib.contextmanager
def failing_clearly(settings: Settings) -> Iterator[None]:
    """Turn what stops an audit command before it has an answer into one line on stderr and exit status 2."""
    try:
        yield
    except AuthError as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None
    except StreamReadError as exc:
        say(err, f"the read of the log could not complete: {exc}", "red")
        raise typer.Exit(2) from None
    except nats.errors.TimeoutError:
        err.print(
            "[red]NATS did not answer in time (the server never answers a request this identity may not "
            "make: see any permissions violation above; the generated auditor identity reads only with "
            "ANTQ_READ_MODE=direct)[/red]"
        )
        raise typer.Exit(2) from None
    except (OSError, nats.errors.Error, asyncpg.PostgresError) as exc:
        say(err, f"cannot reach the stack: {str(exc) or type(exc).__name__}", "red")
        if "authorization" in str(exc).lower():
            if settings.nats_nkey_seed_file is None and settings.nats_creds is None:
                err.print(
                    "[red]the NATS server requires an identity: set ANTQ_NATS_NKEY_SEED_FILE to the "
                    "auditor's seed file (auditor.nk, from `antq auth generate`)[/red]"
                )
            else:
                err.print("[red]the NATS server does not know this identity (is it in its auth.conf?)[/red]")
        raise typer.Exit(2) from None


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


class ExportRecord(msgspec.Struct, kw_only=True):
    """What ``export_record`` prints, read back (``--expect FILE``)."""

    stream: str
    seal: int | None
    digest: Annotated[str, msgspec.Meta(pattern=r"\A[0-9a-f]{64}\Z")] | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    events: int | None = None
    sealed_at: dt.datetime | None = None
    stream_created: dt.datetime | None = None
    signer: str | None = None


_INLINE_EXPECT = re.compile(r"(\d+):([0-9a-fA-F]{64})")


def _usage(message: str) -> typer.Exit:
    err.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


def parse_expect(value: str, stream: str) -> Expected:
    """``N:DIGEST``, or a file holding what ``--export --format json`` printed (the whole output or its
    ``export`` object). Exit 2 with one line on stderr when it is neither, or names no seal or another stream."""
    inline = _INLINE_EXPECT.fullmatch(value.strip())
    if inline is not None:
        return Expected(number=int(inline[1]), digest=inline[2].lower())
    try:
        raw = Path(value).read_bytes()
    except OSError as exc:
        raise _usage(
            f"--expect {value}: neither N:DIGEST (a seal number and its 64 hex digits) nor a readable file "
            f"({exc.strerror or type(exc).__name__})"
        ) from None
    try:
        body: Any = msgspec.json.decode(raw)
        if isinstance(body, dict) and isinstance(body.get("export"), dict):
            body = body["export"]
        record = msgspec.convert(body, ExportRecord)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _usage(
            f"--expect {value}: not what `antq audit seals --export --format json` prints ({exc})"
        ) from None
    if record.seal is None or record.digest is None:
        raise _usage(f"--expect {value}: the export names no seal (the log had none when it was printed)")
    if record.stream != stream:
        raise _usage(
            f"--expect {value}: the export is of stream {record.stream}; give --stream {record.stream}"
        )
    return Expected(
        number=record.seal,
        digest=record.digest,
        stream=record.stream,
        first_seq=record.first_seq,
        last_seq=record.last_seq,
        count=record.events,
        stream_created=record.stream_created,
        sealed_at=record.sealed_at,
        signer=record.signer,
    )


def _summary(report: Report) -> Table:
    table = Table(title=f"seals of {report.stream}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")  # a printed seal's digest whole
    table.add_row("seals in NATS / PostgreSQL", f"{report.seals_nats} / {report.seals_postgres}")
    table.add_row("sealed through sequence", str(report.sealed_through))
    table.add_row("stream last sequence", str(report.stream_last_seq) if report.stream_last_seq else "-")
    table.add_row("events recomputed", str(report.events_checked))
    table.add_row("not sealed yet", str(report.unsealed))
    for printed in report.expected:
        table.add_row("printed seal checked", f"#{printed.number} {printed.digest}")
    for seal in report.restores:
        table.add_row("restored (information)", restore_line(seal))
    return table


def restore_line(seal: Seal) -> str:
    """A restore seal, said on the report: the chain goes on across a new creation time of the stream."""
    was = seal.restored_from.isoformat() if seal.restored_from is not None else "?"
    return (
        f"seal #{seal.number}: {seal.stream} created anew {seal.stream_created.isoformat()} (was {was}), "
        f"events 1..{seal.last_seq} ({seal.count}) checked against the seals and signed {seal.sealed_at.isoformat()}"
    )


def _findings(report: Report) -> Table:
    table = Table(title="findings")
    for col in ("kind", "store", "seal", "range", "detail"):
        table.add_column(col)
    for f in report.findings:
        span = f"{f.first_seq}..{f.last_seq}" if f.first_seq is not None else ""
        table.add_row(cell(f.kind), cell(f.store), cell(f.seal or ""), span, cell(f.detail))
    return table


def _export_table(record: dict[str, object]) -> Table:
    table = Table(title="latest seal (for the printed report)", show_header=False)
    table.add_column("", style="bold", no_wrap=True)
    table.add_column("", overflow="fold")  # a digest is printed whole, folded if the terminal is narrow
    for key, value in record.items():
        table.add_row(key, cell(value))
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
    expect: Annotated[
        list[str] | None,
        typer.Option(
            help="a seal printed earlier, which must still be in both stores with the chain going on from it: "
            "N:DIGEST, or a file holding the output of --export --format json (repeatable)"
        ),
    ] = None,
) -> None:
    """Recompute the seal chain from the events; report altered ranges, gaps, a recreated stream, bad seals."""
    if output not in ("table", "json"):
        err.print("[red]--format is table or json[/red]")
        raise typer.Exit(2)
    expected = [parse_expect(value, stream) for value in expect or []]
    settings = _settings()
    nats_url = _require(settings.nats_url, "ANTQ_NATS_URL")
    database_url = _require(settings.database_url, "ANTQ_DATABASE_URL")
    keys = set(trusted_key or []) | {
        k.strip() for k in os.environ.get(TRUSTED_KEYS_ENV, "").split(",") if k.strip()
    }
    with failing_clearly(settings):
        report = asyncio.run(
            verify_at(
                nats_url=nats_url,
                database_url=database_url,
                nats_options=nats_connect_options(settings),
                reader=audit_reader(settings),
                stream=stream,
                seals_stream=seals_stream,
                trusted_keys=frozenset(keys) if keys else None,
                expected=expected,
            )
        )
    pin_hint = f" (pin it with --trusted-key or ${TRUSTED_KEYS_ENV})"
    warnings = [
        f"warning: {w.detail}" + (pin_hint if w.kind == "signer_not_pinned" else "") for w in report.warnings
    ]
    if output == "json":
        body: dict[str, object] = {"ok": report.ok, "report": report}
        if export:
            body["export"] = export_record(report)
        print(msgspec.json.encode(body).decode())
        for line in warnings:
            err.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(_summary(report))
        for line in warnings:
            console.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)
        if export:
            console.print(_export_table(export_record(report)))
        if report.findings:
            console.print(_findings(report))
            console.print(f"[red bold]{len(report.findings)} finding(s)[/red bold]")
        else:
            console.print("[green bold]intact: every sealed range matches its seal[/green bold]")
    if not report.ok:
        raise typer.Exit(1)


VIETNAM = dt.timezone(dt.timedelta(hours=7))


def known_instant(value: str) -> dt.datetime:
    """``--as-known-on``: an instant. A bare date is refused (exit 2): read as 00:00 it would leave out that
    whole day's entries, while whoever copies a report's print date means the day included. A date-time
    without a zone is Vietnam time."""
    text = value.strip()
    try:
        day: dt.date | None = dt.date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None:
        raise _usage(
            f"--as-known-on {value} is a date, not an instant: it would mean 00:00 that day and leave out the "
            f"day's entries; give a date-time with its time zone, e.g. {day.isoformat()}T17:00+07:00"
        )
    try:
        known = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _usage(
            f"--as-known-on {value} is not an ISO 8601 date-time; give one with its time zone, "
            "e.g. 2026-11-22T17:00+07:00"
        ) from None
    return known if known.tzinfo is not None else known.replace(tzinfo=VIETNAM)


@audit.command("replay")
def replay_command(
    ward: Annotated[str | None, typer.Option(help="2025 ward code")] = None,
    province: Annotated[
        str | None, typer.Option(help="2025 province code (with --scheme gso-pre2025: a pre-2025 province)")
    ] = None,
    scheme: Annotated[
        str, typer.Option(help="gso-2025 | gso-pre2025 (units as recorded, no mapping)")
    ] = "gso-2025",
    commune: Annotated[str | None, typer.Option(help="pre-2025 commune code (--scheme gso-pre2025)")] = None,
    district: Annotated[
        str | None, typer.Option(help="pre-2025 district code (--scheme gso-pre2025)")
    ] = None,
    year: Annotated[int | None, typer.Option(help="one year (default: every year with figures)")] = None,
    years: Annotated[
        str | None, typer.Option(help="a range of years, e.g. 2014-2019: flows summed, stocks at its end")
    ] = None,
    as_of_occurred: Annotated[
        str | None, typer.Option(help="business time: only facts that occurred on or before this date")
    ] = None,
    as_known_on: Annotated[
        str | None,
        typer.Option(
            help="record time: only what the log had stored by this instant, an ISO 8601 date-time with its "
            "time zone (e.g. 2026-11-22T17:00+07:00); a bare date is refused"
        ),
    ] = None,
    period: Annotated[str, typer.Option(help="calendar | reporting")] = "calendar",
    output: Annotated[str, typer.Option("--format", help="table | json | csv")] = "table",
    to_seq: Annotated[
        int | None,
        typer.Option(min=1, help="read the log up to this stream sequence (a report's as_of_seq)"),
    ] = None,
) -> None:
    """Recompute statistics from ANTQ_EVENTS alone (no PostgreSQL), as of any date or stream sequence."""
    from services.audit.replay import AuditError, ReplayScope
    from services.cli.audit_replay import as_csv, replies, run_replay
    from services.cli.stats_view import parse_years, stats_table

    places = [p for p in (ward, province, commune, district) if p is not None]
    if len(places) > 1 or output not in ("table", "json", "csv"):
        err.print(
            "[red]give at most one of --ward / --province / --commune / --district; --format is table, json or"
            " csv[/red]"
        )
        raise typer.Exit(2)
    if scheme not in ("gso-2025", "gso-pre2025"):
        err.print("[red]--scheme is gso-2025 or gso-pre2025[/red]")
        raise typer.Exit(2)
    if period not in ("calendar", "reporting"):
        err.print("[red]--period is calendar or reporting[/red]")
        raise typer.Exit(2)
    try:
        occurred = dt.date.fromisoformat(as_of_occurred) if as_of_occurred else None
    except ValueError as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None
    known = known_instant(as_known_on) if as_known_on else None
    first: int | None = None
    if years is not None:
        if year is not None:
            err.print("[red]give --year or --years, not both[/red]")
            raise typer.Exit(2)
        try:
            first, year = parse_years(years)
        except ValueError as exc:
            say(err, exc, "red")
            raise typer.Exit(2) from None
    settings = _settings()
    url = _require(settings.nats_url, "ANTQ_NATS_URL")
    scope = ReplayScope(
        ward=ward,
        province=province,
        scheme=scheme,
        commune=commune,
        district=district,
        year=year,
        from_year=first,
        period="reporting" if period == "reporting" else "calendar",
        as_of_occurred=occurred,
        as_known_on=known,
        stop_seq=to_seq,
    )
    try:
        with failing_clearly(settings):
            result = asyncio.run(run_replay(settings, url, scope, err))
    except AuditError as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None
    rows = replies(result, scope)
    if output == "json":
        print(msgspec.json.encode(rows[0] if year is not None else rows).decode())
    elif output == "csv":
        print(as_csv(rows), end="")
    else:
        place = (
            f"ward {ward}"
            if ward
            else f"commune {commune}"
            if commune
            else f"district {district}"
            if district
            else f"province {province}"
            if province
            else "all wards"
        )
        if scheme == "gso-pre2025":
            place = f"pre-2025 {place}"
        for reply in rows:
            when = reply.get("year") or f"{reply['from_year']}–{reply['to_year']}"
            console.print(stats_table(f"{place}, {when} ({period}) — replayed", reply))
        if not rows:  # without --year, the years are those with figures: say there are none
            say(
                console,
                f"{place}: no figures in any year up to seq {result.as_of_seq} ({period} years);"
                " give --year to print one year's zeros",
            )


@audit.command("verify")
def verify_command() -> None:
    """Replay the whole log in memory and compare every figure with the live read model at the same seq."""
    from services.cli.audit_replay import differences_table, run_verify

    settings = _settings()
    nats_url = _require(settings.nats_url, "ANTQ_NATS_URL")
    database_url = _require(settings.database_url, "ANTQ_DATABASE_URL")
    with failing_clearly(settings):
        result = asyncio.run(run_verify(settings, nats_url, database_url, err))
    if result.differences:
        console.print(differences_table(result))
        console.print(f"[red bold]{len(result.differences)} figure(s) differ[/red bold]")
        raise typer.Exit(1)
    console.print(f"[green]{result.figures} figures match the replay at seq {result.as_of_seq}[/green]")


@audit.command("foreign")
def foreign_command(
    from_seq: Annotated[int, typer.Option(help="first sequence to read")] = 1,
    output: Annotated[str, typer.Option("--format", help="table | json")] = "table",
) -> None:
    """List the records of ANTQ_EVENTS that every reader sets aside: sequence, subject, why, first bytes.

    Exit status 0 when there are none, 1 when there are (or when a record's type is unknown to this code).
    """
    from services.cli.audit_replay import run_foreign

    if output not in ("table", "json") or from_seq < 1:
        err.print("[red]--format is table or json; --from-seq is 1 or more[/red]")
        raise typer.Exit(2)
    settings = _settings()
    url = _require(settings.nats_url, "ANTQ_NATS_URL")
    with failing_clearly(settings):
        scan = asyncio.run(run_foreign(settings, url, from_seq, err))
    rows = [("foreign", f) for f in scan.records] + [("unknown_type", f) for f in scan.unknown_types]
    rows.sort(key=lambda row: row[1].seq)
    if output == "json":
        print(
            msgspec.json.encode(
                [
                    {
                        "seq": f.seq,
                        "subject": f.subject,
                        "kind": kind,
                        "why": f.why,
                        "head": f.head.decode("utf-8", "backslashreplace"),
                    }
                    for kind, f in rows
                ]
            ).decode()
        )
    else:
        table = Table(title=f"records set aside in {EVENTS} ({scan.read} read from seq {from_seq})")
        for column in ("seq", "subject", "kind", "why", "first bytes"):
            table.add_column(column, justify="right" if column == "seq" else "left", overflow="fold")
        for kind, f in rows:
            table.add_row(
                str(f.seq),
                escape(f.subject),
                kind,
                escape(f.why),
                escape(repr(f.head)[2:-1]),  # the bytes as Python writes them: control bytes escaped
            )
        console.print(table, emoji=False)
        console.print(f"{len(scan.records)} foreign record(s), {len(scan.unknown_types)} of an unknown type")
    if rows:
        raise typer.Exit(1)
