"""The demo set reproduces the article's figures through the real gateway and projection; ``antq dev up``
starts, reports its URLs and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import asyncpg
import pytest

from events.localities import Localities
from projections.places import unit_key
from projections.service import Projector
from projections.store import read_stats
from services.client import OfficeClient
from services.demo.tra_linh_2018 import ARTICLE, YEAR, DemoSet
from tests import factories as f
from tests.conftest import Stack
from tests.servers import Servers, wait_for

pytestmark = pytest.mark.servers


async def test_demo_set_reproduces_the_article(stack: Stack, gateway: object, localities: Localities) -> None:
    demo = DemoSet(localities)
    assert demo.district_wards() == ["01447", "01456", "01465"]
    docs = list(demo.events())
    client = OfficeClient(stack.nc, "ca-cao-bang", timeout=60)
    results = await client.submit(docs[:1000])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    last = max(r.seq or 0 for r in results)
    again = await client.submit(docs[:1000])
    assert all(r.duplicate for r in again)  # publishing the set twice counts nothing twice
    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    await projector.start()
    conn = await asyncpg.connect(stack.database_url)
    try:

        async def caught_up() -> dict[str, int] | None:
            snap = await read_stats(conn, wards=demo.district_wards(), year=YEAR, period="calendar")
            return snap.metrics if snap.as_of_seq >= last else None

        metrics = await wait_for(caught_up, what="the projection to fold the demo set")
        # recorded in 2018 codes: the pre-reform district's own figures, as recorded, are the article's too
        district = await read_stats(conn, wards=[unit_key("district", "046")], year=YEAR, period="calendar")
    finally:
        await conn.close()
        await projector.stop()
    assert {k: metrics.get(k) for k in ARTICLE} == ARTICLE
    assert {k: district.metrics.get(k) for k in ARTICLE} == ARTICLE
    assert district.metrics == metrics and not district.approximate


def test_dev_up_prints_urls_and_stops_on_sigterm(servers: Servers, tmp_path: object) -> None:
    env = {**os.environ, "ANTQ_NATS_URL": "", "ANTQ_DATABASE_URL": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "dev", "up", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until ready (pytest's timeout bounds it)
        urls = json.loads(line)
        assert urls["nats_url"].startswith("nats://127.0.0.1:")
        assert urls["database_url"].startswith("postgresql://")
        assert urls["credentials_dir"] == str(tmp_path / "credentials")  # type: ignore[operator]
        # the dashboard, reading as the read-only `web` identity of the secure stack
        assert urls["web_url"].startswith("http://127.0.0.1:")
        with urllib.request.urlopen(urls["web_url"] + "/ward/01447?year=2018", timeout=30) as page:
            assert page.status == 200 and "Xã Trà Lĩnh" in page.read().decode()
        as_us = {
            **os.environ,
            "ANTQ_NATS_URL": urls["nats_url"],
            "ANTQ_CREDENTIALS_DIR": urls["credentials_dir"],
        }
        reply = subprocess.run(
            [sys.executable, "-m", "services.cli", "stats", "--ward", "01447", "--year", "2018"],
            env=as_us,
            capture_output=True,
            timeout=60,
        )
        assert reply.returncode == 0, reply.stderr
        assert b"tips_received" in reply.stdout
        events = tmp_path / "events.jsonl"  # type: ignore[operator]
        good, bad = f.session(), {**f.session(), "attendance": -1}
        events.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        published = subprocess.run(
            [sys.executable, "-m", "services.cli", "publish", str(events), "--office", "ca-tra-linh"],
            env=as_us,
            capture_output=True,
            timeout=60,
        )
        assert published.returncode == 1  # something was rejected
        summary = published.stdout.decode()
        assert "accepted" in summary and "rejected: invalid" in summary
        assert [
            line.split()[-2] for line in summary.splitlines() if "accepted" in line or "invalid" in line
        ] == [
            "1",
            "1",
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
