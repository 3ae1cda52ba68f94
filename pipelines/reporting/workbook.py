"""The populations as files: one CSV each and one workbook with a sheet per population.

Cells are typed (numbers, dates, booleans), text is written as text and neutralized so that no
spreadsheet program executes it, and the bytes depend on the content only.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

# Spreadsheet programs execute cells that start with these; prefix them with a quote.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def write_csv(path: Path, rows: list[tuple], columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_csv_value(v) for v in row] for row in rows)


# Values the csv module writes as they are (None as an empty field).
_CSV_PLAIN = frozenset({int, float, bool, type(None)})


def _csv_value(value: Any) -> Any:
    """neutralize(_text(value)), with the common types first: the inner loop of the CSVs."""
    kind = type(value)
    if kind is str:
        return "'" + value if value.startswith(FORMULA_PREFIXES) else value
    if kind in _CSV_PLAIN:
        return value
    return neutralize(_text(value))


def _text(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _cell(value: Any) -> Any:
    """A typed spreadsheet cell: numbers, dates and booleans stay typed; text is neutralized."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, (list, dict)):
        return neutralize(json.dumps(value, default=str) if isinstance(value, dict) else ";".join(map(str, value)))
    if hasattr(value, "as_tuple"):  # Decimal
        return float(value)
    return neutralize(value)


# Excel's serial dates: days since 1899-12-30, the fraction of the day after the point (with
# Excel's phantom 1900-02-29 below day 61), as openpyxl computed them.
_EXCEL_EPOCH = date(1899, 12, 30).toordinal()
# Excel's limit on the text of a cell, in UTF-16 code units.
_EXCEL_MAX_TEXT = 32767


def _excel_serial(value: date) -> float:
    days = value.toordinal() - _EXCEL_EPOCH
    if 0 < days <= 60:
        days -= 1
    if isinstance(value, datetime):
        seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 10**6
        return days + seconds / 86400
    return days


def _excel_text(value: str) -> str:
    """Cut to Excel's limit here, not in XlsxWriter, so that the check in _write_text sees the
    text that is written."""
    if len(value) > _EXCEL_MAX_TEXT // 2:
        units = value.encode("utf-16-le", "surrogatepass")
        if len(units) > 2 * _EXCEL_MAX_TEXT:
            units = units[:2 * _EXCEL_MAX_TEXT]
            if 0xD800 <= int.from_bytes(units[-2:], "little") <= 0xDBFF:  # half a pair
                units = units[:-2]
            value = units.decode("utf-16-le", "surrogatepass")
    return value


def _write_text(sheet: Any, row: int, col: int, value: str) -> None:
    """Text as text, whatever it contains. XlsxWriter copies a string that starts with "<r>" and
    ends with "</r>" into the sheet unescaped, as rich-text XML: a hostile value could then
    inject cells (formulas included). Such values are written as a rich string of plain
    fragments instead, which XlsxWriter escapes; the cell's text is the same."""
    value = _excel_text(value)
    if value.startswith("<r>") and value.endswith("</r>"):
        sheet.write_rich_string(row, col, value[0], value[1], value[2:])
    elif value:
        sheet.write_string(row, col, value)


def write_workbook(path: Path, populations: dict[str, tuple[list[str], list[tuple]]], as_of: date) -> None:
    """One sheet per population: the header row (frozen), then typed cells, text neutralized.

    XlsxWriter in constant_memory mode streams each row to a temporary file as it is written,
    several times faster than openpyxl. Its zip entries carry a fixed date, and docProps/core.xml
    the `created` property (the as-of date) as both its created and modified dates, never the
    wall clock: the bytes depend on the content only.
    """
    import xlsxwriter

    stamp = datetime(as_of.year, as_of.month, as_of.day)
    options = {
        "constant_memory": True,
        # Text is only ever written with write_string: never a formula, number or link.
        "strings_to_formulas": False, "strings_to_numbers": False, "strings_to_urls": False,
    }
    try:
        with xlsxwriter.Workbook(str(path), options) as workbook:
            workbook.set_properties({"author": "PatchLedger", "created": stamp})
            # The number formats openpyxl gave these types.
            formats = {
                datetime: workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
                date: workbook.add_format({"num_format": "yyyy-mm-dd"}),
                time: workbook.add_format({"num_format": "h:mm:ss"}),
                timedelta: workbook.add_format({"num_format": "[hh]:mm:ss"}),
            }
            header = workbook.add_format({"bold": True, "bg_color": "#EEF2F7", "bottom": 1})
            for name, (columns, rows) in populations.items():
                sheet = workbook.add_worksheet(name[:31])
                sheet.freeze_panes(1, 0)
                # The filter buttons on the header row, over every row of the population.
                sheet.autofilter(0, 0, max(len(rows), 1), max(len(columns) - 1, 0))
                for index, column in enumerate(columns):
                    sheet.set_column_pixels(index, index, 7 * column_width(column, rows, index))
                    sheet.write_string(0, index, neutralize(column), header)
                _write_rows(sheet, rows, formats)
    except BaseException:
        path.unlink(missing_ok=True)  # no half-written workbook in the pack
        raise


# Characters of the widest cell a column is sized for, and how many rows are looked at.
_MAX_WIDTH, _WIDTH_SAMPLE = 60, 500
_TYPED_WIDTH = {datetime: 19, date: 10, bool: 5}


def column_width(column: str, rows: list[tuple], index: int) -> int:
    """Characters a column needs: its header, or its widest value among the first rows (dates
    and booleans at their printed width), between 8 and _MAX_WIDTH, plus room for the filter
    button."""
    widest = len(column) + 3
    for row in rows[:_WIDTH_SAMPLE]:
        value = row[index]
        if value is None:
            continue
        widest = max(widest, _TYPED_WIDTH.get(type(value)) or len(str(_text(value))))
    return max(8, min(_MAX_WIDTH, widest + 1))


def _write_rows(sheet: Any, rows: list[tuple], formats: dict[type, Any]) -> None:
    """The rows below the header: each as XML straight into the sheet's row file when all its
    values are of the common types (_row_xml), else through XlsxWriter's own calls."""
    from xlsxwriter.utility import xl_col_to_name

    letters = [xl_col_to_name(col) for col in range(len(rows[0]) if rows else 0)]
    xf_index: dict[type, int] = {}
    for number, row in enumerate(rows, start=1):
        xml = (_row_xml(sheet, number, row, letters, formats, xf_index)
               if len(row) == len(letters) and number < sheet.xls_rowmax else None)
        if xml is None:
            _write_row_cells(sheet, number, row, formats)
        elif xml:  # as XlsxWriter leaves it after writing the row: nothing held, the row counted
            if number > sheet.previous_row:
                sheet._write_single_row(number)  # the row before, if XlsxWriter still holds it
            sheet.fh.write(xml)
            sheet.previous_row = number + 1
            sheet.dim_rowmax = number


# Text that neither of XlsxWriter's escapes changes (control characters, "_x", &, <, >).
_PLAIN_TEXT = re.compile(r"[^\x00-\x08\x0b-\x1f&<>\ufffe\uffff]*")


def _row_xml(sheet: Any, number: int, row: tuple, letters: list[str], formats: dict[type, Any],
             xf_index: dict[type, int]) -> str | None:
    """The <row> element XlsxWriter writes for the row in constant_memory mode (inline strings
    with its own escapes, `.16G` numbers, the formats' indexes), '' for a row without a cell,
    or None for a value of another type or a rare case (long text, rich-text markup). Its
    per-cell calls cost several times the XML itself; tests/test_workbook.py compares the bytes
    with XlsxWriter's own for every kind of value."""
    from xlsxwriter.utility import _preserve_whitespace

    cells = []
    line = str(number + 1)
    for col, value in enumerate(row):
        kind = type(value)
        if kind is str:
            if value.startswith(FORMULA_PREFIXES):
                value = "'" + value
            if len(value) > _EXCEL_MAX_TEXT // 2 or value.startswith("<r>"):
                return None
            if not value:
                continue
            plain = "_x" not in value and _PLAIN_TEXT.fullmatch(value)
            if not plain:
                value = sheet._escape_control_characters(value)
            space = ' xml:space="preserve"' if _preserve_whitespace(value) else ""
            if not plain:
                value = sheet._escape_data(value)
            cells.append(f'<c r="{letters[col]}{line}" t="inlineStr"><is><t{space}>{value}</t></is></c>')
        elif value is None:
            continue
        elif kind is bool:
            cells.append(f'<c r="{letters[col]}{line}" t="b"><v>{1 if value else 0}</v></c>')
        elif kind is int or kind is float:
            if math.isfinite(value):  # NaN and infinities have no cell value in Excel
                cells.append(f'<c r="{letters[col]}{line}"><v>{value:.16G}</v></c>')
        elif kind is datetime or kind is date:
            if kind is datetime and value.tzinfo:
                value = value.astimezone(UTC).replace(tzinfo=None)
            if kind not in xf_index:  # numbered on first use, as XlsxWriter does
                xf_index[kind] = formats[kind]._get_xf_index()
            cells.append(f'<c r="{letters[col]}{line}" s="{xf_index[kind]}"><v>{_excel_serial(value):.16G}</v></c>')
        else:
            return None
    return f'<row r="{line}">{"".join(cells)}</row>' if cells else ""


def _write_row_cells(sheet: Any, number: int, row: tuple, formats: dict[type, Any]) -> None:
    """One row through XlsxWriter's calls: the common types first, the rest through _cell."""
    datetime_format, date_format = formats[datetime], formats[date]
    for col, value in enumerate(row):
        kind = type(value)
        if kind is str:
            if value.startswith(FORMULA_PREFIXES):
                value = "'" + value
            if len(value) > _EXCEL_MAX_TEXT // 2 or value.startswith("<r>"):
                _write_text(sheet, number, col, value)  # the rare cases, checked there
            elif value:
                sheet.write_string(number, col, value)
        elif value is None:
            continue
        elif kind is bool:
            sheet.write_boolean(number, col, value)
        elif kind is int or kind is float:
            if math.isfinite(value):  # NaN and infinities have no cell value in Excel
                sheet.write_number(number, col, value)
        elif kind is datetime:
            if value.tzinfo:
                value = value.astimezone(UTC).replace(tzinfo=None)
            sheet.write_number(number, col, _excel_serial(value), datetime_format)
        elif kind is date:
            sheet.write_number(number, col, _excel_serial(value), date_format)
        else:
            _write_other(sheet, number, col, value, formats)


def _write_other(sheet: Any, row: int, col: int, value: Any, formats: dict[type, Any]) -> None:
    value = _cell(value)
    if isinstance(value, bool):
        sheet.write_boolean(row, col, value)
    elif isinstance(value, numbers.Real):
        if math.isfinite(value):
            sheet.write_number(row, col, value)
    elif isinstance(value, date):  # datetime included
        sheet.write_number(row, col, _excel_serial(value), formats[datetime if isinstance(value, datetime) else date])
    elif isinstance(value, time):
        seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 10**6
        sheet.write_number(row, col, seconds / 86400, formats[time])
    elif isinstance(value, timedelta):
        sheet.write_number(row, col, value.total_seconds() / 86400, formats[timedelta])
    elif isinstance(value, str):
        _write_text(sheet, row, col, value)
    elif value is not None:  # any other type (UUID, bytes...) as its text
        _write_text(sheet, row, col, neutralize(str(value)))
