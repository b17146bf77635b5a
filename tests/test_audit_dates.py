"""`antq audit replay --as-known-on` takes an instant: a bare date (00:00 that day, which would leave out the
day's entries) is refused with one line and exit status 2, before anything is read."""

from __future__ import annotations

import asyncio

import pytest

from tests.test_auth import antq

REPLAY = ("audit", "replay", "--ward", "01447", "--year", "2018", "--as-known-on")


@pytest.mark.timeout(60)
async def test_a_bare_date_is_refused_and_a_date_time_is_taken() -> None:
    bare, basic, nonsense, with_zone = await asyncio.gather(
        antq(*REPLAY, "2026-11-22", env={}),
        antq(*REPLAY, "20261122", env={}),
        antq(*REPLAY, "yesterday", env={}),
        antq(*REPLAY, "2026-11-22T17:00+07:00", env={}),
    )
    for (code, out, err), day in ((bare, "2026-11-22"), (basic, "20261122")):
        assert (code, out) == (2, ""), err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"--as-known-on {day} is a date, not an instant" in err
        assert "give a date-time with its time zone, e.g. 2026-11-22T17:00+07:00" in err
    code, out, err = nonsense
    assert (code, out, err.count("\n")) == (2, "", 1), err
    assert "is not an ISO 8601 date-time" in err
    # a date-time with its zone is taken: the command goes on, and stops only for want of a NATS server
    code, out, err = with_zone
    assert (code, out) == (2, "") and "ANTQ_NATS_URL is not set" in err and "as-known-on" not in err, err
