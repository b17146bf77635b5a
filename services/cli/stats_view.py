"""Rendering statistics replies as rich tables (every cell and title printed literally: ``services.cli.plain``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from nats.aio.client import Client
from rich.table import Table

from events.subjects import query_subject
from services.cli.errors import CliError
from services.cli.plain import cell


class QueryFailed(CliError):
    """The query service answered with an error."""


def query_subject_of(nc: Client) -> str:
    """The query subject of the connection's identity: its public key is its inbox prefix's second token
    (``_INBOX.<public key>``, ``infra.auth.permissions.inbox_prefix``); a connection without an identity asks on
    the plain subject. (nats-py keeps the prefix in ``Client._inbox_prefix``: nats-py is pinned, see
    pyproject.toml.)"""
    prefix = bytes(getattr(nc, "_inbox_prefix", b"_INBOX")).decode()
    head, _, key = prefix.partition(".")
    return query_subject(key if head == "_INBOX" and key and "." not in key else None)


async def query_stats(nc: Client, request: Mapping[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    reply = await nc.request(query_subject_of(nc), msgspec.json.encode(request), timeout=timeout)
    body: dict[str, Any] = msgspec.json.decode(reply.data)
    if "error" in body:
        err = body["error"]
        raise QueryFailed(f"{err['code']}: {err['message']} (at {err.get('path')})")
    return body


def stats_table(title: str, reply: Mapping[str, Any], reference: Mapping[str, int] | None = None) -> Table:
    table = Table(
        title=cell(title, "table.title"),
        caption=cell(
            f"as of stream seq {reply['as_of_seq']}" + (" — STALE" if reply["stale"] else ""), "table.caption"
        ),
    )
    table.add_column("metric")
    table.add_column("ledger", justify="right")
    if reference is not None:
        table.add_column("article", justify="right")
        table.add_column("", justify="center")
    metrics: dict[str, int] = reply["metrics"]
    approximate: dict[str, int] = reply.get("approximate") or {}
    if approximate:
        table.add_column("of which approximate", justify="right")
    for name in sorted(metrics, key=lambda m: (m.split(".")[0], "." in m, m)):
        row = [cell(("  " if "." in name else "") + name), cell(f"{metrics[name]:,}")]
        if approximate:
            row.append(cell(f"~{approximate[name]:,}" if name in approximate else ""))
        if reference is not None:
            expected = reference.get(name)
            row += [
                cell("" if expected is None else f"{expected:,}"),
                cell("" if expected is None else ("✓" if expected == metrics[name] else "✗")),
            ]
        table.add_row(*row, style=None if "." in name else "bold")
    return table


def parse_years(text: str) -> tuple[int, int]:
    """``2014-2019`` (or one year, ``2018``) as (first, last); ValueError with a message a person can act on."""
    first, sep, last = text.partition("-")
    try:
        a, b = int(first), int(last) if sep else int(first)
    except ValueError:
        raise ValueError(f"--years {text!r} is not a range of years such as 2014-2019") from None
    if a > b:
        raise ValueError(f"--years {text!r}: the first year is after the last")
    return a, b
