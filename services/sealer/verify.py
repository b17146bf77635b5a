"""Verify a stream against its seals: read-only (stream info, direct gets or a short-lived consumer, SELECTs).

Both stores' chains are checked on their own (numbering, seal digest, signature, prev digest, contiguous
ranges), then against each other, then every range of a sound seal is recomputed from the stored events in
one ordered pass and compared (gaps, altered content, re-recorded timestamps), and the stream's creation
time is compared with the one the seals recorded.

A log wiped and sealed again from scratch (both seal stores emptied, the stream recreated, the sealer
restarted) carries a sound chain of its own. Only what lies outside the stack tells it from the original: a
seal printed on an earlier report (``Expected``: it must still be in both stores, unchanged, with the chain
going on from it to the latest seal) or a pinned signer key (``trusted_keys``). Without a pinned key the
report carries a warning saying so.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg
import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from infra.nats_client import connect
from infra.reading import StreamReader
from services.sealer.chain import GENESIS, RangeHasher, Seal, recompute_digest, signature_valid, utc
from services.sealer.log import SealLog
from services.sealer.store import fetch_seals

Kind = Literal[
    "stream_missing",  # the sealed stream does not exist
    "stream_recreated",  # its creation time differs from the one the seals recorded
    "stream_truncated",  # it ends before the last sealed sequence
    "gap",  # sealed sequences are missing (deleted messages)
    "range_altered",  # a range's recomputed content differs from its seal: an altered or substituted event
    "range_rerecorded",  # same facts, other timestamps: the range was written again (recreated stream)
    "seal_altered",  # a seal's fields do not hash to its digest
    "bad_signature",  # the signature does not verify with the seal's signer key
    "untrusted_signer",  # signed by a key not among the trusted ones
    "signer_changed",  # consecutive seals by different keys (no trusted keys given)
    "chain_broken",  # prev digest is not the previous seal's digest
    "range_not_contiguous",  # a seal's range does not start right after the previous one
    "seal_missing",  # seal numbers skipped in a store
    "seal_forked",  # two seals with the same number in a store
    "malformed_seal",  # a seals-stream message that is not a seal
    "store_missing_seal",  # a seal held by one store only
    "stores_disagree",  # NATS and PostgreSQL hold different seals under one number
    "expected_seal_missing",  # a seal printed on an earlier report is not in a store
    "expected_seal_differs",  # a store holds another seal under the printed seal's number
    "expected_chain_broken",  # the chain does not lead from the printed seal to the store's latest seal
    "signer_not_pinned",  # a warning, never a finding: no trusted key given, any key's chain would pass
]
Store = Literal["nats", "postgres"]


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    kind: Kind
    detail: str
    store: Store | None = None
    seal: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    seqs: tuple[int, ...] = ()


def _about(seal: Seal, kind: Kind, store: Store, detail: str) -> Finding:
    """A finding about one seal of a store, naming the range it covers."""
    return Finding(
        kind=kind,
        store=store,
        seal=seal.number,
        first_seq=seal.first_seq,
        last_seq=seal.last_seq,
        detail=detail,
    )


class Expected(msgspec.Struct, frozen=True, kw_only=True):
    """A seal as an earlier report printed it (``antq audit seals --export``): at least its number and digest;
    the other fields, when known, must match too."""

    number: int
    digest: str
    stream: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    count: int | None = None
    stream_created: dt.datetime | None = None
    sealed_at: dt.datetime | None = None
    signer: str | None = None


class Report(msgspec.Struct, frozen=True, kw_only=True):
    stream: str
    seals_nats: int
    seals_postgres: int
    sealed_through: int  # the last sequence the latest sound seal covers
    stream_last_seq: int | None
    stream_created: dt.datetime | None
    events_checked: int
    unsealed: int  # events after the latest seal (not a finding: the sealer seals them later)
    latest: Seal | None
    findings: tuple[Finding, ...]
    expected: tuple[Expected, ...] = ()  # the printed seals checked
    warnings: tuple[Finding, ...] = ()  # said on the report, but not findings: ``ok`` does not depend on them

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_mismatch(self) -> Finding | None:
        """The first seal range whose recomputed events no longer match (timestamps included)."""
        return self._first(("gap", "range_altered", "range_rerecorded"))

    @property
    def first_altered(self) -> Finding | None:
        """The first seal range whose facts changed: an event missing, altered or substituted."""
        return self._first(("gap", "range_altered"))

    def _first(self, kinds: tuple[str, ...]) -> Finding | None:
        ranges = [f for f in self.findings if f.kind in kinds]
        return min(ranges, key=lambda f: f.first_seq or 0) if ranges else None


@dataclass(frozen=True)
class _Chain:
    findings: list[Finding]
    sound: list[Seal]  # digest and signature verify


def check_chain(store: Store, seals: Sequence[Seal], trusted: frozenset[str] | None) -> _Chain:
    """Each seal on its own and against the one before it, in number order."""
    findings: list[Finding] = []
    sound: list[Seal] = []
    prev: Seal | None = None
    expected = 1
    seen: set[int] = set()
    for seal in sorted(seals, key=lambda s: s.number):
        n = seal.number
        if n in seen:
            findings.append(
                Finding(kind="seal_forked", store=store, seal=n, detail=f"two seals numbered #{n}: a fork")
            )
            continue
        seen.add(n)
        if n > expected:
            missing = tuple(range(expected, n))
            findings.append(
                Finding(
                    kind="seal_missing",
                    store=store,
                    seal=expected,
                    detail=f"seals #{expected}..#{n - 1} are missing",
                    seqs=missing[:1000],
                )
            )
        digest_ok = recompute_digest(seal) == seal.digest
        if not digest_ok:
            findings.append(
                _about(
                    seal,
                    "seal_altered",
                    store,
                    f"seal #{n}'s fields do not hash to its digest {seal.digest[:16]}…",
                )
            )
        sig_ok = signature_valid(seal)
        if not sig_ok:
            findings.append(
                Finding(
                    kind="bad_signature",
                    store=store,
                    seal=n,
                    detail=f"seal #{n}'s signature does not verify with its signer {seal.signer}",
                )
            )
        if trusted is not None and seal.signer not in trusted:
            findings.append(
                Finding(
                    kind="untrusted_signer",
                    store=store,
                    seal=n,
                    detail=f"seal #{n} is signed by {seal.signer}, not a trusted key",
                )
            )
        elif trusted is None and prev is not None and prev.signer != seal.signer:
            findings.append(
                Finding(
                    kind="signer_changed",
                    store=store,
                    seal=n,
                    detail=f"seal #{n} is signed by {seal.signer}, #{prev.number} by {prev.signer}",
                )
            )
        want_prev = (
            GENESIS if n == 1 else (prev.digest if prev is not None and prev.number == n - 1 else None)
        )
        if want_prev is not None and seal.prev_digest != want_prev:
            findings.append(
                Finding(
                    kind="chain_broken",
                    store=store,
                    seal=n,
                    detail=f"seal #{n}'s prev digest {seal.prev_digest[:16]}… is not #{n - 1}'s {want_prev[:16]}…",
                )
            )
        want_first = 1 if n == 1 else (prev.last_seq + 1 if prev is not None else None)
        if want_first is not None and seal.first_seq != want_first:
            findings.append(
                _about(
                    seal,
                    "range_not_contiguous",
                    store,
                    f"seal #{n} covers {seal.first_seq}..{seal.last_seq}; it should start at {want_first}",
                )
            )
        if prev is not None and prev.stream_created != seal.stream_created:
            findings.append(
                Finding(
                    kind="stream_recreated",
                    store=store,
                    seal=n,
                    detail=(
                        f"seal #{n} sealed a stream created {seal.stream_created.isoformat()}, "
                        f"#{prev.number} one created {prev.stream_created.isoformat()}"
                    ),
                )
            )
        if digest_ok and sig_ok:
            sound.append(seal)
        prev, expected = seal, n + 1
    return _Chain(findings, sound)


def _sound(seal: Seal) -> bool:
    return recompute_digest(seal) == seal.digest and signature_valid(seal)


def _expected_differences(expected: Expected, seal: Seal) -> list[str]:
    recorded: tuple[tuple[str, object, object], ...] = (
        ("stream", expected.stream, seal.stream),
        ("first_seq", expected.first_seq, seal.first_seq),
        ("last_seq", expected.last_seq, seal.last_seq),
        ("count", expected.count, seal.count),
        ("stream_created", expected.stream_created, seal.stream_created),
        ("sealed_at", expected.sealed_at, seal.sealed_at),
        ("signer", expected.signer, seal.signer),
    )
    return [name for name, want, have in recorded if want is not None and want != have]


def check_expected(store: Store, seals: Sequence[Seal], expected: Expected) -> list[Finding]:
    """The printed seal is in ``store`` with that very digest (and the other fields printed), and a chain of
    sound seals with contiguous ranges leads from it to the store's latest seal."""
    by_number: dict[int, list[Seal]] = {}
    for seal in seals:
        by_number.setdefault(seal.number, []).append(seal)
    n, printed = expected.number, f"{expected.digest[:16]}…"
    held = by_number.get(n, [])
    match = next((s for s in held if s.digest == expected.digest), None)
    if match is None:
        if not held:
            tip = max(by_number, default=0)
            return [
                Finding(
                    kind="expected_seal_missing",
                    store=store,
                    seal=n,
                    detail=f"the printed seal #{n} ({printed}) is not in {store}, which holds seals up to #{tip}",
                )
            ]
        other = held[0]
        created = (
            f"; it seals the stream created {other.stream_created.isoformat()}, the printed one the stream "
            f"created {expected.stream_created.isoformat()}"
            if expected.stream_created is not None and expected.stream_created != other.stream_created
            else ""
        )
        return [
            Finding(
                kind="expected_seal_differs",
                store=store,
                seal=n,
                first_seq=other.first_seq,
                last_seq=other.last_seq,
                detail=(
                    f"seal #{n} in {store} has digest {other.digest[:16]}…, the printed one {printed}{created}: "
                    "the seals were made again"
                ),
            )
        ]
    differing = _expected_differences(expected, match)
    if differing:
        return [
            Finding(
                kind="expected_seal_differs",
                store=store,
                seal=n,
                detail=f"seal #{n} in {store} has the printed digest but another {', '.join(differing)}",
            )
        ]
    tip = max(by_number)

    def broken(k: int, why: str) -> list[Finding]:
        detail = f"in {store}, the chain from the printed seal #{n} to the latest seal #{tip} breaks at #{k}: {why}"
        return [Finding(kind="expected_chain_broken", store=store, seal=k, detail=detail)]

    if not _sound(match):
        return broken(n, "the printed seal itself does not verify")
    current = match
    for k in range(n + 1, tip + 1):
        nxt = next(
            (
                s
                for s in by_number.get(k, [])
                if s.prev_digest == current.digest and s.first_seq == current.last_seq + 1 and _sound(s)
            ),
            None,
        )
        if nxt is None:
            return broken(k, f"no sound seal #{k} follows #{k - 1} (its digest and the next range)")
        current = nxt
    return []


def _not_pinned(sound: Iterable[Seal], expected: Sequence[Expected]) -> Finding:
    signers = sorted({s.signer for s in sound})
    return Finding(
        kind="signer_not_pinned",
        detail=(
            "no signer key is pinned: each seal was checked against the key it names itself, so a chain made "
            "again from scratch and signed by any key would pass"
            + (
                "; a printed seal found in the chain ties it to the key that signed that seal"
                if expected
                else ""
            )
            + (f"; the seals are signed by {', '.join(signers)}" if signers else "")
        ),
    )


def _differing_fields(a: Seal, b: Seal) -> list[str]:
    return [name for name in a.__struct_fields__ if getattr(a, name) != getattr(b, name)]


def cross_check(nats_seals: Iterable[Seal], pg_seals: Iterable[Seal]) -> list[Finding]:
    """Both stores must hold the same seals."""
    in_nats: dict[int, Seal] = {}
    in_pg: dict[int, Seal] = {}
    for seal in nats_seals:
        in_nats.setdefault(seal.number, seal)
    for seal in pg_seals:
        in_pg.setdefault(seal.number, seal)
    findings: list[Finding] = []
    sides: tuple[tuple[Store, dict[int, Seal], dict[int, Seal]], ...] = (
        ("postgres", in_pg, in_nats),
        ("nats", in_nats, in_pg),
    )
    for store, have, other in sides:
        missing = sorted(set(other) - set(have))
        if missing:
            findings.append(
                Finding(
                    kind="store_missing_seal",
                    store=store,
                    seal=missing[0],
                    detail=f"{len(missing)} seal(s) missing from {store}: #{', #'.join(map(str, missing[:20]))}",
                    seqs=tuple(missing[:1000]),
                )
            )
    for number in sorted(set(in_nats) & set(in_pg)):
        a, b = in_nats[number], in_pg[number]
        if a != b:
            findings.append(
                Finding(
                    kind="stores_disagree",
                    seal=number,
                    first_seq=a.first_seq,
                    last_seq=a.last_seq,
                    detail=f"seal #{number} differs between NATS and PostgreSQL in {', '.join(_differing_fields(a, b))}",
                )
            )
    return findings


def _unique_ranges(seals: Iterable[Seal]) -> list[Seal]:
    seen: dict[tuple[int, int, int, str, str], Seal] = {}
    for s in seals:
        seen.setdefault((s.first_seq, s.last_seq, s.count, s.range_digest, s.content_digest), s)
    return sorted(seen.values(), key=lambda s: (s.first_seq, s.last_seq, s.number))


async def hash_ranges(
    js: JetStreamContext,
    stream: str,
    seals: Sequence[Seal],
    stream_last_seq: int,
    *,
    reader: StreamReader | None = None,
) -> tuple[dict[tuple[int, int], RangeHasher], int]:
    """Recompute every seal range in one ordered read of the stream; (hashers by (first, last), events read)."""
    keys = sorted({(s.first_seq, s.last_seq) for s in seals})
    hashers = {key: RangeHasher(key[0]) for key in keys}
    read = 0
    if keys:
        lo, hi = keys[0][0], min(max(k[1] for k in keys), stream_last_seq)
        i = 0
        active: list[tuple[int, int]] = []
        if hi >= lo:
            async for batch in (reader or StreamReader()).messages(js, stream, start_seq=lo, stop_seq=hi):
                for msg in batch:
                    read += 1
                    while i < len(keys) and keys[i][0] <= msg.seq:
                        active.append(keys[i])
                        i += 1
                    if active and active[0][1] < msg.seq:
                        active = [k for k in active if k[1] >= msg.seq]
                    for key in active:
                        if key[1] >= msg.seq:
                            hashers[key].add(msg.seq, msg.timestamp_ns, msg.subject, msg.data)
    for (_, last), hasher in hashers.items():
        hasher.finish(last)
    return hashers, read


def compare_ranges(seals: Sequence[Seal], hashers: dict[tuple[int, int], RangeHasher]) -> list[Finding]:
    findings: list[Finding] = []
    rerecorded: list[Seal] = []
    for seal in seals:
        h = hashers[(seal.first_seq, seal.last_seq)]
        span = f"{seal.first_seq}..{seal.last_seq}"
        if h.count < seal.count:
            listed = seal.count == seal.last_seq - seal.first_seq + 1
            findings.append(
                Finding(
                    kind="gap",
                    seal=seal.number,
                    first_seq=seal.first_seq,
                    last_seq=seal.last_seq,
                    seqs=tuple(h.missing) if listed else (),
                    detail=(
                        f"seal #{seal.number} ({span}) covered {seal.count} events, the stream now holds "
                        f"{h.count}" + (f"; missing: {', '.join(map(str, h.missing[:20]))}" if listed else "")
                    ),
                )
            )
        elif h.count > seal.count or h.content_digest != seal.content_digest:
            findings.append(
                Finding(
                    kind="range_altered",
                    seal=seal.number,
                    first_seq=seal.first_seq,
                    last_seq=seal.last_seq,
                    detail=(
                        f"seal #{seal.number} ({span}): the stored events no longer match "
                        f"({h.count} events now, {seal.count} sealed): altered or substituted"
                    ),
                )
            )
        elif h.range_digest != seal.range_digest:
            rerecorded.append(seal)
    if rerecorded:
        first = rerecorded[0]
        findings.append(
            Finding(
                kind="range_rerecorded",
                seal=first.number,
                first_seq=first.first_seq,
                last_seq=first.last_seq,
                detail=(
                    f"seal #{first.number} ({first.first_seq}..{first.last_seq})"
                    + (f" and {len(rerecorded) - 1} later range(s)" if len(rerecorded) > 1 else "")
                    + ": same subjects and bytes, other stream timestamps: written again"
                ),
            )
        )
    return findings


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

    sound = _unique_ranges(nats_chain.sound + pg_chain.sound)
    latest = max(sound, key=lambda s: (s.number, s in nats_chain.sound), default=None)
    sealed_through = max((s.last_seq for s in sound), default=0)
    warnings = () if trusted_keys is not None else (_not_pinned(sound, expected),)
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
    findings += compare_ranges(sound, hashers)
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
    )


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
