"""Live mode (`PATCHLEDGER_SOURCE=azure`): fetch the estate's Azure sources with the official SDKs.

Each fetch writes what Azure returned into the estate folder in the estate's own file shapes (ARM
list body, `az graph query` output, Log Analytics query API body, patch operation envelope), and
the offline loaders read it: both modes give the same raw rows by construction. The captures are
kept, not thrown away after the run, because Resource Graph only holds the latest assessment of a
machine: history builds up from the dated snapshots, `source_file` / `source_sha256` point at a
file an auditor can open, and `--source files` replays a live run exactly.

Credentials come from `DefaultAzureCredential` (environment, managed identity, az login); every
SDK client is built from one `AzureAccess`, so tests inject a credential and an azure-core
`HttpTransport` there (`open_access`). Retries, including 429 with Retry-After, are azure-core's
RetryPolicy; Resource Graph queries are also paced on its quota headers. Errors name the service
and scope, and the innermost cause of an Azure error body first; tokens, Authorization headers and
query strings never reach a message or the log.

Completeness: a Resource Graph capture keeps Azure's `totalRecords` beside the rows fetched, and a
fetch whose rows differ from it writes nothing and fails (marts.azure_population_counts and its
check then hold every file to the same rule).

installPatches changes machines, so live mode never calls it. assessPatches only triggers a fresh
assessment; it runs on request (`PATCHLEDGER_ASSESS_PATCHES=true`), never by default.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions
from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult

from pipelines.connectors.azure_files import RESOURCE_GRAPH_COLUMNS

# First live run: read this far back (Resource Graph keeps installations 30 days).
WINDOW_DAYS = 30
# Log Analytics ingests records minutes after TimeGenerated; a window ends this far before now
# so that the next window (which starts where this one ended) does not skip late records.
INGESTION_DELAY = timedelta(minutes=15)
PAGE_SIZE = 1000
# Resource Graph: subscriptions per query. Azure's guidance for throttled requests recommends
# grouping subscriptions (fewer, larger queries cost less quota) in groups under 300; its
# example uses 100.
SUBSCRIPTION_BATCH = 100
# Resource Graph's throttling headers: queries left in the current window, and when it resets
# (hh:mm:ss). The documented default is 15 queries per 5-second window.
QUOTA_REMAINING = "x-ms-user-quota-remaining"
QUOTA_RESETS_AFTER = "x-ms-user-quota-resets-after"
# The query API's maximum server timeout (its default is 3 minutes).
SERVER_TIMEOUT_SECONDS = 600
ASSESS_ENV = "PATCHLEDGER_ASSESS_PATCHES"

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

_LA_TABLE_OF = {
    "raw.la_update": "Update",
    "raw.la_update_summary": "UpdateSummary",
    "raw.la_update_run_progress": "UpdateRunProgress",
}
_ARG_TABLE_OF = {
    "raw.patch_assessment_resources": "patchassessmentresources",
    "raw.patch_installation_resources": "patchinstallationresources",
}

_STAMP = "%Y%m%dT%H%M%SZ"
# Subscription and workspace ids become URL path segments and file names.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


class AzureSourceError(RuntimeError):
    """An Azure source could not be read; the message names the service and the scope."""


class LogAnalyticsPartialResultError(AzureSourceError):
    """Log Analytics returned only part of the result: loading it would silently drop rows."""


@dataclass
class AzureAccess:
    """What every SDK client is built from: the credential, plus client options such as
    `transport=` (an azure-core HttpTransport) or `retry_total=` / `retry_backoff_factor=`, and
    how to wait when Resource Graph's quota asks for it."""

    credential: TokenCredential
    client_kwargs: dict[str, Any] = field(default_factory=dict)
    sleep: Callable[[float], None] = time.sleep


@contextmanager
def open_access() -> Iterator[AzureAccess]:
    """The production access: DefaultAzureCredential with the SDKs' own transport and retries.
    Tests replace this factory to replay recorded HTTP responses."""
    from azure.identity import DefaultAzureCredential

    with DefaultAzureCredential() as credential:
        yield AzureAccess(credential)


_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+")
# A URL, or the "url: /path?..." that requests' connection errors print.
_URL_QUERY = re.compile(r"(https?://[^\s?#'\"]+|\burl: /[^\s?#'\"]*)\?[^\s'\"]*")
_SECRET_PARAM = re.compile(
    r"(?i)\b(sig|se|sp|sv|skoid|sktid|skt|ske|sks|skv|code|client_secret|access_token"
    r"|refresh_token|\$?skiptoken)=[^&\s'\"]+"
)


def redact(text: str) -> str:
    """`text` without bearer tokens, URL query strings (SAS signatures, skip tokens) or secret
    parameters, cut to a readable length."""
    text = _BEARER.sub("Bearer <redacted>", text)
    text = _URL_QUERY.sub(r"\1?<query redacted>", text)
    text = _SECRET_PARAM.sub(r"\1=<redacted>", text)
    return text if len(text) <= 600 else text[:600] + "..."


def _reason(exc: AzureError) -> str:
    return redact(" ".join(str(getattr(exc, "message", None) or exc).split()))


def causes(error: Any) -> list[str]:
    """`code: message` of an Azure error body's `error` and of each of its `details` and nested
    `innererror`s, innermost first: the real cause (a Kusto semantic error, a skip token that
    cannot be decoded) sits at the bottom, under generic top-level text."""
    found: list[tuple[int, str]] = []

    def walk(node: Any, depth: int) -> None:
        if not isinstance(node, dict):
            return
        code, message = str(node.get("code") or ""), " ".join(str(node.get("message") or "").split())
        text = message if code in ("", message) else f"{code}: {message}" if message else code
        if text and text not in (t for _, t in found):
            found.append((depth, text))
        for detail in node.get("details") or []:
            walk(detail, depth + 1)
        walk(node.get("innererror"), depth + 1)

    walk(error, 0)
    return [text for _, text in sorted(found, key=lambda item: -item[0])]


def _http_reason(exc: HttpResponseError) -> str:
    """The causes from the response's error body when it has one, else the SDK's message."""
    try:
        body = json.loads(exc.response.text())
    except (AttributeError, TypeError, ValueError):
        body = None
    found = causes(body.get("error")) if isinstance(body, dict) else []
    return redact("; ".join(found)) if found else _reason(exc)


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turn SDK errors into one AzureSourceError naming `what`. The SDK exception is not chained:
    its request and response objects carry the URL and headers."""
    try:
        yield
    except ClientAuthenticationError as exc:
        message = (
            f"{what}: Azure rejected the credentials ({_reason(exc)}). Sign in again (az login) "
            "or check the managed identity / AZURE_CLIENT_ID settings used by "
            "DefaultAzureCredential"
        )
    except DecodeError as exc:
        message = (
            f"{what}: Azure returned a response that is not valid JSON "
            f"(HTTP {exc.status_code}; {_reason(exc)})"
        )
    except HttpResponseError as exc:
        message = f"{what}: HTTP {exc.status_code} ({_http_reason(exc)})"
    except AzureError as exc:
        message = f"{what}: {type(exc).__name__} ({_reason(exc)})"
    else:
        return
    raise AzureSourceError(message) from None


def _ids(value: str, what: str) -> list[str]:
    ids = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in ids if not _ID.fullmatch(v)]
    if bad:
        raise ValueError(f"{what}: not an id: {', '.join(map(repr, bad))}")
    return ids


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "as_dict"):
        return value.as_dict()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _write_json(path: Path, document: Any) -> None:
    """Write atomically: a failed run never leaves half a file for the loaders to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, default=_json_default), encoding="utf-8")
    partial.replace(path)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _resource_group(resource_id: str) -> str:
    # /subscriptions/{s}/resourceGroups/{rg}/providers/...; the segment's case varies.
    return resource_id.split("/")[4]


def fetch_virtual_machines(
    access: AzureAccess,
    subscriptions: list[str],
    estate: Path,
    log: logging.Logger | None = None,
) -> int:
    """Every VM of the subscriptions with its instance view (power state, OS name and version,
    patch status), written as one ARM list body to azure/virtual_machines/virtual_machines-<time>.json."""
    machines = []
    for subscription in subscriptions:
        what = f"Azure Compute, subscription {subscription}"
        with (
            _reading(what),
            ComputeManagementClient(access.credential, subscription, **access.client_kwargs) as client,
        ):
            vms = [vm for page in client.virtual_machines.list_all().by_page() for vm in page]
            for vm in vms:
                resource = vm.as_dict()
                try:
                    view = client.virtual_machines.instance_view(_resource_group(vm.id), vm.name)
                except ResourceNotFoundError:
                    # Deleted between the list and this call: keep what the list returned.
                    if log is not None:
                        log.warning(f"{what}: {vm.name} disappeared before its instance view")
                else:
                    resource.setdefault("properties", {})["instanceView"] = view.as_dict()
                machines.append(resource)
    # One dated snapshot per run (azure_files.VM_SNAPSHOT_NAME): the configuration history
    # (marts.vm_config_history) is built from the sequence.
    stamp = _now().strftime(_STAMP)
    _write_json(estate / "azure" / "virtual_machines" / f"virtual_machines-{stamp}.json", {"value": machines})
    return len(machines)


def quota_wait(headers: Any) -> float:
    """Seconds to wait before the next Resource Graph query, from the response's throttling
    headers: what is left of the quota window spread evenly over the queries left in it (Azure's
    "staggering queries"), the whole window when none is left. 0 when the headers are absent."""
    remaining, resets = headers.get(QUOTA_REMAINING), headers.get(QUOTA_RESETS_AFTER)
    try:
        hours, minutes, seconds = str(resets).split(":")
        window = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        left = int(remaining)
    except (TypeError, ValueError):
        return 0.0
    return window if left <= 0 else window / left


def _arg_rows(data: Any, where: str) -> list[dict]:
    """A page's rows as objects. `data` is a list of objects (objectArray), or the table form
    {"columns": [{"name", "type"}], "rows": [[...]]} that a query or a proxy may answer with."""
    if data is None:
        return []
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("columns"), list) and isinstance(data.get("rows"), list):
        names = [column.get("name") for column in data["columns"]]
        try:
            return [dict(zip(names, row, strict=True)) for row in data["rows"]]
        except (TypeError, ValueError):
            raise AzureSourceError(f"{where}: a table-form row does not match its {len(names)} columns") from None
    raise AzureSourceError(f"{where}: 'data' is neither a list of rows nor a table ({type(data).__name__})")


class _Pacer:
    """Waits before a Resource Graph query as long as the previous response's quota asked."""

    def __init__(self, sleep: Callable[[float], None]):
        self.sleep = sleep
        self.wait = 0.0

    def before(self) -> None:
        if self.wait > 0:
            self.sleep(self.wait)
        self.wait = 0.0

    def after(self, headers: Any) -> None:
        self.wait = quota_wait(headers)


def _query_batch(client: ResourceGraphClient, pacer: _Pacer, query: str, batch: list[str],
                 what: str) -> tuple[int | None, list[dict]]:
    """Every page of one query over one batch of subscriptions: (Azure's totalRecords, None
    when the response does not carry it, and the rows)."""
    rows: list[dict] = []
    skip_token = None
    seen_tokens: set[str] = set()
    total = None
    page = 0
    while True:
        page += 1
        where = f"{what}, page {page}"
        pacer.before()
        with _reading(where):
            response, headers = client.resources(
                QueryRequest(
                    subscriptions=batch,
                    query=query,
                    options=QueryRequestOptions(top=PAGE_SIZE, skip_token=skip_token, result_format="objectArray"),
                ),
                cls=lambda pipeline_response, deserialized, _: (deserialized, pipeline_response.http_response.headers),
            )
        pacer.after(headers)
        data = _arg_rows(response.data, where)
        if response.count is not None and response.count != len(data):
            raise AzureSourceError(f"{where}: the page says it has {response.count} rows but holds {len(data)}")
        if total is None:
            total = response.total_records
        elif response.total_records != total:
            raise AzureSourceError(
                f"{where}: Azure reported {total} rows, then {response.total_records} while paging "
                "(the population changed during the fetch); nothing was loaded"
            )
        rows.extend(data)
        skip_token = response.skip_token
        if not skip_token:
            if response.result_truncated == "true":
                raise AzureSourceError(f"{where}: result truncated without a skip token; nothing was loaded")
            break
        if skip_token in seen_tokens:
            raise AzureSourceError(f"{where}: Azure returned a skip token it had already sent; nothing was loaded")
        seen_tokens.add(skip_token)
    return total, rows


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
    pacer = _Pacer(access.sleep)
    with ResourceGraphClient(access.credential, **access.client_kwargs) as client:
        for number, batch in enumerate(batches, start=1):
            what = f"Azure Resource Graph {arg_table}"
            if len(batches) > 1:
                what += f", subscription batch {number} of {len(batches)}"
            total, rows = _query_batch(client, pacer, query, batch, what)
            if total is not None and total != len(rows):
                raise AzureSourceError(
                    f"{what}: Azure reported {total} rows for subscriptions {_scope(batch)}, "
                    f"{len(rows)} were fetched; nothing was loaded"
                )
            captures.append({"totalRecords": total, "count": len(rows), "subscriptions": batch, "data": rows})
    stamp = (now or _now()).strftime(_STAMP)
    folder = estate / "azure" / "resource_graph"
    for number, capture in enumerate(captures, start=1):
        suffix = f"-{number:03d}" if len(captures) > 1 else ""
        _write_json(folder / f"{arg_table}-live-{stamp}{suffix}.json", capture)
    return sum(capture["count"] for capture in captures)


def _scope(batch: list[str]) -> str:
    return batch[0] if len(batch) == 1 else f"{batch[0]} .. {batch[-1]} ({len(batch)})"


def _la_window_end(folder: Path, la_table: str, workspace: str) -> datetime | None:
    """Where the previous live window of this table and workspace ended (from its file name)."""
    pattern = re.compile(
        rf"^{la_table}-live-{re.escape(workspace)}-\d{{8}}T\d{{6}}Z-(\d{{8}}T\d{{6}}Z)\.json$"
    )
    ends = [m.group(1) for p in folder.glob(f"{la_table}-live-*.json") if (m := pattern.match(p.name))]
    return datetime.strptime(max(ends), _STAMP).replace(tzinfo=UTC) if ends else None


def _la_value(value: Any, la_type: str, where: str) -> Any:
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
    folder = estate / "log_analytics"
    end = (now or _now()) - INGESTION_DELAY
    total = 0
    with LogsQueryClient(access.credential, **access.client_kwargs) as client:
        for workspace in workspaces:
            what = f"Log Analytics workspace {workspace}, table {la_table}"
            start = _la_window_end(folder, la_table, workspace) or end - timedelta(days=WINDOW_DAYS)
            if start >= end:
                continue
            # The body as received: the SDK parses datetimes into Python datetimes, which drops
            # the seventh fractional digit Log Analytics sends; the capture keeps the text.
            received: list[Any] = []
            with _reading(what):
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
                        _la_value(cell, types[i], f"{what}, row {n}, column {columns[i].get('name')}")
                        for i, cell in enumerate(row)
                    ]
                    for n, row in enumerate(table.get("rows") or [], start=1)
                ]
                tables.append({"name": table.get("name"), "columns": columns, "rows": rows})
                total += len(rows)
            name = f"{la_table}-live-{workspace}-{start.strftime(_STAMP)}-{end.strftime(_STAMP)}.json"
            _write_json(folder / name, {"tables": tables})
    return total


def assess_patches(
    access: AzureAccess,
    subscriptions: list[str],
    estate: Path,
    log: logging.Logger | None = None,
) -> int:
    """Run assessPatches on every VM of the subscriptions and keep each result as a patch
    operation envelope. All assessments start before the first is awaited, so they run in
    parallel; a VM that cannot be assessed (stopped, no agent) is logged and skipped."""
    stamp = _now().strftime(_STAMP)
    written = 0
    for subscription in subscriptions:
        what = f"Azure Compute assessPatches, subscription {subscription}"
        with (
            _reading(what),
            ComputeManagementClient(access.credential, subscription, **access.client_kwargs) as client,
        ):
            pollers = []
            for vm in client.virtual_machines.list_all():
                try:
                    poller = client.virtual_machines.begin_assess_patches(
                        _resource_group(vm.id), vm.name
                    )
                    pollers.append((vm, poller))
                except ClientAuthenticationError:
                    raise
                except HttpResponseError as exc:
                    if log is not None:
                        log.warning(f"{what}: {vm.name} not assessed: HTTP {exc.status_code}")
            for vm, poller in pollers:
                try:
                    result = poller.result()
                except ClientAuthenticationError:
                    raise
                except HttpResponseError as exc:
                    if log is not None:
                        log.warning(f"{what}: {vm.name} assessment failed: HTTP {exc.status_code}")
                    continue
                envelope = {"resourceId": vm.id, "operation": "assessPatches", "result": result}
                _write_json(
                    estate / "azure" / "patch_operations" / f"{vm.name}-assessPatches-{stamp}.json",
                    envelope,
                )
                written += 1
    return written


def fetch_into(
    table: str,
    estate: Path,
    *,
    access: AzureAccess,
    subscriptions: list[str],
    workspaces: list[str],
    log: logging.Logger | None = None,
    assess: bool = False,
) -> int:
    """Fetch the source of raw `table` from Azure into the estate folder `estate`."""
    uses_subscriptions = table in ("raw.virtual_machines", *_ARG_TABLE_OF) or (
        table == "raw.patch_operations" and assess
    )
    if uses_subscriptions and not subscriptions:
        raise ValueError("live mode needs PATCHLEDGER_SUBSCRIPTIONS (comma-separated ids)")
    if table == "raw.virtual_machines":
        count = fetch_virtual_machines(access, subscriptions, estate, log)
    elif table in _ARG_TABLE_OF:
        count = fetch_resource_graph(access, _ARG_TABLE_OF[table], subscriptions, estate)
    elif table in _LA_TABLE_OF:
        if not workspaces and log is not None:
            log.warning("No Log Analytics workspace configured (PATCHLEDGER_WORKSPACES)")
        count = fetch_log_analytics(access, _LA_TABLE_OF[table], workspaces, estate)
    elif table == "raw.patch_operations" and assess:
        count = assess_patches(access, subscriptions, estate, log)
    else:
        count = 0
    if log is not None:
        log.info(f"fetched {count} rows from Azure for {table}")
    return count


@contextmanager
def estate_for(run_settings: Any, table: str, log: logging.Logger | None = None) -> Iterator[Path]:
    """The estate folder a raw loader reads; in live mode first refreshed from Azure."""
    estate = Path(run_settings.estate_dir)
    if run_settings.source == "azure":
        with open_access() as access:
            fetch_into(
                table,
                estate,
                access=access,
                subscriptions=_ids(run_settings.subscriptions, "PATCHLEDGER_SUBSCRIPTIONS"),
                workspaces=_ids(run_settings.workspace_ids, "PATCHLEDGER_WORKSPACES"),
                log=log,
                assess=os.environ.get(ASSESS_ENV, "").strip().lower() in ("1", "true", "yes"),
            )
    yield estate
