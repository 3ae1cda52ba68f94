"""Live mode: Azure Backup protected items of virtual machines (Resource Graph
`recoveryservicesresources`) and VM restore point collections (`resources`), written as one dated
`az graph query`-shaped capture azure/backup/backup-live-<YYYYMMDDTHHMMSSZ>.json that the
offline reader loads. Resource Graph lists neither the vault's recovery points nor the backup
policies' schedules: export those as ARM list bodies (docs/estate.md).

Paging, quota pacing, retries and error wrapping are the shared Resource Graph client's
(pipelines/ingest/azure.py).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from azure.mgmt.resourcegraph import ResourceGraphClient

from pipelines.ingest.azure import (
    STAMP,
    SUBSCRIPTION_BATCH,
    AzureAccess,
    AzureSourceError,
    Pacer,
    query_batch,
    utc_now,
    write_json,
)

from .reader import FOLDER, PROTECTED_ITEM

PROJECT = "| project id, name, type, location, properties | order by id asc"
QUERIES = {
    "recoveryservicesresources": f"recoveryservicesresources | where type =~ '{PROTECTED_ITEM}' "
                                 f"and properties.backupManagementType == 'AzureIaasVM' {PROJECT}",
    "resources": f"resources | where type =~ 'microsoft.compute/restorepointcollections' {PROJECT}",
}


def fetch_backup(access: AzureAccess, subscriptions: list[str], estate: Path, now: datetime | None = None) -> int:
    """Every protected VM and restore point collection of the subscriptions; returns the rows
    written. A query whose rows do not add up to Azure's totalRecords writes nothing."""
    rows: list[dict] = []
    pacer = Pacer(access.sleep)
    batches = [subscriptions[i:i + SUBSCRIPTION_BATCH] for i in range(0, len(subscriptions), SUBSCRIPTION_BATCH)]
    with ResourceGraphClient(access.credential, **access.client_kwargs) as client:
        for table, query in QUERIES.items():
            for batch in batches:
                what = f"Azure Resource Graph {table} (backup)"
                total, found = query_batch(client, pacer, query, batch, what)
                if total is not None and total != len(found):
                    raise AzureSourceError(f"{what}: Azure reported {total} rows, {len(found)} were fetched; "
                                           "nothing was loaded")
                rows += found
    stamp = (now or utc_now()).strftime(STAMP)
    write_json(estate.joinpath(*FOLDER) / f"backup-live-{stamp}.json", {"data": rows})
    return len(rows)
