"""The live side shared by the Azure sources (`PATCHLEDGER_SOURCE=azure`).

Each source's `live.py` fetches with the official SDK and writes what Azure returned into the
estate folder in the estate's own file shapes (ARM list body, `az graph query` output, Log
Analytics query API body, patch operation envelope); the offline readers then load it, so both
modes give the same raw rows by construction. The captures are kept: Resource Graph only holds
the latest assessment of a machine, history builds up from the dated snapshots, `source_file` /
`source_sha256` point at a file an auditor can open, and `--source files` replays a live run.

Credentials come from `DefaultAzureCredential` (environment, managed identity, az login); every
SDK client is built from one `AzureAccess`, opened by the `azure` resource (`AzureResource`:
subscriptions, workspaces, on-demand assessment), so tests inject a credential and an azure-core
`HttpTransport` there, with `resources=`. Retries, including 429 with Retry-After, are azure-core's
RetryPolicy; Resource Graph queries are also paced on its quota headers (`query_batch`). Errors
name the service and scope, and the innermost cause of an Azure error body first; tokens,
Authorization headers and query strings never reach a message or the log.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
)
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions
from pydantic import Field

PAGE_SIZE = 1000
# Resource Graph: subscriptions per query. Azure's guidance for throttled requests recommends
# grouping subscriptions (fewer, larger queries cost less quota) in groups under 300; its
# example uses 100.
SUBSCRIPTION_BATCH = 100
# Resource Graph's throttling headers: queries left in the current window, and when it resets
# (hh:mm:ss). The documented default is 15 queries per 5-second window.
QUOTA_REMAINING = "x-ms-user-quota-remaining"
QUOTA_RESETS_AFTER = "x-ms-user-quota-resets-after"

# Capture times in file names (UTC).
STAMP = "%Y%m%dT%H%M%SZ"
# Subscription and workspace ids become URL path segments and file names.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


class AzureSourceError(RuntimeError):
    """An Azure source could not be read; the message names the service and the scope."""


@dataclass
class AzureAccess:
    """What every SDK client is built from: the credential, plus client options such as
    `transport=` (an azure-core HttpTransport) or `retry_total=` / `retry_backoff_factor=`, and
    how to wait when Resource Graph's quota asks for it."""

    credential: TokenCredential
    client_kwargs: dict[str, Any] = field(default_factory=dict)
    sleep: Callable[[float], None] = time.sleep


class AzureResource(dg.ConfigurableResource):
    """Azure in live mode (PATCHLEDGER_SOURCE=azure): what to read and the access every SDK client
    is built from. Unused in files mode. `open_credential`, `client_options` and `sleep` are where
    a test puts a fake credential and an azure-core transport (a subclass, passed with `resources=`)."""

    subscriptions: str = Field(default="", description="Comma-separated Azure subscription ids.")
    workspace_ids: str = Field(default="", description="Comma-separated Log Analytics workspace ids.")
    assess_patches: bool = Field(
        default=False, description="Start an on-demand assessPatches on every VM before reading its results."
    )

    def subscription_ids(self) -> list[str]:
        return parse_ids(self.subscriptions, "PATCHLEDGER_SUBSCRIPTIONS")

    def workspaces(self) -> list[str]:
        return parse_ids(self.workspace_ids, "PATCHLEDGER_WORKSPACES")

    @contextmanager
    def open_credential(self) -> Iterator[TokenCredential]:
        from azure.identity import DefaultAzureCredential

        with DefaultAzureCredential() as credential:
            yield credential

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of every SDK client: none, the SDKs' own transport and retries."""
        return {}

    def sleep(self, seconds: float) -> None:
        """How Resource Graph's quota pacing waits."""
        time.sleep(seconds)

    @contextmanager
    def open(self) -> Iterator[AzureAccess]:
        with self.open_credential() as credential:
            yield AzureAccess(credential, self.client_options(), self.sleep)


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
def reading(what: str) -> Iterator[None]:
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


def parse_ids(value: str, what: str) -> list[str]:
    """The comma-separated subscription or workspace ids of setting `what`, each checked."""
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


def write_json(path: Path, document: Any) -> None:
    """Write atomically: a failed run never leaves half a file for the loaders to read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, default=_json_default), encoding="utf-8")
    partial.replace(path)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def resource_group(resource_id: str) -> str:
    # /subscriptions/{s}/resourceGroups/{rg}/providers/...; the segment's case varies.
    return resource_id.split("/")[4]


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


def arg_rows(data: Any, where: str) -> list[dict]:
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


class Pacer:
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


def query_batch(client: ResourceGraphClient, pacer: Pacer, query: str, batch: list[str],
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
        with reading(where):
            response, headers = client.resources(
                QueryRequest(
                    subscriptions=batch,
                    query=query,
                    options=QueryRequestOptions(top=PAGE_SIZE, skip_token=skip_token, result_format="objectArray"),
                ),
                cls=lambda pipeline_response, deserialized, _: (deserialized, pipeline_response.http_response.headers),
            )
        pacer.after(headers)
        data = arg_rows(response.data, where)
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


def subscription_scope(batch: list[str]) -> str:
    return batch[0] if len(batch) == 1 else f"{batch[0]} .. {batch[-1]} ({len(batch)})"
