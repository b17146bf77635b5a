"""The runner folds exactly checkpoint + 1, + 2, ...: a delivery that jumps is refused, never folded past."""

from __future__ import annotations

import pytest

from events.codec import encode_recorded
from events.schema import Recorded
from infra.pull import RawMsg
from projections.runner import RunnerConfig, SequenceGap, StatsRunner
from tests import factories as f
from tests.conftest import Stack
from tests.test_projection import as_event

pytestmark = [pytest.mark.servers, pytest.mark.timeout(30)]


def delivered(stack: Stack, seq: int) -> RawMsg:
    body = encode_recorded(Recorded(office="x", event=as_event(f.session())))
    reply = f"$JS.ACK.ANTQ_EVENTS.stats-1.1.{seq}.{seq}.1700000000000000000.0"
    return RawMsg("antq.events.04.01447.session", reply, body, None)


def test_redeliveries_are_skipped_and_a_jump_is_refused(stack: Stack) -> None:
    runner = StatsRunner(stack.nc, RunnerConfig(database_url=stack.database_url))
    runner.seq = 5
    batch = runner._prepare([delivered(stack, s) for s in (4, 5, 6, 7)])
    assert [seq for seq, _ in batch.records] == [6, 7]
    assert runner.stats.redelivered_skipped == 2
    with pytest.raises(SequenceGap, match="seq 8 came where 7 was due"):
        runner._prepare([delivered(stack, s) for s in (6, 8)])
    with pytest.raises(SequenceGap, match="seq 9 came where 6 was due"):
        runner._prepare([delivered(stack, 9)])
