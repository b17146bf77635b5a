"""``python -m bench.load`` runs end to end (a few seconds at a set rate): every service process started, every
accepted event folded, the RSS of every process sampled through the run, the lag by fifth of the run printed.
Its figures are not checked (the machine is shared): that it works, and says what it measured, is."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.servers, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent


def test_a_short_paced_load_is_measured_and_folded_whole() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.load", "--duration", "4", "--offices", "2", "--rate", "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out = run.stdout
    assert run.returncode == 0, run.stderr[-3000:]
    assert "offered 200 events/s in all" in out
    accepted = re.search(r"accepted: ([\d,]+) events in 4 s", out)
    assert accepted and int(accepted.group(1).replace(",", "")) > 0, out
    # every accepted event folded before the bench ended (none left waiting)
    assert re.search(r"projection lag: p50 [\d.]+ s, p99 [\d.]+ s \(([\d,]+) events", out), out
    assert "not folded" not in out and "services that exited" not in out, out
    assert len(re.findall(r"[\d.]+ s", out.split("by fifth of the run")[1].splitlines()[0])) == 5, out
    rows = {line.split()[0]: line for line in out.splitlines() if re.match(r"  \S+ +\d+ \|", line)}
    assert set(rows) == {"nats-server", "postgres", "gateway-1", "gateway-2", "projection", "query", "sealer"}
    for row in rows.values():  # the start, the samples through the run, the end: every one a figure
        start, series, end = row.split("|")
        assert start.split()[1].isdigit() and end.split()[0].isdigit(), row
        assert len(series.split()) >= 9 and all(v.isdigit() for v in series.split()), row
