"""``antq rejected``: what ``ANTQ_REJECTED`` kept of the submissions the gateway refused, for one office or all.

The gateway keeps each refused event (or a request body it could not split) on ``antq.rejected.<office>`` as a
``RejectedRecord``: the office, when it arrived, the error, and the raw bytes (``services/gateway/publisher.py``).
The read is filtered by the office's subject, so an identity allowed to read only its own rejections can run it
(``ANTQ_READ_MODE``: a consumer filtered to that subject, or batched direct gets: ``infra/reading.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Iterable
from typing import Annotated

import msgspec
import nats
import nats.errors
import typer
from nats.aio.client import Client
from rich.table import Table

from events.intake import RejectedRecord
from events.subjects import REJECTED_PREFIX
from infra.auth import AuthError, nats_connect_options
from infra.reading import StreamReader, audit_reader
from infra.settings import Settings
from infra.stream_reader import StreamReadError
from infra.streams import REJECTED
from services.cli.errors import CliError
from services.cli.plain import cell, console, say

UNREADABLE = "unreadable"
"""The code shown for a message on ``antq.rejected.>`` that is not a record the gateway wrote."""
PREVIEW = 80


class RejectedQueryError(CliError, ValueError):
    """An ``--office`` or ``--since`` that cannot be used; the message says what is accepted."""


class RejectedRow(msgspec.Struct, frozen=True, kw_only=True):
    """One kept rejection, as ``--format json`` prints it (one object per line)."""

    seq: int
    office: str
    received_at: str
    event_id: str | None
    code: str
    message: str
    path: str | None
    size: int
    truncated: bool
    sha256: str | None


class _IdOnly(msgspec.Struct, frozen=True):
    event_id: str | None = None


_id_only = msgspec.json.Decoder(_IdOnly)
_record = msgspec.json.Decoder(RejectedRecord)


def event_id_of(raw: bytes) -> str | None:
    """The event id in a refused document, when it has a readable one."""
    try:
        value = _id_only.decode(raw).event_id
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None
    return value if value is not None and len(value) <= 64 else None


def office_subject(office: str | None) -> str:
    """The subject the gateway keeps ``office``'s rejections on (every office's when None)."""
    if office is None:
        return f"{REJECTED_PREFIX}.>"
    if not office or not office.replace("-", "").replace("_", "").isalnum():
        raise RejectedQueryError(
            f"--office {office!r}: an office id has letters, digits, '-' and '_' only (submissions under any other "
            f"name are kept as {REJECTED_PREFIX}._invalid: --office _invalid)"
        )
    return f"{REJECTED_PREFIX}.{office}"


_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """``--since``: an ISO 8601 date or date-time (UTC unless it has an offset), or a duration back from now:
    ``90s``, ``30m``, ``12h``, ``7d``."""
    match = _DURATION.match(text.strip())
    if match:
        return now - dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise RejectedQueryError(
            f"--since {text!r}: give a date (2026-12-01), a date-time (2026-12-01T08:00:00+07:00; UTC without an"
            " offset) or a duration back from now (30m, 12h, 7d)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def to_row(seq: int, subject: str, data: bytes, stored_at: dt.datetime) -> RejectedRow:
    """A kept record as a row; a message that is not one (anyone may publish there on the open stack) is shown
    as ``unreadable`` with its first bytes, never dropped in silence."""
    try:
        record = _record.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        preview = data[:PREVIEW].decode("utf-8", "backslashreplace")
        return RejectedRow(
            seq=seq,
            office=subject.removeprefix(f"{REJECTED_PREFIX}."),
            received_at=stored_at.astimezone(dt.UTC).isoformat(),
            event_id=None,
            code=UNREADABLE,
            message=f"not a record the gateway kept ({exc}): {preview!r}",
            path=None,
            size=len(data),
            truncated=False,
            sha256=None,
        )
    return RejectedRow(
        seq=seq,
        office=record.office,
        received_at=record.received_at,
        event_id=event_id_of(record.raw),
        code=record.error.code,
        message=record.error.message,
        path=record.error.path,
        size=record.size,
        truncated=record.truncated,
        sha256=record.sha256,
    )


def _received(row: RejectedRow, stored_at: dt.datetime) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(row.received_at)
    except ValueError:
        return stored_at
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


async def read_rejected(
    nc: Client, reader: StreamReader, *, office: str | None, since: dt.datetime | None
) -> list[RejectedRow]:
    """The kept rejections of ``office`` (all offices when None) received at or after ``since``, oldest first."""
    subject = office_subject(office)
    rows: list[RejectedRow] = []
    async for batch in reader.messages(nc.jetstream(), REJECTED, subject=subject):
        for msg in batch:
            row = to_row(msg.seq, msg.subject, msg.data, msg.time)
            if since is None or _received(row, msg.time) >= since:
                rows.append(row)
    return rows


def rejected_table(rows: Iterable[RejectedRow], title: str, *, with_office: bool = False) -> Table:
    """Time, event id, code, path and message of each row (and its office), printed literally."""
    rows = list(rows)
    table = Table(title=cell(title, "table.title"), caption=f"{len(rows)} rejection(s)")
    table.add_column("time")
    if with_office:
        table.add_column("office", overflow="fold")
    table.add_column("event id", overflow="fold")
    table.add_column("code")
    table.add_column("path", overflow="fold")
    table.add_column("message", overflow="fold")
    for row in rows:
        office = [cell(row.office)] if with_office else []
        table.add_row(
            cell(row.received_at),
            *office,
            cell(row.event_id),
            cell(row.code),
            cell(row.path),
            cell(row.message),
        )
    return table


def json_lines(rows: Iterable[RejectedRow]) -> str:
    encoder = msgspec.json.Encoder()
    return "".join(encoder.encode(row).decode() + "\n" for row in rows)


def command(
    office: Annotated[
        str | None, typer.Option(help="the office whose rejections to read (default: all)")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="only those received since: a date, an ISO date-time, or 30m / 12h / 7d"),
    ] = None,
    format_: Annotated[str, typer.Option("--format", help="table | json (one object per line)")] = "table",
) -> None:
    """What ANTQ_REJECTED kept of an office's refused submissions: time, event id, code, path, message.

    Exit 0 (also when there are none), 1 when the stream cannot be read, 2 for a bad option or setting."""
    err = console(stderr=True)
    settings = Settings.from_env()
    if office is not None:  # in a credentials directory, the office reads its own rejections as itself
        settings = settings.as_identity(f"office-{office}")
    try:
        if not settings.nats_url:
            raise RejectedQueryError(
                "ANTQ_NATS_URL is not set: start `antq dev up` and export the URL it prints"
            )
        if format_ not in ("table", "json"):
            raise RejectedQueryError(f"--format is table or json, not {format_!r}")
        office_subject(office)  # refuse a bad --office before connecting
        after = parse_since(since, dt.datetime.now(dt.UTC)) if since is not None else None
        nats_connect_options(settings)  # a bad identity setting: before connecting
        reader = audit_reader(settings)
    except (RejectedQueryError, AuthError) as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None

    async def run(url: str) -> list[RejectedRow]:
        from services.cli.audit_replay import connect  # one line per server error (a permissions violation)

        nc = await connect(settings, url, err)
        try:
            return await read_rejected(nc, reader, office=office, since=after)
        finally:
            await nc.close()

    try:
        rows = asyncio.run(run(settings.nats_url))
    except StreamReadError as exc:
        say(err, f"the read of {REJECTED} could not complete: {exc}", "red")
        raise typer.Exit(1) from None
    except (OSError, nats.errors.Error) as exc:
        say(err, f"cannot read {REJECTED}: {str(exc) or type(exc).__name__}", "red")
        raise typer.Exit(1) from None
    if format_ == "json":
        print(json_lines(rows), end="")
        return
    who = f"office {office}" if office else "every office"
    console().print(rejected_table(rows, f"rejected submissions of {who}", with_office=office is None))
