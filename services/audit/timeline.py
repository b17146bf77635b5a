"""Record time: which stream sequence the log had reached at an instant (its own message timestamps)."""

from __future__ import annotations

import datetime as dt
import json

from nats.aio.client import Client

from infra.stream_reader import last_sequence
from infra.timestamps import parse_rfc3339_ns

__all__ = ["parse_rfc3339_ns", "sequence_known_on", "to_ns"]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_ns(instant: dt.datetime) -> int:
    if instant.tzinfo is None:
        raise ValueError("an instant needs a time zone (e.g. 2025-01-31T17:00:00+07:00)")
    return (instant - EPOCH) // dt.timedelta(microseconds=1) * 1000


async def sequence_known_on(nc: Client, stream: str, instant: dt.datetime) -> int:
    """The last sequence the stream had stored at ``instant`` (0 if none): resolved once, by the server.

    The stream's last sequence is read before the by-time lookup and bounds the answer: when the lookup finds
    nothing at or after the instant, every message stored by then was stored before it, but one stored after the
    lookup (with an instant about now, possibly after the instant) must not be counted, so the last sequence
    cannot be read afterwards.
    """
    last = await last_sequence(nc.jetstream(), stream)
    request = {"start_time": instant.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")}
    reply = await nc.request(f"$JS.API.STREAM.MSG.GET.{stream}", json.dumps(request).encode(), timeout=10)
    body = json.loads(reply.data)
    if "error" in body:
        if body["error"].get("code") == 404:
            return last  # nothing stored at or after the instant by the time of the lookup
        raise RuntimeError(f"cannot resolve {instant}: {body['error'].get('description')}")
    first_after = body["message"]
    seq = int(first_after["seq"])
    # the first message stored at or after the instant: it belongs to the cut only if stored exactly then
    known = seq if parse_rfc3339_ns(first_after["time"]) <= to_ns(instant) else seq - 1
    return min(known, last)
