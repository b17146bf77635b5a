"""Verify a stream against its seals: read-only (stream info, direct gets or a short-lived consumer, SELECTs).

Both stores' chains are checked on their own (numbering, seal digest, signature, prev digest, contiguous
ranges), then against each other, then every range of a sound seal is recomputed from the stored events in
one ordered pass and compared (gaps, altered content, re-recorded timestamps), and the stream's creation
time is compared with the one the seals recorded. A restore seal (the stream restored from a backup,
``antq seals accept-restore``) carries the chain across a new creation time; its range 1..L is recomputed like
any other, and when it does not match, the recreation stays a finding (``stream_recreated``).

A log wiped and sealed again from scratch (both seal stores emptied, the stream recreated, the sealer
restarted) carries a sound chain of its own. Only what lies outside the stack tells it from the original: a
seal printed on an earlier report (``Expected``: it must still be in both stores, unchanged, with the chain
going on from it to the latest seal) or a pinned signer key (``trusted_keys``). Without a pinned key the
report carries a warning saying so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

import asyncpg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from infra.nats_client import connect
from infra.reading import StreamReader
from services.sealer.chain import Seal, utc
from services.sealer.chain_checks import check_chain, check_expected, cross_check, not_pinned_warning
from services.sealer.findings import Expected, Finding, Report
from services.sealer.log import SealLog
from services.sealer.range_checks import compare_ranges, hash_ranges, unique_ranges
from services.sealer.store import fetch_seals


async def read_both_stores(
    js: JetStreamContext,
    conn: asyncpg.Connection,
    stream: str,
    seals_stream: str,
    reader: StreamReader,
    append_grace_s: float = 3.0,
) -> tuple[list[Seal], list[Seal], SealLog]:
    """(NATS seals, PostgreSQL seals, the seals log) as of one consistent moment, while a sealer may run.

    The sealer appends each seal to NATS, then to PostgreSQL, so the stores are read PostgreSQL, NATS,
    PostgreSQL: every seal of the first PostgreSQL read was in NATS before the NATS read began, and every
    NATS seal was in PostgreSQL before the second read began unless its append is unfinished (or failed).
    The PostgreSQL seals checked are those of the first read plus the second read's seals of numbers the NATS
    read holds; seals appended to both after the NATS read are left to the next check. Newest NATS seals not yet
    in PostgreSQL are read again for up to ``append_grace_s`` (an insert in flight); a seal still missing then
    is reported.
    """
    first = await _fetch_readonly(conn, stream)
    log = SealLog(js, seals_stream, stream, reader)
    await log.refresh()
    nats_seals = [logged.seal for logged in log.seals]
    in_nats = {seal.number for seal in nats_seals}
    in_first = {seal.number for seal in first}
    deadline = time.monotonic() + append_grace_s
    while True:
        second = await _fetch_readonly(conn, stream)
        later = [seal for seal in second if seal.number in in_nats and seal.number not in in_first]
        unfinished = in_nats - in_first - {seal.number for seal in later}
        # only the newest NATS seals can be unfinished appends (NATS is written first, PostgreSQL right after)
        if not unfinished or min(unfinished) <= max(in_first, default=0) or time.monotonic() > deadline:
            return nats_seals, sorted(first + later, key=lambda s: s.number), log
        await asyncio.sleep(0.05)  # poll interval while the sealer finishes its PostgreSQL insert


async def _fetch_readonly(conn: asyncpg.Connection, stream: str) -> list[Seal]:
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        return await fetch_seals(conn, stream)


async def verify_seals(
    js: JetStreamContext,
    conn: asyncpg.Connection,
    *,
    stream: str,
    seals_stream: str,
    trusted_keys: frozenset[str] | None = None,
    reader: StreamReader | None = None,
    expected: Sequence[Expected] = (),
) -> Report:
    """Check ``stream`` against its seals in ``seals_stream`` and PostgreSQL. Reads only; ``reader``: how to
    read both streams (``infra.reading.audit_reader``; default: unnamed consumers); ``expected``: seals printed
    on earlier reports, each of which must still be in both stores with the chain going on from it."""
    reader = reader or StreamReader()
    nats_seals, pg_seals, log = await read_both_stores(js, conn, stream, seals_stream, reader)

    findings: list[Finding] = [
        Finding(kind="malformed_seal", store="nats", detail=f"message {seq} of {seals_stream} is not a seal")
        for seq in log.malformed
    ]
    nats_chain = check_chain("nats", nats_seals, trusted_keys)
    pg_chain = check_chain("postgres", pg_seals, trusted_keys)
    findings += nats_chain.findings + pg_chain.findings
    findings += cross_check(nats_seals, pg_seals)
    for printed in expected:
        findings += check_expected("nats", nats_seals, printed)
        findings += check_expected("postgres", pg_seals, printed)

    sound = unique_ranges(nats_chain.sound + pg_chain.sound)
    latest = max(sound, key=lambda s: (s.number, s in nats_chain.sound), default=None)
    sealed_through = max((s.last_seq for s in sound), default=0)
    warnings = () if trusted_keys is not None else (not_pinned_warning(sound, expected),)
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        findings.append(Finding(kind="stream_missing", detail=f"stream {stream} does not exist"))
        return Report(
            stream=stream,
            seals_nats=len(nats_seals),
            seals_postgres=len(pg_seals),
            sealed_through=sealed_through,
            stream_last_seq=None,
            stream_created=None,
            events_checked=0,
            unsealed=0,
            latest=latest,
            findings=tuple(findings),
            expected=tuple(expected),
            warnings=warnings,
        )
    created = utc(info.created) if info.created is not None else None
    last_seq = int(info.state.last_seq)
    if latest is not None and created != latest.stream_created:
        findings.append(
            Finding(
                kind="stream_recreated",
                seal=latest.number,
                detail=(
                    f"{stream} was created {created.isoformat() if created else '?'}, but the seals sealed "
                    f"the stream created {latest.stream_created.isoformat()}: deleted and recreated"
                ),
            )
        )
    if last_seq < sealed_through:
        findings.append(
            Finding(
                kind="stream_truncated",
                first_seq=last_seq + 1,
                last_seq=sealed_through,
                detail=f"{stream} ends at sequence {last_seq}; the seals cover up to {sealed_through}",
            )
        )
    hashers, read = await hash_ranges(js, stream, sound, last_seq, reader=reader)
    ranges = compare_ranges(sound, hashers)
    findings += ranges + restore_not_proven(sound, ranges)
    return Report(
        stream=stream,
        seals_nats=len(nats_seals),
        seals_postgres=len(pg_seals),
        sealed_through=sealed_through,
        stream_last_seq=last_seq,
        stream_created=created,
        events_checked=read,
        unsealed=max(0, last_seq - sealed_through),
        latest=latest,
        findings=tuple(findings),
        expected=tuple(expected),
        warnings=warnings,
        restores=tuple(s for s in sound if s.is_restore),
    )


def restore_not_proven(sound: Sequence[Seal], ranges: Sequence[Finding]) -> list[Finding]:
    """A restore seal whose range no longer matches the stream proves no restore: the recreation stays a finding."""
    restores = {s.number: s for s in sound if s.is_restore}
    return [
        Finding(
            kind="stream_recreated",
            seal=f.seal,
            detail=(
                f"restore seal #{f.seal} does not match the stream's events 1..{restores[f.seal].last_seq} "
                f"({f.kind}): the recreation it records is not proven"
            ),
        )
        for f in ranges
        if f.seal in restores
    ]


async def verify_at(
    *,
    nats_url: str,
    database_url: str,
    stream: str,
    seals_stream: str,
    nats_options: Mapping[str, str] | None = None,
    reader: StreamReader | None = None,
    trusted_keys: frozenset[str] | None = None,
    expected: Sequence[Expected] = (),
) -> Report:
    """Connect (read-only use), verify, disconnect. ``nats_options``: ``infra.auth.nats_connect_options``."""

    async def quiet(exc: Exception) -> None:  # the failure surfaces as the connect exception
        return None

    options: dict[str, object] = {
        "name": "antq-audit-seals",
        "connect_timeout": 5,
        "allow_reconnect": False,
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.2,
        "error_cb": quiet,
        **(nats_options or {}),
    }
    nc = await connect(nats_url, **options)
    try:
        conn = await asyncpg.connect(database_url)
        try:
            return await verify_seals(
                nc.jetstream(),
                conn,
                stream=stream,
                seals_stream=seals_stream,
                trusted_keys=trusted_keys,
                reader=reader,
                expected=expected,
            )
        finally:
            await conn.close()
    finally:
        await nc.close()
