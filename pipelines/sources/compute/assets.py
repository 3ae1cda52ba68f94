"""The raw asset of the VM inventory: raw.virtual_machines as received (live: first a fetch)."""

import dagster as dg

from assets.common import STAGE1_INVENTORY, key, warehouse_asset
from pipelines.ingest.azure import AzureResource
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources import materialize_arm_raw
from pipelines.sources.scan_raw import RawIngestConfig

from . import RAW_TABLE
from .live import fetch_virtual_machines
from .reader import load_virtual_machines


@warehouse_asset(
    key=key(RAW_TABLE),
    group_name=STAGE1_INVENTORY,
    kinds={"duckdb", "azure"},
)
def raw_virtual_machines(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
    azure: AzureResource,
) -> dg.MaterializeResult:
    """The VM inventory as received: azure/virtual_machines.json (`az vm list --show-details`
    or an ARM list body), one row per VM with the whole resource as JSON."""
    return materialize_arm_raw(
        context, warehouse, run_settings, azure, config.full_reload, RAW_TABLE,
        lambda access, subscriptions, estate: fetch_virtual_machines(access, subscriptions, estate, context.log),
        load_virtual_machines, "virtual machines (Azure Compute)",
    )
