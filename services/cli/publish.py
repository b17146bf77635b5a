"""``antq publish``: send a JSON-lines file of events to the gateway in batches, with a progress bar."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import nats
import nats.errors
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from events.intake import IntakeResult
from services.client import OfficeClient


@dataclass
class PublishSummary:
    accepted: int = 0
    duplicate: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    last_seq: int = 0

    @property
    def total(self) -> int:
        return self.accepted + self.duplicate + sum(self.rejected.values())


def read_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                yield line.strip()


def _is_json(line: bytes) -> bool:
    try:
        msgspec.json.decode(line, type=msgspec.Raw)
    except msgspec.DecodeError:
        return False
    return True


def batches(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
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
) -> PublishSummary:
    """``nats_options``: the office identity's ``nats.connect`` options (``infra.auth.nats_connect_options``)."""
    summary = PublishSummary()
    nc = await nats.connect(nats_url, **(nats_options or {}))
    client = OfficeClient(nc, office, timeout=60)
    try:
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(f"publishing as {office}", total=total)
            for batch in batches(docs, batch_size):
                # a line that is not JSON goes alone (the gateway answers and keeps it), so it cannot spoil
                # the array of its neighbours
                good = [line for line in batch if _is_json(line)]
                requests = [b"[" + b",".join(good) + b"]"] if good else []
                requests += [line for line in batch if not _is_json(line)]
                results: list[IntakeResult] = []
                for body in requests:
                    try:
                        answer = await client.send_raw(body)
                    except (TimeoutError, nats.errors.Error) as exc:
                        size = len(good) if body.startswith(b"[") and good else 1
                        summary.rejected[f"not answered ({type(exc).__name__}); resend the file"] += size
                        continue
                    results += answer if isinstance(answer, list) else [answer]
                for res in results:
                    if res.ok and res.duplicate:
                        summary.duplicate += 1
                    elif res.ok:
                        summary.accepted += 1
                    else:
                        summary.rejected[res.error.code if res.error else "unknown"] += 1
                    summary.last_seq = max(summary.last_seq, res.seq or 0)
                progress.advance(task, len(batch))
    finally:
        await nc.drain()
    return summary


def summary_table(summary: PublishSummary) -> Table:
    table = Table(title="published")
    table.add_column("outcome")
    table.add_column("events", justify="right")
    table.add_row("accepted", str(summary.accepted))
    table.add_row("duplicate", str(summary.duplicate))
    for code, count in sorted(summary.rejected.items()):
        table.add_row(f"rejected: {code}", str(count))
    table.add_row("total", str(summary.total), style="bold")
    return table


def encode_all(docs: Iterable[object]) -> list[bytes]:
    encoder = msgspec.json.Encoder()
    return [encoder.encode(doc) for doc in docs]
