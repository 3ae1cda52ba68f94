"""Live mode (`PATCHLEDGER_SOURCE=azure`): fetch the estate's Azure sources with the official SDKs.

Each fetch writes what Azure returned in the estate's own file shapes (ARM list body, `az graph
query` output, Log Analytics query API body) into a temporary estate folder, and the offline
loaders read it: both modes give the same raw rows by construction. Credentials come from
`DefaultAzureCredential` (environment, managed identity, az login); nothing secret is logged.
Retries, including 429 with Retry-After, are azure-core's RetryPolicy.

Patch operations (assessPatches / installPatches) change the machines, so live mode never calls
them; their table is empty in live mode.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions
from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult

from pipelines.connectors.azure_files import RESOURCE_GRAPH_COLUMNS

# Resource Graph keeps installations 30 days; Log Analytics is read over the same window.
WINDOW_DAYS = 30
PAGE_SIZE = 1000

# Server-side reduction (data-sources.md 4.4): the newest record per machine and update per day
# rather than every raw Update row.
LOG_ANALYTICS_QUERIES = {
    "Update": (
        "Update | summarize arg_max(TimeGenerated, *) "
        "by SourceComputerId, UpdateID, Product, ProductArch, Day = bin(TimeGenerated, 1d) "
        "| project-away Day"
    ),
    "UpdateSummary": (
        "UpdateSummary | summarize arg_max(TimeGenerated, *) "
        "by SourceComputerId, Day = bin(TimeGenerated, 1d) | project-away Day"
    ),
    "UpdateRunProgress": "UpdateRunProgress",
}

_LA_TABLE_OF = {
    "raw.la_update": "Update",
    "raw.la_update_summary": "UpdateSummary",
    "raw.la_update_run_progress": "UpdateRunProgress",
}
_ARG_TABLE_OF = {
    "raw.patch_assessment_resources": "patchassessmentresources",
    "raw.patch_installation_resources": "patchinstallationresources",
}


class LogAnalyticsPartialResultError(RuntimeError):
    """Log Analytics returned only part of the result: loading it would silently drop rows."""


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, default=_json_default), encoding="utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "as_dict"):
        return value.as_dict()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def fetch_virtual_machines(
    credential: TokenCredential, subscriptions: list[str], estate: Path, **client_kwargs: Any
) -> int:
    """Every VM of the subscriptions with its instance view, as an ARM list body."""
    machines = []
    for subscription in subscriptions:
        client = ComputeManagementClient(credential, subscription, **client_kwargs)
        for vm in client.virtual_machines.list_all():
            resource = vm.as_dict()
            resource_group = vm.id.split("/")[4]
            view = client.virtual_machines.instance_view(resource_group, vm.name)
            resource.setdefault("properties", {})["instanceView"] = view.as_dict()
            machines.append(resource)
    _write_json(estate / "azure" / "virtual_machines.json", {"value": machines})
    return len(machines)


def fetch_resource_graph(
    credential: TokenCredential,
    arg_table: str,
    subscriptions: list[str],
    estate: Path,
    **client_kwargs: Any,
) -> int:
    """All rows of a Resource Graph table, paged with $skipToken, as `az graph query` prints."""
    client = ResourceGraphClient(credential, **client_kwargs)
    query = f"{arg_table} | project {', '.join(RESOURCE_GRAPH_COLUMNS)}"
    rows: list[dict] = []
    skip_token = None
    while True:
        response = client.resources(
            QueryRequest(
                subscriptions=subscriptions or None,
                query=query,
                options=QueryRequestOptions(
                    top=PAGE_SIZE, skip_token=skip_token, result_format="objectArray"
                ),
            )
        )
        rows.extend(response.data or [])
        skip_token = response.skip_token
        if not skip_token:
            break
    day = datetime.now(UTC).date().isoformat()
    _write_json(estate / "azure" / "resource_graph" / f"{arg_table}-live-{day}.json", {"data": rows})
    return len(rows)


def fetch_log_analytics(
    credential: TokenCredential,
    la_table: str,
    workspaces: list[str],
    estate: Path,
    window: timedelta = timedelta(days=WINDOW_DAYS),
    **client_kwargs: Any,
) -> int:
    """One Log Analytics table from each workspace, written as the query API body."""
    client = LogsQueryClient(credential, **client_kwargs)
    total = 0
    for workspace in workspaces:
        result = client.query_workspace(workspace, LOG_ANALYTICS_QUERIES[la_table], timespan=window)
        if isinstance(result, LogsQueryPartialResult):
            error = result.partial_error
            raise LogAnalyticsPartialResultError(
                f"Log Analytics workspace {workspace}, table {la_table}: partial result "
                f"({getattr(error, 'code', '')}: {getattr(error, 'message', '')}); narrow the "
                "window or raise server_timeout, nothing was loaded"
            )
        tables = [
            {
                "name": table.name,
                "columns": [
                    {"name": n, "type": t}
                    for n, t in zip(table.columns, table.columns_types, strict=True)
                ],
                "rows": [list(row) for row in table.rows],
            }
            for table in result.tables
        ]
        total += sum(len(t["rows"]) for t in tables)
        _write_json(estate / "log_analytics" / f"{la_table}-live-{workspace}.json", {"tables": tables})
    return total


def fetch_into(
    table: str,
    estate: Path,
    *,
    credential: TokenCredential,
    subscriptions: list[str],
    workspaces: list[str],
    log: logging.Logger | None = None,
    **client_kwargs: Any,
) -> int:
    """Fetch the source of raw `table` from Azure into the estate folder `estate`."""
    if table == "raw.virtual_machines":
        count = fetch_virtual_machines(credential, subscriptions, estate, **client_kwargs)
    elif table in _ARG_TABLE_OF:
        count = fetch_resource_graph(
            credential, _ARG_TABLE_OF[table], subscriptions, estate, **client_kwargs
        )
    elif table in _LA_TABLE_OF:
        if not workspaces and log is not None:
            log.warning("No Log Analytics workspace configured (PATCHLEDGER_WORKSPACES)")
        count = fetch_log_analytics(
            credential, _LA_TABLE_OF[table], workspaces, estate, **client_kwargs
        )
    else:
        count = 0
    if log is not None:
        log.info(f"fetched {count} rows from Azure for {table}")
    return count


@contextmanager
def estate_for(run_settings: Any, table: str, log: logging.Logger | None = None) -> Iterator[Path]:
    """The estate folder a raw loader reads: the configured folder in files mode; in live mode a
    temporary folder filled from Azure in the same shapes."""
    if run_settings.source != "azure":
        yield Path(run_settings.estate_dir)
        return
    from azure.identity import DefaultAzureCredential

    subscriptions = _split(run_settings.subscriptions)
    if table == "raw.virtual_machines" and not subscriptions:
        raise ValueError("live mode needs PATCHLEDGER_SUBSCRIPTIONS (comma-separated ids)")
    with tempfile.TemporaryDirectory(prefix="patchledger-live-") as folder:
        credential = DefaultAzureCredential()
        fetch_into(
            table,
            Path(folder),
            credential=credential,
            subscriptions=subscriptions,
            workspaces=_split(run_settings.workspace_ids),
            log=log,
        )
        yield Path(folder)
