"""Assets of the backup source: raw.backup_resources as received, and the staging tables of
protected items, backup policies, recovery points and the rollback-readiness policy."""

from pathlib import Path

import dagster as dg

from assets.common import DUCKDB_POOL, OWNERS, STAGE6_MONITORING, key, warehouse_asset
from pipelines import unchanged
from pipelines.ingest.azure import AzureResource
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources import materialize_arm_raw
from pipelines.sources.scan_raw import RawIngestConfig
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
    azure: AzureResource,
) -> dg.MaterializeResult:
    """Azure Backup protected items, recovery points and policies, and VM restore point
    collections as received (azure/backup/*.json: ARM list bodies, `az graph query` output of
    recoveryservicesresources, or arrays); every dated capture kept. In live mode first fetched
    from Resource Graph into one dated capture."""
    return materialize_arm_raw(context, warehouse, run_settings, azure, config.full_reload, RAW,
                               fetch_backup, load_backup, "backup resources (Resource Graph)")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(key(t), group_name=STAGE6_MONITORING, owners=OWNERS, kinds={"duckdb", "sql"},
                     deps=[key(RAW)])
        for t in (*STAGING, POLICY)
    ],
    pool=DUCKDB_POOL,
)
def backup_staging(context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings):
    """Protected items of virtual machines per capture, backup policies with their frequency,
    every recovery point known, and the rollback-readiness policy (limit per criticality).
    Not rebuilt when the raw rows, the SQL and the policy are those of its last build."""
    policy = load_rollback_policy(Path(run_settings.estate_dir))
    targets = (*STAGING, POLICY)
    sql_names = [t.split(".")[1] for t in STAGING]
    results = []
    with warehouse.get_connection() as conn, transaction(conn):
        build = unchanged.prepare(conn, context, targets, sql_names, policy.to_csv(index=False))
        if not build.unchanged:
            for table in STAGING:
                build_table(conn, table)
            replace_table(conn, POLICY, policy)
        results = [(table, table_metadata(conn, table)) for table in targets]
    for table, metadata in results:
        yield dg.MaterializeResult(asset_key=key(table), metadata={**metadata, **build.metadata()},
                                   data_version=build.data_version)
