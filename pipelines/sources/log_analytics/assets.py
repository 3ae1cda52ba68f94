"""Raw assets of the Log Analytics update tables (Update, UpdateSummary, UpdateRunProgress),
typed as received."""

import dagster as dg

from assets.common import STAGE6_MONITORING, key, raw_scan_asset
from pipelines.ingest.azure import AzureResource
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.log_analytics.reader import load_log_analytics
from pipelines.sources.scan_raw import RawIngestConfig, load_raw_scan


def _log_analytics(la_table: str):
    return lambda conn, estate, table, run, log, full_reload=False: load_log_analytics(
        conn, estate, la_table, table, run, log, full_reload=full_reload
    )


@raw_scan_asset(key=key("raw.la_update"), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"})
def raw_la_update(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
    azure: AzureResource,
) -> dg.MaterializeResult:
    """Log Analytics Update records (portal CSV, az JSON or query API body), typed."""
    return load_raw_scan(context, warehouse, run_settings, azure, "raw.la_update", _log_analytics("Update"),
                     config.full_reload)


@raw_scan_asset(key=key("raw.la_update_summary"), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"})
def raw_la_update_summary(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
    azure: AzureResource,
) -> dg.MaterializeResult:
    """Log Analytics UpdateSummary records (portal CSV, az JSON or query API body), typed."""
    return load_raw_scan(
        context, warehouse, run_settings, azure, "raw.la_update_summary", _log_analytics("UpdateSummary"),
        config.full_reload,
    )


@raw_scan_asset(
    key=key("raw.la_update_run_progress"), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"}
)
def raw_la_update_run_progress(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
    azure: AzureResource,
) -> dg.MaterializeResult:
    """Log Analytics UpdateRunProgress records (portal CSV, az JSON or query API body), typed."""
    return load_raw_scan(
        context,
        warehouse,
        run_settings,
        azure,
        "raw.la_update_run_progress",
        _log_analytics("UpdateRunProgress"),
        config.full_reload,
    )
