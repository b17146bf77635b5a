"""Folding a replay: decode stored records, keep those of the business-time cut, feed the in-memory fold.

``LocalFold`` does it in this process. ``ProcessFold`` does the same in a child process: the parent only
reads the stream and ships each batch's raw bodies (length-prefixed msgpack frames on the child's stdin),
the child decodes and folds and answers with its totals, so a long replay uses two cores (reading with
nats-py costs about as much as decoding and folding).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import gc
import struct
import sys
from collections.abc import Sequence
from typing import BinaryIO

import msgspec

from events.localities import Localities
from events.schema import Recorded
from events.stored import Foreign, StoredRecords, UnknownEventType
from events.subjects import EVENTS_PREFIX
from projections.asof import OccurredOnOrBefore
from projections.errors import FoldError
from projections.fold_state import Deltas
from projections.replay import InMemoryReplay
from services.audit.errors import AuditError, UnfoldableHistory


class _Chunk(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False):
    seqs: list[int]
    subjects: list[str]
    bodies: list[bytes]


class _Outcome(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False):
    totals: list[tuple[str, int, str, int]]
    last_seq: int
    events: int
    error: str | None = None
    foreign: int = 0


class LocalFold:
    """Read stored records as every reader does (``events.stored``: foreign ones set aside and counted), cut at
    a business date (``as_of_occurred``), fold in memory."""

    def __init__(self, as_of_occurred: dt.date | None, localities: Localities | None = None) -> None:
        self.replay = InMemoryReplay()
        self.foreign = 0
        self._stored = StoredRecords(localities or Localities.load())
        self._keep = OccurredOnOrBefore(as_of_occurred).keep if as_of_occurred is not None else None

    def feed(self, seqs: Sequence[int], subjects: Sequence[str], bodies: Sequence[bytes]) -> None:
        read = self._stored.read
        records: list[tuple[int, Recorded]] = []
        try:
            for seq, subject, body in zip(seqs, subjects, bodies, strict=True):
                got = read(seq, subject, body)
                if isinstance(got, Foreign):
                    self.foreign += 1
                else:
                    records.append((seq, got))
        except UnknownEventType as exc:
            raise UnfoldableHistory(str(exc)) from None
        if self._keep is not None:
            keep = self._keep
            records = [(seq, rec) for seq, rec in records if keep(rec)]
        try:
            self.replay.feed(records)
        except FoldError as exc:
            raise UnfoldableHistory(f"the history cannot be folded: {exc}") from None


_chunks = msgspec.msgpack.Decoder(_Chunk)
_outcomes = msgspec.msgpack.Decoder(_Outcome)
_encoder = msgspec.msgpack.Encoder()
_LENGTH = struct.Struct(">I")


def _read_frame(stream: BinaryIO) -> bytes | None:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return data


def child_main(stdin: BinaryIO, stdout: BinaryIO, as_of_occurred: dt.date | None) -> None:
    """The child: fold every chunk until an empty one (or the end of input), answer with the totals."""
    gc.freeze()  # what is loaded so far never needs collecting again
    gc.set_threshold(50_000, 20, 20)  # a fold allocates many short-lived objects and keeps few cycles
    fold = LocalFold(as_of_occurred)
    error: str | None = None
    while data := _read_frame(stdin):
        if error is None:
            chunk = _chunks.decode(data)
            try:
                fold.feed(chunk.seqs, chunk.subjects, chunk.bodies)
            except AuditError as exc:
                error = str(exc)  # keep draining: the parent learns of it when it asks for the outcome
            except Exception as exc:  # a bug: still say where
                first, last = (chunk.seqs[0], chunk.seqs[-1]) if chunk.seqs else (0, 0)
                error = f"the fold failed on seqs {first}..{last}: {type(exc).__name__}: {exc}"
    replay = fold.replay
    totals = [(ward, yk, metric, n) for (ward, yk, metric), n in replay.totals.items() if n]
    out = _encoder.encode(
        _Outcome(
            totals=totals, last_seq=replay.last_seq, events=replay.events, error=error, foreign=fold.foreign
        )
    )
    stdout.write(_LENGTH.pack(len(out)) + out)
    stdout.flush()


class _Child:
    """One ``python -m services.audit.fold_child`` process, fed over its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, as_of_occurred: dt.date | None) -> _Child:
        # -P: never import from the working directory (an auditor may run this from any folder)
        args = [sys.executable, "-P", "-m", "services.audit.fold_child"]
        if as_of_occurred is not None:
            args.append(as_of_occurred.isoformat())
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the parent only; the parent stops the child (``close``)
        )
        assert proc.stdin is not None
        proc.stdin.transport.set_write_buffer_limits(high=8 * 1024 * 1024)  # a few batches ahead
        pipe = proc.stdin.get_extra_info("pipe")
        with contextlib.suppress(OSError, AttributeError):  # Linux: a 1 MiB pipe instead of 64 KiB
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, 1024 * 1024)
        return cls(proc)

    async def send(self, data: bytes) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(_LENGTH.pack(len(data)))
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise AuditError(f"the fold process ended early (exit {await self.proc.wait()})") from None

    async def outcome(self) -> _Outcome:
        await self.send(b"")
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            (size,) = _LENGTH.unpack(await stdout.readexactly(_LENGTH.size))
            outcome = _outcomes.decode(await stdout.readexactly(size))
        except asyncio.IncompleteReadError:
            raise AuditError(f"the fold process ended early (exit {await self.proc.wait()})") from None
        await self.proc.wait()
        return outcome

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


class ProcessFold:
    """``LocalFold`` in child processes (``python -m services.audit.fold_child``), fed over their stdin.

    With several children, each folds the events of its share of the provinces (code number i of the sorted
    2025 codes goes to child ``i % children``; a subject naming none, a foreign record, to child 0), read from
    the stored subject without decoding. Every key of the fold's state belongs to one ward, hence one province
    (the gateway refuses, and the fold checks again, a reference filed in another ward than its entry), so the
    children's totals, summed, are the one fold's: the same split as the projection's workers
    (``projections.partitions``). A long replay then uses every core: reading with nats-py costs about as much
    as decoding and folding, and the fold is the slower of the two."""

    def __init__(self, children: list[_Child], route: dict[str, int]) -> None:
        self._children = children
        self._route = route

    @classmethod
    async def start(
        cls, as_of_occurred: dt.date | None, children: int = 1, provinces: Sequence[str] = ()
    ) -> ProcessFold:
        """``provinces``: the 2025 province codes to split (needed when ``children`` > 1)."""
        started: list[_Child] = []
        try:
            for _ in range(max(1, children)):
                started.append(await _Child.start(as_of_occurred))
        except BaseException:
            for child in started:
                await child.close()
            raise
        ordered = sorted(provinces)
        route = {code: i % len(started) for i, code in enumerate(ordered)}
        return cls(started, route)

    async def feed(self, seqs: list[int], subjects: list[str], bodies: list[bytes]) -> None:
        if len(self._children) == 1:
            await self._children[0].send(_encoder.encode(_Chunk(seqs=seqs, subjects=subjects, bodies=bodies)))
            return
        shares: list[tuple[list[int], list[str], list[bytes]]] = [([], [], []) for _ in self._children]
        route = self._route.get
        for seq, subject, body in zip(seqs, subjects, bodies, strict=True):
            share = shares[route(subject[_PROVINCE], 0) if subject.startswith(_PREFIX) else 0]
            share[0].append(seq)
            share[1].append(subject)
            share[2].append(body)
        for child, (s, j, b) in zip(self._children, shares, strict=True):
            if s:
                await child.send(_encoder.encode(_Chunk(seqs=s, subjects=j, bodies=b)))

    async def result(self) -> tuple[InMemoryReplay, int]:
        """The replay's totals (the children's, summed) and the number of foreign records set aside."""
        outcomes = [await child.outcome() for child in self._children]
        error = next((o.error for o in outcomes if o.error is not None), None)
        if error is not None:
            raise UnfoldableHistory(error)
        totals: Deltas = {}
        for outcome in outcomes:
            for ward, yk, metric, n in outcome.totals:
                key = (ward, yk, metric)
                totals[key] = totals.get(key, 0) + n
        replay = InMemoryReplay.restored(
            totals, last_seq=max(o.last_seq for o in outcomes), events=sum(o.events for o in outcomes)
        )
        return replay, sum(o.foreign for o in outcomes)

    async def close(self) -> None:
        """Stop the children whatever state they are in (after ``result`` they have already ended)."""
        for child in self._children:
            await child.close()


_PREFIX = f"{EVENTS_PREFIX}."
_PROVINCE = slice(len(_PREFIX), len(_PREFIX) + 2)
"""Where a 2025 province code (two digits) stands in an event subject."""
