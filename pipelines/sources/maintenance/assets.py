"""Assets of the maintenance-configuration source: raw.maintenance_resources as received, the
staging tables of configurations and assignments, and their checks."""


from pathlib import Path

import dagster as dg

from assets.common import (
    DUCKDB_POOL,
    OWNERS,
    STAGE4_UPDATE_SERVERS,
    key,
    warehouse_asset,
    warehouse_check,
)
from assets.monitoring import RawIngestConfig
from pipelines.connectors import azure_files, azure_live
from pipelines.resources import RunSettings, WarehouseResource
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
) -> dg.MaterializeResult:
    """Azure maintenance configurations and configuration assignments as received
    (azure/maintenance/*.json: ARM list bodies, `az graph query` output or arrays); in live mode
    first fetched from Azure into one dated capture."""
    estate = Path(run_settings.estate_dir)
    if run_settings.source == "azure":
        subscriptions = azure_live._ids(run_settings.subscriptions, "PATCHLEDGER_SUBSCRIPTIONS")
        with azure_live.open_access() as access:
            fetched = fetch_maintenance(access, subscriptions, estate)
        context.log.info(f"fetched {fetched} maintenance resources from Azure")
    with warehouse.get_connection() as conn, transaction(conn):
        load_maintenance(conn, estate, RAW, context.run.run_id, context.log, full_reload=config.full_reload)
        metadata = table_metadata(conn, RAW, preview_rows=0)
    stats = azure_files.LAST_INGEST.get(RAW)
    if stats is not None:
        metadata.update({f"ingest/{k}": v for k, v in stats.metadata().items()})
    return dg.MaterializeResult(metadata=metadata)


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
