"""Where the figures stand: the stream sequence, the fold version, the newest seal at or below that sequence,
and the command that recomputes the report from the log alone."""

from __future__ import annotations

import datetime as dt

import msgspec
from nats.js import JetStreamContext

from infra.reading import StreamReader
from infra.streams import EVENTS, SEALS
from services.report.figures import Figures
from services.sealer.log import SealLog


class SealAt(msgspec.Struct, frozen=True, kw_only=True):
    """The newest seal of ``ANTQ_EVENTS`` whose range ends at or below the report's sequence."""

    number: int
    digest: str
    first_seq: int
    last_seq: int
    sealed_at: dt.datetime
    signer: str
    unsealed: int
    """Sequences after the seal up to the report's sequence: the events the report counts that no seal covers
    yet (a later seal will; ``antq audit seals`` checks it)."""


class Provenance(msgspec.Struct, frozen=True, kw_only=True):
    as_of_seq: int
    fold_version: int
    source: str
    stale: bool
    seal: SealAt | None
    seal_note: str | None
    """Why there is no seal: none yet at or below the sequence, or the seals could not be read."""
    replay_command: str
    seals_command: str


async def newest_seal(js: JetStreamContext, reader: StreamReader, at_seq: int) -> SealAt | None:
    """Read ``ANTQ_SEALS`` (as the auditor reads it) and pick the newest seal ending at or below ``at_seq``."""
    log = SealLog(js, SEALS, EVENTS, reader=reader)
    await log.refresh()
    best = None
    for logged in log.seals:
        seal = logged.seal
        if seal.last_seq <= at_seq and (best is None or seal.number > best.number):
            best = seal
    if best is None:
        return None
    return SealAt(
        number=best.number,
        digest=best.digest,
        first_seq=best.first_seq,
        last_seq=best.last_seq,
        sealed_at=best.sealed_at,
        signer=best.signer,
        unsealed=at_seq - best.last_seq,
    )


def replay_command(figures: Figures) -> str:
    """The ``antq audit replay`` that recomputes the report's main figures from the log alone (the wards:
    the same command with ``--ward``; the previous span: with its years)."""
    return (
        f"antq audit replay {figures.unit.cli_flags()} {figures.span.cli_flags()} "
        f"--to-seq {figures.as_of_seq} --format csv"
    )


def provenance(figures: Figures, seal: SealAt | None, seal_note: str | None = None) -> Provenance:
    if seal is None and seal_note is None:
        seal_note = f"chưa có dấu niêm phong nào đến số thứ tự {figures.as_of_seq}"
    return Provenance(
        as_of_seq=figures.as_of_seq,
        fold_version=figures.fold_version,
        source=figures.source,
        stale=figures.stale,
        seal=seal,
        seal_note=seal_note,
        replay_command=replay_command(figures),
        seals_command=(
            f"antq audit seals --expect {seal.number}:{seal.digest}"
            if seal is not None
            else "antq audit seals"
        ),
    )
