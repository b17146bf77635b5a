"""Every sealed range recomputed from the stored events in one ordered read, and compared with its seal."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from nats.js import JetStreamContext

from infra.reading import StreamReader
from services.sealer.chain import RangeHasher, Seal
from services.sealer.findings import Finding, about_seal


def unique_ranges(seals: Iterable[Seal]) -> list[Seal]:
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
    spans: Collection[tuple[int, int]] = (),
) -> tuple[dict[tuple[int, int], RangeHasher], int]:
    """Recompute every seal range (and every (first, last) of ``spans``) in one ordered read of the stream;
    (hashers by (first, last), events read)."""
    keys = sorted({(s.first_seq, s.last_seq) for s in seals} | set(spans))
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
                about_seal(
                    seal,
                    "gap",
                    f"seal #{seal.number} ({span}) covered {seal.count} events, the stream now holds {h.count}"
                    + (f"; missing: {', '.join(map(str, h.missing[:20]))}" if listed else ""),
                    seqs=tuple(h.missing) if listed else (),
                )
            )
        elif h.count > seal.count or h.content_digest != seal.content_digest:
            findings.append(
                about_seal(
                    seal,
                    "range_altered",
                    f"seal #{seal.number} ({span}): the stored events no longer match "
                    f"({h.count} events now, {seal.count} sealed): altered or substituted",
                )
            )
        elif h.range_digest != seal.range_digest:
            rerecorded.append(seal)
    if rerecorded:
        first = rerecorded[0]
        findings.append(
            about_seal(
                first,
                "range_rerecorded",
                f"seal #{first.number} ({first.first_seq}..{first.last_seq})"
                + (f" and {len(rerecorded) - 1} later range(s)" if len(rerecorded) > 1 else "")
                + ": same subjects and bytes, other stream timestamps: written again",
            )
        )
    return findings
