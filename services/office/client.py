"""The plain office client: one request, one answer (the store-and-forward sender is in ``sender.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from nats.aio.client import Client

from events.intake import IntakeResult, decode_results
from events.subjects import INTAKE_PREFIX

_encoder = msgspec.json.Encoder()


class OfficeClient:
    def __init__(self, nc: Client, office_id: str, *, timeout: float = 30.0) -> None:
        self._nc = nc
        self._subject = f"{INTAKE_PREFIX}.{office_id}"
        self._timeout = timeout

    async def send_raw(self, body: bytes) -> IntakeResult | list[IntakeResult]:
        reply = await self._nc.request(self._subject, body, timeout=self._timeout)
        result: IntakeResult | list[IntakeResult] = decode_results(reply.data)
        return result

    async def submit(self, events: Sequence[Any]) -> list[IntakeResult]:
        """Submit events (dicts or Structs) as one batch; one result per event, in order."""
        result = await self.send_raw(_encoder.encode(list(events)))
        return result if isinstance(result, list) else [result]

    async def submit_one(self, event: Any) -> IntakeResult:
        result = await self.send_raw(_encoder.encode(event))
        assert isinstance(result, IntakeResult)
        return result
