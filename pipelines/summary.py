"""The short compliance summary printed at the end of `patchledger run` and `demo`."""

from __future__ import annotations

from pipelines.resources import connect_warehouse
from pipelines.warehouse import table_exists


def compliance_summary(warehouse: str) -> list[str]:
    conn = connect_warehouse(warehouse, read_only=True)
    try:
        lines = ["Compliance summary"]
        if table_exists(conn, "marts.vm_inventory"):
            machines, stale = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE coverage_status = 'unknown_stale') "
                "FROM marts.vm_inventory"
            ).fetchone()
            lines.append(f"  machines           {machines:>8,}  ({stale:,} with a stale assessment)")
        if table_exists(conn, "marts.compliance_gaps"):
            as_of, total, overdue, kev = conn.execute(
                "SELECT max(as_of), count(*), count(*) FILTER (WHERE days_overdue > 0), "
                "count(*) FILTER (WHERE in_kev AND sla_kev_due < as_of) FROM marts.compliance_gaps"
            ).fetchone()
            lines.append(f"  as of              {as_of}")
            lines.append(f"  open gaps          {total:>8,}  ({overdue:,} overdue, {kev:,} KEV past due)")
            for gap_type, count in conn.execute(
                "SELECT gap_type, count(*) FROM marts.compliance_gaps GROUP BY ALL ORDER BY 2 DESC, 1"
            ).fetchall():
                lines.append(f"    {gap_type:<24}{count:>6,}")
        if table_exists(conn, "marts.auto_update_periods"):
            by_environment = conn.execute(
                "SELECT coalesce(environment, '(production scope)'), count(DISTINCT vm_id) "
                "FROM marts.auto_update_periods WHERE status = 'violation' GROUP BY ALL ORDER BY 2 DESC, 1"
            ).fetchall()
            total = sum(n for _, n in by_environment)
            lines.append(f"  auto-updating prod {total:>8,}  (could install updates on their own)")
            for environment, count in by_environment:
                lines.append(f"    {environment:<24}{count:>6,}")
        return lines
    finally:
        conn.close()
