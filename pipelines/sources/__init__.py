"""Sources kept in one folder each (docs/architecture.md, "A source in one folder").

`pipelines/sources/<source>/`: `__init__.py` the formats, estate layout, contracts and extension
points; `reader.py` the offline loader (through pipelines/ingest/, returning its IngestStats);
`live.py` the live client (official SDK, writing a dated capture the reader then loads);
`assets.py` the raw assets and checks where the source owns them. Every module here is loaded
by pipelines/definitions.py: a new folder needs no registration line.

Here: what several sources share, the live refresh of the estate before a raw asset reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from pipelines.ingest import azure
from pipelines.ingest.files import VERIFY_FILES
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources import log_analytics, resource_graph
from pipelines.sources.log_analytics.live import fetch_log_analytics
from pipelines.sources.patch_operations.live import assess_patches
from pipelines.sources.resource_graph.live import fetch_resource_graph
from pipelines.warehouse import table_metadata, transaction

NO_SUBSCRIPTIONS = "live mode needs PATCHLEDGER_SUBSCRIPTIONS (comma-separated ids)"


def fetch_into(
    table: str,
    estate: Path,
    *,
    access: azure.AzureAccess,
    subscriptions: list[str],
    workspaces: list[str],
    log: logging.Logger | None = None,
    assess: bool = False,
) -> int:
    """Fetch the source of the raw scan `table` (assets/monitoring.py) from Azure into the
    estate folder `estate`."""
    uses_subscriptions = table in resource_graph.RAW_TABLES or (table == "raw.patch_operations" and assess)
    if uses_subscriptions and not subscriptions:
        raise ValueError(NO_SUBSCRIPTIONS)
    if table in resource_graph.RAW_TABLES:
        count = fetch_resource_graph(access, resource_graph.RAW_TABLES[table], subscriptions, estate)
    elif table in log_analytics.RAW_TABLES:
        if not workspaces and log is not None:
            log.warning("No Log Analytics workspace configured (PATCHLEDGER_WORKSPACES)")
        count = fetch_log_analytics(access, log_analytics.RAW_TABLES[table], workspaces, estate)
    elif table == "raw.patch_operations" and assess:
        count = assess_patches(access, subscriptions, estate, log)
    else:
        count = 0
    if log is not None:
        log.info(f"fetched {count} rows from Azure for {table}")
    return count


@contextmanager
def estate_for(
    run_settings: Any, live: azure.AzureResource, table: str, log: logging.Logger | None = None
) -> Iterator[Path]:
    """The estate folder a raw loader reads; in live mode first refreshed from Azure."""
    estate = Path(run_settings.estate_dir)
    if run_settings.source == "azure":
        subscriptions, workspaces = live.subscription_ids(), live.workspaces()
        with live.open() as access:
            fetch_into(table, estate, access=access, subscriptions=subscriptions, workspaces=workspaces,
                       log=log, assess=live.assess_patches)
    yield estate


def ingest_metadata(stats) -> dict:
    """The `ingest/*` metadata of a raw asset from its loader's IngestStats."""
    return {f"ingest/{k}": v for k, v in stats.metadata().items()}


def materialize_arm_raw(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
    live: azure.AzureResource,
    full_reload: bool,
    raw: str,
    fetch: Callable,
    load: Callable,
    what: str,
) -> dg.MaterializeResult:
    """The body of a source's raw asset: in live mode `fetch` a dated capture into
    the estate first, then `load` the folder's new or changed files into `raw` in one transaction,
    with the table's metadata and the ingestion statistics."""
    estate = Path(run_settings.estate_dir)
    if run_settings.source == "azure":
        subscriptions = live.subscription_ids()
        if not subscriptions:
            raise ValueError(NO_SUBSCRIPTIONS)
        with live.open() as access:
            fetched = fetch(access, subscriptions, estate)
        context.log.info(f"fetched {fetched} {what} from Azure")
    verify = VERIFY_FILES.set(run_settings.verify_files)
    try:
        with warehouse.get_connection() as conn, transaction(conn):
            stats = load(conn, estate, raw, context.run.run_id, context.log, full_reload=full_reload)
            metadata = table_metadata(conn, raw, preview_rows=0)
    finally:
        VERIFY_FILES.reset(verify)
    return dg.MaterializeResult(metadata={**metadata, **ingest_metadata(stats)})
