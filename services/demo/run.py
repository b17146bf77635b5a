"""``antq demo``: the embedded stack, the Trà Lĩnh 2018 set published through the gateway, the district's table."""

from __future__ import annotations

from collections.abc import Mapping

import nats
from rich.console import Console

from events.localities import Localities
from infra.settings import Settings
from services.cli.devstack import DEMO_OFFICES, StackUrls, embedded_servers, running_services
from services.cli.publish import encode_all, publish_documents, summary_table
from services.cli.stats_view import query_stats, stats_table
from services.demo.tra_linh_2018 import ARTICLE, DISTRICT, NOT_IN_CATALOGUE_V1, YEAR, DemoSet

OFFICE = "bcd-tra-linh-cu"


async def run_demo(settings: Settings, console: Console, *, secure: bool = False) -> bool:
    """Run the demo; True when every figure matches the article. ``secure``: the stack of ``antq dev up``,
    the set published as the office's identity and read as the reader's."""
    with embedded_servers(settings, settings.data_dir, secure=secure, offices=DEMO_OFFICES) as urls:
        async with running_services(urls, settings, DEMO_OFFICES):
            return await _publish_and_show(
                urls,
                console,
                urls.nats_options(settings, f"office-{OFFICE}"),
                urls.nats_options(settings, "reader"),
            )


async def _publish_and_show(
    urls: StackUrls, console: Console, office_options: Mapping[str, str], reader_options: Mapping[str, str]
) -> bool:
    demo = DemoSet(Localities.load())
    docs = encode_all(demo.events())
    summary = await publish_documents(
        urls.nats_url, OFFICE, docs, batch_size=500, total=len(docs), nats_options=office_options
    )
    console.print(summary_table(summary))
    nc = await nats.connect(urls.nats_url, **reader_options)
    try:
        reply = await query_stats(nc, demo.district_query(min_seq=summary.last_seq, timeout_ms=30_000))
    finally:
        await nc.drain()
    title = f"Huyện Trà Lĩnh (Cao Bằng), {YEAR} — pre-2025 district {DISTRICT}, as recorded in 2018 codes"
    console.print(stats_table(title, reply, ARTICLE))
    console.print("[dim]Also in the article, outside catalogue v1:[/dim]")
    for line in NOT_IN_CATALOGUE_V1:
        console.print(f"[dim]  - {line}[/dim]")
    mismatches = {k: (reply["metrics"].get(k), v) for k, v in ARTICLE.items() if reply["metrics"].get(k) != v}
    if mismatches:
        console.print(f"[red]figures differ from the article: {mismatches}[/red]")
    else:
        console.print("[green]every figure matches the article[/green]")
    return not mismatches
