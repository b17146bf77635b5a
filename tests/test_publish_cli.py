"""``antq publish`` says which lines were refused and why (``--rejected FILE`` as JSON lines), ``antq rejected``
reads what ANTQ_REJECTED kept for an office, and text that came from users or the log is printed literally:
no rich markup, no emoji codes. Subprocesses against the test servers, as an office runs them."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from events.intake import ErrorDetail, RejectedRecord
from services.cli.plain import console as plain_console
from services.cli.publish import PublishSummary, Rejection, rejections_table
from services.cli.rejected import RejectedRow, office_subject, rejected_table, to_row
from services.cli.stats_view import stats_table
from services.client import OfficeClient
from services.gateway.app import Gateway
from tests import factories as f
from tests.conftest import Stack
from tests.test_auth import antq
from tests.test_cli_commands import env_of, no_traceback

pytestmark = pytest.mark.servers

WIDER = {"COLUMNS": "400"}  # no folded cells: each table row on one line

MARKUP = ":smiley: [red]x[/red] [bold]"
"""Text that rich would turn into an emoji, a colour and bold if it interpreted it."""


def events_file(path: Path, lines: list[Any]) -> Path:
    """One line per item: a dict as JSON, a str as it is (blank lines included)."""
    path.write_text("".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in lines))
    return path


def cells(line: str, bar: str = "│") -> list[str]:
    """The cells of one printed table row (header rows are drawn with ┃)."""
    return [c.strip() for c in line.strip().strip(bar).split(bar)]


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.timeout(120)
async def test_publish_names_each_rejected_line_and_writes_them_as_json_lines(
    stack: Stack, gateway: Gateway, tmp_path: Path
) -> None:
    good, bad, late = f.session(), f.session(attendance=-1), f.pledge()
    outside = f.session(ward="07210")  # Bắc Ninh: outside ca-tra-linh's jurisdiction
    source = events_file(
        tmp_path / "events.jsonl", [good, "", bad, "this is not JSON " + MARKUP, outside, "   ", late]
    )
    out = tmp_path / "rejected.jsonl"
    env = env_of(stack, ANTQ_DATA_DIR=str(tmp_path), **WIDER)
    code, stdout, stderr = await antq(
        "publish", str(source), "--office", "ca-tra-linh", "--rejected", str(out), env=env
    )
    no_traceback(stdout, stderr)
    assert code == 1, stderr  # some were rejected
    rejected = json_lines(out.read_text())
    assert [r["line"] for r in rejected] == [3, 4, 5]  # blank lines counted, in the file's order
    assert all(set(r) == {"line", "event_id", "code", "message", "path"} for r in rejected)
    by_line = {r["line"]: r for r in rejected}
    assert by_line[3]["event_id"] == bad["event_id"] and by_line[3]["path"] == "$.attendance"
    assert by_line[4]["event_id"] is None and by_line[4]["code"] and by_line[4]["message"]
    assert by_line[5]["event_id"] == outside["event_id"] and by_line[5]["code"] != by_line[3]["code"]
    # the summary on stdout, each rejected line on stderr: number, event id, code, path, message
    assert "accepted" in stdout and "rejected:" in stdout
    shown = [cells(line) for line in stderr.splitlines() if line.count("│") >= 5]
    assert [row[:4] for row in shown] == [
        [str(r["line"]), r["event_id"] or "", r["code"], r["path"] or ""] for r in rejected
    ]

    # everything again: the accepted ones are duplicates, the refused ones refused again
    code, stdout, _ = await antq("publish", str(source), "--office", "ca-tra-linh", env=env)
    assert code == 1 and "duplicate" in stdout

    fine = events_file(tmp_path / "fine.jsonl", [f.session(), "", f.pledge()])
    out_fine = tmp_path / "none.jsonl"
    code, stdout, stderr = await antq(
        "publish", str(fine), "--office", "ca-tra-linh", "--rejected", str(out_fine), env=env
    )
    assert code == 0, stderr  # all accepted
    assert out_fine.read_text() == "" and "rejected lines" not in stderr
    code, _, _ = await antq("publish", str(fine), "--office", "ca-tra-linh", env=env)
    assert code == 0  # duplicates only: nothing was refused
    # the default outbox, under the data dir, kept every line of the four runs, each answered
    assert (tmp_path / "outbox-ca-tra-linh.sqlite").exists()


@pytest.mark.timeout(120)
async def test_an_error_message_quoting_the_input_is_printed_literally(
    stack: Stack, gateway: Gateway, tmp_path: Path
) -> None:
    """The gateway's refusal of an unknown office quotes the office id it was sent under."""
    office = "x:smiley:[red]y[/red]"
    source = events_file(tmp_path / "events.jsonl", [f.session()])
    out = tmp_path / "rejected.jsonl"
    code, stdout, stderr = await antq(
        "publish",
        str(source),
        "--office",
        office,
        "--rejected",
        str(out),
        env=env_of(stack, ANTQ_DATA_DIR=str(tmp_path), **WIDER),
    )
    no_traceback(stdout, stderr)
    assert code == 1
    (rejection,) = json_lines(out.read_text())
    assert office in rejection["message"]
    assert rejection["message"] in stderr and "😃" not in stderr

    # ANTQ_REJECTED keeps it under _invalid (not a subject token): read back literally, too
    code, stdout, stderr = await antq("rejected", "--office", "_invalid", env=env_of(stack, **WIDER))
    no_traceback(stdout, stderr)
    assert code == 0, stderr
    assert "😃" not in stdout and office in stdout


@pytest.mark.timeout(120)
async def test_rejected_reads_an_office_s_own_rejections(
    stack: Stack, gateway: Gateway, tmp_path: Path
) -> None:
    mine = OfficeClient(stack.nc, "ca-tra-linh", timeout=20)
    other = OfficeClient(stack.nc, "ca-bac-ninh", timeout=20)
    bad = f.session(attendance=-1, notes=MARKUP)
    outside = f.session(ward="07210")
    results = await mine.submit([f.session(), bad, outside])
    assert [r.ok for r in results] == [True, False, False]
    theirs = f.pledge(ward="07210", signatures=-5)
    assert not (await other.submit([theirs]))[0].ok

    code, stdout, stderr = await antq(
        "rejected", "--office", "ca-tra-linh", "--format", "json", env=env_of(stack)
    )
    no_traceback(stdout, stderr)
    assert code == 0, stderr
    rows = json_lines(stdout)
    assert [r["event_id"] for r in rows] == [bad["event_id"], outside["event_id"]]
    assert all(r["office"] == "ca-tra-linh" for r in rows)
    assert rows[0]["path"] == "$.attendance" and rows[0]["received_at"].startswith("2026-11-22T03:00:00")
    assert {"seq", "code", "message", "size", "truncated", "sha256"} <= set(rows[0])

    code, stdout, stderr = await antq("rejected", "--office", "ca-tra-linh", env=env_of(stack, **WIDER))
    assert code == 0, stderr
    header = [cells(line, "┃") for line in stdout.splitlines() if line.count("┃") >= 5]
    assert header == [["time", "event id", "code", "path", "message"]]
    table = [cells(line) for line in stdout.splitlines() if line.count("│") >= 5]
    assert [row[1:4] for row in table] == [[r["event_id"], r["code"], r["path"]] for r in rows]
    assert "2 rejection(s)" in stdout

    code, stdout, _ = await antq("rejected", "--format", "json", env=env_of(stack))  # every office
    assert code == 0 and {r["office"] for r in json_lines(stdout)} >= {"ca-tra-linh", "ca-bac-ninh"}

    # the gateway's clock says 2026-11-22T03:00Z
    for since, count in (
        ("2026-11-22", 2),
        ("2026-11-22T03:00:00+00:00", 2),
        ("2026-11-22T10:00:01+07:00", 0),
    ):
        code, stdout, stderr = await antq(
            "rejected", "--office", "ca-tra-linh", "--since", since, "--format", "json", env=env_of(stack)
        )
        assert code == 0, stderr
        assert len(json_lines(stdout)) == count, since
    code, stdout, _ = await antq("rejected", "--office", "ca-tra-linh", "--since", "1h", env=env_of(stack))
    assert code == 0 and "0 rejection(s)" in stdout  # received long before the last hour (by the clock)

    for args in (["--since", "yesterday"], ["--office", "a.b"], ["--format", "xml"]):
        code, stdout, stderr = await antq("rejected", *args, env=env_of(stack))
        no_traceback(stdout, stderr)
        assert code == 2 and stderr.strip(), args


def rendered(renderable: Any) -> str:
    out = io.StringIO()
    console = plain_console()
    console.file = out
    console.width = 400
    console.print(renderable)
    return out.getvalue()


def test_tables_print_user_text_literally() -> None:
    """Notes, hamlets, reasons, office names and messages quoting input: no markup, no emoji."""
    summary = PublishSummary()
    summary.rejected["invalid"] += 1
    summary.rejections.append(
        Rejection(
            line=7, event_id=MARKUP, code="invalid", message=f"hamlet {MARKUP!r} too long", path="$.hamlet"
        )
    )
    record = RejectedRecord(
        office=f"office {MARKUP}",
        received_at="2026-11-22T03:00:00+00:00",
        error=ErrorDetail(code="invalid", message=f"note {MARKUP}", path="$.notes"),
        sha256="0" * 64,
        size=3,
        truncated=False,
        raw=b"{}",
    )
    import datetime as dt

    row = to_row(1, office_subject("x"), msgspec.json.encode(record), dt.datetime.now(dt.UTC))
    foreign = to_row(2, office_subject("x"), MARKUP.encode(), dt.datetime.now(dt.UTC))
    assert isinstance(row, RejectedRow) and foreign.code == "unreadable"
    reply = {"as_of_seq": 1, "stale": False, "metrics": {f"reason {MARKUP}": 1}}
    for text in (
        rendered(rejections_table(summary)),
        rendered(rejected_table([row, foreign], f"office {MARKUP}", with_office=True)),
        rendered(stats_table(f"hamlet {MARKUP}", reply)),
    ):
        assert text.count(MARKUP) >= 2, text
        assert "😃" not in text


@pytest.mark.timeout(120)
async def test_lines_no_gateway_answered_stay_queued_and_exit_3(stack: Stack, tmp_path: Path) -> None:
    """No gateway running: no line is counted as accepted or rejected; every one stays queued in the outbox
    (exit 3), and ``antq outbox list`` shows them, in the file's order."""
    source = events_file(tmp_path / "events.jsonl", [f.session(), "not JSON", "", f.pledge()])
    out = tmp_path / "rejected.jsonl"
    box = tmp_path / "box.sqlite"
    env = env_of(stack)
    code, stdout, stderr = await antq(
        "publish",
        str(source),
        "--office",
        "ca-tra-linh",
        "--rejected",
        str(out),
        "--outbox",
        str(box),
        "--wait",
        "0.5",
        env=env,
    )
    no_traceback(stdout, stderr)
    assert code == 3, stderr
    assert out.read_text() == "" and "still queued" in stdout and "still queued" in stderr
    code, stdout, stderr = await antq(
        "outbox", "list", "--office", "ca-tra-linh", "--outbox", str(box), "--json", env=env
    )
    assert code == 0, stderr
    listed = json_lines(stdout)
    assert [(e["state"], e["event_id"]) for e in listed] == [
        ("queued", json.loads(source.read_text().splitlines()[0])["event_id"]),
        ("queued", None),
        ("queued", json.loads(source.read_text().splitlines()[3])["event_id"]),
    ]
