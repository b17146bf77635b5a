"""What a seal check finds: the kinds of finding, a finding, a seal printed on a report, the report."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec

from services.sealer.chain import Seal

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


def about_seal(
    seal: Seal, kind: Kind, detail: str, *, store: Store | None = None, seqs: tuple[int, ...] = ()
) -> Finding:
    """A finding about one seal (of ``store``, or of the range it covers), naming that range."""
    return Finding(
        kind=kind,
        store=store,
        seal=seal.number,
        first_seq=seal.first_seq,
        last_seq=seal.last_seq,
        seqs=seqs,
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
    restores: tuple[Seal, ...] = ()  # sound restore seals: said on the report (information, not findings)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_altered(self) -> Finding | None:
        """The first seal range whose facts changed: an event missing, altered or substituted."""
        return self._first(("gap", "range_altered"))

    def _first(self, kinds: tuple[str, ...]) -> Finding | None:
        ranges = [f for f in self.findings if f.kind in kinds]
        return min(ranges, key=lambda f: f.first_seq or 0) if ranges else None
