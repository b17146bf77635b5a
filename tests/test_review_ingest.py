"""Review of the faster ingest gateway (c5dac41..): what the review found, each held here.

- The claims were written on the index pool, which commits without waiting for PostgreSQL's disk
  (``INDEX_COMMITS``). A PostgreSQL crash could then lose a claim whose creating event the stream already held
  (and whose office was answered ``ok``): another event creating the same id was accepted (in another ward:
  nothing else checks it; on the same subject: ``_resolve_wrong_last`` took the lost creation for a freed id and
  published after it), and a lost ``take_over`` was never repaired. The claims are now made on the pool that
  commits as the server is configured; the index rows stay asynchronous (the catch-up reads them again).
- A refusal of an office named in other letters (an unknown office's subject token, ``str.isalnum``) that
  waited in PostgreSQL was taken for a row changed by hand: sent to ``antq.rejected._invalid`` and logged at
  ERROR, while the same refusal stored at once keeps its office's subject.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest

from events.intake import ErrorDetail
from events.localities import Localities
from services.client import OfficeClient
from services.gateway.app import Gateway
from services.gateway.publisher import IntakePublisher
from services.gateway.rejected_later import _readable
from tests import factories as f
from tests.conftest import FixedClock, Stack, gateway_config, wait_until_answering

_RECORD_COMMIT_MODE = """
CREATE TABLE review_commit_modes (tbl text NOT NULL, op text NOT NULL, mode text NOT NULL);
CREATE FUNCTION review_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO review_commit_modes VALUES (TG_TABLE_NAME, TG_OP, current_setting('synchronous_commit'));
    RETURN NULL;
END $$;
CREATE TRIGGER review_claims AFTER INSERT OR UPDATE ON entity_claims
    FOR EACH ROW EXECUTE FUNCTION review_commit_mode();
CREATE TRIGGER review_rows AFTER INSERT ON event_index
    FOR EACH ROW EXECUTE FUNCTION review_commit_mode();
"""


@pytest.mark.servers
@pytest.mark.timeout(120)
async def test_the_claims_commit_as_the_database_is_configured_and_the_rows_without_waiting(
    stack: Stack, offices_file: Path, clock: FixedClock, localities: Localities
) -> None:
    """The database is configured to commit to disk (``ALTER DATABASE … SET synchronous_commit = on``: the
    tests' server itself commits asynchronously). A tip's claim, and an orphan's claim taken over, are committed
    so before the office is answered: a crash that lost them would have the gateway accept a second creation of
    the same id. The index rows are committed without waiting for the disk (``INDEX_COMMITS``): the catch-up
    reads them again from the stream."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        name = await conn.fetchval("SELECT current_database()")
        await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
        orphaned = f.tip()
        await conn.execute(
            """INSERT INTO entity_claims (entity, event_id, ward, subject, claimed_at)
               VALUES ($1, $2, '01447', $3, now() - interval '2 minutes')""",
            f"tip:{orphaned['tip_id']}",
            uuid.UUID(f.new_id()),  # a tip.received whose publish failed: nothing on the subject
            f"antq.events.04.01447.tip.{orphaned['tip_id']}",
        )
        await conn.execute(_RECORD_COMMIT_MODE)
        gw = Gateway(gateway_config(stack, offices_file, clock, localities))
        async with gw.app:
            await wait_until_answering(stack.nc, "antq.intake._probe")
            office = OfficeClient(stack.nc, "ca-cao-bang", timeout=20)
            created = await office.submit_one(f.tip())
            assert created.ok and not created.duplicate
            taken = await office.submit_one(orphaned)
            assert taken.ok and not taken.duplicate
        modes = await conn.fetch("SELECT tbl, op, mode FROM review_commit_modes")
    finally:
        await conn.close()
    writes = sorted((r["tbl"], r["op"], r["mode"]) for r in modes)
    assert writes == [
        ("entity_claims", "INSERT", "on"),  # the new tip's claim
        ("entity_claims", "UPDATE", "on"),  # the orphan's claim taken over
        ("event_index", "INSERT", "off"),  # the rows: read again from the stream after a crash
        ("event_index", "INSERT", "off"),
    ]


def test_a_waiting_refusal_of_an_office_named_in_other_letters_keeps_its_subject(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unknown office's subject token may be any letters ``str.isalnum`` accepts: its refusal is stored
    on ``antq.rejected.<token>`` at once, and so after it waited in PostgreSQL (not as a row changed by hand)."""
    now = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)
    detail = ErrorDetail(code="unknown_office", message="not in the offices registry", path=None)
    record = IntakePublisher.rejected_record("trà-lĩnh", b'{"type": "tip.received"}', detail, now)
    assert record.subject == "antq.rejected.trà-lĩnh"  # the subject of the record stored at once
    row: dict[str, Any] = {
        "id": 7,
        "owner": "a-copy",
        "subject": record.subject,
        "data": record.data,
        "headers": json.dumps(record.headers),  # the table's jsonb, as asyncpg reads it
    }
    with caplog.at_level(logging.ERROR, logger="antq.gateway"):
        sent = _readable(cast(asyncpg.Record, row))
    assert sent == record
    assert not caplog.records
