"""Stage 6: remediation episodes, time to patch and the daily compliance trend, over the whole
observation history (set-based SQL over validity intervals of patch states)."""

import dagster as dg

from assets.common import STAGE6_MONITORING, key, warehouse_asset, warehouse_check
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.warehouse import build_table, resolve_as_of, table_metadata, transaction


@warehouse_asset(
    key=key("marts.remediation_episodes"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[
        key("marts.vm_patch_history"),
        key("marts.patch_fix_lineage"),
        key("marts.patch_supersedence_closure"),
        key("marts.patch_catalog"),
        key("marts.patch_cves"),
        key("marts.vm_inventory"),
        key("staging.sla_policy"),
    ],
)
def remediation_episodes(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """Remediation episodes per machine and fix lineage: opened when a patch of the lineage is
    first seen missing, failed or pending a reboot, closed only when it or a superseding patch is
    installed (time-to-fix carries over to the superseding patch), reopened on regression; with
    the due date and whether it was met under each framework."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(conn, "marts.remediation_episodes", params={"as_of": as_of})
        open_count, reopened = conn.execute(
            "SELECT count(*) FILTER (WHERE closed_at IS NULL), count(*) FILTER (WHERE reopened) "
            "FROM marts.remediation_episodes"
        ).fetchall()[0]
        metadata = table_metadata(conn, "marts.remediation_episodes", order_by="episode_id")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "as_of": as_of.isoformat(),
            "open_episodes": dg.MetadataValue.int(open_count),
            "reopened_episodes": dg.MetadataValue.int(reopened),
        }
    )


@warehouse_asset(
    key=key("marts.time_to_patch"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[key("marts.remediation_episodes")],
)
def time_to_patch(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """Mean, median and 90th percentile days to patch per severity x machine criticality (the
    NIST SP 800-40 matrix) and per closing month, and the share of episodes within each
    framework's SLA."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(conn, "marts.time_to_patch", params={"as_of": as_of})
        metadata = table_metadata(conn, "marts.time_to_patch", preview_rows=20)
    return dg.MaterializeResult(metadata={**metadata, "as_of": as_of.isoformat()})


@warehouse_asset(
    key=key("marts.compliance_daily"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[
        key("marts.vm_patch_history"),
        key("marts.patch_supersedence_closure"),
        key("marts.patch_catalog"),
        key("marts.vm_inventory"),
    ],
)
def compliance_daily(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """The compliance trend for every day of the history: machines, applicable patch pairs,
    installed, superseded-satisfied, missing, failed and pending-reboot counts and the compliance
    share, for the fleet and by asset category, criticality, environment, owner and severity."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(conn, "marts.compliance_daily", params={"as_of": as_of})
        days, latest_share = conn.execute(
            "SELECT count(*), arg_max(compliance_share, day) FROM marts.compliance_daily "
            "WHERE grain = 'fleet'"
        ).fetchall()[0]
        metadata = table_metadata(
            conn,
            "marts.compliance_daily",
            order_by="day DESC, grain, asset_category, criticality, environment, owner, severity",
        )
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "as_of": as_of.isoformat(),
            "days": dg.MetadataValue.int(days),
            "latest_fleet_compliance_share": dg.MetadataValue.float(float(latest_share or 0.0)),
        }
    )


@warehouse_check(asset=key("marts.remediation_episodes"), blocking=True)
def episode_ids_unique(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Each episode id names one episode, and no two episodes of a machine's lineage overlap."""
    with warehouse.get_connection() as conn:
        duplicates, overlaps = conn.execute(
            """
            SELECT
                (SELECT count(*) FROM (SELECT episode_id FROM marts.remediation_episodes
                                       GROUP BY episode_id HAVING count(*) > 1)),
                (SELECT count(*) FROM marts.remediation_episodes AS a
                 JOIN marts.remediation_episodes AS b
                   ON a.vm_id = b.vm_id AND a.lineage_id = b.lineage_id
                  AND b.episode_seq = a.episode_seq + 1
                 WHERE a.closed_at IS NULL OR b.opened_at < a.closed_at)
            """
        ).fetchall()[0]
    return dg.AssetCheckResult(
        passed=duplicates == 0 and overlaps == 0,
        metadata={"duplicate_ids": duplicates, "overlapping_episodes": overlaps},
    )
