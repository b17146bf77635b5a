"""``antq publish``: send a JSON-lines file of events to the gateway in batches, with a progress bar.

Every refused line is reported with its line number (blank lines count), event id, error code, message and JSON
path: the first ``SHOWN`` in a table on stderr, all of them as JSON lines with ``--rejected FILE``
(``Rejection``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import msgspec
import nats
import nats.errors
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from events.intake import IntakeResult, refused
from infra.nats_client import server_urls
from services.cli.plain import cell, say
from services.cli.plain import console as plain_console
from services.client import OfficeClient

T = TypeVar("T")

SHOWN = 50
"""Rejected lines kept for the table; ``--rejected FILE`` gets every one."""
NOT_ANSWERED = "not_answered"
"""The code of a line whose request got no answer (it may or may not be stored: resend, duplicates are
recognised)."""
BAD_REPLY = "bad_reply"
"""The code of a line the gateway's answer does not account for (unreadable, or of another length than the
request)."""


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

    @property
    def total(self) -> int:
        return self.accepted + self.duplicate + sum(self.rejected.values())

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


def _is_json(line: bytes) -> bool:
    try:
        msgspec.json.decode(line, type=msgspec.Raw)
    except msgspec.DecodeError:
        return False
    return True


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _outcomes(
    numbers: list[int], answer: IntakeResult | list[IntakeResult]
) -> Iterator[tuple[int, IntakeResult]]:
    """Each line of a request with its result. An array is answered with one result per element, in order; a
    single result for a request of several lines (the body as a whole refused) applies to each of them."""
    if isinstance(answer, list):
        if len(answer) == len(numbers):
            yield from zip(numbers, answer, strict=True)
            return
        message = f"the gateway answered {len(answer)} results for {len(numbers)} events; resend the file"
        for number in numbers:
            yield number, refused(BAD_REPLY, message)
        return
    for number in numbers:
        yield number, answer


async def publish_documents(
    nats_url: str,
    office: str,
    docs: Iterable[bytes],
    *,
    batch_size: int = 500,
    total: int | None = None,
    nats_options: Mapping[str, str] | None = None,
) -> PublishSummary:
    """``publish_lines`` of documents numbered from 1."""
    return await publish_lines(
        nats_url,
        office,
        enumerate(docs, start=1),
        batch_size=batch_size,
        total=total,
        nats_options=nats_options,
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
) -> PublishSummary:
    """Send ``(line number, document)`` pairs in batches; ``on_rejected`` is called for every refused line.

    ``nats_options``: the office identity's ``nats.connect`` options (``infra.auth.nats_connect_options``)."""
    summary = PublishSummary()
    err = plain_console(stderr=True)
    connected = False

    async def report(exc: Exception) -> None:  # one line, not nats-py's traceback; a failed connect is raised
        if connected:
            say(err, f"NATS: {exc}", "yellow")

    nc = await nats.connect(server_urls(nats_url), error_cb=report, **(nats_options or {}))
    connected = True
    client = OfficeClient(nc, office, timeout=60)
    try:
        with Progress(console=plain_console(stderr=True), transient=True) as progress:
            task = progress.add_task(f"publishing as {office}", total=total)
            for batch in batches(lines, batch_size):
                # a line that is not JSON goes alone (the gateway answers and keeps it), so it cannot spoil
                # the array of its neighbours
                good = [(n, line) for n, line in batch if _is_json(line)]
                requests = (
                    [([n for n, _ in good], b"[" + b",".join(line for _, line in good) + b"]")]
                    if good
                    else []
                )
                requests += [([n], line) for n, line in batch if not _is_json(line)]
                outcomes: list[tuple[int, IntakeResult]] = []
                for numbers, body in requests:
                    try:
                        answer = await client.send_raw(body)
                    except (TimeoutError, nats.errors.Error) as exc:
                        answer = refused(
                            NOT_ANSWERED,
                            f"no answer from the gateway ({type(exc).__name__}); resend the file: events already "
                            "stored are recognised as duplicates",
                        )
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        answer = refused(
                            BAD_REPLY, f"the gateway's answer could not be read ({exc}); resend the file"
                        )
                    outcomes += _outcomes(numbers, answer)
                for number, res in sorted(outcomes, key=lambda outcome: outcome[0]):  # in the file's order
                    _count(summary, number, res, on_rejected)
                progress.advance(task, len(batch))
    finally:
        await nc.drain()
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
