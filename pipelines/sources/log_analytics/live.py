"""Live mode: the Log Analytics tables through the official SDK (azure-monitor-query), one
window per table and workspace since the previous live fetch, written as the query API body
(the text received, so datetimes keep their seventh fractional digit) for the offline reader.

A partial result fails the fetch and writes nothing: loading it would silently drop rows.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult

from pipelines.ingest import azure
from pipelines.ingest.azure import (
    STAMP,
    AzureAccess,
    AzureSourceError,
    causes,
    reading,
    redact,
    write_json,
)

from . import FOLDER

# First live run: read this far back (Resource Graph keeps installations 30 days).
WINDOW_DAYS = 30
# Log Analytics ingests records minutes after TimeGenerated; a window ends this far before now
# so that the next window (which starts where this one ended) does not skip late records.
INGESTION_DELAY = timedelta(minutes=15)
# The query API's maximum server timeout (its default is 3 minutes).
SERVER_TIMEOUT_SECONDS = 600

# Server-side reduction (data-sources.md 4.4): the newest record per machine and update (per
# day), per machine (per day) and per run, machine and update, rather than every raw row.
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
    "UpdateRunProgress": (
        "UpdateRunProgress | summarize arg_max(TimeGenerated, *) "
        "by CorrelationId, SourceComputerId, UpdateId, Product"
    ),
}


class LogAnalyticsPartialResultError(AzureSourceError):
    """Log Analytics returned only part of the result: loading it would silently drop rows."""


def window_end(folder: Path, la_table: str, workspace: str) -> datetime | None:
    """Where the previous live window of this table and workspace ended (from its file name)."""
    pattern = re.compile(
        rf"^{la_table}-live-{re.escape(workspace)}-\d{{8}}T\d{{6}}Z-(\d{{8}}T\d{{6}}Z)\.json$"
    )
    ends = [m.group(1) for p in folder.glob(f"{la_table}-live-*.json") if (m := pattern.match(p.name))]
    return datetime.strptime(max(ends), STAMP).replace(tzinfo=UTC) if ends else None


def cell_value(value: Any, la_type: str, where: str) -> Any:
    """A cell as its Log Analytics type. The API sends long, int and bool (sometimes real) as
    strings ("1", "true"); datetimes stay the text received (seven fractional digits)."""
    if value is None or la_type not in ("bool", "int", "long", "real", "decimal"):
        return value
    if isinstance(value, bool | int | float):
        return value
    text = str(value).strip()
    if text == "":
        return None
    try:
        if la_type == "bool":
            return {"true": True, "false": False, "1": True, "0": False}[text.lower()]
        if la_type in ("int", "long"):
            return int(text)
        return float(text)
    except (KeyError, ValueError):
        raise AzureSourceError(f"{where}: {text[:40]!r} is not a valid {la_type}") from None


def fetch_log_analytics(
    access: AzureAccess,
    la_table: str,
    workspaces: list[str],
    estate: Path,
    now: datetime | None = None,
) -> int:
    """One Log Analytics table from each workspace, over the window since the previous live
    fetch (the last WINDOW_DAYS the first time), written as the query API body."""
    folder = estate.joinpath(*FOLDER)
    end = (now or azure.utc_now()) - INGESTION_DELAY
    total = 0
    with LogsQueryClient(access.credential, **access.client_kwargs) as client:
        for workspace in workspaces:
            what = f"Log Analytics workspace {workspace}, table {la_table}"
            start = window_end(folder, la_table, workspace) or end - timedelta(days=WINDOW_DAYS)
            if start >= end:
                continue
            # The body as received: the SDK parses datetimes into Python datetimes, which drops
            # the seventh fractional digit Log Analytics sends; the capture keeps the text.
            received: list[Any] = []
            with reading(what):
                result = client.query_workspace(
                    workspace,
                    LOG_ANALYTICS_QUERIES[la_table],
                    timespan=(start, end),
                    server_timeout=SERVER_TIMEOUT_SECONDS,
                    raw_response_hook=lambda response, sink=received: sink.append(response.http_response),
                )
            body = json.loads(received[-1].text())
            if isinstance(result, LogsQueryPartialResult):
                found = causes(body.get("error")) or [str(result.partial_error.message)]
                # Only a cause about the API's limits is helped by a shorter window.
                hint = ""
                if re.search(r"(?i)limit|too large|exceed", " ".join(found)):
                    hint = " (a result over the API's limits needs a shorter window)"
                raise LogAnalyticsPartialResultError(
                    f"{what}: partial result ({redact('; '.join(found))}); nothing was loaded{hint}"
                )
            tables = []
            for table in body.get("tables") or []:
                columns = table.get("columns") or []
                types = [c.get("type") for c in columns]
                rows = [
                    [
                        cell_value(cell, types[i], f"{what}, row {n}, column {columns[i].get('name')}")
                        for i, cell in enumerate(row)
                    ]
                    for n, row in enumerate(table.get("rows") or [], start=1)
                ]
                tables.append({"name": table.get("name"), "columns": columns, "rows": rows})
                total += len(rows)
            name = f"{la_table}-live-{workspace}-{start.strftime(STAMP)}-{end.strftime(STAMP)}.json"
            write_json(folder / name, {"tables": tables})
    return total
