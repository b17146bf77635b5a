"""``antq outbox list|retry|drop``: what an office's outbox holds, and what the office does about it.

- ``list``: the queued and rejected entries (``--all``: every entry), oldest first: id, event id, type, state,
  code, path, message; ``--json`` one JSON object per line (``services.office.outbox.Entry``).
- ``retry [ID...]``: send what is queued now (waiting up to ``--wait`` seconds for the link); each ID given
  must be a rejected entry, queued again unchanged first (for a refusal whose cause is gone: the office
  registry updated, the tip it refers to stored since). An event refused for its content is refused again:
  publish a corrected event with a new ``event_id`` and ``drop`` the old one.
- ``drop ID...``: discard queued or rejected entries: never sent again (kept in the file as ``dropped``).

Exit status: 0 done; 1 (``retry``) some entry rejected; 3 (``retry``) some still queued; 2 bad use (no
outbox, an id that cannot be retried or dropped).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from services.cli.plain import cell, say
from services.cli.plain import console as plain_console
from services.cli.publish import DEFAULT_WAIT_S, EXIT_QUEUED, EXIT_REJECTED
from services.office.errors import OfficeError
from services.office.outbox import Entry, Outbox, State, default_path
from services.office.sender import NatsLink, OfficeSender

outbox = typer.Typer(no_args_is_help=True, help="The office's outbox: events queued or rejected.")

OfficeOption = Annotated[str, typer.Option(help="your office id")]
OutboxOption = Annotated[
    Path | None,
    typer.Option(
        "--outbox",
        dir_okay=False,
        help="the outbox file (default: $ANTQ_DATA_DIR or ~/.local/share/antq, outbox-<office>.sqlite)",
    ),
]


def _open(office: str, path: Path | None) -> Outbox:
    from services.cli.main import _settings

    chosen = path or default_path(office, _settings().data_dir)
    err = plain_console(stderr=True)
    if not chosen.exists():
        say(err, f"no outbox at {chosen}: nothing was published as {office} with it (see --outbox)", "red")
        raise typer.Exit(2)
    try:
        return Outbox(chosen, office)
    except OfficeError as exc:
        say(err, exc, "red")
        raise typer.Exit(2) from None


def entries_table(entries: list[Entry], title: str) -> Table:
    """Every cell printed literally: messages quote what the office sent."""
    table = Table(title=cell(title))
    for name in ("id", "event id", "type", "state", "code", "path", "message"):
        table.add_column(name, overflow="fold", justify="right" if name == "id" else "left")
    for e in entries:
        table.add_row(
            cell(e.id),
            cell(e.event_id),
            cell(e.type),
            cell(e.state),
            cell(e.code),
            cell(e.path),
            cell(e.message),
        )
    return table


@outbox.command("list")
def list_command(
    office: OfficeOption,
    path: OutboxOption = None,
    every: Annotated[bool, typer.Option("--all", help="every entry, done and dropped too")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """The queued and rejected entries, oldest first; and a count per state."""
    states: list[State] = ["queued", "done", "rejected", "dropped"] if every else ["queued", "rejected"]
    with _open(office, path) as box:
        entries, counts = box.entries(states), box.counts()
    if as_json:
        encoder = msgspec.json.Encoder()
        sys.stdout.write("".join(encoder.encode(e).decode() + "\n" for e in entries))
        return
    out = plain_console()
    out.print(entries_table(entries, f"outbox of {office}"))
    say(out, ", ".join(f"{n} {state}" for state, n in counts.items()))


@outbox.command("retry")
def retry_command(
    office: OfficeOption,
    ids: Annotated[list[int] | None, typer.Argument(help="rejected entries to queue again first")] = None,
    path: OutboxOption = None,
    wait: Annotated[float, typer.Option(min=0, help="seconds to keep trying while events stay queued")] = (
        DEFAULT_WAIT_S
    ),
) -> None:
    """Send what is queued (after queueing the rejected IDs again). Exit 0: all sent; 1: some rejected; 3: some
    still queued."""
    from services.cli.main import _nats_options, _require, _settings

    settings = _settings().as_identity(f"office-{office}")
    url = _require(settings.nats_url, "ANTQ_NATS_URL")
    options = _nats_options(settings)
    err = plain_console(stderr=True)
    with _open(office, path) as box:
        try:
            for id_ in ids or []:
                box.requeue(id_)
        except OfficeError as exc:
            say(err, exc, "red")
            raise typer.Exit(2) from None

        async def send() -> tuple[int, int, int, str | None]:
            link = NatsLink(url, office, options=options)
            try:
                report = await OfficeSender(box, link).flush(wait=wait)
            finally:
                await link.close()
            return report.done, report.rejected, report.queued, report.last_problem

        done, rejected, queued, problem = asyncio.run(send())
    out = plain_console()
    say(out, f"sent: {done} accepted, {rejected} rejected; {queued} still queued")
    if queued:
        say(err, f"{queued} still queued{f' ({problem})' if problem else ''}", "yellow")
    if rejected:
        say(err, f"see them with `antq outbox list --office {office}`", "yellow")
        raise typer.Exit(EXIT_REJECTED)
    if queued:
        raise typer.Exit(EXIT_QUEUED)


@outbox.command("drop")
def drop_command(
    office: OfficeOption,
    ids: Annotated[list[int], typer.Argument(help="queued or rejected entries to discard")],
    path: OutboxOption = None,
) -> None:
    """Discard queued or rejected entries: never sent again (the file keeps them as ``dropped``)."""
    err = plain_console(stderr=True)
    with _open(office, path) as box:
        for id_ in ids:
            try:
                entry = box.drop(id_)
            except OfficeError as exc:
                say(err, exc, "red")
                raise typer.Exit(2) from None
            say(plain_console(), f"dropped {entry.id} ({entry.event_id or 'no event id'})")
