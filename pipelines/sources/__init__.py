"""Sources kept in one folder each: reader, live client, assets and checks together."""

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from pipelines.connectors import azure_files, azure_live
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.warehouse import table_metadata, transaction


def materialize_arm_raw(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
    full_reload: bool,
    raw: str,
    fetch: Callable,
    load: Callable,
    what: str,
) -> dg.MaterializeResult:
    """The body of an ARM-folder source's raw asset: in live mode `fetch` a dated capture into
    the estate first, then `load` the folder's new or changed files into `raw` in one transaction,
    with the table's metadata and the ingestion statistics."""
    estate = Path(run_settings.estate_dir)
    if run_settings.source == "azure":
        subscriptions = azure_live._ids(run_settings.subscriptions, "PATCHLEDGER_SUBSCRIPTIONS")
        with azure_live.open_access() as access:
            fetched = fetch(access, subscriptions, estate)
        context.log.info(f"fetched {fetched} {what} from Azure")
    with warehouse.get_connection() as conn, transaction(conn):
        load(conn, estate, raw, context.run.run_id, context.log, full_reload=full_reload)
        metadata = table_metadata(conn, raw, preview_rows=0)
    stats = azure_files.LAST_INGEST.get(raw)
    if stats is not None:
        metadata.update({f"ingest/{k}": v for k, v in stats.metadata().items()})
    return dg.MaterializeResult(metadata=metadata)
