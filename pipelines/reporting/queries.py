"""What the evidence pack says, read from the warehouse: the report's figures, the charts' series,
the dashboard's tables and the populations.

Nothing here depends on the wall clock: the same warehouse and as-of date give the same data.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import duckdb

import pipelines
from pipelines.warehouse import read_sql, table_exists

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
# The freshness window of marts.vm_inventory (assets.monitoring), for the daily stale count.
STALE_AFTER_DAYS = 2
# An ARM id of a machine inside a sentence (findings name the machines they are about).
ARM_ID = re.compile(r"/subscriptions/[0-9a-z-]+/resourcegroups/[^/\s]+/providers/[^/\s]+/[^/\s]+/[a-z0-9._-]+",
                    re.IGNORECASE)


def _rows(conn: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> list[dict]:
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
        "findings": [], "audit_findings": [], "audit_findings_total": 0, "finding_rules": [], "exceptions": [],
        "criteria_frameworks": [], "bod2604": None, "machine_names": {}, "bod2604_inputs": None,
        "auto_updates": [], "rollback_counts": [], "rollback_not_ready": [],
        "maintenance_schedules": [], "unscheduled_machines": [],
    }
    has = {t: table_exists(conn, t) for t in (
        "marts.vm_inventory", "marts.compliance_gaps", "marts.patch_catalog", "staging.sla_policy",
        "marts.authorization_status", "marts.authorization_findings", "staging.exceptions",
        "marts.vm_patch_state", "marts.patch_bod2604",
    )}
    data["has"] = has
    # Population completeness: the rows Resource Graph reported (totalRecords) beside the rows
    # fetched and loaded, over the captures taken up to the as-of date.
    data["resource_graph_population"] = _rows(conn, """
        SELECT arg_table, count(*) AS files,
               count(reported_rows) AS files_reported,
               sum(reported_rows) AS reported,
               sum(fetched_rows) FILTER (WHERE reported_rows IS NOT NULL) AS fetched,
               sum(loaded_rows) FILTER (WHERE reported_rows IS NOT NULL) AS loaded,
               count(*) FILTER (WHERE NOT complete) AS incomplete,
               coalesce(sum(loaded_rows) FILTER (WHERE reported_rows IS NULL), 0) AS loaded_unreported
        FROM marts.azure_population_counts
        WHERE captured_at IS NULL OR captured_at < ?::DATE + INTERVAL 1 DAY
        GROUP BY arg_table ORDER BY arg_table""", [as_of]) if table_exists(conn, "marts.azure_population_counts") else []
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
        data["machine_names"] = dict(conn.execute("SELECT vm_id, name FROM marts.vm_inventory").fetchall())
    if has["marts.patch_catalog"]:
        data["catalog"] = _rows(conn, """
            SELECT count(*) AS patches, count(*) FILTER (WHERE exploited) AS exploited,
                   count(*) FILTER (WHERE in_kev) AS in_kev
            FROM marts.patch_catalog""")[0]
    if has["staging.sla_policy"]:
        data["criteria"] = _rows(conn, """
            SELECT framework, title, clause, clock, scope, severity, days, months, policy_version,
                   in_kev, internet_exposed, automatable, technical_impact, tier
            FROM staging.sla_policy ORDER BY framework, severity NULLS FIRST""")
        data["criteria_frameworks"], data["bod2604"] = criteria_matrix(data["criteria"])
    if has["marts.compliance_gaps"] and has["marts.patch_bod2604"]:
        # Which BOD 26-04 inputs the open gaps' tiers stand on: Vulnrichment or the policy defaults.
        data["bod2604_inputs"] = _rows(conn, """
            SELECT count(*) AS gaps,
                   count(*) FILTER (WHERE g.bod2604_ssvc_source = 'vulnrichment') AS vulnrichment,
                   count(*) FILTER (WHERE g.bod2604_ssvc_source = 'policy_default') AS policy_default,
                   count(DISTINCT b.rule) AS rules_reached
            FROM marts.compliance_gaps AS g
            JOIN marts.patch_bod2604 AS b
              ON b.patch_key = g.patch_key AND b.internet_exposed = g.internet_exposed
            WHERE g.bod2604_tier IS NOT NULL""")[0]
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
            SELECT gap_id, vm_id, vm_name, patch_key, title, gap_type, severity, in_kev, sla_framework,
                   sla_due, days_overdue, owner, priority
            FROM marts.compliance_gaps WHERE days_overdue > 0
            ORDER BY priority DESC, gap_id LIMIT 40""")
        data["overdue_total"] = _scalar(
            conn, "SELECT count(*) FROM marts.compliance_gaps WHERE days_overdue > 0")
        data["kev_overdue"] = _scalar(conn, """
            SELECT count(*) FROM marts.compliance_gaps WHERE in_kev AND sla_kev_due < as_of""")
        data["unauthorized_installs"] = _rows(conn, """
            SELECT gap_id, vm_id, vm_name, patch_key, title, gap_type, authorization_status, environment
            FROM marts.compliance_gaps
            WHERE gap_type IN ('installed_unauthorized', 'installed_rejected', 'untested_in_production')
            ORDER BY gap_type, vm_name, patch_key LIMIT 60""")
        data["gap_total"] = _scalar(conn, "SELECT count(*) FROM marts.compliance_gaps")
    if table_exists(conn, "marts.audit_findings"):
        data["audit_findings"] = _rows(conn, """
            SELECT finding_id, rule, severity, criteria, condition, cause, effect, recommendation
            FROM marts.audit_findings
            ORDER BY CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END, rule, finding_id""")
        data["audit_findings_total"] = len(data["audit_findings"])
        data["finding_rules"] = findings_by_rule(data["audit_findings"])
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
    # Rollback readiness: production machines without a fresh recovery point, and the steps it holds.
    if table_exists(conn, "marts.vm_rollback_readiness"):
        data["rollback_counts"] = _rows(conn, """
            SELECT readiness, count(*) AS machines FROM marts.vm_rollback_readiness
            WHERE environment = 'production' GROUP BY readiness ORDER BY readiness = 'ready', readiness""")
        data["rollback_not_ready"] = _rows(conn, """
            SELECT r.name, r.criticality, r.readiness, r.last_point_at, r.point_age_hours, r.max_age_hours,
                   count(s.gap_id) AS steps_held
            FROM marts.vm_rollback_readiness AS r
            LEFT JOIN marts.remediation_schedule AS s ON s.vm_id = r.vm_id AND s.status = 'needs_restore_point'
            WHERE r.environment = 'production' AND r.readiness <> 'ready'
            GROUP BY ALL ORDER BY r.readiness, r.name""") if table_exists(conn, "marts.remediation_schedule") else []
    # Which schedule patches the machines (a maintenance configuration, a register window, none).
    if table_exists(conn, "marts.vm_maintenance_windows"):
        data["maintenance_schedules"] = _rows(conn, """
            SELECT coalesce(window_source, 'none') AS window_source, count(*) AS machines,
                   count(*) FILTER (WHERE tag_disagrees) AS tag_disagrees
            FROM marts.vm_maintenance_windows WHERE in_inventory GROUP BY ALL ORDER BY ALL""")
        data["unscheduled_machines"] = _rows(conn, """
            SELECT vm_id, name, environment, os_type, maintenance_window FROM marts.unscheduled_machines
            ORDER BY name, vm_id""") if table_exists(conn, "marts.unscheduled_machines") else []
    if has["marts.authorization_findings"]:
        data["findings"] = _rows(conn, """
            SELECT finding_id, rule, severity, subject, condition
            FROM marts.authorization_findings ORDER BY severity, rule, finding_id""")
    if has["staging.exceptions"]:
        data["exceptions"] = _rows(conn, """
            SELECT exception_id, vm_id, coalesce(vm_id, asset_category) AS scope, patch_key, cve, reason,
                   compensating_control, risk_owner, approver, approved_at, expires_at, status,
                   (status = 'active' AND expires_at < ?::DATE) AS expired
            FROM staging.exceptions
            WHERE approved_at IS NULL OR approved_at < ?::DATE + 1
            ORDER BY exception_id""", [as_of, as_of])
    data["tables"] = _rows(conn, """
        SELECT schema_name || '.' || table_name AS name, estimated_size AS rows, comment
        FROM duckdb_tables() WHERE schema_name IN ('raw', 'marts', 'ledger')
        ORDER BY schema_name, table_name""")
    raw_with_files = {f"raw.{r[0]}" for r in conn.execute(
        "SELECT table_name FROM duckdb_columns() WHERE schema_name = 'raw' AND column_name = 'source_file'").fetchall()}
    for table in data["tables"]:
        if table["name"] in raw_with_files:
            # A source file dated after the pack's date is not part of its evidence.
            # Counted per file first: the file's date is read once per file, not once per row.
            table["rows"] = _scalar(conn, f'SELECT sum(rows) FROM (SELECT source_file, count(*) AS rows '  # catalog name
                                    f'FROM {table["name"]} GROUP BY source_file) WHERE {_FILE_DATED_BY}',
                                    {"as_of": as_of})
        else:
            table["rows"] = _scalar(conn, f'SELECT count(*) FROM {table["name"]}')  # names come from the catalog
    data["machines_cited"] = machines_cited(data)
    return data


# The day in a source file's name (2026-11-05, or a capture time 20261105T060000Z), if any: rows of
# files named for a later day are left out of the data proof; undated files count in full.
_FILE_DATED_BY = (
    "coalesce(try_strptime(nullif(regexp_extract(source_file, '(\\d{4}-\\d{2}-\\d{2})', 1), ''), '%Y-%m-%d'), "
    "try_strptime(nullif(regexp_extract(source_file, '(\\d{8})T\\d{6}Z', 1), ''), '%Y%m%d'), "
    "CAST($as_of AS DATE)) < CAST($as_of AS DATE) + 1"
)


# Conditions printed per rule; the rest are in populations/audit_findings.csv.
CONDITIONS_PER_RULE = 5


def findings_by_rule(findings: list[dict]) -> list[dict]:
    """One entry per rule (criteria, cause, effect and recommendation are the rule's), with its
    first conditions: near-identical findings are read once, not page after page."""
    rules: dict[str, dict] = {}
    for f in findings:
        rule = rules.setdefault(f["rule"], {**f, "total": 0, "examples": []})
        rule["total"] += 1
        if len(rule["examples"]) < CONDITIONS_PER_RULE:
            rule["examples"].append(f)
    return list(rules.values())


def criteria_matrix(criteria: list[dict]) -> tuple[list[dict], dict | None]:
    """The SLA policy as one row per framework (deadline per severity, its own clause), and the
    BOD 26-04 decision table as one grid: rows KEV x internet-exposed, columns automatable x
    technical impact."""
    frameworks: dict[str, dict] = {}
    bod = None
    for c in criteria:
        if c["framework"] == "cisa_bod2604":
            if bod is None:
                bod = {"title": c["title"], "clause": c["clause"], "clock": c["clock"], "cells": {}}
            deadline = f'{c["days"]} days' if c["days"] is not None else "next upgrade"
            bod["cells"][(c["in_kev"], c["internet_exposed"], c["automatable"], c["technical_impact"])] = deadline
            continue
        row = frameworks.setdefault(c["framework"], {
            "framework": c["framework"], "title": c["title"], "clause": c["clause"], "clock": c["clock"],
            "scope": c["scope"], "deadlines": {},
        })
        if c["days"] is not None:
            deadline = f'{c["days"]} days'
        elif c["months"] is not None:
            deadline = f'{c["months"]} month' + ("s" if c["months"] != 1 else "")
        else:
            deadline = "catalog due date"
        row["deadlines"][c["severity"] or "*"] = deadline
    if bod is not None:
        columns = [(a, t) for a in (True, False) for t in ("total", "partial")]
        bod["columns"] = [f'automatable {"yes" if a else "no"}, impact {t}' for a, t in columns]
        bod["rows"] = [
            {"label": f'KEV {"yes" if k else "no"}, exposed {"yes" if e else "no"}',
             "cells": [bod["cells"].get((k, e, a, t), "") for a, t in columns]}
            for k in (True, False) for e in (True, False)
        ]
    return list(frameworks.values()), bod


def machines_cited(data: dict[str, Any]) -> list[dict]:
    """Every machine the report names, with its full id: the body shows names, this appendix
    the ids they stand for."""
    names = data["machine_names"]
    cited: dict[str, str] = {}
    for row in [*data["overdue"], *data["unauthorized_installs"], *data["stale_machines"], *data["exceptions"],
                *data["unscheduled_machines"]]:
        if row.get("vm_id"):
            cited[row["vm_id"]] = names.get(row["vm_id"], row["vm_id"].rsplit("/", 1)[-1])
    for finding in (e for rule in data.get("finding_rules", []) for e in rule["examples"]):
        for text in (finding["condition"] or "", finding["cause"] or ""):
            for vm_id in ARM_ID.findall(text):
                cited[vm_id.lower()] = names.get(vm_id.lower(), vm_id.rsplit("/", 1)[-1])
    return [{"name": name, "vm_id": vm_id} for vm_id, name in sorted(cited.items(), key=lambda i: (i[1], i[0]))]


# The tables each chart of the report reads (its sql/report_<name>.sql): the pack depends on them.
CHART_TABLES = {
    "trend": ("marts.compliance_daily", "marts.vm_inventory", "staging.assessment_runs"),
    "aging": ("marts.compliance_gaps",),
    "sla_share": ("marts.time_to_patch",),
    "time_to_patch": ("marts.remediation_episodes",),
    "coverage": ("marts.vm_inventory",),
}


def chart_data(conn: duckdb.DuckDBPyConnection, as_of: date, data: dict[str, Any]) -> dict[str, list[dict]]:
    """The series of the charts, each from its sql/report_*.sql (empty when its marts are absent)."""
    params = {"trend": {"as_of": as_of, "stale_after_days": STALE_AFTER_DAYS}}
    series = {
        name: _rows(conn, read_sql(f"report_{name}"), params.get(name)) if all(table_exists(conn, t) for t in tables) else []
        for name, tables in CHART_TABLES.items()
    }
    series["gaps_by_type"] = [r for r in data.get("gaps_by_type", []) if r["gaps"]]
    return series


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
    "rollback_readiness": ("marts.vm_rollback_readiness", "vm_id"),
    "unscheduled_machines": ("marts.unscheduled_machines", "vm_id"),
    "late_arrivals": ("marts.late_arrivals", "arrival_id"),
}


# Populations read from a register's staging table (which has no as_of): only the rows dated by
# the end of the pack's date.
_AS_OF_FILTERS = {"exceptions": "approved_at IS NULL OR approved_at < CAST($as_of AS DATE) + 1"}


def population(
    conn: duckdb.DuckDBPyConnection, name: str, as_of: date | None = None
) -> tuple[list[str], list[tuple]]:
    """(columns, rows as tuples): by the stable id, then every column, so that ties can never
    reorder the file."""
    table, id_column = POPULATIONS[name]
    columns = [d[0] for d in conn.execute(f"SELECT * FROM {table} LIMIT 0").description]
    order = ", ".join(f'"{c}"' for c in [id_column, *[c for c in columns if c != id_column]])
    if as_of is not None and name in _AS_OF_FILTERS:
        return columns, conn.execute(  # names from POPULATIONS, filter from _AS_OF_FILTERS
            f"SELECT * FROM {table} WHERE {_AS_OF_FILTERS[name]} ORDER BY {order}", {"as_of": as_of}
        ).fetchall()
    return columns, conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()  # names from POPULATIONS


def population_rows(conn: duckdb.DuckDBPyConnection, name: str, as_of: date | None = None) -> list[dict]:
    """The population as dicts, in the order of its files."""
    columns, rows = population(conn, name, as_of)
    return [dict(zip(columns, row, strict=True)) for row in rows]
