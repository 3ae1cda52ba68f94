"""Live mode: every row of a Resource Graph patch table through the official SDK
(azure-mgmt-resourcegraph), written as `az graph query` prints it for the offline reader.

Completeness: a capture keeps Azure's `totalRecords` beside the rows fetched, and a fetch whose
rows differ from it writes nothing and fails (marts.azure_population_counts and its check then
hold every file to the same rule). Paging, quota pacing and error wrapping: pipelines/ingest/azure.py.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from azure.mgmt.resourcegraph import ResourceGraphClient

from pipelines.ingest import azure
from pipelines.ingest.azure import (
    STAMP,
    SUBSCRIPTION_BATCH,
    AzureAccess,
    AzureSourceError,
    Pacer,
    query_batch,
    subscription_scope,
    write_json,
)

from . import FOLDER, RESOURCE_GRAPH_COLUMNS


def fetch_resource_graph(
    access: AzureAccess,
    arg_table: str,
    subscriptions: list[str],
    estate: Path,
    now: datetime | None = None,
) -> int:
    """All rows of a Resource Graph table (results and their softwarepatches), queried in
    batches of SUBSCRIPTION_BATCH subscriptions and paged with $skipToken, each batch written as
    `az graph query` prints it: one dated snapshot per run and batch. A capture keeps what
    Azure said the query had (`totalRecords`) beside the rows fetched (`count`); when they
    differ nothing is written and the fetch fails: the population is incomplete."""
    # Ordered by id so that pages do not shift while the skip token walks them.
    query = f"{arg_table} | project {', '.join(RESOURCE_GRAPH_COLUMNS)} | order by id asc"
    batches = [subscriptions[i:i + SUBSCRIPTION_BATCH] for i in range(0, len(subscriptions), SUBSCRIPTION_BATCH)]
    captures = []
    pacer = Pacer(access.sleep)
    with ResourceGraphClient(access.credential, **access.client_kwargs) as client:
        for number, batch in enumerate(batches, start=1):
            what = f"Azure Resource Graph {arg_table}"
            if len(batches) > 1:
                what += f", subscription batch {number} of {len(batches)}"
            total, rows = query_batch(client, pacer, query, batch, what)
            if total is not None and total != len(rows):
                raise AzureSourceError(
                    f"{what}: Azure reported {total} rows for subscriptions {subscription_scope(batch)}, "
                    f"{len(rows)} were fetched; nothing was loaded"
                )
            captures.append({"totalRecords": total, "count": len(rows), "subscriptions": batch, "data": rows})
    stamp = (now or azure.utc_now()).strftime(STAMP)
    folder = estate.joinpath(*FOLDER)
    for number, capture in enumerate(captures, start=1):
        suffix = f"-{number:03d}" if len(captures) > 1 else ""
        write_json(folder / f"{arg_table}-live-{stamp}{suffix}.json", capture)
    return sum(capture["count"] for capture in captures)
