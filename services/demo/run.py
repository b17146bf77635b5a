"""``antq demo [SET]``: the embedded stack, a set published through the gateway as its office, its figures read
through the query service and printed beside the article's, each row marked ✓ or ✗ (``services.demo.sets``).

One code path: ``publish_and_read`` is what the command runs and what the tests run against their servers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import nats
from rich.console import Console
from rich.table import Table

from events.localities import Localities
from infra.nats_client import server_urls
from infra.settings import Settings
from services.cli.devstack import DEMO_OFFICES, embedded_servers, running_services
from services.cli.plain import cell
from services.cli.publish import (
    PublishSummary,
    encode_all,
    publish_documents,
    rejections_table,
    summary_table,
)
from services.cli.stats_view import query_stats
from services.demo.framework import DemoSet, Row, satisfies, value_of

QUERY_TIMEOUT_MS = 30_000
"""How long the query service may wait for the projection to fold the set in (``min_seq``)."""


class Reading(msgspec.Struct, frozen=True, kw_only=True):
    """One row: the ledger's figure (None: the catalogue has no metric of it yet), and whether it satisfies
    the article's word."""

    row: Row
    value: int | None
    ok: bool


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    summary: PublishSummary
    readings: tuple[Reading, ...]
    as_of_seq: int
    missing_types: tuple[str, ...] = ()
    """Event types of the set the catalogue does not have yet (their events were not sent)."""

    @property
    def ok(self) -> bool:
        """Every event of the set stored (or already stored) and every row ✓."""
        return (
            not self.missing_types and self.summary.rejected_lines == 0 and all(r.ok for r in self.readings)
        )


async def publish_and_read(
    nats_url: str,
    demo: DemoSet,
    localities: Localities,
    *,
    office_options: Mapping[str, str] | None = None,
    reader_options: Mapping[str, str] | None = None,
) -> Outcome:
    """Publish the set's events through the gateway as its office, then ask the query service each of the
    set's queries once the projection has folded them in (``min_seq``), and judge every row."""
    events, missing = demo.documents(localities)
    docs = encode_all(events)
    summary = await publish_documents(
        nats_url, demo.office, docs, batch_size=500, total=len(docs), nats_options=office_options
    )
    nc = await nats.connect(server_urls(nats_url), **(reader_options or {}))
    replies: list[tuple[dict[str, Any], dict[str, Any]]] = []
    try:
        for query in demo.queries():
            request = {**query, "min_seq": summary.last_seq, "timeout_ms": QUERY_TIMEOUT_MS}
            replies.append((query, await query_stats(nc, request, timeout=QUERY_TIMEOUT_MS / 1000 + 5)))
    finally:
        await nc.drain()
    readings = []
    for row in demo.rows:
        if not row.recordable():
            readings.append(Reading(row=row, value=None, ok=False))
            continue
        reply = next(r for q, r in replies if q == demo.query_of(row))
        value = value_of(row, reply["metrics"])
        readings.append(Reading(row=row, value=value, ok=satisfies(value, row.article, row.word)))
    return Outcome(
        summary=summary,
        readings=tuple(readings),
        as_of_seq=min(r["as_of_seq"] for _, r in replies),
        missing_types=tuple(missing),
    )


def figures_table(demo: DemoSet, outcome: Outcome) -> Table:
    table = Table(
        title=cell(demo.title, "table.title"),
        caption=cell(f"{demo.source} — as of stream seq {outcome.as_of_seq}", "table.caption"),
    )
    table.add_column("figure")
    table.add_column("ledger", justify="right")
    table.add_column("article", justify="right")
    table.add_column("", justify="center")
    for reading in outcome.readings:
        table.add_row(
            cell(reading.row.figure),
            cell("—" if reading.value is None else f"{reading.value:,}"),
            cell(reading.row.article_text()),
            cell("✓" if reading.ok else "✗"),
        )
    return table


def show(console: Console, demo: DemoSet, outcome: Outcome) -> bool:
    """Print the publishing summary, the set's table and a verdict; True when ``outcome.ok``."""
    console.print(summary_table(outcome.summary))
    console.print(figures_table(demo, outcome))
    for note in demo.notes:
        console.print(cell(f"  - {note}", "dim"))
    wrong = [r for r in outcome.readings if not r.ok]
    if outcome.summary.rejected_lines:
        console.print(rejections_table(outcome.summary))
        console.print(cell(f"{outcome.summary.rejected_lines} events of the set were refused", "red"))
    if outcome.missing_types:
        pending = ", ".join(r.row.figure for r in outcome.readings if r.value is None)
        console.print(
            cell(
                f"not in the event catalogue yet: {', '.join(outcome.missing_types)} (their events were not sent); "
                f"rows that need them: {pending}",
                "red",
            )
        )
    wrong = [r for r in wrong if r.value is not None]
    if wrong:
        listed = ", ".join(f"{r.row.figure} {r.value:,} (article: {r.row.article_text()})" for r in wrong)
        console.print(cell(f"figures that do not satisfy the article: {listed}", "red"))
    if outcome.ok:
        console.print(cell("every figure satisfies the article", "green"))
    return outcome.ok


async def run_demo(settings: Settings, console: Console, demo: DemoSet, *, secure: bool = False) -> bool:
    """Run a set on the embedded stack (or on the servers of ANTQ_NATS_URL / ANTQ_DATABASE_URL); True when
    every row is ✓. ``secure``: the stack of ``antq dev up``, the set published as its office's identity and
    read as the reader's."""
    with embedded_servers(settings, settings.data_dir, secure=secure, offices=DEMO_OFFICES) as urls:
        async with running_services(urls, settings, DEMO_OFFICES):
            outcome = await publish_and_read(
                urls.nats_url,
                demo,
                Localities.load(),
                office_options=urls.nats_options(settings, f"office-{demo.office}"),
                reader_options=urls.nats_options(settings, "reader"),
            )
    return show(console, demo, outcome)
