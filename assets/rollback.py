"""Stage 6: rollback readiness: a recovery point before every production change."""

import dagster as dg

from assets.common import STAGE6_MONITORING, key, warehouse_asset
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.warehouse import build_table, resolve_as_of, table_metadata, transaction


@warehouse_asset(
    key=key("marts.vm_rollback_readiness"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[
        key("marts.vm_inventory"),
        key("staging.backup_protected_items"),
        key("staging.backup_policies"),
        key("staging.backup_recovery_points"),
        key("staging.rollback_policy"),
    ],
)
def vm_rollback_readiness(warehouse: WarehouseResource, run_settings: RunSettings) -> dg.MaterializeResult:
    """Per machine: protected or not, the last recovery point and its age, the backup policy's
    frequency and the readiness policy's limit, and whether a fresh point is expected before a
    window."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(conn, "marts.vm_rollback_readiness", params={"as_of": as_of})
        counts = dict(conn.execute(
            "SELECT readiness, count(*) FROM marts.vm_rollback_readiness GROUP BY ALL ORDER BY ALL").fetchall())
        metadata = table_metadata(conn, "marts.vm_rollback_readiness")
    return dg.MaterializeResult(metadata={**metadata, "by_readiness": dg.MetadataValue.json(counts)})


@warehouse_asset(
    key=key("marts.rollback_findings"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[key("marts.vm_rollback_readiness"), key("marts.vm_patch_history"), key("staging.rollbacks")],
)
def rollback_findings(warehouse: WarehouseResource, run_settings: RunSettings) -> dg.MaterializeResult:
    """Production machines without backup, production installs without a recent recovery point,
    and rollbacks with no recovery point to roll back to."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(conn, "marts.rollback_findings", params={"as_of": as_of})
        counts = dict(conn.execute(
            "SELECT rule, count(*) FROM marts.rollback_findings GROUP BY ALL ORDER BY ALL").fetchall())
        metadata = table_metadata(conn, "marts.rollback_findings")
    return dg.MaterializeResult(metadata={**metadata, "by_rule": dg.MetadataValue.json(counts)})
