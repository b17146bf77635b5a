"""What each NATS identity may do: explicit publish/subscribe allow lists per role, office and subscriber.

Every identity has a private inbox, ``_INBOX.<its public key>`` (``inbox_prefix``): replies, JetStream answers
and pulled messages arrive there, and no other identity may subscribe to it (``_INBOX.>`` would let any office
read what is delivered to an auditor).

The auditor reads ANTQ_EVENTS and ANTQ_SEALS only, without any consumer: stream info, stored-message gets and
direct gets (single and batched, the reads of ``infra/direct_reader.py``; the audit commands use them with
``ANTQ_READ_MODE=direct``). It has no ``CONSUMER.*`` right at all, so it can neither create a consumer (unnamed,
named, filtered, durable, or a push consumer delivering stored events onto another subject: the risk of
nats-server issue 8274, where a push consumer's ``deliver_subject`` is not checked against its creator's
permissions, is gone with the right to create one), nor pull from, delete or replace a service's consumer
(``tests/test_auth.py`` checks every create form is refused). It may not publish to any stream subject or
intake, nor manage streams. Direct gets hold no state at the server, so reads under one auditor identity may
run in parallel. The sealer reads both streams the same way (its default ``SealerConfig.reader``), so no
service that only reads holds a consumer right either; it may also append to ``antq.seals``.

Roles for the consumers of the update feed and of rejections: ``web`` (queries, ordered consumers of
ANTQ_UPDATES), ``subscriber-<name>`` (one pull consumer per province of its own, created only with that
province's filter) and every ``office-<id>`` (its own rejections only); see ``role_permissions``. Nobody but
the gateway publishes on ``antq.events.>``, nobody but the projector on ``antq.updates.>``, nobody but the sealer
on ``antq.seals`` (``tests/test_secure_stack.py`` tries every role on every stream subject).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from events.subjects import (
    EVENTS_PREFIX,
    INTAKE_PREFIX,
    QUERY_SUBJECT,
    REJECTED_PREFIX,
    SEALS_SUBJECT,
    UPDATES_PREFIX,
    query_subject,
)
from infra.auth.errors import AuthError
from infra.streams import EVENTS, REJECTED, SEALS, UPDATES

READ_CONSUMER_PREFIX = "audit_"
SERVICE_ROLES = ("admin", "gateway", "projector", "query", "sealer", "auditor", "reader", "web")
SUBJECT_TOKEN = re.compile(r"\A[A-Za-z0-9_-]+\Z")  # one subject token: no dots, no wildcards, no spaces
_PROVINCE = re.compile(r"\A[0-9]{2}\Z")
ANY_INBOX = "_INBOX.>"
JS = "$JS.API"
ALL_STREAMS = (EVENTS, REJECTED, UPDATES, SEALS)


@dataclass(frozen=True, kw_only=True)
class Permissions:
    """Explicit allow lists; anything not listed is denied. ``allow_responses``: may answer requests it got."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...] = ()
    allow_responses: bool = False


def _direct_read_streams(*streams: str) -> list[str]:
    """Read a stream without any consumer: info, stored-message gets, direct gets (single and batched)."""
    out: list[str] = []
    for s in streams:
        out += [
            f"{JS}.STREAM.INFO.{s}",
            f"{JS}.STREAM.MSG.GET.{s}",
            f"{JS}.DIRECT.GET.{s}",
            f"{JS}.DIRECT.GET.{s}.>",
        ]
    return out


def read_consumer_name(public_key: str) -> str:
    """The consumer name a consumer-mode audit read takes under an identity (``ANTQ_READ_MODE=consumer``: an
    identity with consumer rights, as admin; the generated auditor reads with direct gets and has none)."""
    return f"{READ_CONSUMER_PREFIX}{public_key[:10]}"


def role_permissions(role: str, public_key: str) -> Permissions:
    """The allow lists of a service role, for the identity whose public key is ``public_key``.

    Only the gateway may publish on ``antq.events.>`` (and ``antq.rejected.>``), only the projector on
    ``antq.updates.>``, only the sealer on ``antq.seals``. The responders (gateway, query service) answer on
    ``_INBOX.>`` only, not with ``allow_responses``: that right lets a responder publish once on whatever reply
    subject a request names (nats-server checks no deny list for it), so a request naming
    ``antq.events.…`` as its reply would have the gateway store its answer in the log, and the query service,
    which may publish nowhere else, write there too.
    """
    inbox = inbox_prefix(public_key)
    replies = (f"{inbox}.>",)
    if role == "admin":  # stream and consumer management, nothing else: it never writes events
        # $JS.SNAPSHOT.>: a snapshot's flow-control acks and a restore's upload (`antq backup` / `antq restore`)
        return Permissions(publish=(f"{JS}.>", "$JS.SNAPSHOT.>"), subscribe=replies)
    if role == "gateway":
        publish = [f"{EVENTS_PREFIX}.>", f"{REJECTED_PREFIX}.>", ANY_INBOX]
        for s in ALL_STREAMS:  # it runs ensure_streams on start
            publish += [f"{JS}.STREAM.INFO.{s}", f"{JS}.STREAM.CREATE.{s}", f"{JS}.STREAM.UPDATE.{s}"]
        publish += [
            f"{JS}.STREAM.MSG.GET.{EVENTS}",  # entity guards, duplicates
            f"{JS}.DIRECT.GET.{EVENTS}",
            f"{JS}.DIRECT.GET.{EVENTS}.>",
            f"{JS}.CONSUMER.CREATE.{EVENTS}",  # index catch-up reads the log with ephemeral consumers
            f"{JS}.CONSUMER.MSG.NEXT.{EVENTS}.*",
            f"{JS}.CONSUMER.DELETE.{EVENTS}.*",
        ]
        return Permissions(publish=tuple(publish), subscribe=(f"{INTAKE_PREFIX}.*", *replies))
    if role == "projector":  # the live runner, rebuilds, and the update feed
        return Permissions(
            publish=(
                f"{JS}.STREAM.INFO.{EVENTS}",
                f"{JS}.STREAM.MSG.GET.{EVENTS}",
                f"{JS}.DIRECT.GET.{EVENTS}",
                f"{JS}.DIRECT.GET.{EVENTS}.>",
                f"{JS}.CONSUMER.CREATE.{EVENTS}",  # a rebuild reads the log with ephemeral consumers
                f"{JS}.CONSUMER.DURABLE.CREATE.{EVENTS}.*",
                f"{JS}.CONSUMER.INFO.{EVENTS}.*",
                f"{JS}.CONSUMER.DELETE.{EVENTS}.*",
                f"{JS}.CONSUMER.MSG.NEXT.{EVENTS}.*",
                f"$JS.ACK.{EVENTS}.>",
                f"{UPDATES_PREFIX}.>",
            ),
            subscribe=replies,
        )
    if role == "query":
        return Permissions(publish=(ANY_INBOX,), subscribe=(QUERY_SUBJECT, f"{QUERY_SUBJECT}.*", *replies))
    if role == "reader":  # `antq stats` and dashboards: asks the query service, nothing else
        # its own query subject only: the query service counts waiting requests per identity by it
        return Permissions(publish=(query_subject(public_key),), subscribe=replies)
    if role == "web":  # read-only web front: queries, and the update feed through ordered consumers
        return Permissions(
            publish=(
                query_subject(public_key),
                f"{JS}.STREAM.INFO.{UPDATES}",
                # an ordered consumer is created unnamed (a name the server picks; no durable is accepted on
                # this subject); no CONSUMER right on any other stream, no pull from anyone's consumer
                f"{JS}.CONSUMER.CREATE.{UPDATES}",
                f"$JS.FC.{UPDATES}.>",  # flow-control answers of an ordered consumer
            ),
            subscribe=replies,
        )
    if role == "sealer":  # reads both streams with direct gets, like the auditor, and appends seals
        return Permissions(publish=(SEALS_SUBJECT, *_direct_read_streams(EVENTS, SEALS)), subscribe=replies)
    if role == "auditor":  # reads with direct gets (ANTQ_READ_MODE=direct): no consumer of any kind
        return Permissions(publish=tuple(_direct_read_streams(EVENTS, SEALS)), subscribe=replies)
    raise AuthError(
        f"unknown role {role!r}; roles: {', '.join(SERVICE_ROLES)}, office-<id>, subscriber-<name>"
    )


def _filtered_pull(stream: str, consumer: str, filters: Sequence[str]) -> list[str]:
    """A pull consumer of one fixed name, created only with one of ``filters`` as its filter subject (the
    filtered create subject ``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``: nats-server refuses a body
    whose filter differs from the subject's), read, inspected, deleted and acked by its owner only."""
    out = [f"{JS}.CONSUMER.CREATE.{stream}.{consumer}.{f}" for f in filters]
    out += [
        f"{JS}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"{JS}.CONSUMER.INFO.{stream}.{consumer}",
        f"{JS}.CONSUMER.DELETE.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    ]
    return out


def office_permissions(office_id: str, inbox: str) -> Permissions:
    """An office submits on its own intake subject, reads the gateway's answers, and reads its own rejections
    (``antq.rejected.<id>`` and below): a pull consumer filtered to them under the one name its identity reads
    with (``read_consumer_name``: what ``ANTQ_READ_MODE=consumer`` readers such as ``antq rejected`` take), or the
    last one of a subject by direct get. ``STREAM.INFO`` of ANTQ_REJECTED tells a reader where the stream ends
    (its totals over every office: counts, not contents)."""
    if not SUBJECT_TOKEN.match(office_id):
        raise AuthError(f"office id {office_id!r} is not one subject token (letters, digits, - and _)")
    own = (f"{REJECTED_PREFIX}.{office_id}", f"{REJECTED_PREFIX}.{office_id}.>")
    consumer = read_consumer_name(inbox.removeprefix("_INBOX."))
    return Permissions(
        publish=(
            f"{INTAKE_PREFIX}.{office_id}",
            f"{JS}.STREAM.INFO.{REJECTED}",
            *_filtered_pull(REJECTED, consumer, own),
            *(f"{JS}.DIRECT.GET.{REJECTED}.{subject}" for subject in own),
        ),
        subscribe=(f"{inbox}.>",),
    )


def subscriber_consumer(name: str, province: str) -> str:
    """The consumer name a downstream subscriber reads one province's updates under."""
    return f"sub-{name}-{province}"


def subscriber_permissions(name: str, provinces: Sequence[str], inbox: str) -> Permissions:
    """A downstream subscriber: for each of its provinces, one pull consumer of ANTQ_UPDATES filtered to
    ``antq.updates.stats.<province>.>``; nothing else (no queries, no other stream, no other consumer)."""
    if not SUBJECT_TOKEN.match(name):
        raise AuthError(f"subscriber name {name!r} is not one subject token (letters, digits, - and _)")
    if not provinces:
        raise AuthError(f"subscriber {name!r} needs at least one province")
    publish: list[str] = []
    for province in provinces:
        if not _PROVINCE.match(province):
            raise AuthError(f"province {province!r} is not a two-digit 2025 province code")
        prefix = f"{UPDATES_PREFIX}.{province}"
        publish += _filtered_pull(UPDATES, subscriber_consumer(name, province), (f"{prefix}.>",))
    return Permissions(publish=tuple(publish), subscribe=(f"{inbox}.>",))


def inbox_prefix(public_key: str) -> str:
    """The private inbox of an identity: derived from its public key, so the seed is all a client needs."""
    return f"_INBOX.{public_key}"
