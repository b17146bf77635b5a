"""Restart: ``python -m projections`` SIGKILLed mid-stream, restarted, figures exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from bench.projection import realistic_events
from events.localities import Localities
from tests.conftest import Stack
from tests.servers import outbox_empty, wait_for
from tests.test_fold_model import reference
from tests.test_projection import checkpoint, figures, publish_events

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parent.parent


def start_projection(stack: Stack, database_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--nats-url", stack.servers.nats_url, "--database-url", database_url, "--batch", "100"]
    return subprocess.Popen([sys.executable, "-m", "projections", *args], cwd=ROOT, env=env)


async def test_sigkill_mid_stream_and_restart_leave_every_figure_exact(
    stack: Stack, localities: Localities
) -> None:
    wards = [*localities.wards_of("04")[:20], *localities.wards_of("24")[:20]]
    events = realistic_events(3000, wards, seed=11)
    last = await publish_events(stack.nc, localities, events)
    assert last == len(events)

    first = start_projection(stack, stack.database_url)
    try:

        async def started() -> bool:
            try:
                return (await checkpoint(stack.database_url)).seq > 0
            except (LookupError, asyncpg.PostgresError):
                return False

        await wait_for(started, timeout=30, what="the first commit")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    killed_at = (await checkpoint(stack.database_url)).seq
    assert 0 < killed_at < last  # killed mid-stream

    second = start_projection(stack, stack.database_url)
    try:

        async def caught_up() -> bool:
            return (await checkpoint(stack.database_url)).seq == last

        await wait_for(caught_up, timeout=60, what=f"the checkpoint to reach {last}")
        assert await figures(stack.database_url) == reference(events)

        await wait_for(
            lambda: outbox_empty(stack.database_url), timeout=30, what="the updates to be published"
        )
    finally:
        second.send_signal(signal.SIGTERM)
        code = second.wait(20)
    assert code == 0
