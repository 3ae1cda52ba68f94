"""The populations workbook: rows written as XML straight into the sheet give the same bytes as
XlsxWriter's own per-cell calls, whatever the values."""

from __future__ import annotations

import hashlib
import math
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from pipelines.reporting import workbook

COLUMNS = ["text", "flag", "number", "seen_at", "day", "other"]
ROWS = [
    # Rare first: the header row is then still held by XlsxWriter when a direct row follows.
    ("<r>rich</r>", True, 1, None, None, None),
    ("plain", False, 2.5, datetime(2026, 11, 27, 6, 30, tzinfo=UTC), date(2026, 11, 27), None),
    (" leading and trailing ", None, -7, datetime(2026, 11, 27, 8, 0, tzinfo=timezone(timedelta(hours=2))),
     date(1900, 2, 1), None),
    ("a & b < c > d \"quoted\"\nline", True, 1e-9, datetime(2026, 1, 2, 3, 4, 5, 600000), None, None),
    ("=SUM(A1)", None, 10**17, None, None, None),
    ("ctrl \x01 \x1f tab\t", None, math.nan, None, None, None),
    ("_x0041_ escaped escape", None, math.inf, None, None, None),
    ("non-characters \ufffe \uffff", None, 0, None, None, None),
    ("", None, None, None, None, None),                     # no cell at all: no row
    (None, None, None, None, None, None),
    ("decimal and list", None, None, None, None, Decimal("1.25")),  # another type: per-cell calls
    ("after the per-cell row", True, 3, None, date(2026, 11, 28), None),
    ("x" * (workbook._EXCEL_MAX_TEXT // 2 + 1), None, None, None, None, ["a", "b"]),  # long text
    ("last", False, 4, datetime(2026, 11, 27, tzinfo=UTC), None, None),
]


def _sheets(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_direct_rows_are_byte_identical_to_xlsxwriters_own(tmp_path, monkeypatch):
    # Dates are first used in the second sheet: the formats' indexes follow first use.
    populations = {"numbers": (["n", "label"], [(i, f"row {i}") for i in range(40)]),
                   "mixed": (COLUMNS, ROWS), "empty": (["a"], [])}
    direct = tmp_path / "direct.xlsx"
    workbook.write_workbook(direct, populations, date(2026, 11, 27))
    monkeypatch.setattr(workbook, "_row_xml", lambda *args: None)  # every row through XlsxWriter's calls
    own = tmp_path / "own.xlsx"
    workbook.write_workbook(own, populations, date(2026, 11, 27))
    assert _sheets(direct) == _sheets(own)
    assert hashlib.sha256(direct.read_bytes()).hexdigest() == hashlib.sha256(own.read_bytes()).hexdigest()


def test_direct_rows_hold_the_values(tmp_path):
    """Read back with openpyxl: text neutralized and escaped back, numbers, booleans and dates
    typed, nothing written for None, "" or NaN; the other types as _cell writes them."""
    from openpyxl import load_workbook

    path = tmp_path / "book.xlsx"
    workbook.write_workbook(path, {"mixed": (COLUMNS, ROWS)}, date(2026, 11, 27))
    sheet = load_workbook(path)["mixed"]
    values = [tuple(cell.value for cell in row) for row in sheet.iter_rows(min_row=2, max_row=9)]
    # openpyxl reads a date-formatted cell back as a datetime
    assert values[1] == ("plain", False, 2.5, datetime(2026, 11, 27, 6, 30), datetime(2026, 11, 27), None)
    assert values[2][0] == " leading and trailing " and values[2][3] == datetime(2026, 11, 27, 6, 0)
    assert values[3][0] == "a & b < c > d \"quoted\"\nline" and values[3][1] is True
    assert values[4][:3] == ("'=SUM(A1)", None, 10**17)
    # Control characters as Excel's _xHHHH_ escapes, and a literal escape escaped (openpyxl
    # shows the escapes; Excel reads them back as the characters).
    assert values[5][0] == "ctrl _x0001_ _x001F_ tab\t" and values[5][2] is None
    assert values[6][0] == "_x005F_x0041_ escaped escape"
    assert sheet.cell(row=12, column=6).value == 1.25
    assert sheet.cell(row=13, column=5).value == datetime(2026, 11, 28)
    assert sheet.cell(row=14, column=6).value == "a;b"
    assert [c.value for c in sheet[10]] == [None] * 6 and [c.value for c in sheet[11]] == [None] * 6
