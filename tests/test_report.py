"""Issue 11, part 1: ``antq report`` on real servers.

The Trà Lĩnh 2018 demo set (plus a few models and youth, stocks) is published through the gateway, sealed once,
then two more events arrive (not sealed yet). The report of Cao Bằng must say the article's figures in its own
form and numbers (1.546), list the wards, carry the provenance (sequence, fold version, the seal and the events
after it, the replay command), and ``--from-log`` must give the same numbers; every format is checked: the PDF's
text extracted back equals the source, the XLSX holds numbers as numbers, the HTML fetches nothing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import shutil
import unicodedata
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from pypdf import PdfReader

from events.localities import Localities
from infra.seal_keys import generate_seed, signer_from_seed
from infra.settings import Settings
from projections import store
from projections.metrics import FOLD_VERSION
from projections.service import Projector
from services.cli.report_cmd import make_report, report_document
from services.cli.stats_view import query_stats
from services.client import OfficeClient
from services.demo.tra_linh_2018 import ARTICLE, DemoSet
from services.gateway.app import Gateway, GatewayConfig
from services.query.app import QueryConfig, QueryService
from services.report.document import plain_text
from services.report.render import render
from services.report.span import Span
from services.report.unit import Unit
from services.sealer.service import Sealer, SealerConfig
from tests import factories as f
from tests.conftest import Stack, wait_until_answering
from tests.servers import Servers, fresh_database, wait_for
from tests.test_auth import AuthStack, antq, auth_stack, fill
from tests.test_cli_commands import env_of, no_traceback

pytestmark = [pytest.mark.servers, pytest.mark.timeout(120)]
__all__ = ["auth_stack"]  # the secure stack's fixture, used below

CAO_BANG = Unit(kind="province", code="04")
Y2018 = Span(first=2018, last=2018)
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshots" / "report-cao-bang-2018.png"


@dataclass
class Published:
    stack: Stack
    settings: Settings
    last_seq: int
    sealed_through: int
    seal_number: int
    seal_digest: str


async def submit(office: OfficeClient, docs: list[dict[str, object]]) -> int:
    results = []
    for i in range(0, len(docs), 500):
        results += await office.submit(docs[i : i + 500])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return max(r.seq or 0 for r in results)


@pytest.fixture
async def published(
    stack: Stack, office: OfficeClient, query: QueryService, localities: Localities
) -> AsyncIterator[Published]:
    docs: list[dict[str, object]] = list(DemoSet(localities).events())
    council = f.model(day="2017-03-01", kind="security_council", points=3, teams=2)
    docs += [
        council,
        f.model(day="2018-04-01", level="hamlet", kind="self_managed_team", points=1, teams=1),
        f.model(day="2018-06-01", kind="dan_van_kheo"),
        f.youth(day="2016-05-01"),
        f.youth(day="2018-07-01"),
        f.session(ward="01447", level="institution", attendance=25, day="2017-05-05"),
    ]
    await submit(office, docs)
    async with Sealer(
        SealerConfig(
            nats_url=stack.servers.nats_url,
            database_url=stack.database_url,
            signer=signer_from_seed(generate_seed()),
        )
    ) as sealer:
        seal = await sealer.seal_once()
    assert seal is not None
    # two events after the seal: counted by the report, not sealed yet
    last = await submit(office, [f.pledge(signatures=12, signer="individual"), f.mediation()])
    projector = Projector(
        nats_url=stack.servers.nats_url, database_url=stack.database_url, localities=localities
    )
    await projector.start()
    conn = await asyncpg.connect(stack.database_url)
    try:

        async def folded() -> bool:
            snap = await store.read_stats(conn, wards=["01447"], year=2018, period="calendar")
            return snap.as_of_seq >= last

        await wait_for(folded, what=f"the projection to fold up to seq {last}")
        settings = Settings(nats_url=stack.servers.nats_url, database_url=stack.database_url)
        yield Published(stack, settings, last, seal.last_seq, seal.number, seal.digest)
    finally:
        await conn.close()
        await projector.stop()


def flat(text: str) -> str:
    return " ".join(text.split())


def md_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows by their second cell (the metric's code, or the ward's code)."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[cells[1]] = cells
    return rows


def vn(n: int) -> str:
    return f"{n:,}".replace(",", ".")


async def test_the_report_says_the_articles_figures_in_its_own_form_with_the_provenance(
    published: Published,
) -> None:
    code, out, err = await antq("report", "--province", "04", "--year", "2018", env=env_of(published.stack))
    assert code == 0, err
    no_traceback(out, err)
    text = flat(out)
    assert "# Báo cáo kết quả phong trào Toàn dân bảo vệ an ninh Tổ quốc — Tỉnh Cao Bằng" in out
    assert "Năm 2018 (01/01/2018 – 31/12/2018)" in text
    # the article's sentences, with its numbers written the Vietnamese way
    assert (
        "Trong năm 2018, trên địa bàn tỉnh Cao Bằng đã tổ chức tuyên truyền 38 cuộc tại các xã, phường, thị trấn "
        "với 1.546 lượt người nghe và 156 đợt tại các thôn, xóm, tổ dân phố với 5.558 lượt người nghe" in text
    )
    assert "cung cấp cho cơ quan Công an 312 tin, trong đó 270 tin có giá trị." in text
    assert "nhân dân tự giác giao nộp 01 súng tự chế và 06 công cụ hỗ trợ." in text
    assert "Vận động 12 lượt ký cam kết bảo đảm an ninh, trật tự, trong đó 12 lượt cá nhân." in text
    assert "Hòa giải 1 vụ mâu thuẫn, tranh chấp ngay tại cơ sở, trong đó 1 vụ hòa giải thành." in text
    # stocks: what stands at the year's end (the 2017 council too), the dân vận khéo model apart
    assert (
        "Tính đến 31/12/2018, trên địa bàn tỉnh Cao Bằng duy trì hoạt động 2 mô hình tự quản về ANTT "
        "(1 mô hình cấp xã và 1 mô hình cấp thôn, tổ dân phố), 1 mô hình “Dân vận khéo” trong bảo đảm ANTT."
    ) in text
    assert "Các mô hình có 4 điểm nhân rộng và 3 tổ." in text
    assert "đang quản lý, giáo dục 2 thanh thiếu niên" in text
    assert "Trong năm, tiếp nhận quản lý 1 trường hợp thanh thiếu niên." in text

    rows = md_rows(out)
    for metric, value in ARTICLE.items():
        assert rows[metric][2] == vn(value), (metric, rows[metric])
    # the change from 2017: one institution session (25 people) in 2017, none in 2018
    assert rows["sessions_held.institution"][2:] == ["0", "1", "-1"]
    assert rows["sessions_held"][2:] == ["194", "1", "+193"]
    assert rows["models_active"][2:] == ["2", "1", "+1"]
    assert rows["models_active"][0] == "Mô hình tự quản về ANTT đang hoạt động (*)"
    # the wards below the province: Xã Trà Lĩnh holds the models; the total row is the province's
    assert rows["01447"][0] == "Xã Trà Lĩnh"
    assert rows["04"][0] == "Tổng cộng" and rows["04"][2:4] == ["194", vn(1546 + 5558)]
    ward_sessions = sum(int(r[2].replace(".", "")) for k, r in rows.items() if re.fullmatch(r"\d{5}", k))
    assert ward_sessions == 194

    # provenance: the sequence, the fold, the seal and what came after it, the command to recompute
    n = published.last_seq
    assert f"Số thứ tự sự kiện (as_of_seq): {n}" in text
    assert f"Phiên bản phép gộp (fold version): {FOLD_VERSION}" in text
    assert (
        f"Dấu niêm phong mới nhất: số {published.seal_number}, sự kiện 1–{published.sealed_through}" in text
    )
    assert f"Mã băm (digest): {published.seal_digest}" in text
    assert f"Sự kiện chưa được niêm phong: {n - published.sealed_through}" in text
    assert n - published.sealed_through == 2
    command = f"antq audit replay --province 04 --year 2018 --period calendar --to-seq {n} --format csv"
    assert f"Tính lại từ nhật ký: `{command}`" in text
    assert f"`antq audit seals --expect {published.seal_number}:{published.seal_digest}`" in text


async def test_from_log_prints_the_same_numbers_and_audit_replay_to_seq_recomputes_them(
    published: Published,
) -> None:
    env = env_of(published.stack)
    live = await make_report(published.settings, CAO_BANG, Y2018, "csv")
    logged = await make_report(published.settings, CAO_BANG, Y2018, "csv", from_log=True)
    assert live == logged
    rows = list(csv.reader(io.StringIO(live.decode())))
    assert rows[0] == ["place", "year", "period", "metric", "value", "as_of_seq"]
    assert {r[5] for r in rows[1:]} == {str(published.last_seq)}
    # the markdown, through the command: the same text but for the source line
    code, out, err = await antq("report", "--province", "04", "--year", "2018", "--from-log", env=env)
    assert code == 0, err
    live_md = (await make_report(published.settings, CAO_BANG, Y2018, "md")).decode()
    differ = [(a, b) for a, b in zip(live_md.splitlines(), out.splitlines(), strict=True) if a != b]
    assert [a.split(":")[0] for a, _ in differ] == ["- Nguồn số liệu"], differ

    # the printed command recomputes the province's figures from the log alone: the same rows
    code, out, err = await antq(
        "audit",
        "replay",
        "--province",
        "04",
        "--year",
        "2018",
        "--period",
        "calendar",
        "--to-seq",
        str(published.last_seq),
        "--format",
        "csv",
        env=env,
    )
    assert code == 0, err
    replayed = list(csv.reader(io.StringIO(out)))
    mine = [r for r in rows if r[0] == "04" and r[1] == "2018"]
    assert replayed[1:] == mine and len(mine) > 10

    # --to-seq cuts the log: two events earlier, the pledge and the mediation are not there yet
    code, out, err = await antq(
        "audit",
        "replay",
        "--province",
        "04",
        "--year",
        "2018",
        "--to-seq",
        str(published.last_seq - 2),
        "--format",
        "csv",
        env=env,
    )
    assert code == 0, err
    cut = {r[3]: r[4] for r in csv.reader(io.StringIO(out))}
    assert (cut["pledge_signatures"], cut["mediations_concluded"]) == ("0", "0")
    earlier = await make_report(
        published.settings, CAO_BANG, Y2018, "md", from_log=True, to_seq=published.last_seq - 2
    )
    assert f"Số thứ tự sự kiện (as_of_seq): {published.last_seq - 2}" in earlier.decode()
    assert "ký cam kết bảo đảm" not in earlier.decode()  # no sentence for a figure that is zero


def normalised(text: str) -> str:
    """NFC, and whitespace removed: a PDF lays text out in lines and cells, with spaces of its own."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFC", text))


async def test_the_pdfs_vietnamese_text_extracts_back_to_the_source(published: Published) -> None:
    doc = await report_document(published.settings, CAO_BANG, Y2018)
    pdf = render(doc, "pdf")
    assert pdf.startswith(b"%PDF-")
    extracted = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert normalised(extracted) == normalised(plain_text(doc))
    assert "1.546 lượt người nghe" in extracted and "Hội đồng ANTT" in extracted
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        return  # rendering a page needs poppler-utils; the text check above stands on its own
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    source = SCREENSHOT.with_suffix(".pdf")
    source.write_bytes(pdf)
    try:
        render_page = await asyncio.create_subprocess_exec(
            pdftoppm,
            "-png",
            "-r",
            "80",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(source),
            str(source.with_suffix("")),
        )
        assert await render_page.wait() == 0
    finally:
        source.unlink()
    assert SCREENSHOT.stat().st_size > 10_000


def cells(book: bytes, sheet: int) -> list[tuple[str, str | None, str]]:
    """(reference, type attribute, value) of every cell of a sheet, read from the XLSX's XML."""
    with zipfile.ZipFile(io.BytesIO(book)) as z:
        xml = z.read(f"xl/worksheets/sheet{sheet}.xml").decode()
        names = z.read("xl/workbook.xml").decode()
    assert names
    return [
        (ref, kind, value)
        for ref, kind, value in re.findall(
            r'<c r="([A-Z]+\d+)"[^>]*?(?: t="(\w+)")?[^>]*>(?:<v>([^<]*)</v>)?', xml
        )
    ]


async def test_the_workbook_has_sheets_of_figures_breakdowns_wards_and_provenance_with_numbers_as_numbers(
    published: Published,
) -> None:
    book = await make_report(published.settings, CAO_BANG, Y2018, "xlsx")
    with zipfile.ZipFile(io.BytesIO(book)) as z:
        workbook = z.read("xl/workbook.xml").decode()
    assert re.findall(r'<sheet name="([^"]+)"', workbook) == [
        "Chỉ tiêu",
        "Phân tổ",
        "Xã, phường",
        "Nguồn gốc",
    ]
    figures = {ref: (kind, value) for ref, kind, value in cells(book, 1)}
    # row 4 is the first metric (tips_received): C4 its 2018 figure, a number cell (no t="s")
    assert figures["C4"] == ("", "312") and figures["E4"] == ("", "312")
    assert figures["A4"][0] == "s"  # its label, a string
    numeric = [value for ref, kind, value in cells(book, 2) if ref.startswith("D") and kind == ""]
    assert "1546" in numeric and "5558" in numeric  # the breakdowns by level
    provenance = {ref: (kind, value) for ref, kind, value in cells(book, 4)}
    assert provenance["B5"] == ("", str(published.last_seq))  # as_of_seq, a number


async def test_the_html_is_one_file_that_fetches_nothing_and_a_ward_reports_its_reporting_year(
    published: Published, tmp_path: Path
) -> None:
    ward = Unit(kind="ward", code="01447")
    html = (
        await make_report(published.settings, ward, Span(first=2018, last=2018, period="reporting"), "html")
    ).decode()
    assert html.startswith("<!DOCTYPE html>") and '<html lang="vi">' in html
    assert not re.search(r"<script|<link|<img|src=|href=|url\(|@import", html)
    assert "Xã Trà Lĩnh, tỉnh Cao Bằng" in html
    assert "Năm báo cáo 2018 (15/12/2017 – 14/12/2018)" in html
    assert "Trong năm báo cáo 2018 (từ 15/12/2017 đến 14/12/2018)" in html
    assert "Bảng 2" not in html  # a ward has no wards below it
    code, out, err = await antq(
        "report", "--ward", "01447", "--years", "2017-2018", "--format", "md", env=env_of(published.stack)
    )
    assert code == 0, err
    text = flat(out)
    assert "Giai đoạn 2017–2018 (01/01/2017 – 31/12/2018)" in text
    rows = md_rows(out)
    assert rows["sessions_held.institution"][2:4] == ["1", "0"]  # 2017–2018 against 2015–2016
    assert rows["youth_under_management"][2:] == ["2", "1", "+1"]  # stocks: what stands at each end
    # a binary format goes to --out
    out_file = tmp_path / "tra-linh.pdf"
    code, out, err = await antq(
        "report",
        "--ward",
        "01447",
        "--year",
        "2018",
        "--format",
        "pdf",
        "--out",
        str(out_file),
        env=env_of(published.stack),
    )
    assert code == 0 and out == "", err
    assert "Xã Trà Lĩnh, tỉnh Cao Bằng" in flat(PdfReader(out_file).pages[0].extract_text())


async def test_unknown_and_pre_reform_units_are_refused_in_one_line() -> None:
    env = {"ANTQ_NATS_URL": "nats://127.0.0.1:1"}  # refused before any connection
    code, out, err = await antq("report", "--province", "99", "--year", "2018", env=env)
    assert code == 2 and "province 99 is not an official 2025 province code" in flat(err), err
    no_traceback(out, err)
    code, out, err = await antq(
        "report", "--scheme", "gso-pre2025", "--district", "999", "--year", "2018", env=env
    )
    assert code == 2 and "district 999 is no known pre-2025 district code" in flat(err), err
    code, out, err = await antq(
        "report", "--scheme", "gso-pre2025", "--ward", "01447", "--year", "2018", env=env
    )
    assert code == 2 and "--ward is a gso-2025 code" in flat(err), err
    code, out, err = await antq("report", "--ward", "01447", "--year", "2018", "--to-seq", "5", env=env)
    assert code == 2 and "--to-seq goes with --from-log" in flat(err)


async def test_on_the_secure_stack_the_report_reads_as_reader_and_its_seal_and_log_as_auditor(
    auth_stack: AuthStack, template: Servers, localities: Localities, offices_file: Path
) -> None:
    await fill(auth_stack, 0)  # the streams, created by the admin
    url = auth_stack.server.url
    database_url = await fresh_database(template)
    gateway = Gateway(
        GatewayConfig(
            nats_url=url,
            database_url=database_url,
            offices_path=offices_file,
            localities=localities,
            nats_options=auth_stack.options("gateway"),
        )
    )
    query = QueryService(
        QueryConfig(
            nats_url=url,
            database_url=database_url,
            localities=localities,
            nats_options=auth_stack.options("query"),
        )
    )
    projector = Projector(
        nats_url=url,
        database_url=database_url,
        localities=localities,
        nats_options=auth_stack.options("projector"),
    )
    async with gateway.app, query.app:
        await projector.start()
        try:
            office_nc = await auth_stack.connect("office-ca-cao-bang")
            await wait_until_answering(office_nc, "antq.intake.ca-cao-bang")
            office = OfficeClient(office_nc, "ca-cao-bang", timeout=20)
            sealed = await submit(office, [f.session(attendance=40) for _ in range(3)])
            async with Sealer(
                SealerConfig(
                    nats_url=url,
                    database_url=database_url,
                    signer=signer_from_seed(generate_seed()),
                    nats_options=auth_stack.options("sealer"),
                )
            ) as sealer:
                seal = await sealer.seal_once()
            assert seal is not None and seal.last_seq == sealed
            last = await submit(office, [f.session(attendance=5)])
            reader = await auth_stack.connect("reader")
            await query_stats(reader, {"ward": "01447", "year": 2018, "min_seq": last, "timeout_ms": 20_000})

            env = {"ANTQ_NATS_URL": url, "ANTQ_CREDENTIALS_DIR": str(auth_stack.generated.directory)}
            outputs = []
            for extra in ((), ("--from-log",)):
                code, out, err = await antq("report", "--ward", "01447", "--year", "2018", *extra, env=env)
                assert code == 0, err
                no_traceback(out, err)
                text = flat(out)
                assert (
                    "đã tổ chức tuyên truyền 4 cuộc tại các xã, phường, thị trấn với 125 lượt người nghe."
                    in text
                ), out
                assert f"Dấu niêm phong mới nhất: số {seal.number}, sự kiện 1–{sealed}" in text
                assert f"Sự kiện chưa được niêm phong: {last - sealed}" in text
                outputs.append(out.splitlines())
            differ = [a for a, b in zip(*outputs, strict=True) if a != b]
            assert [a.split(":")[0] for a in differ] == ["- Nguồn số liệu"]
        finally:
            await projector.stop()


async def test_a_pre_reform_district_reports_the_articles_figures_as_recorded_and_from_the_log(
    published: Published,
) -> None:
    """Huyện Trà Lĩnh (046) as the offices recorded it in 2018: the article's figures, its communes below, and
    the same numbers folded from the log alone."""
    district = Unit(scheme="gso-pre2025", kind="district", code="046")
    text = (await make_report(published.settings, district, Y2018, "md")).decode()
    assert "Huyện Trà Lĩnh, tỉnh Cao Bằng" in text
    rows = md_rows(text)
    for metric, value in ARTICLE.items():
        assert rows[metric][2] == vn(value), (metric, rows.get(metric))
    assert "01471" in rows and "Xã Cao Chương" in rows["01471"][1] + rows["01471"][0]  # a commune below
    live = await make_report(published.settings, district, Y2018, "csv")
    logged = await make_report(published.settings, district, Y2018, "csv", from_log=True)
    assert live == logged
    code, out, err = await antq(
        "report",
        "--scheme",
        "gso-pre2025",
        "--district",
        "046",
        "--year",
        "2018",
        env=env_of(published.stack),
    )
    assert code == 0 and "Huyện Trà Lĩnh" in out, err
