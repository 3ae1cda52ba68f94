"""Assets of the maintenance-configuration source: raw.maintenance_resources as received, the
staging tables of configurations and assignments, and their checks."""

import dagster as dg

from assets.common import (
    DUCKDB_POOL,
    OWNERS,
    STAGE4_UPDATE_SERVERS,
    key,
    warehouse_asset,
    warehouse_check,
)
from pipelines.ingest.azure import AzureResource
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources import materialize_arm_raw
from pipelines.sources.scan_raw import RawIngestConfig
from pipelines.warehouse import build_table, table_metadata, transaction

from .live import fetch_maintenance
from .reader import load_maintenance

RAW = "raw.maintenance_resources"
STAGING = ("staging.maintenance_configurations", "staging.maintenance_assignments")


@warehouse_asset(key=key(RAW), group_name=STAGE4_UPDATE_SERVERS, kinds={"duckdb", "azure"})
def raw_maintenance_resources(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
    azure: AzureResource,
) -> dg.MaterializeResult:
    """Azure maintenance configurations and configuration assignments as received
    (azure/maintenance/*.json: ARM list bodies, `az graph query` output or arrays); in live mode
    first fetched from Azure into one dated capture."""
    return materialize_arm_raw(context, warehouse, run_settings, azure, config.full_reload, RAW,
                               fetch_maintenance, load_maintenance, "maintenance resources")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(key(t), group_name=STAGE4_UPDATE_SERVERS, owners=OWNERS, kinds={"duckdb", "sql"},
                     deps=[key(RAW)])
        for t in STAGING
    ],
    pool=DUCKDB_POOL,
)
def maintenance_staging(warehouse: WarehouseResource):
    """Maintenance configurations (schedule, scope, what a run installs) and their assignments
    to machines, from every capture."""
    results = []
    with warehouse.get_connection() as conn, transaction(conn):
        for table in STAGING:
            build_table(conn, table)
            results.append((table, table_metadata(conn, table)))
    for table, metadata in results:
        yield dg.MaterializeResult(asset_key=key(table), metadata=metadata)


@warehouse_check(asset=key("staging.maintenance_assignments"))
def maintenance_assignments_known_configuration(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Warn when an assignment names a maintenance configuration that no capture lists (deleted,
    or in a subscription that was not read): its schedule cannot be judged."""
    with warehouse.get_connection() as conn:
        unknown = conn.execute(
            "SELECT count(*) FROM staging.maintenance_assignments "
            "WHERE configuration_id NOT IN (SELECT configuration_id FROM staging.maintenance_configurations)"
        ).fetchall()[0][0]
    return dg.AssetCheckResult(
        passed=unknown == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"assignments_to_unknown_configurations": unknown},
    )
