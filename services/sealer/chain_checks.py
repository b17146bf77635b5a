"""Checks of the seal chains themselves: each store's chain on its own, a printed seal in it, both stores against
each other."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.sealer.chain import GENESIS, Seal, recompute_digest, signature_valid, sound
from services.sealer.findings import Expected, Finding, Store, about_seal


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
                about_seal(
                    seal,
                    "seal_altered",
                    f"seal #{n}'s fields do not hash to its digest {seal.digest[:16]}…",
                    store=store,
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
        if seal.is_restore:
            findings += _restore_findings(store, seal, prev)
        else:
            want_first = 1 if n == 1 else (prev.last_seq + 1 if prev is not None else None)
            if want_first is not None and seal.first_seq != want_first:
                findings.append(
                    about_seal(
                        seal,
                        "range_not_contiguous",
                        f"seal #{n} covers {seal.first_seq}..{seal.last_seq}; it should start at {want_first}",
                        store=store,
                    )
                )
        if prev is not None and not seal.is_restore and prev.stream_created != seal.stream_created:
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


def _restore_findings(store: Store, seal: Seal, prev: Seal | None) -> list[Finding]:
    """A restore seal re-covers 1..L, L the last sequence sealed before it, and names as the old creation time
    the one the seal before it recorded."""
    n = seal.number
    if prev is None or prev.number != n - 1:
        return (
            []
            if n > 1
            else [  # with seals missing before it, seal_missing already says so
                Finding(
                    kind="stream_recreated",
                    store=store,
                    seal=n,
                    detail=f"seal #{n} records a restore, but no seal before it recorded the stream's creation",
                )
            ]
        )
    findings: list[Finding] = []
    if seal.first_seq != 1 or seal.last_seq != prev.last_seq:
        findings.append(
            about_seal(
                seal,
                "range_not_contiguous",
                f"restore seal #{n} covers {seal.first_seq}..{seal.last_seq}; it should cover 1..{prev.last_seq}",
                store=store,
            )
        )
    if seal.restored_from != prev.stream_created:
        was = seal.restored_from.isoformat() if seal.restored_from is not None else "?"
        findings.append(
            Finding(
                kind="stream_recreated",
                store=store,
                seal=n,
                detail=(
                    f"restore seal #{n} says the stream sealed before was created {was}, "
                    f"but #{prev.number} sealed one created {prev.stream_created.isoformat()}"
                ),
            )
        )
    return findings


def _follows(seal: Seal, prev: Seal) -> bool:
    """The seal's range goes on from ``prev``'s: the next range, or (a restore seal) 1..prev's last again."""
    if seal.is_restore:
        return seal.first_seq == 1 and seal.last_seq == prev.last_seq
    return seal.first_seq == prev.last_seq + 1


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

    if not sound(match):
        return broken(n, "the printed seal itself does not verify")
    current = match
    for k in range(n + 1, tip + 1):
        nxt = next(
            (
                s
                for s in by_number.get(k, [])
                if s.prev_digest == current.digest and _follows(s, current) and sound(s)
            ),
            None,
        )
        if nxt is None:
            return broken(k, f"no sound seal #{k} follows #{k - 1} (its digest and the next range)")
        current = nxt
    return []


def not_pinned_warning(sound: Iterable[Seal], expected: Sequence[Expected]) -> Finding:
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
