"""Stage 6: the scheduled audit of installed versus authorized, with the Yellow Book elements."""

import dagster as dg

from assets.common import STAGE6_MONITORING, key, warehouse_asset, warehouse_check
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.warehouse import build_table, resolve_as_of, table_metadata, transaction


@warehouse_asset(
    key=key("marts.audit_findings"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[
        key("marts.compliance_gaps"),
        key("marts.vm_patch_state"),
        key("marts.vm_inventory"),
        key("staging.sla_policy"),
        key("marts.authorization_findings"),
        key("marts.authorization_install_findings"),
        key("marts.auto_update_findings"),
        key("marts.rollback_findings"),
        key("marts.maintenance_findings"),
    ],
)
def audit_findings(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """The audit of installed versus authorized: the gaps aggregated per rule (unauthorized,
    rejected or untested production installs, overdue KEV and overdue per framework, stale
    assessments) with counts and population size, plus the change-control findings of stage 5,
    each with criteria, condition, cause, effect and recommendation and a stable finding id."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(conn, "marts.audit_findings", params={"as_of": as_of})
        by_severity = dict(
            conn.execute(
                "SELECT severity, count(*) FROM marts.audit_findings GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        )
        metadata = table_metadata(
            conn, "marts.audit_findings", preview_rows=10, order_by="rule, subject"
        )
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "as_of": as_of.isoformat(),
            "findings_by_severity": dg.MetadataValue.json(by_severity),
        }
    )


@warehouse_check(asset=key("marts.audit_findings"), blocking=True)
def finding_ids_unique(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Each finding id names one finding: the evidence pack and follow-ups refer to it."""
    with warehouse.get_connection() as conn:
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT finding_id FROM marts.audit_findings "
            "GROUP BY finding_id HAVING count(*) > 1)"
        ).fetchall()[0][0]
    return dg.AssetCheckResult(passed=duplicates == 0, metadata={"duplicate_ids": duplicates})
