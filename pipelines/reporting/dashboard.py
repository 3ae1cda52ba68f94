"""The interactive dashboard: one self-contained HTML file (inline CSS, JavaScript, data and
charts; nothing fetched), opened from the pack folder in any browser, offline.

Its tables sort and filter, and a machine or a patch opens a drill-down (history, gaps,
schedule, authorization chain). The data travels as JSON inside a
`<script type="application/json">` element with <, > and & escaped, and the page's script only
ever sets `textContent`: text from the sources is shown, never run.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb

from pipelines.reporting.document import environment, timestamp
from pipelines.warehouse import table_exists

# (name, title, table, columns, order): the dashboard's tables, each read whole.
TABLES = [
    ("machines", "Machines", "marts.vm_inventory",
     ["name", "vm_id", "machine_kind", "os_type", "environment", "criticality", "owner", "asset_category",
      "maintenance_window", "coverage_status", "last_assessed_at"], "name, vm_id"),
    ("gaps", "Gaps", "marts.compliance_gaps",
     ["gap_id", "vm_name", "vm_id", "patch_key", "title", "gap_type", "severity", "in_kev", "authorization_status",
      "sla_due", "sla_framework", "days_overdue", "age_days", "owner", "priority", "exception_id"],
     "priority DESC, gap_id"),
    ("schedule", "Schedule", "marts.remediation_schedule",
     ["gap_id", "vm_name", "vm_id", "patch_key", "action", "window_id", "ring", "window_start", "window_end",
      "sla_due", "status", "reason"], "window_start NULLS LAST, vm_name, sequence, gap_id"),
    ("patches", "Patches", "marts.patch_catalog",
     ["patch_key", "title", "classification", "max_severity", "released_at", "in_kev", "exploited", "max_epss",
      "kev_due_date", "cve_count"], "released_at DESC NULLS LAST, patch_key"),
    ("findings", "Findings", "marts.audit_findings",
     ["finding_id", "rule", "severity", "criteria", "condition", "recommendation"],
     "CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, rule, finding_id"),
    ("rollback", "Rollback readiness", "marts.vm_rollback_readiness",
     ["name", "vm_id", "environment", "criticality", "readiness", "last_point_at", "point_age_hours",
      "max_age_hours", "frequency_hours", "reason"], "readiness = 'ready', environment, name, vm_id"),
]
# Drill-down tables, looked up by machine or by patch in the page.
DETAILS = [
    # The last state changes of each machine's patches (the full history is in the warehouse).
    ("history", "marts.vm_patch_history",
     ["vm_id", "observed_at", "patch_key", "previous_state", "state", "source"],
     # The instant formatted here as _value would (the session is in UTC): 160,000 rows at
     # 10,000 VMs, each a Python datetime otherwise.
     """SELECT vm_id, strftime(observed_at, '%Y-%m-%d %H:%M UTC') AS observed_at, patch_key, previous_state,
               state, source FROM (
            SELECT *, row_number() OVER (PARTITION BY vm_id ORDER BY event_seq DESC) AS n
            FROM marts.vm_patch_history WHERE state_changed)
        WHERE n <= $history ORDER BY vm_id, event_seq DESC"""),
    ("authorization", "marts.authorization_events",
     ["patch_key", "asset_category", "environment", "scope_seq", "from_state", "to_state", "actor", "actor_role",
      "occurred_at", "change_ticket", "emergency", "transition_legal"],
     """SELECT patch_key, asset_category, environment, scope_seq, from_state, to_state, actor, actor_role,
               occurred_at, change_ticket, emergency, transition_legal
        FROM marts.authorization_events
        ORDER BY patch_key, asset_category, environment, scope_seq, authorization_event_id"""),
]
HISTORY_PER_MACHINE = 30


def _value(value: Any) -> Any:
    """JSON for a cell: timestamps in UTC to the minute, dates as ISO, lists joined."""
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return "; ".join(map(str, value))
    return value


# Columns of these types come out of DuckDB as JSON-ready values (str, int, bool or None, which
# _value keeps as they are): only the other columns go through _value, cell by cell.
_JSON_READY = frozenset({"VARCHAR", "BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT"})


def _table(conn: duckdb.DuckDBPyConnection, sql: str, columns: list[str], params: dict | None = None) -> dict:
    cursor = conn.execute(sql, params or {})
    converted = [i for i, d in enumerate(cursor.description) if str(d[1]) not in _JSON_READY]
    rows = [list(row) for row in cursor.fetchall()]
    for row in rows:
        for i in converted:
            row[i] = _value(row[i])
    return {"columns": columns, "rows": rows}


def dashboard_data(conn: duckdb.DuckDBPyConnection, data: dict[str, Any]) -> dict[str, Any]:
    tables = {}
    for name, title, table, columns, order in TABLES:
        if table_exists(conn, table):
            quoted = ", ".join(f'"{c}"' for c in columns)
            tables[name] = {"title": title, **_table(conn, f"SELECT {quoted} FROM {table} ORDER BY {order}", columns),
                            # The machine's id links a row to its drill-down (which shows it); the name is shown.
                            "hidden": ["vm_id"]}
    details = {
        name: _table(conn, sql, columns, {"history": HISTORY_PER_MACHINE} if "$history" in sql else None)
        for name, table, columns, sql in DETAILS if table_exists(conn, table)
    }
    # Machine ids are long and repeated in every table: sent once, referred to by position.
    vm_ids = sorted({row[t["columns"].index("vm_id")] for t in [*tables.values(), *details.values()]
                     if "vm_id" in t["columns"] for row in t["rows"]} - {None})
    position = {vm_id: i for i, vm_id in enumerate(vm_ids)}
    for t in [*tables.values(), *details.values()]:
        if "vm_id" in t["columns"]:
            index = t["columns"].index("vm_id")
            for row in t["rows"]:
                row[index] = position.get(row[index])
    summary = {
        "machines": (data.get("scope") or {}).get("machines"), "stale": (data.get("scope") or {}).get("stale"),
        "gaps": data.get("gap_total"), "overdue": data.get("overdue_total"), "kev_overdue": data.get("kev_overdue"),
    }
    return {"as_of": data["as_of"], "summary": summary, "tables": tables, "order": list(tables), "details": details,
            "vm_ids": vm_ids,
            "history_per_machine": HISTORY_PER_MACHINE}


def inert_json(value: Any) -> str:
    """JSON that cannot end its <script> element or open another: <, > and & as escapes."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    for raw, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def render(conn: duckdb.DuckDBPyConnection, data: dict[str, Any], charts: list[dict]) -> str:
    payload = dashboard_data(conn, data)
    return environment().get_template("dashboard.html.j2").render(
        d=data, charts=charts, payload=inert_json(payload))
