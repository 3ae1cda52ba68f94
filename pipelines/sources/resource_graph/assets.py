"""Raw assets of the Resource Graph scan tables (patchassessmentresources,
patchinstallationresources), as received."""

import dagster as dg

from assets.common import STAGE6_MONITORING, key, raw_scan_asset
from pipelines.ingest.azure import AzureResource
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.resource_graph.reader import load_resource_graph
from pipelines.sources.scan_raw import RawIngestConfig, load_raw_scan


def _resource_graph(arg_table: str):
    return lambda conn, estate, table, run, log, full_reload=False: load_resource_graph(
        conn, estate, arg_table, table, run, log, full_reload=full_reload
    )


@raw_scan_asset(
    key=key("raw.patch_assessment_resources"), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"}
)
def raw_patch_assessment_resources(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
    azure: AzureResource,
) -> dg.MaterializeResult:
    """Resource Graph patchassessmentresources rows (assessment results and their
    softwarepatches) from azure/resource_graph/patchassessmentresources*.json, as received."""
    table = "raw.patch_assessment_resources"
    return load_raw_scan(context, warehouse, run_settings, azure, table, _resource_graph("patchassessmentresources"),
                     config.full_reload)


@raw_scan_asset(
    key=key("raw.patch_installation_resources"), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"}
)
def raw_patch_installation_resources(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
    azure: AzureResource,
) -> dg.MaterializeResult:
    """Resource Graph patchinstallationresources rows (installation runs and their
    softwarepatches) from azure/resource_graph/patchinstallationresources*.json, as received."""
    table = "raw.patch_installation_resources"
    return load_raw_scan(context, warehouse, run_settings, azure, table, _resource_graph("patchinstallationresources"),
                     config.full_reload)
