"""The compliance report: HTML (with charts), PDF, population CSVs and a manifest, per as-of date.

Everything is read from the warehouse; nothing depends on the wall clock, so the same warehouse
and as-of date give byte-identical files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import UTC, date
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
# Zip entries get this timestamp so that the workbook's bytes depend on its content only.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def population_rows(conn: duckdb.DuckDBPyConnection, name: str) -> list[dict]:
    table, id_column = POPULATIONS[name]
    # By the stable id, then every column, so that ties can never reorder the file.
    columns = [d[0] for d in conn.execute(f"SELECT * FROM {table} LIMIT 0").description]
    order = ", ".join(f'"{c}"' for c in [id_column, *[c for c in columns if c != id_column]])
    return _rows(conn, f"SELECT * FROM {table} ORDER BY {order}")  # names from POPULATIONS


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: neutralize(_text(v)) for k, v in row.items()})


def _text(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _cell(value: Any) -> Any:
    """A typed spreadsheet cell: numbers, dates and booleans stay typed; text is neutralized."""
    from datetime import datetime

    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, (list, dict)):
        return neutralize(json.dumps(value, default=str) if isinstance(value, dict) else ";".join(map(str, value)))
    if hasattr(value, "as_tuple"):  # Decimal
        return float(value)
    return neutralize(value)


def _write_workbook(path: Path, populations: dict[str, tuple[list[str], list[dict]]], as_of: date) -> None:
    import zipfile
    from datetime import datetime

    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.utils import get_column_letter

    # Write-only mode streams rows to the file: several times faster and far smaller in
    # memory than the default mode for populations of tens of thousands of rows.
    workbook = Workbook(write_only=True)
    stamp = datetime(as_of.year, as_of.month, as_of.day)
    workbook.properties.created = workbook.properties.modified = stamp
    workbook.properties.creator = "PatchLedger"
    for name, (columns, rows) in populations.items():
        sheet = workbook.create_sheet(title=name[:31])
        sheet.freeze_panes = "A2"
        for index, column in enumerate(columns, start=1):
            sheet.column_dimensions[get_column_letter(index)].width = min(45, max(10, len(column) + 2))
        sheet.append(columns)
        for row in rows:
            cells = []
            for column in columns:
                value = _cell(row[column])
                if isinstance(value, datetime):
                    cell = WriteOnlyCell(sheet, value=value)
                    cell.number_format = "yyyy-mm-dd hh:mm:ss"
                    value = cell
                cells.append(value)
            sheet.append(cells)
    buffer = io.BytesIO()
    workbook.save(buffer)
    # Rewrite the zip with fixed entry times, and the as-of date as the modification time:
    # openpyxl stamps the wall clock into every entry and into docProps/core.xml on save.
    modified = f"<dcterms:modified xsi:type=\"dcterms:W3CDTF\">{stamp:%Y-%m-%dT%H:%M:%SZ}</dcterms:modified>"
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                content = re.sub(rb"<dcterms:modified[^>]*>[^<]*</dcterms:modified>",
                                 modified.encode(), content)
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(entry, content)


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
        columns = [d[0] for d in conn.execute(f"SELECT * FROM {table} LIMIT 0").description]
        rows = population_rows(conn, name)
        populations[name] = (columns, rows)
        path = out_dir / "populations" / f"{name}.csv"
        _write_csv(path, rows, columns)
        written.append(path)
    workbook = out_dir / "populations.xlsx"
    _write_workbook(workbook, populations, as_of)
    written.append(workbook)
    # The report prints the hashes of the population files, so they are written first.
    data["data_files"] = [
        {"name": str(p.relative_to(out_dir)), "sha256": sha256_file(p), "rows": len(populations.get(p.stem, ((), ()))[1])}
        for p in written
    ]
    html = render_html(data)
    html_path = out_dir / "compliance-report.html"
    html_path.write_text(html, encoding="utf-8")
    pdf_path = out_dir / "compliance-report.pdf"
    _write_pdf(html, pdf_path)
    written += [html_path, pdf_path]
    manifest_path = out_dir / "manifest.json"
    manifest = {
        "report_id": f"PL-{as_of.isoformat()}",
        "as_of": as_of.isoformat(),
        "code_version": pipelines.__version__,
        "policy_version": (data.get("criteria") or [{}])[0].get("policy_version"),
        "files": {str(p.relative_to(out_dir)): sha256_file(p) for p in sorted(written)},
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
