"""The compliance report: HTML (with charts), PDF, population CSVs and a manifest, per as-of date.

Everything is read from the warehouse; nothing depends on the wall clock, so the same warehouse
and as-of date give byte-identical files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import numbers
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import jinja2

import pipelines
from pipelines.warehouse import table_exists

TEMPLATES = Path(__file__).parent / "templates"
SEVERITIES = ["Critical", "Important", "Moderate", "Low"]
CRITICALITIES = ["critical", "high", "medium", "low"]
GAP_LABELS = {
    "authorized_missing": "Authorized but missing",
    "failed_reapply": "Failed, to reapply",
    "pending_reboot": "Installed, reboot pending",
    "available_unauthorized": "Available, not authorized",
    "installed_unauthorized": "Installed without authorization",
    "installed_rejected": "Installed although rejected",
    "untested_in_production": "In production without a test",
    "stale_assessment": "Assessment stale",
}
# Spreadsheet programs execute cells that start with these; prefix them with a quote.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _rows(conn: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    cursor = conn.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _scalar(conn, sql: str, params: list | None = None, default: Any = 0) -> Any:
    value = conn.execute(sql, params or []).fetchone()
    return default if value is None or value[0] is None else value[0]


def report_as_of(conn: duckdb.DuckDBPyConnection, as_of: date | None) -> date:
    if as_of:
        return as_of
    if table_exists(conn, "marts.compliance_gaps"):
        found = _scalar(conn, "SELECT max(as_of) FROM marts.compliance_gaps", default=None)
        if found:
            return found
    from pipelines.warehouse import resolve_as_of

    return resolve_as_of(conn, None)


def report_data(conn: duckdb.DuckDBPyConnection, as_of: date) -> dict[str, Any]:
    """Every figure of the report, each from one query over the marts."""
    data: dict[str, Any] = {
        "as_of": as_of.isoformat(), "code_version": pipelines.__version__,
        # Every section's figures, empty until their table is found: a warehouse built from
        # a partial estate still gets a report, with the missing parts said to be missing.
        "scope": None, "catalog": None, "gap_total": None, "criteria": [], "stale_machines": [],
        "gaps_by_type": [], "matrix": [], "criticalities": CRITICALITIES, "overdue_by_framework": [],
        "overdue": [], "overdue_total": 0, "kev_overdue": 0, "unauthorized_installs": [],
        "findings": [], "audit_findings": [], "audit_findings_total": 0, "exceptions": [],
    }
    has = {t: table_exists(conn, t) for t in (
        "marts.vm_inventory", "marts.compliance_gaps", "marts.patch_catalog", "staging.sla_policy",
        "marts.authorization_status", "marts.authorization_findings", "staging.exceptions",
        "marts.vm_patch_state",
    )}
    data["has"] = has
    if has["marts.vm_inventory"]:
        data["scope"] = _rows(conn, """
            SELECT count(*) AS machines,
                   count(*) FILTER (WHERE machine_kind = 'azure_vm') AS azure_vms,
                   count(*) FILTER (WHERE machine_kind = 'arc') AS arc,
                   count(*) FILTER (WHERE machine_kind = 'non_azure') AS non_azure,
                   count(*) FILTER (WHERE last_assessed_at IS NOT NULL) AS ever_assessed,
                   count(*) FILTER (WHERE coverage_status = 'assessed') AS assessed_recently,
                   count(*) FILTER (WHERE coverage_status = 'unknown_stale') AS stale,
                   count(*) FILTER (WHERE environment = 'production') AS production
            FROM marts.vm_inventory""")[0]
        data["stale_machines"] = _rows(conn, """
            SELECT vm_id, name, environment, owner, last_assessed_at, assessment_age_days
            FROM marts.vm_inventory WHERE coverage_status = 'unknown_stale'
            ORDER BY assessment_age_days DESC NULLS FIRST, vm_id""")
    if has["marts.patch_catalog"]:
        data["catalog"] = _rows(conn, """
            SELECT count(*) AS patches, count(*) FILTER (WHERE exploited) AS exploited,
                   count(*) FILTER (WHERE in_kev) AS in_kev
            FROM marts.patch_catalog""")[0]
    if has["staging.sla_policy"]:
        data["criteria"] = _rows(conn, """
            SELECT framework, title, clause, clock, scope, severity, days, months, policy_version
            FROM staging.sla_policy ORDER BY framework, severity NULLS FIRST""")
    if has["marts.compliance_gaps"]:
        data["gaps_by_type"] = [
            {"gap_type": t, "label": GAP_LABELS[t], **row}
            for t in GAP_LABELS
            for row in _rows(conn, """
                SELECT count(*) AS gaps, count(DISTINCT vm_id) AS machines,
                       count(*) FILTER (WHERE days_overdue > 0) AS overdue
                FROM marts.compliance_gaps WHERE gap_type = ?""", [t])
        ]
        matrix = _rows(conn, """
            SELECT severity, criticality, count(*) AS gaps
            FROM marts.compliance_gaps
            WHERE gap_type IN ('authorized_missing', 'available_unauthorized', 'failed_reapply', 'pending_reboot')
            GROUP BY ALL""")
        cells = {(r["severity"], r["criticality"]): r["gaps"] for r in matrix}
        data["matrix"] = [
            {"severity": s, "cells": [cells.get((s, c), 0) for c in CRITICALITIES]} for s in SEVERITIES
        ]
        data["criticalities"] = CRITICALITIES
        data["overdue_by_framework"] = _rows(conn, """
            SELECT sla_framework AS framework, count(*) AS overdue, max(days_overdue) AS worst_days
            FROM marts.compliance_gaps WHERE days_overdue > 0 GROUP BY ALL ORDER BY ALL""")
        data["overdue"] = _rows(conn, """
            SELECT gap_id, vm_name, patch_key, title, gap_type, severity, in_kev, sla_framework,
                   sla_due, days_overdue, owner, priority
            FROM marts.compliance_gaps WHERE days_overdue > 0
            ORDER BY priority DESC, gap_id LIMIT 40""")
        data["overdue_total"] = _scalar(
            conn, "SELECT count(*) FROM marts.compliance_gaps WHERE days_overdue > 0")
        data["kev_overdue"] = _scalar(conn, """
            SELECT count(*) FROM marts.compliance_gaps WHERE in_kev AND sla_kev_due < as_of""")
        data["unauthorized_installs"] = _rows(conn, """
            SELECT gap_id, vm_name, patch_key, title, gap_type, authorization_status, environment
            FROM marts.compliance_gaps
            WHERE gap_type IN ('installed_unauthorized', 'installed_rejected', 'untested_in_production')
            ORDER BY gap_type, vm_name, patch_key LIMIT 60""")
        data["gap_total"] = _scalar(conn, "SELECT count(*) FROM marts.compliance_gaps")
    if table_exists(conn, "marts.audit_findings"):
        data["audit_findings"] = _rows(conn, """
            SELECT finding_id, rule, severity, criteria, condition, cause, effect, recommendation
            FROM marts.audit_findings
            ORDER BY CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, rule, finding_id
            LIMIT 60""")
        data["audit_findings_total"] = _scalar(conn, "SELECT count(*) FROM marts.audit_findings")
    # The automatic-updates control: machines per environment (of each period) and status.
    data["auto_updates"] = _rows(conn, """
        SELECT coalesce(environment, '(production scope)') AS environment, count(DISTINCT vm_id) AS machines,
               count(DISTINCT vm_id) FILTER (WHERE status = 'violation') AS self_updating,
               count(DISTINCT vm_id) FILTER (WHERE status = 'unverified') AS unverified,
               count(DISTINCT vm_id) FILTER (WHERE status = 'excepted') AS excepted,
               count(DISTINCT vm_id) FILTER (WHERE status = 'allowed_non_production'
                                               AND self_updating IS NOT false) AS allowed
        FROM marts.auto_update_periods GROUP BY ALL ORDER BY ALL""") if table_exists(
        conn, "marts.auto_update_periods") else []
    if has["marts.authorization_findings"]:
        data["findings"] = _rows(conn, """
            SELECT finding_id, rule, severity, subject, condition
            FROM marts.authorization_findings ORDER BY severity, rule, finding_id""")
    if has["staging.exceptions"]:
        data["exceptions"] = _rows(conn, """
            SELECT exception_id, coalesce(vm_id, asset_category) AS scope, patch_key, cve, reason,
                   compensating_control, risk_owner, approver, approved_at, expires_at, status,
                   (status = 'active' AND expires_at < ?::DATE) AS expired
            FROM staging.exceptions ORDER BY exception_id""", [as_of])
    data["tables"] = _rows(conn, """
        SELECT schema_name || '.' || table_name AS name, estimated_size AS rows, comment
        FROM duckdb_tables() WHERE schema_name IN ('raw', 'marts', 'ledger')
        ORDER BY schema_name, table_name""")
    for table in data["tables"]:
        table["rows"] = _scalar(conn, f'SELECT count(*) FROM {table["name"]}')  # names come from the catalog
    return data


def _chart_svg(data: dict[str, Any]) -> str:
    """Open gaps by type as a horizontal bar chart, SVG text (deterministic ids, no date)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "patchledger"
    matplotlib.rcParams["svg.fonttype"] = "none"
    rows = [r for r in data.get("gaps_by_type", []) if r["gaps"]]
    if not rows:
        return ""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 0.8))
    labels = [r["label"] for r in rows][::-1]
    ax.barh(labels, [r["gaps"] - r["overdue"] for r in rows][::-1], color="#4c78a8", label="within SLA")
    ax.barh(labels, [r["overdue"] for r in rows][::-1],
            left=[r["gaps"] - r["overdue"] for r in rows][::-1], color="#e45756", label="overdue")
    ax.set_xlabel("gaps")
    ax.legend(loc="lower right", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def _timestamp(value: Any) -> str:
    """Timestamps in the report: UTC to the minute."""
    from datetime import datetime

    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value.tzinfo else f"{value:%Y-%m-%d %H:%M}"
    return "" if value is None else str(value)


def render_html(data: dict[str, Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["ts"] = _timestamp
    env.filters["first_sentence"] = lambda text: (text or "").split(". ")[0].rstrip(".")
    return env.get_template("report.html.j2").render(d=data, chart=_chart_svg(data))


# Each population an auditor may sample: (table, stable id column). Written sorted by the id.
POPULATIONS = {
    "gaps": ("marts.compliance_gaps", "gap_id"),
    "audit_findings": ("marts.audit_findings", "finding_id"),
    "remediation_schedule": ("marts.remediation_schedule", "gap_id"),
    "authorization_events": ("marts.authorization_events", "authorization_event_id"),
    "authorization_findings": ("marts.authorization_findings", "finding_id"),
    "install_findings": ("marts.authorization_install_findings", "finding_id"),
    "exceptions": ("staging.exceptions", "exception_id"),
    "patch_lifecycle": ("marts.patch_lifecycle", "patch_key"),
    "machines": ("marts.vm_inventory", "vm_id"),
}


def _population(conn: duckdb.DuckDBPyConnection, name: str) -> tuple[list[str], list[tuple]]:
    """(columns, rows as tuples): by the stable id, then every column, so that ties can never
    reorder the file."""
    table, id_column = POPULATIONS[name]
    columns = [d[0] for d in conn.execute(f"SELECT * FROM {table} LIMIT 0").description]
    order = ", ".join(f'"{c}"' for c in [id_column, *[c for c in columns if c != id_column]])
    return columns, conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()  # names from POPULATIONS


def population_rows(conn: duckdb.DuckDBPyConnection, name: str) -> list[dict]:
    """The population as dicts, in the order of its files."""
    columns, rows = _population(conn, name)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _write_csv(path: Path, rows: list[tuple], columns: list[str]) -> None:
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


def _write_workbook(path: Path, populations: dict[str, tuple[list[str], list[tuple]]], as_of: date) -> None:
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
            for name, (columns, rows) in populations.items():
                sheet = workbook.add_worksheet(name[:31])
                sheet.freeze_panes(1, 0)
                for index, column in enumerate(columns):
                    # At 7 pixels a character the file says exactly this width, as before.
                    sheet.set_column_pixels(index, index, 7 * min(45, max(10, len(column) + 2)))
                    _write_text(sheet, 0, index, column)
                _write_rows(sheet, rows, formats)
    except BaseException:
        path.unlink(missing_ok=True)  # no half-written workbook in the pack
        raise


def _write_rows(sheet: Any, rows: list[tuple], formats: dict[type, Any]) -> None:
    """The inner loop of the workbook: the common types first, the rest through _cell."""
    write_string, write_number, write_boolean = sheet.write_string, sheet.write_number, sheet.write_boolean
    datetime_format, date_format = formats[datetime], formats[date]
    for number, row in enumerate(rows, start=1):
        for col, value in enumerate(row):
            kind = type(value)
            if kind is str:
                if value.startswith(FORMULA_PREFIXES):
                    value = "'" + value
                if len(value) > _EXCEL_MAX_TEXT // 2 or value.startswith("<r>"):
                    _write_text(sheet, number, col, value)  # the rare cases, checked there
                elif value:
                    write_string(number, col, value)
            elif value is None:
                continue
            elif kind is bool:
                write_boolean(number, col, value)
            elif kind is int or kind is float:
                if math.isfinite(value):  # NaN and infinities have no cell value in Excel
                    write_number(number, col, value)
            elif kind is datetime:
                if value.tzinfo:
                    value = value.astimezone(UTC).replace(tzinfo=None)
                write_number(number, col, _excel_serial(value), datetime_format)
            elif kind is date:
                write_number(number, col, _excel_serial(value), date_format)
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


def ledger_heads(conn: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    if not table_exists(conn, "ledger.chain_heads"):
        return {}
    return {
        register: {"seq": seq, "chain_sha256": chain}
        for register, seq, chain in conn.execute(
            "SELECT register, max(head_seq), arg_max(head_chain_sha256, head_seq) "
            "FROM ledger.chain_heads GROUP BY register ORDER BY register"
        ).fetchall()
    }


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_reports(
    conn_or_path: duckdb.DuckDBPyConnection | str, out_root: Path, as_of: date | None
) -> list[Path]:
    """Write the evidence pack for `as_of` into out_root/<as_of>/ and return its files."""
    if isinstance(conn_or_path, str):
        from pipelines.resources import connect_warehouse

        conn = connect_warehouse(conn_or_path, read_only=True)
        try:
            return write_reports(conn, out_root, as_of)
        finally:
            conn.close()
    conn = conn_or_path
    as_of = report_as_of(conn, as_of)
    data = report_data(conn, as_of)
    out_dir = Path(out_root) / as_of.isoformat()
    (out_dir / "populations").mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    populations = {}
    for name, (table, _) in POPULATIONS.items():
        if not table_exists(conn, table):
            continue
        columns, rows = _population(conn, name)
        populations[name] = (columns, rows)
        path = out_dir / "populations" / f"{name}.csv"
        _write_csv(path, rows, columns)
        written.append(path)
    workbook = out_dir / "populations.xlsx"
    _write_workbook(workbook, populations, as_of)
    written.append(workbook)
    # The report prints the hashes of the population files, so they are written first.
    digests = {p: sha256_file(p) for p in written}
    data["data_files"] = [
        {"name": str(p.relative_to(out_dir)), "sha256": digests[p], "rows": len(populations.get(p.stem, ((), ()))[1])}
        for p in written
    ]
    html = render_html(data)
    html_path = out_dir / "compliance-report.html"
    html_path.write_text(html, encoding="utf-8")
    pdf_path = out_dir / "compliance-report.pdf"
    _write_pdf(html, pdf_path)
    written += [html_path, pdf_path]
    digests.update({p: sha256_file(p) for p in (html_path, pdf_path)})
    manifest_path = out_dir / "manifest.json"
    manifest = {
        "report_id": f"PL-{as_of.isoformat()}",
        "as_of": as_of.isoformat(),
        "code_version": pipelines.__version__,
        "policy_version": (data.get("criteria") or [{}])[0].get("policy_version"),
        "files": {str(p.relative_to(out_dir)): digests[p] for p in sorted(written)},
        "population_rows": {name: len(rows) for name, (_, rows) in populations.items()},
        "table_rows": {t["name"]: t["rows"] for t in data["tables"]},
        # The ledger's chain heads, anchored outside the warehouse: rewriting every hash in the
        # warehouse cannot hide a change made before this report was written.
        "ledger_heads": ledger_heads(conn),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return [*written, manifest_path]


def _write_pdf(html: str, path: Path) -> None:
    import weasyprint

    weasyprint.HTML(string=html, base_url=str(TEMPLATES)).write_pdf(str(path))
