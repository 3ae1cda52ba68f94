"""What a reader of the pack sees: every PDF page keeps its text inside the printable area and
shows every column of every table; the charts are there; the dashboard sorts, filters and drills
down in a real browser.

The pack is the one the code location writes for the small demo estate (conftest.demo_run).
"""

from __future__ import annotations

import csv
import html.parser
import re
from collections import Counter
from pathlib import Path

import pdfplumber
import pytest

pytestmark = pytest.mark.slow

MM = 72 / 25.4
# The report's @page margins (left and right): A4 portrait 14 mm, landscape sections 12 mm.
PORTRAIT_MARGIN, LANDSCAPE_MARGIN = 14 * MM, 12 * MM


@pytest.fixture(scope="module")
def pack(demo_run) -> Path:
    (folder,) = [p.parent for p in demo_run[2].glob("*/manifest.json")]
    return folder


@pytest.fixture(scope="module")
def pdf_words(pack):
    """[(page number, page width, page height, words)] of the PDF."""
    with pdfplumber.open(pack / "compliance-report.pdf") as pdf:
        return [(n, page.width, page.height, page.extract_words(keep_blank_chars=False))
                for n, page in enumerate(pdf.pages, 1)]


class _Headings(html.parser.HTMLParser):
    """The text of every <th>, per table, and every chart's id."""

    def __init__(self):
        super().__init__()
        self.tables, self.charts, self._th = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "th":
            self._th = []
        elif tag == "figure":
            self.charts.append(dict(attrs).get("id"))

    def handle_endtag(self, tag):
        if tag == "th" and self._th is not None:
            text = " ".join("".join(self._th).split())
            if text:
                self.tables[-1].append(text)
            self._th = None

    def handle_data(self, data):
        if self._th is not None:
            self._th.append(data)


def _heading_on_page(words: list[dict], heading: str) -> bool:
    """The words of a heading, in one table cell: the first word, the others within that cell's
    column (close to its left edge) and a few lines below at most."""
    tokens = heading.split()
    for first in (w for w in words if w["text"] == tokens[0]):
        near = [w["text"] for w in words
                if abs(w["x0"] - first["x0"]) < 80 and 0 <= w["top"] - first["top"] < 40]
        near_same_line = [w["text"] for w in words if abs(w["top"] - first["top"]) < 2 and w["x0"] >= first["x0"]]
        if all(t in near or t in near_same_line for t in tokens[1:]):
            return True
    return False


def test_no_text_lies_outside_the_printable_width(pdf_words):
    outside = []
    total = 0
    for number, width, height, words in pdf_words:
        margin = LANDSCAPE_MARGIN if width > height else PORTRAIT_MARGIN
        for w in words:
            total += 1
            if w["x0"] < margin - 1 or w["x1"] > width - margin + 1 or w["bottom"] > height:
                outside.append((number, w["text"]))
    assert total > 2000  # the report is really there
    assert outside == []


def test_wide_tables_are_on_landscape_pages(pdf_words):
    orientation = {n: ("landscape" if w > h else "portrait") for n, w, h, _ in pdf_words}
    first = {}
    for number, _, _, words in pdf_words:
        text = " ".join(w["text"] for w in words)
        for title in ("Overdue gaps (highest priority first", "7. Exceptions and risk acceptances",
                      "8. Findings", "4. Criteria", "1. Identification"):
            if title in text and title not in first:
                first[title] = number
    assert orientation[first["1. Identification"]] == "portrait"
    for title in ("Overdue gaps (highest priority first", "7. Exceptions and risk acceptances", "8. Findings",
                  "4. Criteria"):
        assert orientation[first[title]] == "landscape", title


def test_every_column_heading_of_every_table_is_printed(pack, pdf_words):
    parser = _Headings()
    parser.feed((pack / "compliance-report.html").read_text(encoding="utf-8"))
    headings = Counter(h for table in parser.tables for h in table)
    # The columns the issue found cut off, by name: they must be among the headings.
    for name in ("KEV", "Due", "Days over", "Owner", "Authorization", "Expires", "Status", "Cause", "Effect",
                 "Recommendation"):
        assert name in headings, name
    # Only what is printed counts: text drawn beyond the printable width is in the file but not on paper.
    printed = [[w for w in words if w["x0"] >= margin - 1 and w["x1"] <= width - margin + 1]
               for _, width, height, words in pdf_words
               for margin in [LANDSCAPE_MARGIN if width > height else PORTRAIT_MARGIN]]
    missing = [h for h in headings if not any(_heading_on_page(words, h) for words in printed)]
    assert missing == []


def test_machines_are_named_in_the_body_and_identified_in_the_appendix(pack, pdf_words):
    with (pack / "populations" / "gaps.csv").open(encoding="utf-8") as handle:
        overdue = [r for r in csv.DictReader(handle) if int(r["days_overdue"] or 0) > 0]
    assert overdue
    # The report lists the overdue gaps by priority: the first of them is surely printed.
    overdue.sort(key=lambda r: (-float(r["priority"]), r["gap_id"]))
    pages = [" ".join(w["text"] for w in words) for _, _, _, words in pdf_words]
    appendix = next(i for i, text in enumerate(pages) if "Appendix A. Machines named in this report" in text)
    assert not any("/subscriptions/" in text for text in pages[:appendix])
    html = (pack / "compliance-report.html").read_text(encoding="utf-8")
    body = html[:html.index("Appendix A. Machines named")]
    assert f'<td>{overdue[0]["vm_name"]}</td>' in body and overdue[0]["vm_id"] not in body
    # The appendix gives the id of a machine the body names (ids wrap inside their cell).
    appendix_text = re.sub(r"\s+", "", " ".join(pages[appendix:]))
    assert overdue[0]["vm_id"] in appendix_text


def test_criteria_is_one_row_per_framework_citing_its_clause(pack):
    parser = _Headings()
    parser.feed((pack / "compliance-report.html").read_text(encoding="utf-8"))
    html = (pack / "compliance-report.html").read_text(encoding="utf-8")
    section = html[html.index("<h2>4. Criteria</h2>"):html.index("<h2>5. Method and data proof</h2>")]
    assert section.count("Requirement 6.3.3") == 1  # PCI DSS: one row, its own clause
    assert section.count("RA-5(d)") == 1  # FedRAMP
    assert "compliance.md" not in html
    # The BOD 26-04 decision table as a 4 x 4 grid (16 combinations), not 16 rows of prose.
    grid = section[section.index("BOD 26-04 Table 1"):]
    assert grid.count("<tr><th>KEV yes, exposed ") + grid.count("<tr><th>KEV no, exposed ") == 4


def test_the_charts_are_in_the_report_and_the_pdf(pack, pdf_words):
    parser = _Headings()
    parser.feed((pack / "compliance-report.html").read_text(encoding="utf-8"))
    assert {"chart-trend", "chart-aging", "chart-sla_share", "chart-time_to_patch", "chart-coverage"} <= set(parser.charts)
    text = " ".join(w["text"] for _, _, _, words in pdf_words for w in words)
    for title in ("Compliance over the period", "Open gaps by age", "Share within SLA per framework",
                  "Time to patch per severity", "Assessment coverage"):
        assert title in text, title
    dashboard = (pack / "dashboard.html").read_text(encoding="utf-8")
    assert dashboard.count("<svg") >= 5


def test_the_aging_and_coverage_series_match_the_populations(pack, demo_run):
    """The charts' figures, recounted by hand from the pack's own population files."""
    import duckdb

    from pipelines.reporting.queries import chart_data, report_as_of

    with (pack / "populations" / "gaps.csv").open(encoding="utf-8") as handle:
        gaps = [r for r in csv.DictReader(handle) if r["gap_type"] != "stale_assessment"]
    expected = Counter()
    for g in gaps:
        age = int(g["age_days"])
        bucket = ("0-7 days" if age <= 7 else "8-30 days" if age <= 30 else "31-60 days" if age <= 60
                  else "61-90 days" if age <= 90 else "over 90 days")
        expected[(bucket, "overdue" if int(g["days_overdue"] or 0) > 0 else "within_sla")] += 1
    with (pack / "populations" / "machines.csv").open(encoding="utf-8") as handle:
        machines = list(csv.DictReader(handle))
    conn = duckdb.connect(str(demo_run[1]), read_only=True)
    try:
        series = chart_data(conn, report_as_of(conn, None), {"gaps_by_type": []})
    finally:
        conn.close()
    found = Counter()
    for row in series["aging"]:
        found[(row["bucket"], "overdue")] += row["overdue"]
        found[(row["bucket"], "within_sla")] += row["within_sla"]
    assert +found == +expected
    stale_now = sum(1 for m in machines if m["coverage_status"] == "unknown_stale")
    assert sum(r["stale"] + r["never_assessed"] for r in series["coverage"]) == stale_now
    assert sum(r["assessed"] for r in series["coverage"]) == len(machines) - stale_now
    # The trend's stale machines on the as-of day are the inventory's stale machines.
    last_day = max(r["day"] for r in series["trend"])
    assert {r["stale_machines"] for r in series["trend"] if r["day"] == last_day} == {stale_now}


def _cells(dom: str, column: str) -> list[str]:
    """The text of one column of the dashboard's grid, from the DOM Chromium rendered."""
    head = re.search(r'<table id="grid"><thead><tr>(.*?)</tr>', dom, re.S).group(1)
    names = re.findall(r'data-column="([^"]+)"', head)
    body = re.search(r'<tbody>(.*?)</tbody>', dom, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    index = names.index(column)
    return [re.sub(r"<[^>]+>", "", re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[index]) for row in rows]


def test_the_dashboard_sorts_filters_and_drills_down_in_a_browser(pack, browser_dom):
    board = pack / "dashboard.html"
    with (pack / "populations" / "gaps.csv").open(encoding="utf-8") as handle:
        gaps = list(csv.DictReader(handle))
    with (pack / "populations" / "authorization_events.csv").open(encoding="utf-8") as handle:
        events = list(csv.DictReader(handle))

    dom = browser_dom(board, "tab=gaps&sort=days_overdue&dir=desc")
    assert 'data-ready="gaps"' in dom  # the script ran
    days = [int(d) for d in _cells(dom, "days_overdue")]
    assert len(days) == min(500, len(gaps))
    assert days == sorted((int(g["days_overdue"]) for g in gaps), reverse=True)[:len(days)]

    dom = browser_dom(board, "tab=gaps&f.gap_type=pending_reboot")
    shown = _cells(dom, "gap_type")
    assert shown == ["pending_reboot"] * sum(1 for g in gaps if g["gap_type"] == "pending_reboot")

    vm = Counter(g["vm_id"] for g in gaps).most_common(1)[0]
    dom = browser_dom(board, f"tab=machines&vm={vm[0]}")
    assert f'data-vm="{vm[0]}"' in dom
    assert f"<h3>Open gaps ({vm[1]})</h3>" in dom

    patch = Counter(e["patch_key"] for e in events).most_common(1)[0]
    dom = browser_dom(board, f"tab=patches&patch={patch[0]}")
    assert f"<h3>Authorization chain ({patch[1]})</h3>" in dom


def test_the_dashboard_needs_nothing_from_the_network(pack):
    text = (pack / "dashboard.html").read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "default-src 'none'" in text


def test_the_workbook_is_what_analysts_expect(pack):
    from datetime import datetime

    from openpyxl import load_workbook
    from openpyxl.utils import get_column_letter

    book = load_workbook(pack / "populations.xlsx", read_only=False)
    csvs = sorted(p.stem for p in (pack / "populations").glob("*.csv"))
    assert sorted(book.sheetnames) == csvs  # one sheet per population
    for name in book.sheetnames:
        sheet = book[name]
        with (pack / "populations" / f"{name}.csv").open(encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        last = f"{get_column_letter(len(rows[0]))}{max(len(rows), 2)}"
        assert sheet.freeze_panes == "A2", name
        assert sheet.auto_filter.ref == f"A1:{last}", name
        assert [c.value for c in sheet[1]] == rows[0]
        assert sheet[1][0].font.bold
    gaps = book["gaps"]
    header = [c.value for c in gaps[1]]
    first = [c.value for c in gaps[2]]
    row = dict(zip(header, first, strict=True))
    assert isinstance(row["days_overdue"], int) and isinstance(row["in_kev"], bool)
    assert isinstance(row["first_seen_at"], datetime)
    # The title column is sized to its text, wider than a short id column.
    widths = {header[i]: gaps.column_dimensions[get_column_letter(i + 1)].width for i in range(len(header))}
    assert widths["title"] > widths["kb"]
    titles = gaps[get_column_letter(header.index("title") + 1)][1:]
    longest = max(len(c.value or "") for c in titles)
    assert widths["title"] >= min(longest, 60) - 1  # characters (Excel's width unit, less its padding)
