"""``antq publish``: send a JSON-lines file of events through the office's outbox, with a progress bar.

Every line is written to the outbox (``services.office``) before anything is sent; the outbox is then sent in
order, in batches; what cannot be sent within ``--wait`` seconds stays queued there (exit status 3).

Every refused line is reported with its line number (blank lines count), event id, error code, message and JSON
path: the first ``SHOWN`` in a table on stderr, all of them as JSON lines with ``--rejected FILE``
(``Rejection``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from events.intake import IntakeResult
from services.cli.plain import cell, say
from services.cli.plain import console as plain_console
from services.office.errors import OfficeError
from services.office.outbox import Outbox, default_path
from services.office.sender import NatsLink, OfficeSender, RetryPolicy

T = TypeVar("T")

SHOWN = 50
"""Rejected lines kept for the table; ``--rejected FILE`` gets every one."""
EXIT_REJECTED = 1
EXIT_QUEUED = 3
DEFAULT_WAIT_S = 30.0
"""How long ``antq publish`` keeps trying while events stay queued (``--wait``)."""


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """One refused input line, as ``--rejected FILE`` writes it (one JSON object per line, nulls included)."""

    line: int
    event_id: str | None
    code: str
    message: str
    path: str | None


@dataclass
class PublishSummary:
    accepted: int = 0
    duplicate: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    last_seq: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    """The first ``SHOWN`` rejected lines."""
    queued: int = 0
    """Lines still queued in the outbox (no connection, no gateway, ``unavailable``) when the run ended."""
    earlier_queued: int = 0
    """Events queued by earlier runs, sent first."""
    earlier_answered: int = 0
    """Of those, answered for good in this run."""
    problem: str | None = None
    """Why events are still queued, in words."""
    outbox: str | None = None

    @property
    def total(self) -> int:
        return self.accepted + self.duplicate + sum(self.rejected.values()) + self.queued

    @property
    def rejected_lines(self) -> int:
        return sum(self.rejected.values())


def numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of ``path``, stripped, with their line numbers (from 1, blank lines counted)."""
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield number, line.strip()


def read_lines(path: Path) -> Iterator[bytes]:
    return (line for _, line in numbered_lines(path))


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def publish_documents(
    nats_url: str,
    office: str,
    docs: Iterable[bytes],
    *,
    batch_size: int = 500,
    total: int | None = None,
    nats_options: Mapping[str, str] | None = None,
    outbox: Path | None = None,
    wait: float | None = DEFAULT_WAIT_S,
) -> PublishSummary:
    """``publish_lines`` of documents numbered from 1."""
    return await publish_lines(
        nats_url,
        office,
        enumerate(docs, start=1),
        batch_size=batch_size,
        total=total,
        nats_options=nats_options,
        outbox=outbox,
        wait=wait,
    )


async def publish_lines(
    nats_url: str,
    office: str,
    lines: Iterable[tuple[int, bytes]],
    *,
    batch_size: int = 500,
    total: int | None = None,
    nats_options: Mapping[str, str] | None = None,
    on_rejected: Callable[[Rejection], None] | None = None,
    outbox: Path | None = None,
    wait: float | None = DEFAULT_WAIT_S,
    policy: RetryPolicy | None = None,
) -> PublishSummary:
    """Queue ``(line number, document)`` pairs in the office's outbox, then send the outbox (events queued
    before them first) through the office client library; ``on_rejected`` is called for every refused line.

    ``outbox``: the outbox file (None: one in memory, gone when this returns: for tools that resend anyway).
    ``wait``: how long to keep trying while events stay queued (no connection, no gateway, ``unavailable``);
    what is still queued then stays in the outbox file for the next ``antq publish`` or ``antq outbox retry``.
    ``nats_options``: the office identity's ``nats.connect`` options (``infra.auth.nats_connect_options``)."""
    summary = PublishSummary()
    box = await asyncio.to_thread(Outbox, outbox if outbox is not None else ":memory:", office)
    link = NatsLink(nats_url, office, options=nats_options)
    try:
        sender = OfficeSender(box, link, batch_size=batch_size, policy=policy)
        numbers: dict[int, int] = {}
        for chunk in batches(lines, 10_000):
            ids = await sender.enqueue(line for _, line in chunk)
            numbers.update(zip(ids, (n for n, _ in chunk), strict=True))
        queued = await asyncio.to_thread(box.entries, ["queued"])
        summary.earlier_queued = sum(1 for e in queued if e.id not in numbers)
        answered: list[tuple[int, IntakeResult]] = []
        with Progress(console=plain_console(stderr=True), transient=True) as progress:
            task = progress.add_task(f"publishing as {office}", total=total)

            def on_answer(id_: int, res: IntakeResult) -> None:
                number = numbers.get(id_)
                if number is None:
                    summary.earlier_answered += 1
                    return
                answered.append((number, res))
                progress.advance(task, 1)

            report = await sender.flush(wait=wait, on_answer=on_answer)
        for number, res in sorted(answered, key=lambda outcome: outcome[0]):  # in the file's order
            _count(summary, number, res, on_rejected)
        left = await asyncio.to_thread(box.entries, ["queued"])
        summary.queued = sum(1 for e in left if e.id in numbers)
        summary.problem = report.last_problem if report.queued else None
        summary.outbox = None if outbox is None else str(outbox)
    finally:
        await link.close()
        box.close()
    return summary


def _count(
    summary: PublishSummary, number: int, res: IntakeResult, on_rejected: Callable[[Rejection], None] | None
) -> None:
    summary.last_seq = max(summary.last_seq, res.seq or 0)
    if res.ok and res.duplicate:
        summary.duplicate += 1
        return
    if res.ok:
        summary.accepted += 1
        return
    code = res.error.code if res.error else "unknown"
    summary.rejected[code] += 1
    rejection = Rejection(
        line=number,
        event_id=res.event_id,
        code=code,
        message=res.error.message if res.error else "the gateway refused it without saying why",
        path=res.error.path if res.error else None,
    )
    if len(summary.rejections) < SHOWN:
        summary.rejections.append(rejection)
    if on_rejected is not None:
        on_rejected(rejection)


def summary_table(summary: PublishSummary) -> Table:
    table = Table(title="published")
    table.add_column("outcome")
    table.add_column("events", justify="right")
    table.add_row("accepted", str(summary.accepted))
    table.add_row("duplicate", str(summary.duplicate))
    for code, count in sorted(summary.rejected.items()):
        table.add_row(cell(f"rejected: {code}"), str(count))
    if summary.queued:
        table.add_row("still queued", str(summary.queued))
    table.add_row("total", str(summary.total), style="bold")
    return table


def rejections_table(summary: PublishSummary) -> Table:
    """The first rejected lines: every cell is printed literally (a message may quote the line's text)."""
    shown = len(summary.rejections)
    more = summary.rejected_lines - shown
    table = Table(
        title="rejected lines",
        caption=f"and {more} more: --rejected FILE writes every one" if more > 0 else None,
    )
    table.add_column("line", justify="right")
    table.add_column("event id", overflow="fold")
    table.add_column("code")
    table.add_column("path", overflow="fold")
    table.add_column("message", overflow="fold")
    for r in summary.rejections:
        table.add_row(cell(r.line), cell(r.event_id), cell(r.code), cell(r.path), cell(r.message))
    return table


def print_rejections(summary: PublishSummary, out: Console) -> None:
    if summary.rejections:
        out.print(rejections_table(summary))


class RejectedWriter:
    """Writes each rejection as a JSON line to an open binary file."""

    def __init__(self, fh: Callable[[bytes], object]) -> None:
        self._write = fh
        self._encoder = msgspec.json.Encoder()

    def __call__(self, rejection: Rejection) -> None:
        self._write(self._encoder.encode(rejection) + b"\n")


def encode_all(docs: Iterable[object]) -> list[bytes]:
    encoder = msgspec.json.Encoder()
    return [encoder.encode(doc) for doc in docs]


def command(
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
    outbox: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="the office's outbox file (default: $ANTQ_DATA_DIR or ~/.local/share/antq, "
            "outbox-<office>.sqlite)",
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            min=0, help="seconds to keep trying while events stay queued (no connection, no gateway)"
        ),
    ] = DEFAULT_WAIT_S,
) -> None:
    """Publish a file of events through the office's outbox; prints accepted / duplicate / rejected by code /
    still queued, and each rejected line (number, event id, code, path, message) on stderr. Exit 0: all
    accepted; 1: some rejected; 3: none rejected, some still queued (`antq outbox retry` sends them later)."""
    from services.cli.main import _nats_options, _require, _settings

    settings = _settings().as_identity(f"office-{office}")
    url = _require(settings.nats_url, "ANTQ_NATS_URL")
    options = _nats_options(settings)
    path = outbox or default_path(office, settings.data_dir)
    total = sum(1 for _ in numbered_lines(file))
    err = plain_console(stderr=True)
    with contextlib.ExitStack() as files:
        try:
            sink = RejectedWriter(files.enter_context(rejected.open("wb")).write) if rejected else None
        except OSError as exc:
            say(err, f"--rejected {rejected}: {exc.strerror or exc}", "red")
            raise typer.Exit(2) from None
        try:
            summary = asyncio.run(
                publish_lines(
                    url,
                    office,
                    numbered_lines(file),
                    batch_size=batch_size,
                    total=total,
                    nats_options=options,
                    on_rejected=sink,
                    outbox=path,
                    wait=wait,
                )
            )
        except OfficeError as exc:
            say(err, exc, "red")
            raise typer.Exit(2) from None
    plain_console().print(summary_table(summary))
    print_rejections(summary, err)
    if summary.earlier_queued:
        say(
            err,
            f"{summary.earlier_queued} event(s) queued by earlier runs were sent first "
            f"({summary.earlier_answered} answered)",
        )
    raise typer.Exit(exit_status(summary, err))


def exit_status(summary: PublishSummary, err: Console) -> int:
    """1 when a line was rejected (a person must look), else 3 when one is still queued, else 0."""
    if summary.queued:
        say(
            err,
            f"{summary.queued} line(s) still queued in {summary.outbox or 'memory'}"
            f"{f' ({summary.problem})' if summary.problem else ''}: they are sent by the next `antq publish` or "
            "`antq outbox retry`",
            "yellow",
        )
    if summary.rejected:
        return EXIT_REJECTED
    return EXIT_QUEUED if summary.queued else 0
