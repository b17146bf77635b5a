"""The sealing service: every N events or T seconds, append a signed seal of the next range to ANTQ_SEALS.

Only one sealer can extend a chain: each seal is published with ``Nats-Expected-Last-Sequence`` set to the
seals stream's last sequence as this sealer last read it. A concurrent sealer that got there first makes the
server refuse the publish (err_code 10071); this sealer then reads the seals it missed and starts over from
the new tip, so the chain never forks. Every seal is also stored in PostgreSQL (after NATS; a seal missing
there is copied over on start), so the seals outlive a deleted and recreated seals stream.

A stream with another creation time than the chain's tip recorded halts sealing: deleted and recreated, or
restored from a backup (a snapshot does not carry the creation time). ``accept_restore`` (run by an operator:
``antq seals accept-restore``, never by the sealer on its own) checks that every sealed range of the stream as
it is now hashes to what its seal says and then appends a signed restore seal (``chain.py``); a halted sealer
re-reads the chain every poll and seals on from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

import asyncpg
import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import APIError

from events.subjects import SEALS_SUBJECT
from infra.db import create_pool
from infra.nats_client import connect
from infra.reading import StreamReader
from infra.seal_keys import Signer
from infra.streams import EVENTS, SEALS
from services.sealer.chain import (
    GENESIS,
    RangeHasher,
    Seal,
    encode_seal,
    make_seal,
    sound,
    utc,
)
from services.sealer.chain_checks import check_chain
from services.sealer.errors import NothingToAccept, RestoreRefused, SealConflict
from services.sealer.errors import SealingHalted as SealingHalted  # importable from here as before
from services.sealer.findings import Finding
from services.sealer.log import LoggedSeal, SealLog
from services.sealer.range_checks import compare_ranges, hash_ranges
from services.sealer.store import insert_seal, latest_seal

log = logging.getLogger("antq.sealer")

WRONG_LAST_SEQUENCE = 10071


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, kw_only=True)
class SealerConfig:
    nats_url: str
    database_url: str
    signer: Signer
    stream: str = EVENTS
    seals_stream: str = SEALS
    seals_subject: str = SEALS_SUBJECT
    every_events: int = 10_000  # N: seal as soon as this many events wait; also the most one seal covers
    every_seconds: float = 60.0  # T: seal whatever waits once this long has passed since the last seal
    poll_seconds: float = 1.0
    max_attempts: int = 20
    publish_timeout: float = 5.0
    nats_options: Mapping[str, str] = field(default_factory=dict)  # infra.auth.nats_connect_options
    clock: Callable[[], dt.datetime] = utcnow
    before_publish: Callable[[Seal], Awaitable[None]] | None = None  # test hook: make two sealers race
    reader: StreamReader = field(default_factory=lambda: StreamReader("direct"))
    """How both streams are read: batched direct gets by default, so that the sealer identity needs no consumer
    right (``infra/auth/permissions.py``); both streams need ``allow_direct``, which ``ensure_streams`` sets."""


@dataclass(frozen=True, kw_only=True)
class RestoreCheck:
    tip: Seal  # the chain's latest seal
    created: dt.datetime  # the stream's creation time now
    findings: tuple[Finding, ...]  # none: the restored stream holds what the chain sealed
    whole: RangeHasher  # the stream's events 1..tip.last_seq, hashed


@dataclass
class _Conn:
    nc: Client
    js: JetStreamContext
    pool: asyncpg.Pool
    log: SealLog


@dataclass
class Sealer:
    config: SealerConfig
    conflicts: int = 0  # publishes refused because another sealer extended the chain first
    sealed: int = 0  # seals this sealer made (appended to both stores)
    halts: int = 0  # times sealing halted (a halt lasts until an operator acts and the sealer restarts)
    stream_last_seq: int = 0  # the stream's last sequence when the sealer last looked (every poll)
    _conn: _Conn | None = field(default=None, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _last_sealed_at: dt.datetime | None = field(default=None, init=False)
    _halt_reason: str | None = field(default=None, init=False)
    _postgres_behind: bool = field(default=False, init=False)  # an insert failed after its NATS append
    _recreated: bool = field(
        default=False, init=False
    )  # halted on a new creation time: a restore seal lifts it

    # -- lifecycle -------------------------------------------------------------------------------------

    async def connect(self) -> None:
        cfg = self.config
        nc = await connect(cfg.nats_url, name=f"antq-sealer-{cfg.stream}", **cfg.nats_options)
        try:
            pool = await create_pool(cfg.database_url, min_size=1, max_size=2)
        except BaseException:
            await nc.close()
            raise
        js = nc.jetstream()
        self._conn = _Conn(nc, js, pool, SealLog(js, cfg.seals_stream, cfg.stream, reader=cfg.reader))
        self._last_sealed_at = cfg.clock()
        await self._load()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.pool.close()
            await conn.nc.drain()

    async def start(self) -> None:
        """Connect and seal in the background until ``stop()``."""
        await self.connect()
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name=f"sealer-{self.config.stream}")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.close()

    async def __aenter__(self) -> Sealer:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def public_key(self) -> str:
        return self.config.signer.public_key

    @property
    def halted(self) -> str | None:
        return self._halt_reason

    @property
    def _halted(self) -> str | None:
        return self._halt_reason

    @_halted.setter
    def _halted(self, reason: str | None) -> None:
        if reason is not None and self._halt_reason is None:
            self.halts += 1
        self._halt_reason = reason

    @property
    def last_sealed_seq(self) -> int:
        """The last sequence of the stream the chain has sealed (by this sealer or another), 0 before any."""
        tip = self._conn.log.tip if self._conn is not None else None
        return tip.last_seq if tip is not None else 0

    def _c(self) -> _Conn:
        if self._conn is None:
            raise RuntimeError("the sealer is not connected")
        return self._conn

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.tick()
            except SealingHalted as exc:
                log.error("sealing halted for %s: %s", self.config.stream, exc)
            except Exception:
                log.exception("sealing %s failed; retrying", self.config.stream)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.poll_seconds)

    # -- state -----------------------------------------------------------------------------------------

    async def _load(self) -> None:
        """Read the chain from NATS and make PostgreSQL hold every seal of it (copying any it lacks)."""
        c = self._c()
        await c.log.refresh()
        stored = await latest_seal(c.pool, self.config.stream)
        nats_tip = c.log.tip
        if stored is not None and (nats_tip is None or stored.number > nats_tip.number):
            self._halted = (
                f"PostgreSQL holds seals of {self.config.stream} up to #{stored.number} but "
                f"{self.config.seals_stream} only up to #{nats_tip.number if nats_tip else 0}: "
                "the seals stream lost seals (deleted and recreated?); run `antq audit seals`"
            )
            log.error("%s", self._halted)
            return
        start = stored.number if stored is not None else 0
        try:
            for logged in c.log.seals:
                if logged.seal.number >= start:
                    await insert_seal(c.pool, logged.seal, logged.seals_seq)
        except SealConflict as exc:
            self._halted = f"{exc}: the two stores disagree; run `antq audit seals`"
            log.error("%s", self._halted)

    async def pending(self) -> int:
        """Events stored after the last sealed sequence."""
        c = self._c()
        info = await c.js.stream_info(self.config.stream)
        self.stream_last_seq = int(info.state.last_seq)
        tip = c.log.tip
        return max(0, self.stream_last_seq - (tip.last_seq if tip else 0))

    # -- sealing ---------------------------------------------------------------------------------------

    async def tick(self) -> list[Seal]:
        """Apply the policy once: seal every full N events waiting, and the rest once T has passed."""
        made: list[Seal] = []
        cfg = self.config
        while True:
            waiting = await self.pending()
            due = self._last_sealed_at is None or (
                cfg.clock() - self._last_sealed_at >= dt.timedelta(seconds=cfg.every_seconds)
            )
            if waiting == 0 or (waiting < cfg.every_events and not due):
                return made
            seal = await self.seal_once()
            if seal is None:
                return made
            made.append(seal)

    async def seal_once(self) -> Seal | None:
        """Seal the next range (up to N events) now, whatever the policy; None when nothing waits."""
        if self._halted and self._recreated:
            await self._recheck_recreation()
        if self._halted:
            raise SealingHalted(self._halted)
        if self._postgres_behind:  # copy the seals PostgreSQL missed before extending the chain
            await self._load()
            self._postgres_behind = False
            if self._halted:
                raise SealingHalted(self._halted)
        c, cfg = self._c(), self.config
        for _ in range(cfg.max_attempts):
            seal = await self._next_seal(c)
            if seal is None:
                return None
            if cfg.before_publish is not None:
                await cfg.before_publish(seal)
            seals_seq = await self._publish(c, seal)
            if seals_seq is None:
                continue
            if not (c.log.seals and c.log.seals[-1].seal == seal):  # a re-read after a lost ack has it
                c.log.seals.append(LoggedSeal(seals_seq, seal))
            c.log.last_seq = max(c.log.last_seq, seals_seq)
            try:
                await insert_seal(c.pool, seal, seals_seq)
            except SealConflict as exc:
                self._halted = f"{exc}: the two stores disagree; run `antq audit seals`"
                raise SealingHalted(self._halted) from exc
            except BaseException:
                self._postgres_behind = True  # in NATS, not in PostgreSQL: the next seal copies it first
                raise
            self._last_sealed_at = cfg.clock()
            self.sealed += 1
            log.info(
                "sealed %s #%d: seqs %d..%d (%d events), digest %s",
                seal.stream,
                seal.number,
                seal.first_seq,
                seal.last_seq,
                seal.count,
                seal.digest,
            )
            return seal
        raise SealingHalted(f"gave up after {cfg.max_attempts} attempts: other sealers keep winning")

    async def _next_seal(self, c: _Conn) -> Seal | None:
        cfg = self.config
        info = await c.js.stream_info(cfg.stream)
        if info.created is None:
            raise SealingHalted(f"the server does not report when {cfg.stream} was created")
        created = utc(info.created)
        tip = c.log.tip
        if tip is not None and tip.stream_created != created:
            self._halted = (
                f"{cfg.stream} was created at {created.isoformat()} but seal #{tip.number} sealed the stream "
                f"created at {tip.stream_created.isoformat()}: it was deleted and recreated (a restore from a "
                "backup? check it and record it: `antq seals accept-restore`)"
            )
            self._recreated = True
            raise SealingHalted(self._halted)
        first = tip.last_seq + 1 if tip is not None else 1
        last = min(int(info.state.last_seq), first + cfg.every_events - 1)
        if last < first:
            return None
        hasher = RangeHasher(first)
        async for batch in cfg.reader.messages(c.js, cfg.stream, start_seq=first, stop_seq=last):
            for msg in batch:
                hasher.add(msg.seq, msg.timestamp_ns, msg.subject, msg.data)
        hasher.finish(last)
        if hasher.missing_count:
            # sequences of the range hold no message (deleted, or a read that fell short): sealing would
            # certify a log with holes as complete
            self._halted = f"{cfg.stream} has {hasher.missing_count} missing message(s) in {first}..{last}"
            raise SealingHalted(self._halted)
        return make_seal(
            number=tip.number + 1 if tip is not None else 1,
            stream=cfg.stream,
            first_seq=first,
            last_seq=last,
            count=hasher.count,
            stream_created=created,
            prev_digest=tip.digest if tip is not None else GENESIS,
            range_digest=hasher.range_digest,
            content_digest=hasher.content_digest,
            sealed_at=cfg.clock(),
            signer=cfg.signer,
        )

    async def _publish(self, c: _Conn, seal: Seal) -> int | None:
        """The seal's sequence in the seals stream, or None if another sealer won (the log is then re-read)."""
        headers = {
            Header.EXPECTED_LAST_SEQUENCE.value: str(c.log.last_seq),
            Header.EXPECTED_STREAM.value: self.config.seals_stream,
        }
        try:
            ack = await c.js.publish(
                self.config.seals_subject,
                encode_seal(seal),
                timeout=self.config.publish_timeout,
                headers=headers,
            )
        except APIError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            self.conflicts += 1
            log.info("seal #%d of %s lost a race; re-reading the chain", seal.number, seal.stream)
            await c.log.refresh()
            return None
        except (TimeoutError, nats.errors.TimeoutError):
            # The ack may have been lost after the seal was stored: the re-read log tells.
            await c.log.refresh()
            tip = c.log.seals[-1] if c.log.seals else None
            if tip is not None and tip.seal == seal:
                return tip.seals_seq
            return None
        return int(ack.seq)

    # -- restores --------------------------------------------------------------------------------------

    async def _recheck_recreation(self) -> None:
        """Halted on a new creation time: lift the halt once the chain's tip (a restore seal appended by
        ``accept_restore``, here or in ``antq seals accept-restore``) records the stream's creation time."""
        c = self._c()
        await c.log.refresh()
        info = await c.js.stream_info(self.config.stream)
        tip = c.log.tip
        if info.created is None or tip is None or tip.stream_created != utc(info.created):
            return
        # only a sound seal of this sealer's key (accept_restore's): sealing on from a seal anyone who can write
        # to the seals stream made would chain this key's next seal onto it
        if tip.signer != self.config.signer.public_key or not sound(tip):
            log.error(
                "seal #%d records %s's creation time but is not a sound seal of this sealer's key (%s): "
                "still halted; run `antq audit seals`",
                tip.number,
                self.config.stream,
                tip.signer,
            )
            return
        # accept_restore appends to NATS, then PostgreSQL: if it died in between, PostgreSQL gets the restore
        # seal here (a sealer copies on start only the seals after PostgreSQL's latest, so never once sealed on)
        logged = c.log.seals[-1]
        try:
            await insert_seal(c.pool, logged.seal, logged.seals_seq)
        except SealConflict as exc:
            self._halted, self._recreated = f"{exc}: the two stores disagree; run `antq audit seals`", False
            raise SealingHalted(self._halted) from exc
        log.info("seal #%d records %s's creation time: sealing again", tip.number, self.config.stream)
        self._halt_reason, self._recreated = None, False

    async def check_restore(self) -> RestoreCheck:
        """The chain's tip, the stream's creation time and what the restored stream fails of the chain: the
        chain on its own (numbering, digests, signatures by this sealer's key, prev digests, ranges) and every
        sealed range recomputed from the stream as it is now. NothingToAccept when the tip records that creation
        time."""
        c, cfg = self._c(), self.config
        await c.log.refresh()
        tip = c.log.tip
        if tip is None:
            raise RestoreRefused(f"{cfg.stream} has no seal: there is nothing to check a restore against")
        info = await c.js.stream_info(cfg.stream)
        if info.created is None:
            raise RestoreRefused(f"the server does not report when {cfg.stream} was created")
        created = utc(info.created)
        if created == tip.stream_created:
            raise NothingToAccept(
                f"seal #{tip.number} already records {cfg.stream}'s creation time {created.isoformat()}"
            )
        seals = [logged.seal for logged in c.log.seals]
        # its own key only: the restore seal, signed with it, vouches for every range of the chain before it
        chain = check_chain("nats", seals, frozenset({cfg.signer.public_key}))
        findings = list(chain.findings)
        findings += [
            Finding(
                kind="malformed_seal",
                store="nats",
                detail=f"message {seq} of {cfg.seals_stream} is not a seal",
            )
            for seq in c.log.malformed
        ]
        hashers, _ = await hash_ranges(
            c.js,
            cfg.stream,
            chain.sound,
            int(info.state.last_seq),
            reader=cfg.reader,
            spans=[(1, tip.last_seq)],
        )
        findings += compare_ranges(chain.sound, hashers)
        whole = hashers[(1, tip.last_seq)]
        if whole.missing_count:
            findings.append(
                Finding(
                    kind="gap",
                    first_seq=1,
                    last_seq=tip.last_seq,
                    seqs=tuple(whole.missing),
                    detail=f"{whole.missing_count} sealed sequence(s) of 1..{tip.last_seq} hold no event",
                )
            )
        return RestoreCheck(tip=tip, created=created, findings=tuple(findings), whole=whole)

    async def accept_restore(self) -> Seal:
        """Record a restore of the stream in the chain: when every sealed range of the restored stream hashes
        to what its seal says (and the chain itself is sound), append a signed restore seal (old and new
        creation time, 1..last sealed seq, the digests of those events) to both stores, and seal on from there.
        RestoreRefused (with the findings) otherwise; NothingToAccept when the stream was not recreated."""
        c, cfg = self._c(), self.config
        if self._halted and not self._recreated:
            raise RestoreRefused(f"sealing is halted for another cause: {self._halted}")
        for _ in range(cfg.max_attempts):
            check = await self.check_restore()
            tip, created, findings, whole = check.tip, check.created, check.findings, check.whole
            if findings:
                raise RestoreRefused(
                    f"{cfg.stream} (created {created.isoformat()}) does not hold what the seals sealed: "
                    + "; ".join(f"{f.kind}: {f.detail}" for f in findings[:10]),
                    findings=findings,
                )
            seal = make_seal(
                number=tip.number + 1,
                stream=cfg.stream,
                first_seq=1,
                last_seq=tip.last_seq,
                count=whole.count,
                stream_created=created,
                prev_digest=tip.digest,
                range_digest=whole.range_digest,
                content_digest=whole.content_digest,
                sealed_at=cfg.clock(),
                signer=cfg.signer,
                restored_from=tip.stream_created,
            )
            seals_seq = await self._publish(c, seal)
            if seals_seq is None:
                continue  # another sealer appended first: check again against the new tip
            if not (c.log.seals and c.log.seals[-1].seal == seal):
                c.log.seals.append(LoggedSeal(seals_seq, seal))
            c.log.last_seq = max(c.log.last_seq, seals_seq)
            try:
                await insert_seal(c.pool, seal, seals_seq)
            except SealConflict as exc:
                self._halted, self._recreated = (
                    f"{exc}: the two stores disagree; run `antq audit seals`",
                    False,
                )
                raise SealingHalted(self._halted) from exc
            self._halt_reason, self._recreated = None, False
            log.warning(
                "restore of %s recorded in seal #%d: created %s (was %s), events 1..%d (%d) verified",
                cfg.stream,
                seal.number,
                created.isoformat(),
                tip.stream_created.isoformat(),
                seal.last_seq,
                seal.count,
            )
            return seal
        raise SealingHalted(f"gave up after {cfg.max_attempts} attempts: other sealers keep winning")
