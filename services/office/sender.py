"""Store and forward: what an office publishes goes to its outbox first, then to the gateway, in order.

``OfficeSender.enqueue`` writes documents to the outbox (durably) and returns; ``flush`` sends what is queued,
oldest first, one request at a time, in batches of up to ``MAX_BATCH`` events within ``MAX_BODY_BYTES``:

- accepted (``duplicate`` or not) → ``done``, with the stream sequence;
- ``unavailable`` (the gateway cannot store now, or the office's rate limit: ``retry_after_ms``), or no answer
  at all (no connection, no gateway, a timeout, an unreadable reply) → stays ``queued``, sent again with the
  same bytes, so the same event ids: an event stored before its answer was lost comes back ``duplicate``;
- any other code (``invalid``, ``malformed``, ``unknown_type``, ``unknown_locality``, ``too_large``,
  ``unknown_office``, ``out_of_jurisdiction``, ``unknown_target``, ``conflict``, ``id_reused``) → ``rejected``,
  with code, message and path, for the office to see. Later events, of the same entity or not, are still
  sent: the gateway judges each (an update of a tip whose creation was refused is refused ``unknown_target``).

Between failed attempts the sender waits ``RetryPolicy.delay``: exponential backoff with full jitter and a cap
(``random.uniform(0, min(cap, base * 2**n))`` after the n-th failure in a row), at least ``retry_after_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec
import nats
import nats.errors
from nats.aio.client import Client

from events.codec import MAX_BATCH, MAX_BODY_BYTES
from events.intake import IntakeResult, decode_results
from events.subjects import INTAKE_PREFIX
from services.office.errors import LinkDown
from services.office.outbox import Outbox, Pending

RETRY_CODES = frozenset({"unavailable"})
"""Codes that leave an event queued: the gateway could not judge it now."""
WHOLE_REQUEST_CODES = frozenset({"unknown_office"})
"""Codes that, answered once for a whole array, judge every event of it (any other such answer — the body as a
whole refused — is not a judgement of each event: they are sent again one at a time)."""
MIN_TIMEOUT_S = 10.0
"""The shortest wait for an answer, even when ``flush(wait=…)`` has less time left."""
BODY_MARGIN = 1024
"""Bytes kept below ``MAX_BODY_BYTES`` in every request."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter: after ``n`` failures in a row, wait uniform(0, min(cap, base·2ⁿ))."""

    base_s: float = 0.5
    cap_s: float = 60.0

    def delay(self, failures: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** min(failures, 32)))


class Link(Protocol):
    """Sends one intake request and returns the gateway's answer; raises ``LinkDown`` when there is none."""

    async def request(self, body: bytes, timeout: float) -> bytes: ...

    async def close(self) -> None: ...


class ClientLink:
    """A link over a NATS connection the caller owns (and closes)."""

    def __init__(self, nc: Client, office: str) -> None:
        self._nc = nc
        self.subject = f"{INTAKE_PREFIX}.{office}"

    async def request(self, body: bytes, timeout: float) -> bytes:
        try:
            reply = await self._nc.request(self.subject, body, timeout=timeout)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise LinkDown(f"no answer from the gateway ({type(exc).__name__}: {exc})") from None
        return bytes(reply.data)

    async def close(self) -> None:
        return None


async def _quiet(exc: Exception) -> None:
    """nats-py's default error callback prints a traceback: the sender reports failures itself."""


class NatsLink:
    """A link that connects when it needs to, and connects again after losing its connection."""

    def __init__(
        self,
        nats_url: str,
        office: str,
        *,
        options: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self._url = nats_url
        self._options = dict(options or {})
        self._connect_timeout = connect_timeout
        self._nc: Client | None = None
        self.subject = f"{INTAKE_PREFIX}.{office}"

    async def _connection(self) -> Client:
        if self._nc is not None and self._nc.is_connected:
            return self._nc
        await self.close()
        try:
            # nats-py retries an initial connect forever unless max_reconnect_attempts > 0: one retry per
            # server, then NoServersError; the sender's own backoff decides when to try again
            self._nc = await nats.connect(
                servers=[url.strip() for url in self._url.split(",") if url.strip()],
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                connect_timeout=max(1, round(self._connect_timeout)),
                error_cb=_quiet,
                **self._options,
            )
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise LinkDown(f"cannot reach NATS at {self._url} ({type(exc).__name__}: {exc})") from None
        return self._nc

    async def request(self, body: bytes, timeout: float) -> bytes:
        nc = await self._connection()
        try:
            reply = await nc.request(self.subject, body, timeout=timeout)
        except nats.errors.NoRespondersError:
            raise LinkDown("no gateway answers on NATS (no responders)") from None
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise LinkDown(f"no answer from the gateway ({type(exc).__name__}: {exc})") from None
        return bytes(reply.data)

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(TimeoutError, nats.errors.Error, OSError):
                await nc.close()


class FlushReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one ``flush`` did: requests answered, entries answered for good, entries still queued."""

    requests: int
    done: int
    rejected: int
    queued: int
    failures: int
    """Attempts that got no usable answer (or ``unavailable``)."""
    last_problem: str | None
    """Why the last failed attempt failed, in words (None when none failed)."""


OnAnswer = Callable[[int, IntakeResult], None]


class OfficeSender:
    """Sends one office's outbox to the gateway. One ``flush`` at a time; requests one at a time, in order."""

    def __init__(
        self,
        outbox: Outbox,
        link: Link,
        *,
        batch_size: int = MAX_BATCH,
        max_bytes: int = MAX_BODY_BYTES - BODY_MARGIN,
        timeout: float = 60.0,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.outbox = outbox
        self.link = link
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._alone_until = 0
        """Entries up to this id go one per request (their array was refused as a whole)."""

    async def enqueue(self, bodies: Iterable[bytes]) -> list[int]:
        """Write documents to the outbox, in order; returns their outbox ids once they are on disk."""
        items = list(bodies)  # never waits for a flush in progress: the outbox serialises its own writes
        return await asyncio.to_thread(self.outbox.enqueue, items)

    async def flush(self, *, wait: float | None = None, on_answer: OnAnswer | None = None) -> FlushReport:
        """Send what is queued until nothing is, or until ``wait`` seconds have passed (None: until nothing is;
        0: one attempt). ``on_answer(id, result)`` is called for each entry answered for good."""
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        requests = done = rejected = failures = 0
        in_a_row = 0
        problem: str | None = None
        async with self._lock:
            while True:
                batch = await asyncio.to_thread(self._next_batch)
                if not batch:
                    break
                remaining = None if deadline is None else deadline - loop.time()
                # a request may outlast ``wait`` (an answer cut short is an event resent for nothing)
                timeout = (
                    self.timeout if remaining is None else max(MIN_TIMEOUT_S, min(self.timeout, remaining))
                )
                answers: list[tuple[int, IntakeResult | None]] | None
                try:
                    raw = await self.link.request(self._body(batch), timeout)
                    answers = self._match(batch, raw)
                except LinkDown as exc:
                    answers, problem = [(p.id, None) for p in batch], str(exc)
                requests += 1
                if answers is None:
                    continue  # the array was refused as a whole: its events go again, one per request
                await asyncio.to_thread(self.outbox.record, answers, retry_codes=RETRY_CODES)
                waits = [0.0]
                retry = False
                for id_, res in answers:
                    if res is None or (not res.ok and (res.error is None or res.error.code in RETRY_CODES)):
                        retry = True
                        if res is not None and res.error is not None:
                            problem = f"{res.error.code}: {res.error.message}"
                            waits.append((res.error.retry_after_ms or 0) / 1000)
                        continue
                    if res.ok:
                        done += 1
                    else:
                        rejected += 1
                    if on_answer is not None:
                        on_answer(id_, res)
                if not retry:
                    in_a_row = 0
                    continue
                failures += 1
                in_a_row += 1
                pause = max(max(waits), self.policy.delay(in_a_row, self._rng))
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    pause = min(pause, left)
                await self._sleep(pause)
            queued = (await asyncio.to_thread(self.outbox.counts))["queued"]
        return FlushReport(
            requests=requests,
            done=done,
            rejected=rejected,
            queued=queued,
            failures=failures,
            last_problem=problem,
        )

    def _next_batch(self) -> list[Pending]:
        batch = self.outbox.next_batch(self.batch_size, self.max_bytes)
        if batch and batch[0].id <= self._alone_until:
            return batch[:1]
        return batch

    @staticmethod
    def _body(batch: Sequence[Pending]) -> bytes:
        if len(batch) == 1 and not batch[0].is_json:
            return batch[0].body
        return b"[" + b",".join(p.body for p in batch) + b"]"

    def _match(self, batch: Sequence[Pending], raw: bytes) -> list[tuple[int, IntakeResult | None]] | None:
        """Each entry of the request with its answer: an array answers one result per event, in order. None:
        the array was refused as a whole for what it is (its nesting, its size), which judges no event."""
        try:
            answer = decode_results(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise LinkDown(f"the gateway's answer could not be read ({exc})") from None
        if isinstance(answer, list):
            if len(answer) != len(batch):
                raise LinkDown(f"the gateway answered {len(answer)} results for {len(batch)} events")
            return [(p.id, res) for p, res in zip(batch, answer, strict=True)]
        if (
            len(batch) > 1
            and not answer.ok
            and answer.error is not None
            and answer.error.code not in RETRY_CODES | WHOLE_REQUEST_CODES
        ):
            # the array refused as a whole (its nesting, its size): judge each event on its own
            self._alone_until = batch[-1].id
            return None
        return [(p.id, answer) for p in batch]
