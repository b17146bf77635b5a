"""JetStream stream definitions and their idempotent creation."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, Placement, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from events.subjects import EVENTS_PREFIX, REJECTED_PREFIX, SEALS_SUBJECT, UPDATES_PREFIX
from infra.errors import InfraError
from infra.settings import Settings

EVENTS = "ANTQ_EVENTS"
REJECTED = "ANTQ_REJECTED"
UPDATES = "ANTQ_UPDATES"
SEALS = "ANTQ_SEALS"

GIB = 1024**3
REJECTED_RAW_LIMIT = 64 * 1024
EVENT_MAX_PAYLOAD = 64 * 1024


class StreamSetupError(InfraError):
    """A stream could not be created or brought up to date with these settings."""


@dataclass(frozen=True, kw_only=True)
class StreamLimits:
    """Every setting of our streams and of the durable consumers on them, in one place.

    ``replicas``: copies of every stream (1 on one nats-server; 3 on a three-node JetStream cluster, where an
    acknowledged write is on a majority of the nodes). A durable consumer is created with ``num_replicas=0``,
    which JetStream reads as "as many as its stream": the consumers follow the streams' setting (see
    ``consumer_replicas``). ``placement_cluster`` / ``placement_tags``: which cluster, and which tagged
    servers, hold the streams (None / empty: wherever the server puts them). ``max_payload``: the largest
    stored event record (bytes). ``dedup_window_s``: how long a resent event id is recognised as a duplicate
    (ANTQ_EVENTS; ANTQ_UPDATES recognises a re-published update for as long, at most an hour:
    ``updates_dedup_window_s``). ``updates_per_subject``: the updates ANTQ_UPDATES keeps of each ward-year (its latest).

    nats-server keeps in memory every message id of a stream's dedup window (about 240 bytes each, measured on
    2.15.1), and the blocks it reads to take a subject's oldest update out once the subject is full: a window as
    long as the operator needs, and a short per-subject history, bound its memory. Each update carries every
    figure of its ward-year, so a subscriber needs the latest one only (see README, the update feed).
    """

    dedup_window_s: float = 86_400.0
    rejected_max_bytes: int = 4 * GIB
    updates_per_subject: int = 1
    replicas: int = 1
    placement_cluster: str | None = None
    placement_tags: tuple[str, ...] = ()
    max_payload: int = EVENT_MAX_PAYLOAD

    def __post_init__(self) -> None:
        if self.replicas not in (1, 2, 3, 4, 5):
            raise ValueError(f"stream replicas are 1 to 5 (JetStream's limit), not {self.replicas}")

    @property
    def placement(self) -> Placement | None:
        if self.placement_cluster is None and not self.placement_tags:
            return None
        return Placement(cluster=self.placement_cluster, tags=list(self.placement_tags) or None)

    @property
    def updates_dedup_window_s(self) -> float:
        """ANTQ_UPDATES' dedup window: a re-publish after an outage (the outbox sent again) is recognised."""
        return min(3600.0, self.dedup_window_s)

    @property
    def consumer_replicas(self) -> int:
        """``num_replicas`` of a durable consumer: 0, "as many as its stream" (so it never disagrees)."""
        return 0

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamLimits:
        """The limits of the settings (ANTQ_DEDUP_WINDOW_S, ANTQ_STREAM_REPLICAS, ANTQ_STREAM_PLACEMENT_*)."""
        return cls(
            dedup_window_s=settings.dedup_window_s,
            replicas=settings.stream_replicas,
            placement_cluster=settings.stream_placement_cluster,
            placement_tags=settings.stream_placement_tags,
        )


def events_config(
    limits: StreamLimits, name: str = EVENTS, subjects: list[str] | None = None
) -> StreamConfig:
    """The immutable event log: file storage, no expiry, no deletes, no purges, no rollups; direct gets."""
    return StreamConfig(
        name=name,
        subjects=subjects or [f"{EVENTS_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=0,
        max_msgs=-1,
        max_bytes=-1,
        max_msg_size=limits.max_payload,
        discard=DiscardPolicy.NEW,
        duplicate_window=limits.dedup_window_s,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
        allow_direct=True,  # auditors read with batched direct gets, without a consumer (infra/direct_reader.py)
        num_replicas=limits.replicas,
        placement=limits.placement,
    )


def stream_configs(limits: StreamLimits) -> list[StreamConfig]:
    rejected = StreamConfig(
        name=REJECTED,
        subjects=[f"{REJECTED_PREFIX}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        max_bytes=limits.rejected_max_bytes,
        max_msg_size=2 * REJECTED_RAW_LIMIT + 4096,
        max_age=0,
        # a refusal's record resent after a gateway died between the stream's ack and the deletion of its
        # waiting row (services/gateway/rejected_later.py) is recognised for an hour, not the default 2 minutes
        duplicate_window=3600.0,
        discard=DiscardPolicy.NEW,
        deny_delete=True,
        deny_purge=True,
        num_replicas=limits.replicas,
        placement=limits.placement,
    )
    # The feed promises the last ``updates_per_subject`` messages of every subject. That per-subject cap is
    # the only limit: a stream-wide byte or message cap with discard-old would, once reached, drop a
    # subject's oldest messages below that count. It bounds the stream by itself, since subjects are
    # ward x year (about 3,300 wards): one update of well under 2 KiB each is under 7 MB per year. nats-server
    # reads into memory the block that holds a subject's previous update to take it out, so under a steady
    # flow of updates it holds about every block of the stream: keeping 100 per subject, a 10-minute load
    # at 1,000 events/s grew each nats-server's heap by 300 MB in its second half; keeping 10, it levelled
    # at 220-290 MB of blocks (2.5-3x the stream's 89 MB).
    updates = StreamConfig(
        name=UPDATES,
        subjects=[f"{UPDATES_PREFIX}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        max_msgs_per_subject=limits.updates_per_subject,
        max_msgs=-1,
        max_bytes=-1,
        max_age=0,
        discard=DiscardPolicy.OLD,  # per subject: a ward-year's next update replaces its oldest kept
        duplicate_window=limits.updates_dedup_window_s,  # a re-publish after an outage is recognised
        num_replicas=limits.replicas,
        placement=limits.placement,
    )
    seals = StreamConfig(
        name=SEALS,
        subjects=[SEALS_SUBJECT],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        max_age=0,
        deny_delete=True,
        deny_purge=True,
        allow_direct=True,
        num_replicas=limits.replicas,
        placement=limits.placement,
    )
    return [events_config(limits), rejected, updates, seals]


async def ensure_streams(js: JetStreamContext, limits: StreamLimits) -> None:
    """Create the streams, or bring an existing one's mutable settings up to date (its replicas too: JetStream
    adds or removes copies of an existing stream in place)."""
    for config in stream_configs(limits):
        try:
            try:
                await js.stream_info(str(config.name))
            except NotFoundError:
                await js.add_stream(config)
            else:
                await js.update_stream(config)
        except BadRequestError as exc:
            if limits.replicas == 1:
                raise
            raise StreamSetupError(
                f"stream {config.name} at {limits.replicas} replica(s): {exc.description} (err {exc.err_code}); "
                "more than one replica needs a JetStream cluster of at least that many nodes (ANTQ_STREAM_REPLICAS)"
            ) from exc
