"""The offices registry: a bad file is one line naming the file and the problem (never a traceback), rates and
quotas with their defaults, and the token bucket that enforces the rate (on a given clock, no waiting)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from events.localities import Localities
from services.gateway.errors import GatewayError, OfficesFileError
from services.gateway.offices import (
    DEFAULT_RATE,
    DEFAULT_REJECTED_QUOTA,
    UNKNOWN_OFFICE,
    Office,
    OfficeRegistry,
    Rate,
    RateLimiter,
)

GOOD = """
rate = { events_per_second = 50, burst = 100 }
rejected_quota_bytes = 1_000_000

[[office]]
id = "ca-tra-linh"
name = "Công an xã Trà Lĩnh"
jurisdiction = ["ward:01447"]

[[office]]
id = "ca-cao-bang"
jurisdiction = ["province:04", "ward:09454"]
rate = { events_per_second = 0.5, burst = 3 }
rejected_quota_bytes = 0
"""

OFFICE = '[[office]]\nid = "a"\njurisdiction = ["ward:01447"]\n'


def load(tmp_path: Path, localities: Localities, text: str | bytes) -> OfficeRegistry:
    path = tmp_path / "offices.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return OfficeRegistry.load(path, localities)


def test_a_good_file_with_defaults_and_an_office_of_its_own(tmp_path: Path, localities: Localities) -> None:
    registry = load(tmp_path, localities, GOOD)
    tra_linh, cao_bang = registry.get("ca-tra-linh"), registry.get("ca-cao-bang")
    assert tra_linh is not None and cao_bang is not None
    assert tra_linh.rate == Rate(50.0, 100) and tra_linh.rejected_quota_bytes == 1_000_000
    assert cao_bang.rate == Rate(0.5, 3) and cao_bang.rejected_quota_bytes == 0
    assert (
        cao_bang.name == "ca-cao-bang" and cao_bang.covers("09454", "24") and cao_bang.covers("01447", "04")
    )
    assert registry.rejected_quota("ca-cao-bang") == ("ca-cao-bang", 0)
    assert (
        registry.rejected_quota("nobody") == registry.rejected_quota("other") == (UNKNOWN_OFFICE, 1_000_000)
    )


def test_built_in_defaults(tmp_path: Path, localities: Localities) -> None:
    office = load(tmp_path, localities, OFFICE).get("a")
    assert office is not None
    assert office.rate == DEFAULT_RATE == Rate(200.0, 1000)
    assert office.rejected_quota_bytes == DEFAULT_REJECTED_QUOTA == 64 * 1024 * 1024


BAD: dict[str, tuple[str | bytes, str]] = {
    "malformed toml": ('[[office]\nid = "a"', "not valid TOML"),
    "not utf-8": (b'[[office]]\nid = "\xff"\n', "cannot be read"),
    "duplicate id": (OFFICE + OFFICE, "office id 'a' appears twice"),
    "unknown ward": ('[[office]]\nid = "a"\njurisdiction = ["ward:99999"]\n', "jurisdiction 'ward:99999'"),
    "unknown province": ('[[office]]\nid = "a"\njurisdiction = ["province:00"]\n', "'province:00'"),
    "jurisdiction kind": ('[[office]]\nid = "a"\njurisdiction = ["district:001"]\n', "'district:001'"),
    "jurisdiction number": ('[[office]]\nid = "a"\njurisdiction = [1447]\n', "jurisdiction 1447"),
    "jurisdiction a string": ('[[office]]\nid = "a"\njurisdiction = "ward:01447"\n', "non-empty list"),
    "jurisdiction missing": ('[[office]]\nid = "a"\n', "jurisdiction must be a non-empty list"),
    "jurisdiction empty": (
        '[[office]]\nid = "a"\njurisdiction = []\n',
        "jurisdiction must be a non-empty list",
    ),
    "id missing": ('[[office]]\njurisdiction = ["ward:01447"]\n', "office[0]: id None must match"),
    "id not a token": ('[[office]]\nid = "a.b"\njurisdiction = ["ward:01447"]\n', "id 'a.b' must match"),
    "id a number": ('[[office]]\nid = 7\njurisdiction = ["ward:01447"]\n', "id 7 must match"),
    "name a number": (OFFICE + "name = 3\n", "name must be a non-blank string"),
    "name blank": (OFFICE + 'name = "  "\n', "name must be a non-blank string"),
    "office a table": ('[office]\nid = "a"\n', "'office' must be a list of [[office]] tables"),
    "office a string": ('office = "a"\n', "'office' must be a list"),
    "office list of strings": ('office = ["a"]\n', "'office' must be a list"),
    "no office": ("", "no [[office]] table"),
    "unknown office key": (OFFICE + 'jurisdictions = ["ward:01447"]\n', "unknown key 'jurisdictions'"),
    "unknown top key": ("rates = 5\n" + OFFICE, "unknown key 'rates'"),
    "rate negative": (OFFICE + "rate = { events_per_second = -1, burst = 10 }\n", "events_per_second must"),
    "rate zero": (OFFICE + "rate = { events_per_second = 0, burst = 10 }\n", "events_per_second must"),
    "rate nan": (OFFICE + "rate = { events_per_second = nan, burst = 10 }\n", "events_per_second must"),
    "rate inf": (OFFICE + "rate = { events_per_second = inf, burst = 10 }\n", "events_per_second must"),
    "rate text": (OFFICE + 'rate = { events_per_second = "200", burst = 10 }\n', "events_per_second must"),
    "rate bool": (OFFICE + "rate = { events_per_second = true, burst = 10 }\n", "events_per_second must"),
    "rate huge": (OFFICE + "rate = { events_per_second = 1e12, burst = 10 }\n", "events_per_second must"),
    "rate missing": (OFFICE + "rate = { burst = 10 }\n", "events_per_second must"),
    "burst zero": (OFFICE + "rate = { events_per_second = 5, burst = 0 }\n", "rate.burst must"),
    "burst fraction": (OFFICE + "rate = { events_per_second = 5, burst = 2.5 }\n", "rate.burst must"),
    "burst missing": (OFFICE + "rate = { events_per_second = 5 }\n", "rate.burst must"),
    "rate a number": (OFFICE + "rate = 200\n", "rate must be a table"),
    "rate unknown key": (OFFICE + "rate = { per_second = 5, burst = 1 }\n", "unknown key 'per_second'"),
    "default rate bad": ("rate = { events_per_second = 5, burst = -1 }\n" + OFFICE, "rate.burst must"),
    "quota negative": (OFFICE + "rejected_quota_bytes = -1\n", "rejected_quota_bytes must"),
    "quota text": ('rejected_quota_bytes = "64 MiB"\n' + OFFICE, "rejected_quota_bytes must"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_offices_file_is_one_line_naming_the_file_and_the_problem(
    tmp_path: Path, localities: Localities, case: str
) -> None:
    text, problem = BAD[case]
    with pytest.raises(OfficesFileError) as caught:
        load(tmp_path, localities, text)
    message = str(caught.value)
    assert isinstance(caught.value, GatewayError)  # the gateway package's one root
    assert "\n" not in message and len(message) < 400, message
    assert message.startswith(f"offices file {tmp_path / 'offices.toml'}: "), message
    assert problem in message, message


def test_a_missing_offices_file(tmp_path: Path, localities: Localities) -> None:
    with pytest.raises(
        OfficesFileError, match=r"offices file .*nowhere\.toml: cannot be read \(No such file"
    ):
        OfficeRegistry.load(tmp_path / "nowhere.toml", localities)


@pytest.mark.timeout(60)
def test_the_gateway_exits_2_with_one_line_before_connecting(tmp_path: Path) -> None:
    bad = tmp_path / "offices.toml"
    bad.write_text(OFFICE + OFFICE, encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.gateway",
            "--offices",
            str(bad),
            "--nats-url",
            "nats://127.0.0.1:1",  # nothing listens there: reaching it would hang or fail differently
            "--database-url",
            "postgresql://nobody@127.0.0.1:1/none",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"antq gateway: offices file {bad}: office[1]: office id 'a' appears twice"
    ]


# --- the token bucket ----------------------------------------------------------------------------------


def office(per_second: float, burst: int, office_id: str = "a") -> Office:
    return Office(office_id, office_id, frozenset(), frozenset({"01447"}), Rate(per_second, burst))


def test_the_bucket_counts_events_and_refills_at_the_rate() -> None:
    limiter = RateLimiter()
    a = office(10, 50)
    assert limiter.take(a, 25, 0.0) == (25, 0)  # a batch of 25 costs 25
    assert limiter.take(a, 25, 0.0) == (25, 0)
    assert limiter.take(a, 25, 0.0) == (0, 2500)  # empty: 25 events take 2.5 s to come back
    assert limiter.take(a, 1, 0.05) == (0, 50)  # half a token so far
    assert limiter.take(a, 30, 1.0) == (10, 2000)  # 10 back after 1 s; the other 20 need 2 s more
    assert limiter.take(a, 500, 100.0) == (
        50,
        5000,
    )  # never more than the burst; the rest: a full bucket's wait


def test_one_office_empty_bucket_leaves_another_full() -> None:
    limiter = RateLimiter()
    assert limiter.take(office(1, 5, "a"), 100, 0.0) == (5, 5000)
    assert limiter.take(office(1, 5, "b"), 5, 0.0) == (5, 0)


def test_a_clock_stepping_back_refills_nothing() -> None:
    limiter = RateLimiter()
    a = office(10, 10)
    assert limiter.take(a, 10, 100.0) == (10, 0)
    assert limiter.take(a, 1, 50.0) == (0, 100)
    assert limiter.take(a, 1, 100.1) == (1, 0)
