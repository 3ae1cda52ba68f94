"""Raw asset of the assessPatches / installPatches results, as received."""

import dagster as dg

from assets.common import STAGE6_MONITORING, key, raw_scan_asset
from pipelines.ingest.azure import AzureResource
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.patch_operations.reader import load_patch_operations
from pipelines.sources.scan_raw import RawIngestConfig, load_raw_scan


@raw_scan_asset(key=key("raw.patch_operations"), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"})
def raw_patch_operations(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
    azure: AzureResource,
) -> dg.MaterializeResult:
    """assessPatches / installPatches results from azure/patch_operations/*.json, as received."""
    return load_raw_scan(
        context, warehouse, run_settings, azure, "raw.patch_operations", load_patch_operations,
        config.full_reload,
    )
