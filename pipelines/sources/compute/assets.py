"""The raw asset of the VM inventory: raw.virtual_machines as received (live: first a fetch)."""

from pathlib import Path

import dagster as dg

from assets.common import STAGE1_INVENTORY, key, warehouse_asset
from assets.monitoring import RawIngestConfig
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources import estate_for, ingest_metadata
from pipelines.warehouse import table_metadata, transaction

from . import RAW_TABLE
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
) -> dg.MaterializeResult:
    """The VM inventory as received: azure/virtual_machines.json (`az vm list --show-details`
    or an ARM list body), one row per VM with the whole resource as JSON."""
    with estate_for(run_settings, RAW_TABLE, context.log) as estate:
        with warehouse.get_connection() as conn, transaction(conn):
            stats = load_virtual_machines(
                conn, Path(estate), RAW_TABLE, context.run.run_id, context.log,
                full_reload=config.full_reload,
            )
            metadata = table_metadata(conn, RAW_TABLE, preview_rows=0)
    return dg.MaterializeResult(metadata={**metadata, **ingest_metadata(stats)})
