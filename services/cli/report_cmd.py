"""``antq report``: the yearly report of a province or a ward (``services/report/``), from the query service
or, with ``--from-log``, from the log alone. Exit 0: written; 1: the stack could not answer; 2: a bad option."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import nats.errors
import typer

from events.localities import Localities
from infra.auth import AuthError
from infra.reading import audit_reader
from infra.settings import Settings, SettingsError
from infra.stream_reader import StreamReadError
from services.audit.errors import AuditError
from services.cli.plain import console as plain_console
from services.cli.plain import say
from services.cli.stats_view import QueryFailed, parse_years, query_stats
from services.report.document import Document
from services.report.errors import MovingLog, ReportError
from services.report.render import BINARY, WRITERS
from services.report.span import Span
from services.report.unit import Unit, names_of

err = plain_console(stderr=True)
SEALS_TIMEOUT = 10.0


def auditor_settings(settings: Settings) -> Settings:
    """The identity that reads the log and its seals: the auditor of the credentials directory (direct gets,
    the only reads it may make) when there is one, else the settings' own connection."""
    if settings.credentials_dir is None or settings.nats_nkey_seed_file is not None:
        return settings
    if not (settings.credentials_dir / "auditor.nk").exists():
        return settings
    return replace(settings, identity="auditor", read_mode="direct")


@contextlib.contextmanager
def _failing_clearly() -> Iterator[None]:
    try:
        yield
    except MovingLog as exc:
        say(err, exc, "red")
        raise typer.Exit(1) from None
    except (ReportError, AuditError, SettingsError) as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None
    except AuthError as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None
    except QueryFailed as exc:
        say(err, exc, "red")
        raise typer.Exit(1) from None
    except StreamReadError as exc:
        say(err, f"the read of the log could not complete: {exc}", "red")
        raise typer.Exit(1) from None
    except nats.errors.NoRespondersError:
        say(err, "nothing answers on antq.query.stats: is the query service running?", "red")
        raise typer.Exit(1) from None
    except nats.errors.TimeoutError:
        say(err, "no answer in time from NATS", "red")
        raise typer.Exit(1) from None
    except (OSError, nats.errors.Error) as exc:
        say(err, f"cannot reach the stack: {str(exc) or type(exc).__name__}", "red")
        raise typer.Exit(1) from None


async def make_report(
    settings: Settings,
    unit: Unit,
    span: Span,
    fmt: str,
    *,
    from_log: bool = False,
    to_seq: int | None = None,
) -> bytes:
    """The report's bytes in ``fmt``."""
    from services.report.render import render

    return render(await report_document(settings, unit, span, from_log=from_log, to_seq=to_seq), fmt)


async def report_document(
    settings: Settings,
    unit: Unit,
    span: Span,
    *,
    from_log: bool = False,
    to_seq: int | None = None,
) -> Document:
    """The report: figures from the query service (as the settings' identity) or from the log, the seal read
    as the auditor."""
    from services.audit.replay import ReplayScope, replay
    from services.cli.audit_replay import connect
    from services.report.document import build
    from services.report.figures import from_replay, gather_live
    from services.report.provenance import newest_seal, provenance

    url = settings.nats_url
    if not url:
        raise ReportError("ANTQ_NATS_URL is not set: start `antq dev up` and export the URL it prints")
    localities = Localities.load()
    auditor = auditor_settings(settings)
    audit_nc = await connect(auditor, url, err)
    try:
        if from_log:
            place: dict[str, Any] = unit.query_place()
            scope = ReplayScope(**place, stop_seq=to_seq)
            result = await replay(audit_nc, scope, localities, reader=audit_reader(auditor))
            figures = from_replay(result, unit, span, localities)
        else:
            nc = await connect(settings, url, err)
            try:

                async def ask(request: dict[str, Any]) -> dict[str, Any]:
                    return await query_stats(nc, request)

                figures = await gather_live(ask, unit, span, localities)
            finally:
                await nc.close()
        note = None
        try:
            seal = await asyncio.wait_for(
                newest_seal(audit_nc.jetstream(), audit_reader(auditor), figures.as_of_seq), SEALS_TIMEOUT
            )
        except (TimeoutError, nats.errors.Error, StreamReadError) as exc:
            seal, note = (
                None,
                f"không đọc được dấu niêm phong ({type(exc).__name__}): chạy `antq audit seals`",
            )
    finally:
        await audit_nc.close()
    return build(figures, provenance(figures, seal, note))


def command(
    province: Annotated[str | None, typer.Option(help="2025 province code, e.g. 04")] = None,
    ward: Annotated[str | None, typer.Option(help="2025 ward code, e.g. 01447")] = None,
    district: Annotated[
        str | None, typer.Option(help="pre-2025 district code, with --scheme gso-pre2025")
    ] = None,
    commune: Annotated[
        str | None, typer.Option(help="pre-2025 commune code, with --scheme gso-pre2025")
    ] = None,
    scheme: Annotated[str, typer.Option(help="gso-2025 | gso-pre2025")] = "gso-2025",
    year: Annotated[int | None, typer.Option(help="the year of the report")] = None,
    years: Annotated[
        str | None, typer.Option(help="a range of years, e.g. 2014-2019: flows summed, stocks at its end")
    ] = None,
    period: Annotated[
        str, typer.Option(help="calendar | reporting (15/12 of the year before to 14/12)")
    ] = "calendar",
    output: Annotated[str, typer.Option("--format", help="md | html | pdf | xlsx | csv")] = "md",
    out: Annotated[Path | None, typer.Option(dir_okay=False, help="write here (default: stdout)")] = None,
    from_log: Annotated[
        bool, typer.Option("--from-log", help="recompute from ANTQ_EVENTS alone (as `antq audit replay`)")
    ] = False,
    to_seq: Annotated[
        int | None, typer.Option(min=1, help="with --from-log: the last stream sequence to read")
    ] = None,
) -> None:
    """The yearly report of a province or a ward, in Vietnamese: prose, tables, the previous year, the wards
    below a province, and where the figures stand (sequence, fold version, seal, the replay command)."""
    if sum(given is not None for given in (province, ward, district, commune)) != 1:
        say(err, "give exactly one of --province, --ward, --district or --commune", "red")
        raise typer.Exit(2)
    legacy = scheme == "gso-pre2025"
    if (
        scheme not in ("gso-2025", "gso-pre2025")
        or ((district or commune) is not None and not legacy)
        or (legacy and ward is not None)
    ):
        say(
            err,
            "--district and --commune go with --scheme gso-pre2025 (and --province then names a pre-2025 "
            "province); --ward is a gso-2025 code",
            "red",
        )
        raise typer.Exit(2)
    if (year is None) == (years is None):
        say(err, "give exactly one of --year or --years", "red")
        raise typer.Exit(2)
    if period not in ("calendar", "reporting"):
        say(err, "--period is calendar or reporting", "red")
        raise typer.Exit(2)
    if output not in WRITERS:
        say(err, f"--format is one of {', '.join(WRITERS)}", "red")
        raise typer.Exit(2)
    if to_seq is not None and not from_log:
        say(err, "--to-seq goes with --from-log (the query service answers at its own sequence)", "red")
        raise typer.Exit(2)
    if output in BINARY and out is None and sys.stdout.isatty():
        say(err, f"--format {output} is binary: give --out FILE", "red")
        raise typer.Exit(2)
    with _failing_clearly():
        if years is not None:
            try:
                first, last = parse_years(years)
            except ValueError as exc:
                raise ReportError(str(exc)) from None
        else:
            assert year is not None
            first = last = year
        span = Span(first=first, last=last, period="reporting" if period == "reporting" else "calendar")
        if district is not None:
            unit = Unit(scheme="gso-pre2025", kind="district", code=district)
        elif commune is not None:
            unit = Unit(scheme="gso-pre2025", kind="commune", code=commune)
        elif province is not None:
            unit = Unit(scheme="gso-pre2025" if legacy else "gso-2025", kind="province", code=province)
        else:
            unit = Unit(kind="ward", code=str(ward))
        names_of(unit, Localities.load())  # an unknown or unsupported unit is refused before any connection
        data = asyncio.run(
            make_report(Settings.from_env(), unit, span, output, from_log=from_log, to_seq=to_seq)
        )
    if out is not None:
        try:
            out.write_bytes(data)
        except OSError as exc:
            say(err, f"--out {out}: {exc.strerror or exc}", "red")
            raise typer.Exit(2) from None
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
