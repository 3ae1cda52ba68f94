"""Assets of the backup source: raw.backup_resources as received, and the staging tables of
protected items, backup policies, recovery points and the rollback-readiness policy."""

from pathlib import Path

import dagster as dg

from assets.common import DUCKDB_POOL, OWNERS, STAGE6_MONITORING, key, warehouse_asset
from assets.monitoring import RawIngestConfig
from pipelines.connectors import azure_files, azure_live
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.warehouse import build_table, replace_table, table_metadata, transaction

from .live import fetch_backup
from .policy import load_rollback_policy
from .reader import load_backup

RAW = "raw.backup_resources"
STAGING = ("staging.backup_protected_items", "staging.backup_policies", "staging.backup_recovery_points")
POLICY = "staging.rollback_policy"


@warehouse_asset(key=key(RAW), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"})
def raw_backup_resources(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    """Azure Backup protected items, recovery points and policies, and VM restore point
    collections as received (azure/backup/*.json: ARM list bodies, `az graph query` output of
    recoveryservicesresources, or arrays); every dated capture kept. In live mode first fetched
    from Resource Graph into one dated capture."""
    estate = Path(run_settings.estate_dir)
    if run_settings.source == "azure":
        subscriptions = azure_live._ids(run_settings.subscriptions, "PATCHLEDGER_SUBSCRIPTIONS")
        with azure_live.open_access() as access:
            fetched = fetch_backup(access, subscriptions, estate)
        context.log.info(f"fetched {fetched} backup resources from Azure Resource Graph")
    with warehouse.get_connection() as conn, transaction(conn):
        load_backup(conn, estate, RAW, context.run.run_id, context.log, full_reload=config.full_reload)
        metadata = table_metadata(conn, RAW, preview_rows=0)
    stats = azure_files.LAST_INGEST.get(RAW)
    if stats is not None:
        metadata.update({f"ingest/{k}": v for k, v in stats.metadata().items()})
    return dg.MaterializeResult(metadata=metadata)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(key(t), group_name=STAGE6_MONITORING, owners=OWNERS, kinds={"duckdb", "sql"},
                     deps=[key(RAW)])
        for t in (*STAGING, POLICY)
    ],
    pool=DUCKDB_POOL,
)
def backup_staging(warehouse: WarehouseResource, run_settings: RunSettings):
    """Protected items of virtual machines per capture, backup policies with their frequency,
    every recovery point known, and the rollback-readiness policy (limit per criticality)."""
    policy = load_rollback_policy(Path(run_settings.estate_dir))
    results = []
    with warehouse.get_connection() as conn, transaction(conn):
        for table in STAGING:
            build_table(conn, table)
            results.append((table, table_metadata(conn, table)))
        replace_table(conn, POLICY, policy)
        results.append((POLICY, table_metadata(conn, POLICY)))
    for table, metadata in results:
        yield dg.MaterializeResult(asset_key=key(table), metadata=metadata)
