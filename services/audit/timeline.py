"""Record time: which stream sequence the log had reached at an instant (its own message timestamps)."""

from __future__ import annotations

import datetime as dt
import json
import re

from nats.aio.client import Client

from infra.stream_reader import last_sequence

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp as nats-server writes it (up to 9 digits)."""
    m = _TS.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    head, frac, zone = m.groups()
    base = dt.datetime.fromisoformat(head + ("+00:00" if zone == "Z" else zone))
    return int(base.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def to_ns(instant: dt.datetime) -> int:
    if instant.tzinfo is None:
        raise ValueError("an instant needs a time zone (e.g. 2025-01-31T17:00:00+07:00)")
    return (instant - EPOCH) // dt.timedelta(microseconds=1) * 1000


async def sequence_known_on(nc: Client, stream: str, instant: dt.datetime) -> int:
    """The last sequence the stream had stored at ``instant`` (0 if none): resolved once, by the server."""
    request = {"start_time": instant.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")}
    reply = await nc.request(f"$JS.API.STREAM.MSG.GET.{stream}", json.dumps(request).encode(), timeout=10)
    body = json.loads(reply.data)
    if "error" in body:
        if body["error"].get("code") == 404:
            return await last_sequence(nc.jetstream(), stream)  # nothing stored after the instant
        raise RuntimeError(f"cannot resolve {instant}: {body['error'].get('description')}")
    first_after = body["message"]
    seq = int(first_after["seq"])
    # the first message stored at or after the instant: it belongs to the cut only if stored exactly then
    return seq if parse_rfc3339_ns(first_after["time"]) <= to_ns(instant) else seq - 1
