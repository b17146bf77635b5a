"""``Projector``: the statistics projection as a start/stop component (embedded by ``antq dev up``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import asyncpg
from nats.aio.client import Client

from events.localities import Localities
from infra.nats_client import connect
from infra.update_signing import UpdateKey, ephemeral_update_key
from projections import store
from projections.partitions import Part
from projections.runner import AlreadyRunning, FoldVersionMismatch, Hook, RunnerConfig, StatsRunner

log = logging.getLogger(__name__)


class Projector:
    """Owns its NATS connection and the runner task; the runner owns its PostgreSQL connections."""

    def __init__(
        self,
        *,
        nats_url: str,
        database_url: str,
        copy: int | None = None,
        publish: bool | None = None,
        batch: int = 16_000,
        localities: Localities | None = None,
        hook: Hook | None = None,
        nats_options: Mapping[str, str] | None = None,
        halted_poll_s: float = 1.0,
        update_key: UpdateKey | None = None,
        part: Part | None = None,
    ) -> None:
        """``nats_options``: the ``nats.connect`` options of the projector's identity
        (``infra.auth.nats_connect_options``); ``halted_poll_s``: while halted, how often to look whether a
        rebuild replaced the halted copy; ``update_key``: signs the updates (``infra.update_signing``;
        default, when publishing: one ephemeral key for the projector's life, with a warning); ``part``: fold
        only that partition's provinces (``projections.partitions``; one process per partition)."""
        self._halted_poll_s = halted_poll_s
        self._nats_url = nats_url
        self._nats_options = dict(nats_options or {})
        self._config = RunnerConfig(
            database_url=database_url,
            copy=copy,
            publish=publish,
            batch=batch,
            localities=localities,
            hook=hook,
            part=part,
            update_key=update_key if update_key is not None or publish is False else ephemeral_update_key(),
        )
        self._nc: Client | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.runner: StatsRunner | None = None

    async def start(self) -> None:
        """Connect and start consuming; returns once the runner is subscribed (or has failed)."""
        self._nc = await connect(self._nats_url, max_reconnect_attempts=-1, **self._nats_options)
        self._stop.clear()
        self.runner = StatsRunner(self._nc, self._config)
        self._task = asyncio.create_task(self._supervise(self.runner), name="stats-projection")
        ready = asyncio.create_task(self.runner.ready.wait())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._task.done():
            await self._task  # raises why it could not start

    async def _supervise(self, runner: StatsRunner) -> None:
        """Run the runner; follow the active copy after a rebuild, also when halted (the halted copy stays
        stale until a rebuild replaces it); restart after a failure (NATS or PostgreSQL away) with back-off. A
        failure before the first start is raised to ``start()``."""
        assert self._nc is not None
        started, delay = False, 0.01
        while True:
            wait = True
            try:
                await runner.run(self._stop)
            except FoldVersionMismatch:
                raise
            except AlreadyRunning:
                if not started:
                    raise  # the rebuild releases the new copy right after the switch: retry only then
            except Exception:
                if not started and not runner.ready.is_set():
                    raise
                log.exception("the stats projection failed; restarting in %.2fs", delay)
            else:
                if self._config.copy is not None:
                    return
                if runner.halted is not None and not await self._replaced(runner.copy):
                    return  # stopped while halted
                if not runner.superseded and runner.halted is None:
                    return
                log.info("following the active copy after a rebuild")
                wait, delay = False, 0.01
            started = True
            if self._stop.is_set():
                return
            if wait:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            runner = self.runner = StatsRunner(self._nc, self._config)

    async def _replaced(self, copy: int) -> bool:
        """While the runner of ``copy`` is halted: wait until a rebuild replaces that copy (True: follow the new
        active copy; a rebuild with a corrected fold is how a halt ends) or until stopped (False)."""
        conn: asyncpg.Connection | None = None
        try:
            while not self._stop.is_set():
                try:
                    conn = (
                        conn
                        if conn is not None and not conn.is_closed()
                        else await asyncpg.connect(self._config.database_url)
                    )
                    # a rebuild moved the pointer (and may already have dropped the retired copy's tables)
                    if await store.active_copy(conn) != copy:
                        return True
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("cannot check whether halted copy %d was replaced: %s", copy, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self._halted_poll_s)
            return False
        finally:
            if conn is not None:
                await conn.close()

    @property
    def update_key(self) -> UpdateKey | None:
        """The key the updates are signed with (its ``public_key`` is what subscribers pin)."""
        return self._config.update_key

    @property
    def halted(self) -> str | None:
        return self.runner.halted if self.runner is not None else None

    async def wait(self) -> None:
        """Until the runner ends: stopped, halted, or failed (raises)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:
                log.exception("the stats projection ended with an error")
            self._task = None
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
            self._nc = None
