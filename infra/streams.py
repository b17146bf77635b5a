"""JetStream stream definitions and their idempotent creation."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from events.subjects import EVENTS_PREFIX, REJECTED_PREFIX, SEALS_SUBJECT, UPDATES_PREFIX

EVENTS = "ANTQ_EVENTS"
REJECTED = "ANTQ_REJECTED"
UPDATES = "ANTQ_UPDATES"
SEALS = "ANTQ_SEALS"

GIB = 1024**3
REJECTED_RAW_LIMIT = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class StreamLimits:
    dedup_window_s: float = 86_400.0
    rejected_max_bytes: int = 4 * GIB
    updates_per_subject: int = 100


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
        max_msg_size=64 * 1024,
        discard=DiscardPolicy.NEW,
        duplicate_window=limits.dedup_window_s,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
        allow_direct=True,  # auditors read with batched direct gets, without a consumer (infra/direct_reader.py)
        num_replicas=1,
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
        discard=DiscardPolicy.NEW,
        deny_delete=True,
        deny_purge=True,
    )
    # The feed promises the last ``updates_per_subject`` messages of every subject. That per-subject cap is
    # the only limit: a stream-wide byte or message cap with discard-old would, once reached, drop a
    # subject's oldest messages below that count. It bounds the stream by itself, since subjects are
    # ward x year (about 3,300 wards): 100 updates of well under 2 KiB each is under 700 MB per year.
    updates = StreamConfig(
        name=UPDATES,
        subjects=[f"{UPDATES_PREFIX}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        max_msgs_per_subject=limits.updates_per_subject,
        max_msgs=-1,
        max_bytes=-1,
        max_age=0,
        discard=DiscardPolicy.OLD,  # per subject: the 101st message replaces that subject's oldest
        duplicate_window=3600.0,  # a re-publish after an outage of up to an hour is recognised
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
    )
    return [events_config(limits), rejected, updates, seals]


async def ensure_streams(js: JetStreamContext, limits: StreamLimits) -> None:
    """Create the streams, or bring an existing one's mutable settings up to date."""
    for config in stream_configs(limits):
        try:
            await js.stream_info(str(config.name))
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)
