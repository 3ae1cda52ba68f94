"""Live mode against replayed HTTP: the real SDK clients (pipelines, paging, retries, LRO
polling, deserialization) talk to a fake azure-core transport that answers with canned REST
bodies (tests/fixtures_azure_live, the real REST examples in ../shared/samples). Nothing of our
own is mocked: only the transport and the credential are injected, through the `azure` resource
(`replayed_azure`, passed with `resources=`)."""

import io
import json
import logging
import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import duckdb
import pytest
import requests
import yaml
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.transport import HttpTransport

# The response type RequestsTransport itself returns, so the SDKs see what they see in production.
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from partition_runs import materialize_every_day

from assets import inventory, monitoring, population
from pipelines import reporting, sources
from pipelines.ingest import azure
from pipelines.reporting.document import render_html
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.backup import assets as backup_assets
from pipelines.sources.compute import assets as compute_assets
from pipelines.sources.compute.live import fetch_virtual_machines
from pipelines.sources.compute.reader import load_virtual_machines
from pipelines.sources.log_analytics import assets as la_assets
from pipelines.sources.log_analytics.live import LogAnalyticsPartialResultError, fetch_log_analytics
from pipelines.sources.log_analytics.reader import load_log_analytics
from pipelines.sources.maintenance import assets as maintenance_assets
from pipelines.sources.patch_operations import assets as operations_assets
from pipelines.sources.patch_operations.reader import load_patch_operations
from pipelines.sources.resource_graph import assets as resource_graph_assets
from pipelines.sources.resource_graph.live import fetch_resource_graph
from pipelines.sources.resource_graph.reader import load_resource_graph

SCAN_ASSETS = [la_assets, operations_assets, resource_graph_assets]

FIXTURES = Path(__file__).parent / "fixtures_azure_live"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOi.fake-secret-token"
SUB = "22222222-2222-2222-2222-222222222222"
WORKSPACE = "63613592-b6f7-4c3d-a390-22ba13102111"
VM_PATH = f"/subscriptions/{SUB}/resourceGroups/myResourceGroup/providers/Microsoft.Compute/virtualMachines"
VM_ID = f"{VM_PATH}/myVM"
LIST_PATH = f"/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines"
ARG_PATH = "/providers/Microsoft.ResourceGraph/resources"
LA_PATH = f"/v1/workspaces/{WORKSPACE}/query"
# Tiny backoff: the retry policy still runs, the replay transport records its sleeps.
FAST = {"retry_total": 3, "retry_backoff_factor": 0.01}


# --- the fakes: an HTTP transport that replays canned responses, a static credential --------


def reply(status: int = 200, body=None, headers: dict | None = None) -> dict:
    return {"status": status, "body": body, "headers": headers or {}}


class ReplayTransport(HttpTransport):
    """Answers each request from the first route whose method, URL path (regex) and optional
    `match(request)` fit. A route's replies are used in order; the last one repeats. Requests
    and the retry policy's sleeps are recorded instead of slept."""

    def __init__(self):
        self.routes: list[tuple[str, str, object, list[dict]]] = []
        self.requests = []
        self.sleeps: list[float] = []
        self._lock = threading.Lock()  # LRO pollers poll from their own threads

    def add(self, method: str, path: str, *replies: dict, match=None) -> "ReplayTransport":
        self.routes.append((method, path, match, list(replies)))
        return self

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass

    def open(self):
        pass

    def close(self):
        pass

    def sleep(self, duration):
        self.sleeps.append(duration)

    def sent(self, method: str, path: str) -> list:
        return [r for r in self.requests if r.method == method and re.fullmatch(path, urlparse(r.url).path)]

    def send(self, request, **kwargs):
        with self._lock:
            self.requests.append(request)
            for method, path, match, replies in self.routes:
                if (
                    method == request.method
                    and re.fullmatch(path, urlparse(request.url).path)
                    and (match is None or match(request))
                ):
                    canned = replies.pop(0) if len(replies) > 1 else replies[0]
                    break
            else:
                canned = reply(404, {"error": {"code": "NotFound", "message": "no route"}})
        body = canned["body"]
        if not isinstance(body, str | bytes):
            body = json.dumps(body)
        raw = requests.Response()
        raw.status_code = canned["status"]
        raw.reason = "replayed"
        raw.url = request.url
        raw.headers.update({"Content-Type": "application/json", **canned["headers"]})
        raw.raw = io.BytesIO(body.encode() if isinstance(body, str) else body)
        response = RestRequestsTransportResponse(request=request, internal_response=raw)
        if not kwargs.get("stream"):
            response.read()
        return response


class StaticCredential:
    """A TokenCredential that always has a valid token and records the scopes asked for."""

    def __init__(self):
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)


class ExpiredCredential:
    def get_token(self, *scopes, **kwargs) -> AccessToken:
        raise ClientAuthenticationError(
            "ClientSecretCredential authentication failed: AADSTS7000222: The provided client "
            "secret keys for app '00000000-0000-0000-0000-000000000000' are expired."
        )


def access(transport: ReplayTransport, credential=None) -> azure.AzureAccess:
    # Quota pacing waits through the transport too, so the test records it instead of sleeping.
    return azure.AzureAccess(credential or StaticCredential(), {"transport": transport, **FAST}, transport.sleep)


def replayed_azure(transport: ReplayTransport, **settings) -> azure.AzureResource:
    """The `azure` resource of a run on the fakes: its own `open()`, with only the credential,
    the transport and the quota wait replaced."""

    class Replayed(azure.AzureResource):
        @contextmanager
        def open_credential(self):
            yield StaticCredential()

        def client_options(self):
            return {"transport": transport, **FAST}

        def sleep(self, seconds):
            transport.sleep(seconds)

    return Replayed(**settings)


# --- canned data ------------------------------------------------------------------------------


def sample(*parts: str) -> dict:
    path = SAMPLES.joinpath(*parts)
    if not path.is_file():
        pytest.skip("shared samples are not beside the repository")
    return json.loads(path.read_text().replace("{subscription-id}", SUB))


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def sample_vm() -> dict:
    return sample("azure-compute", "VirtualMachine_Get.rest-spec-2024-07-01.json")["responses"]["200"]["body"]


def sample_instance_view() -> dict:
    body = sample("azure-compute", "VirtualMachine_Get_InstanceView.rest-spec-2024-07-01.json")
    return body["responses"]["200"]["body"]


def arg_pages(arg_table: str) -> list[dict]:
    return [fixture(p.name) for p in sorted(FIXTURES.glob(f"{arg_table}-page*.json"))]


def skip_token_is(token):
    return lambda request: json.loads(request.content)["options"].get("$skipToken") == token


def la_table_is(la_table: str):
    return lambda request: json.loads(request.content)["query"].startswith(f"{la_table} |")


def route_arg(transport: ReplayTransport, arg_table: str) -> None:
    """Resource Graph pages of `arg_table`, each answered for the skip token that asks for it."""
    token = None
    for body in arg_pages(arg_table):
        is_table = (lambda t: lambda r: json.loads(r.content)["query"].startswith(t))(arg_table)
        is_token = skip_token_is(token)
        transport.add("POST", ARG_PATH, reply(body=body), match=lambda r, a=is_table, b=is_token: a(r) and b(r))
        token = body.get("$skipToken")


def azure_estate(transport: ReplayTransport) -> ReplayTransport:
    """Every route of a one-VM estate: the VM (real sample), Resource Graph, Log Analytics."""
    transport.add("GET", LIST_PATH, reply(body={"value": [sample_vm()]}))
    transport.add("GET", f"{VM_PATH}/myVM/instanceView", reply(body=sample_instance_view()))
    for arg_table in ("patchassessmentresources", "patchinstallationresources"):
        route_arg(transport, arg_table)
    for la_table in ("Update", "UpdateSummary", "UpdateRunProgress"):
        transport.add("POST", LA_PATH, reply(body=fixture(f"la-{la_table}.json")), match=la_table_is(la_table))
    return transport


def offline_estate(folder: Path) -> Path:
    """The same data as `azure_estate`, as exported files (docs/estate.md)."""
    vm = sample_vm()
    vm["properties"]["instanceView"] = sample_instance_view()
    (folder / "azure" / "resource_graph").mkdir(parents=True)
    (folder / "log_analytics").mkdir()
    (folder / "azure" / "virtual_machines.json").write_text(json.dumps({"value": [vm]}))
    for arg_table in ("patchassessmentresources", "patchinstallationresources"):
        rows = [row for page in arg_pages(arg_table) for row in page["data"]]
        (folder / "azure" / "resource_graph" / f"{arg_table}-export.json").write_text(
            json.dumps({"data": rows})
        )
    for la_table in ("Update", "UpdateSummary", "UpdateRunProgress"):
        shutil.copy(FIXTURES / f"la-{la_table}.json", folder / "log_analytics" / f"{la_table}-export.json")
    return folder


@pytest.fixture
def conn():
    connection = duckdb.connect()
    connection.execute("CREATE SCHEMA raw")
    yield connection
    connection.close()


# --- Compute ----------------------------------------------------------------------------------


def test_vm_list_follows_next_link_and_adds_instance_views(tmp_path, conn):
    vm = sample_vm()
    second = json.loads(json.dumps(vm).replace("myVM", "myVM2"))
    next_link = f"https://management.azure.com{LIST_PATH}?api-version=2024-07-01&$skiptoken=page2"
    credential = StaticCredential()
    transport = (
        ReplayTransport()
        .add("GET", LIST_PATH, reply(body={"value": [vm], "nextLink": next_link}),
             match=lambda r: "skiptoken" not in r.url)
        .add("GET", LIST_PATH, reply(body={"value": [second]}), match=lambda r: "skiptoken=page2" in r.url)
        .add("GET", f"{VM_PATH}/myVM/instanceView", reply(body=sample_instance_view()))
        # myVM2 is deleted between the list and its instance view (ARM's 404 body, as logged from
        # real responses; no recording of one was found).
        .add("GET", f"{VM_PATH}/myVM2/instanceView",
             reply(404, {"error": {"code": "ResourceNotFound", "message": (
                 "The Resource 'Microsoft.Compute/virtualMachines/myVM2' under resource group "
                 "'myResourceGroup' was not found. For more details please go to "
                 "https://aka.ms/ARMResourceNotFoundFix")}}))
    )

    count = fetch_virtual_machines(access(transport, credential), [SUB], tmp_path)

    assert count == 2
    assert len(transport.sent("GET", LIST_PATH)) == 2
    assert {r.headers["Authorization"] for r in transport.requests} == {f"Bearer {TOKEN}"}
    assert credential.scopes[0] == ("https://management.azure.com/.default",)
    assert load_virtual_machines(conn, tmp_path, "raw.vms", "run").rows == 2
    rows = conn.execute(
        "SELECT name, resource->'properties'->>'vmId', resource->'properties'->'instanceView'->>'osName', "
        "resource->'properties'->'instanceView'->'patchStatus'->'availablePatchSummary'->>'rebootPending' "
        "FROM raw.vms ORDER BY name"
    ).fetchall()
    assert rows == [
        ("myVM", "0f47b100-583c-48e3-a4c0-aefc2c9bbcc1", "Windows Server 2016 Datacenter", "true"),
        ("myVM2", "0f47b100-583c-48e3-a4c0-aefc2c9bbcc1", None, None),
    ]


def test_server_error_is_retried(tmp_path):
    transport = ReplayTransport().add(
        "GET", LIST_PATH,
        reply(500, {"error": {"code": "InternalServerError", "message": "try again"}}),
        reply(body={"value": [sample_vm()]}),
    ).add("GET", f"{VM_PATH}/myVM/instanceView", reply(body=sample_instance_view()))

    assert fetch_virtual_machines(access(transport), [SUB], tmp_path) == 1
    assert len(transport.sent("GET", LIST_PATH)) == 2


def test_expired_credentials_give_a_clear_error(tmp_path):
    transport = ReplayTransport()
    with pytest.raises(azure.AzureSourceError) as error:
        fetch_virtual_machines(access(transport, ExpiredCredential()), [SUB], tmp_path)
    message = str(error.value)
    assert f"Azure Compute, subscription {SUB}" in message
    assert "rejected the credentials" in message and "az login" in message
    assert transport.requests == []
    assert not (tmp_path / "azure").exists()


def test_errors_and_logs_never_carry_tokens_or_query_strings(tmp_path, caplog):
    secret = "sv=2024-05-04&sig=SAS-SIGNATURE-SECRET"
    next_link = f"https://management.azure.com{LIST_PATH}?api-version=2024-07-01&{secret}"
    transport = (
        ReplayTransport()
        .add("GET", LIST_PATH, reply(body={"value": [sample_vm()], "nextLink": next_link}),
             match=lambda r: "sig=" not in r.url)
        .add("GET", LIST_PATH, reply(503, {"error": {
            "code": "ServiceUnavailable",
            "message": f"upstream {next_link} failed, Authorization: Bearer {TOKEN}",
        }}))
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(azure.AzureSourceError) as error:
        fetch_virtual_machines(access(transport), [SUB], tmp_path)
    message = str(error.value)
    assert "HTTP 503" in message and "ServiceUnavailable" in message
    assert "virtualMachines?<query redacted>" in message and "Bearer <redacted>" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__
    everything = message + "\n".join(r.getMessage() for r in caplog.records)
    for leaked in ("SAS-SIGNATURE-SECRET", TOKEN, "fake-secret"):
        assert leaked not in everything


@pytest.mark.parametrize("text", [
    "Max retries exceeded with url: /subscriptions/s/providers?api-version=1&sig=SECRET (Caused by X)",
    "blob https://acct.blob.core.windows.net/c/b.json?sv=2024&sig=SECRET failed",
    "refresh with sig=SECRET&se=2030-01-01",
    "Authorization: Bearer SECRET.SECRET",
])
def test_redact_removes_secrets(text):
    assert "SECRET" not in azure.redact(text)


# --- Resource Graph ---------------------------------------------------------------------------


def test_resource_graph_pages_with_skip_token(tmp_path, conn):
    transport = ReplayTransport()
    route_arg(transport, "patchassessmentresources")

    count = fetch_resource_graph(
        access(transport), "patchassessmentresources", [SUB], tmp_path, now=datetime(2024, 3, 10, tzinfo=UTC)
    )

    assert count == 3
    bodies = [json.loads(r.content) for r in transport.sent("POST", ARG_PATH)]
    assert [b["options"].get("$skipToken") for b in bodies] == [
        None, *[p["$skipToken"] for p in arg_pages("patchassessmentresources")[:2]]
    ]
    assert {(b["options"]["$top"], b["options"]["resultFormat"]) for b in bodies} == {(1000, "objectArray")}
    assert all(b["subscriptions"] == [SUB] for b in bodies)
    assert bodies[0]["query"].startswith("patchassessmentresources | project id, name, type")
    written = tmp_path / "azure" / "resource_graph" / "patchassessmentresources-live-20240310T000000Z.json"
    assert written.is_file()
    assert load_resource_graph(conn, tmp_path, "patchassessmentresources", "raw.pa", "run").rows == 3
    assert conn.execute("SELECT count(*) FILTER (WHERE type LIKE '%softwarepatches') FROM raw.pa").fetchone() == (2,)


def test_throttling_honours_retry_after(tmp_path):
    page = arg_pages("patchinstallationresources")[0]
    transport = ReplayTransport().add(
        "POST", ARG_PATH,
        reply(429, {"error": {"code": "RateLimiting", "message": "slow down"}}, {"Retry-After": "1"}),
        reply(body=page),
    )
    count = fetch_resource_graph(access(transport), "patchinstallationresources", [SUB], tmp_path)
    assert count == len(page["data"]) == 2
    assert len(transport.sent("POST", ARG_PATH)) == 2
    assert transport.sleeps == [1]


def test_broken_page_gives_a_clear_error(tmp_path):
    first = arg_pages("patchassessmentresources")[0]
    transport = ReplayTransport().add("POST", ARG_PATH, reply(body=first), match=skip_token_is(None))
    transport.add("POST", ARG_PATH, reply(body='{"totalRecords": 3, "data": [{"id": '))
    with pytest.raises(azure.AzureSourceError, match=r"Resource Graph patchassessmentresources, page 2: .*not valid JSON"):
        fetch_resource_graph(access(transport), "patchassessmentresources", [SUB], tmp_path)
    assert not (tmp_path / "azure" / "resource_graph").exists()


# --- Log Analytics ----------------------------------------------------------------------------


def test_log_analytics_sample_body_is_typed(tmp_path, conn):
    """The real query API example: long and bool values arrive as strings and are written typed;
    it has the UpdateSummary key columns (TimeGenerated, Computer), so it loads as that table."""
    body = sample("log-analytics", "LogAnalytics_query_POST_response.rest-spec-v1.json")
    credential = StaticCredential()
    transport = ReplayTransport().add("POST", LA_PATH, reply(body=body["responses"]["200"]["body"]))
    now = datetime(2017, 8, 24, 12, 15, tzinfo=UTC)

    assert fetch_log_analytics(
        access(transport, credential), "UpdateSummary", [WORKSPACE], tmp_path, now=now
    ) == 2

    assert credential.scopes[0] == ("https://api.loganalytics.io/.default",)
    request = json.loads(transport.requests[0].content)
    assert request["query"].startswith("UpdateSummary | summarize arg_max(TimeGenerated, *)")
    assert request["timespan"] == "2017-07-25T12:00:00.000Z/2017-08-24T12:00:00.000Z"
    written = tmp_path / "log_analytics" / f"UpdateSummary-live-{WORKSPACE}-20170725T120000Z-20170824T120000Z.json"
    table = json.loads(written.read_text())["tables"][0]
    row = dict(zip([c["name"] for c in table["columns"]], table["rows"][0], strict=True))
    assert row["BatchesWithinSla"] == 1 and row["BatchesOutsideSla"] == 0
    assert row["IsBillable"] is True
    assert row["AvgLatencyInSeconds"] == 1.286
    # Datetimes are kept as the text received, not re-rendered by the SDK.
    assert row["TimeGenerated"] == "2017-08-24T06:59:59Z"
    assert row["LinkedResourceUri"] is None

    assert load_log_analytics(conn, tmp_path, "UpdateSummary", "raw.s", "run").rows == 2
    assert conn.execute(
        "SELECT Computer, TimeGenerated = TIMESTAMPTZ '2017-08-24 06:59:59+00', SourceSystem, Type "
        "FROM raw.s ORDER BY Computer"
    ).fetchall() == [("ContosoSQLSrv1", True, "OMS", "Usage"), ("Store010Web3", True, "OMS", "Usage")]


def test_log_analytics_window_is_incremental(tmp_path):
    transport = ReplayTransport().add("POST", LA_PATH, reply(body=fixture("la-Update.json")))
    first, second = datetime(2024, 3, 9, 6, 15, tzinfo=UTC), datetime(2024, 3, 10, 6, 15, tzinfo=UTC)
    for now in (first, second, second):
        fetch_log_analytics(access(transport), "Update", [WORKSPACE], tmp_path, now=now)
    spans = [json.loads(r.content)["timespan"] for r in transport.requests]
    # The second window starts where the first ended; the third has nothing new to ask for.
    assert spans == [
        "2024-02-08T06:00:00.000Z/2024-03-09T06:00:00.000Z",
        "2024-03-09T06:00:00.000Z/2024-03-10T06:00:00.000Z",
    ]
    assert transport.requests[0].headers["Prefer"] == "wait=600"
    assert len(list((tmp_path / "log_analytics").glob("Update-live-*.json"))) == 2


def test_partial_log_analytics_result_fails_clearly(tmp_path):
    body = fixture("la-Update.json")
    body["error"] = {
        "code": "PartialError",
        "message": "There were some errors when processing your query.",
        "details": [{"code": "EngineError", "message": "Query exceeded the result size limit"}],
    }
    transport = ReplayTransport().add("POST", LA_PATH, reply(body=body))
    with pytest.raises(LogAnalyticsPartialResultError) as error:
        fetch_log_analytics(access(transport), "Update", [WORKSPACE], tmp_path)
    message = str(error.value)
    assert f"workspace {WORKSPACE}, table Update" in message
    # The cause first (the detail), then the generic top level; a limit gets the hint.
    assert ("partial result (EngineError: Query exceeded the result size limit; PartialError: There "
            "were some errors when processing your query.); nothing was loaded (a result over the "
            "API's limits needs a shorter window)") in message
    assert not (tmp_path / "log_analytics").exists()


def test_unparseable_log_analytics_value_names_row_and_column(tmp_path):
    body = fixture("la-UpdateSummary.json")
    columns = [c["name"] for c in body["tables"][0]["columns"]]
    body["tables"][0]["rows"][0][columns.index("TotalUpdatesMissing")] = "two"
    transport = ReplayTransport().add("POST", LA_PATH, reply(body=body))
    with pytest.raises(azure.AzureSourceError, match=r"table UpdateSummary, row 1, column TotalUpdatesMissing: 'two' is not a valid int"):
        fetch_log_analytics(access(transport), "UpdateSummary", [WORKSPACE], tmp_path)


# --- on-demand assessment ---------------------------------------------------------------------


def test_assess_patches_runs_only_on_request(tmp_path, conn):
    result = sample("azure-compute", "VirtualMachine_AssessPatches.rest-spec-2024-11-01.json")
    operation = f"/subscriptions/{SUB}/providers/Microsoft.Compute/locations/westus/operations/op-1"
    location = f"https://management.azure.com{operation}?monitor=true&api-version=2024-11-01"
    transport = (
        ReplayTransport()
        .add("GET", LIST_PATH, reply(body={"value": [sample_vm()]}))
        .add("POST", f"{VM_PATH}/myVM/assessPatches", reply(202, "", {"Location": location, "Retry-After": "1"}))
        .add("GET", operation, reply(202, "", {"Location": location, "Retry-After": "1"}),
             reply(body=result["responses"]["200"]["body"]))
    )
    settings = {"access": access(transport), "subscriptions": [SUB], "workspaces": []}

    assert sources.fetch_into("raw.patch_operations", tmp_path, **settings) == 0
    assert transport.requests == []

    assert sources.fetch_into("raw.patch_operations", tmp_path, assess=True, **settings) == 1
    assert len(transport.sent("GET", operation)) == 2
    assert load_patch_operations(conn, tmp_path, "raw.ops", "run").rows == 1
    assert conn.execute(
        "SELECT resourceId, operation, result->>'assessmentActivityId', json_array_length(result->'availablePatches') "
        "FROM raw.ops"
    ).fetchall() == [(VM_ID, "assessPatches", "68f8b292-dfc2-4646-9781-33cc88631968", 2)]


# --- end to end: the assets in live mode give the marts of the equivalent exports ----------------


def materialize(root: Path, settings: RunSettings, live: azure.AzureResource) -> Path:
    database = root / "warehouse.duckdb"
    with duckdb.connect(str(database)) as conn:
        # Inputs owned by other stages (as in test_patch_state.py).
        conn.execute("CREATE SCHEMA IF NOT EXISTS staging")
        conn.execute(
            "CREATE TABLE staging.asset_categories (category_id VARCHAR, name VARCHAR, "
            "description VARCHAR, criticality VARCHAR, rule_order INTEGER, tag_key VARCHAR, "
            "tag_value VARCHAR, os_type VARCHAR)"
        )
        conn.execute("CREATE SCHEMA IF NOT EXISTS marts")
        conn.execute("CREATE TABLE marts.patch_supersedence_closure "
                     "(kb VARCHAR, superseded_kb VARCHAR, depth INTEGER, in_cycle BOOLEAN)")
    result = materialize_every_day(
        [*dg.load_assets_from_modules([compute_assets, inventory, monitoring, *SCAN_ASSETS])],
        resources={"warehouse": WarehouseResource(database=str(database)), "run_settings": settings, "azure": live},
    )
    assert result.success
    return database


def marts_of(database: Path) -> dict:
    with duckdb.connect(str(database), read_only=True) as conn:
        inventory_row = conn.execute(
            "SELECT * FROM marts.vm_inventory WHERE vm_id = ?", [VM_ID.lower()]
        ).fetchall()
        # source_file names the export or the live capture: the one column that may differ.
        observations = conn.execute(
            "SELECT * EXCLUDE (source_file) FROM staging.patch_observations WHERE vm_id = ? ORDER BY ALL",
            [VM_ID.lower()],
        ).fetchall()
        states = conn.execute(
            "SELECT patch_key, state FROM marts.vm_patch_state WHERE vm_id = ? ORDER BY ALL",
            [VM_ID.lower()],
        ).fetchall()
    return {"vm_inventory": inventory_row, "patch_observations": observations, "vm_patch_state": states}


def test_live_assets_equal_offline_assets(tmp_path):
    transport = azure_estate(ReplayTransport())
    (tmp_path / "live" / "estate").mkdir(parents=True)
    (tmp_path / "files").mkdir()
    live = marts_of(materialize(tmp_path / "live", RunSettings(
        estate_dir=str(tmp_path / "live" / "estate"), source="azure", as_of="2024-03-10",
    ), replayed_azure(transport, subscriptions=SUB, workspace_ids=WORKSPACE)))
    files = marts_of(materialize(tmp_path / "files", RunSettings(
        estate_dir=str(offline_estate(tmp_path / "files" / "estate")), source="files", as_of="2024-03-10",
    ), azure.AzureResource()))

    assert len(live["vm_inventory"]) == 1
    assert live["vm_inventory"] == files["vm_inventory"]
    assert live["patch_observations"] == files["patch_observations"]
    assert live["vm_patch_state"] == files["vm_patch_state"]
    # Every source contributed: assessment, installation, and the three Log Analytics tables.
    assert {"5034439", "890830", "2267602"} <= {key for key, _ in live["vm_patch_state"]}
    assert len(transport.sent("POST", ARG_PATH)) == 4 and len(transport.sent("POST", LA_PATH)) == 3
    # The captures stay in the estate, so a files-mode run can replay them.
    captured = sorted(p.relative_to(tmp_path / "live" / "estate").parts[0] for p in
                      (tmp_path / "live" / "estate").rglob("*.json"))
    assert captured == ["azure"] * 3 + ["log_analytics"] * 3


@pytest.mark.parametrize("asset", [compute_assets.raw_virtual_machines, resource_graph_assets.raw_patch_assessment_resources,
                                   maintenance_assets.raw_maintenance_resources, backup_assets.raw_backup_resources],
                         ids=["compute", "resource_graph", "maintenance", "backup"])
def test_live_mode_without_subscriptions_fails_naming_the_setting(tmp_path, asset):
    """Live mode with no subscription configured fails before any Azure call, naming the setting;
    the warehouse is not even opened."""
    transport = ReplayTransport()  # every day: the scan assets are day-partitioned
    result = materialize_every_day(
        [asset],
        resources={"warehouse": WarehouseResource(database=str(tmp_path / "w.duckdb")),
                   "run_settings": RunSettings(estate_dir=str(tmp_path), source="azure"),
                   "azure": replayed_azure(transport)},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "live mode needs PATCHLEDGER_SUBSCRIPTIONS" in failure.event_specific_data.error.cause.message
    assert not (tmp_path / "w.duckdb").exists()
    assert transport.requests == []


# --- replayed real recordings (tests/recordings, see PROVENANCE.md) ------------------------------

RECORDINGS = Path(__file__).parent / "recordings"
# Recorded bodies are stored decoded: these headers describe the wire, not the stored body.
WIRE_HEADERS = {"content-encoding", "content-length", "transfer-encoding"}
SUB0 = "00000000-0000-0000-0000-000000000000"


def recorded(name: str) -> list[dict]:
    """The responses of a recording, in order, as replies: vcrpy YAML (SDK and CLI tests) or the
    test proxy's JSON ({"Entries": [...]})."""
    path = RECORDINGS / name
    found = []
    if path.suffix == ".yaml":
        for interaction in yaml.safe_load(path.read_text())["interactions"]:
            response = interaction["response"]
            found.append((response["status"]["code"], response["body"]["string"], response["headers"]))
    else:
        for entry in json.loads(path.read_text())["Entries"]:
            body = entry["ResponseBody"]
            found.append((entry["StatusCode"], "" if body is None else json.dumps(body), entry["ResponseHeaders"]))
    return [
        reply(status, body, {
            k: ", ".join(map(str, v)) if isinstance(v, list) else str(v)
            for k, v in headers.items() if k.lower() not in WIRE_HEADERS
        })
        for status, body, headers in found
    ]


def with_body(canned: dict, change) -> dict:
    """A recorded reply with its JSON body changed by `change` (a planted case)."""
    body = json.loads(canned["body"])
    change(body)
    return {**canned, "body": json.dumps(body)}


PAGED = "resourcegraph/test_paged_query.yaml"
TOKEN_A = "82aw3vQlArEastJ24LABY8oPgQLesIyAyzYs2g6/aOOOmJHSYFj39fODurJV5e2tTFFebWcfxn7n5edicA8u6HgSJe1GCEk5HjxwLkeJiye2LVZDC7TaValkJbsk9JqY4yv5c7iRiLqgO34RbHEeVfLJpa56u4RZu0K+GpQvnBRPyAhy3KbwhZWpU5Nnqnud2whGb5WKdlL8xF7wnQaUnUN2lns8WwqwM4rc0VK4BbQt/WfWWcYJivSAyB3m4Z5g73df1KiU4C+K8auvUMpLPYVxxnKC/YZz42YslVAWXXUmuGOaM2SfLHRO6o4O9DgXlUgYjeFWqIbAkmMiVEqU"
TOKEN_B = "ceXHDV/5yajn1stYtSCyQ32ULLF0jGv9oazG14qvdgwdAQNDUPHjt6MIlJZ2Y/K8z7fb+qo9wguegf8QYW0c7rqwtXUghJvKkPBENcn1O17nQxtjXeq6s8sD64D8t5P9NIHntl70D95yuVUjHF6/dsvVK33wKyvORwPTCbZrSj+pfz2yd5spa93izzOu06PcyFvcvCJAzZ5scImnVDqS700hR63izVwyETJtQluoqSPYkhxAOVk/+ThWlN0DKy9OfUE34M9PZSQz2QTWXKpUK1+okRfH/B2RVdXro60ZnNMrdPtglA5w7oEs5Ivq20IE4RtPfg97UEbkfyMP9huC="
PAGED_IDS = [
    f"/subscriptions/{SUB0}/resourceGroups/AaaaaAaaaaaaaaAaaaaAaaaaaaaaaaa-AAA-a/providers/"
    "Microsoft.EventHub/namespaces/eventhub-local-aaaaaaa",
    f"/subscriptions/{SUB0}/resourceGroups/AaaaaAaaaaaaaaAaaaaAaaaaaaaaaaa-AAA-a/providers/"
    "Microsoft.Network/loadBalancers/LB-aaa-aaa-aaa-aa-a-aa",
    f"/subscriptions/{SUB0}/resourceGroups/AaaaaAaaaaaaaaAaaaaAaaaaaaaaaaa-AAA-a/providers/"
    "Microsoft.Network/networkSecurityGroups/nsgSubnet-0",
]


def sent_tokens(transport: ReplayTransport) -> list:
    return [json.loads(r.content)["options"].get("$skipToken") for r in transport.sent("POST", ARG_PATH)]


def test_recorded_table_form_page_is_read_as_rows(tmp_path):
    """The SDK recording of a table-form answer: two rows of three columns, not the dict's keys."""
    transport = ReplayTransport().add(
        "POST", ARG_PATH, *recorded("resourcegraph/test_mgmt_resourcegraph.test_resources_basic_query_table.yaml")
    )
    now = datetime(2021, 3, 16, 7, 12, tzinfo=UTC)
    assert fetch_resource_graph(access(transport), "patchassessmentresources", [SUB0], tmp_path, now=now) == 2

    capture = json.loads((tmp_path / "azure/resource_graph/patchassessmentresources-live-20210316T071200Z.json").read_text())
    assert [sorted(row) for row in capture["data"]] == [["id", "properties", "tags"]] * 2
    assert [row["id"].rsplit("/", 1)[1] for row in capture["data"]] == ["18chgblobsdf", "gov-art-df-rp"]
    assert capture["data"][1]["tags"] == {"LastKnownGoodStampName": "gov-art-df-rp-b"}
    assert capture["data"][0]["properties"]["creationTime"] == "2021-01-21T22:03:16.9320000Z"
    assert (capture["totalRecords"], capture["count"], capture["subscriptions"]) == (2, 2, [SUB0])
    # One page: nothing to pace.
    assert transport.sleeps == []


def test_recorded_skip_tokens_are_followed_and_a_repeated_one_stops_the_walk(tmp_path):
    """The CLI recording of two table-form pages (skip tokens A then B); Azure then answers token B
    with the same page again (planted), which would loop for ever."""
    first, second = recorded(PAGED)
    transport = (
        ReplayTransport()
        .add("POST", ARG_PATH, first, match=skip_token_is(None))
        .add("POST", ARG_PATH, second, match=skip_token_is(TOKEN_A))
        .add("POST", ARG_PATH, second, match=skip_token_is(TOKEN_B))
    )
    with pytest.raises(azure.AzureSourceError) as error:
        fetch_resource_graph(access(transport), "patchinstallationresources", [SUB0], tmp_path)
    assert str(error.value) == (
        "Azure Resource Graph patchinstallationresources, page 3: Azure returned a skip token it had "
        "already sent; nothing was loaded"
    )
    assert sent_tokens(transport) == [None, TOKEN_A, TOKEN_B]
    assert not (tmp_path / "azure").exists()


def test_recorded_population_smaller_than_reported_fails_the_fetch(tmp_path):
    """Azure reported totalRecords 9969 on the recorded pages; the walk ends (planted last page:
    the second page without its skip token) after 2 + 1 + 1 = 4 rows."""
    first, second = recorded(PAGED)
    last = with_body(second, lambda body: body.pop("$skipToken"))
    transport = (
        ReplayTransport()
        .add("POST", ARG_PATH, first, match=skip_token_is(None))
        .add("POST", ARG_PATH, second, match=skip_token_is(TOKEN_A))
        .add("POST", ARG_PATH, last, match=skip_token_is(TOKEN_B))
    )
    with pytest.raises(azure.AzureSourceError) as error:
        fetch_resource_graph(access(transport), "patchinstallationresources", [SUB0], tmp_path)
    assert str(error.value) == (
        f"Azure Resource Graph patchinstallationresources: Azure reported 9969 rows for subscriptions "
        f"{SUB0}, 4 were fetched; nothing was loaded"
    )
    assert not (tmp_path / "azure").exists()


def test_recorded_complete_walk_keeps_azure_figures(tmp_path):
    """The same recorded pages with totalRecords set (planted) to the 3 rows they hold: the capture
    keeps Azure's figure beside the rows, in the order Azure paged them."""
    first, second = recorded(PAGED)

    def three(body, last=False):
        body["totalRecords"] = 3
        if last:
            del body["$skipToken"]

    transport = (
        ReplayTransport()
        .add("POST", ARG_PATH, with_body(first, three), match=skip_token_is(None))
        .add("POST", ARG_PATH, with_body(second, lambda b: three(b, last=True)), match=skip_token_is(TOKEN_A))
    )
    now = datetime(2018, 9, 11, 18, 28, tzinfo=UTC)
    assert fetch_resource_graph(access(transport), "patchinstallationresources", [SUB0], tmp_path, now=now) == 3
    capture = json.loads((tmp_path / "azure/resource_graph/patchinstallationresources-live-20180911T182800Z.json").read_text())
    assert [row["id"] for row in capture["data"]] == PAGED_IDS
    assert (capture["totalRecords"], capture["count"]) == (3, 3)


def test_recorded_quota_headers_pace_the_next_page(tmp_path):
    """The CLI's recorded skip-token page says 14 queries are left in a window resetting in 5 s:
    the next page waits 5/14 s. That page (the SDK's recorded table answer, served for the token)
    reports 2 rows where the first reported 2876: the population changed while paging."""
    page = recorded("resourcegraph/test_skip_token_query.yaml")[0]
    token = json.loads(page["body"])["$skipToken"]
    table = recorded("resourcegraph/test_mgmt_resourcegraph.test_resources_basic_query_table.yaml")[0]
    transport = (
        ReplayTransport()
        .add("POST", ARG_PATH, page, match=skip_token_is(None))
        .add("POST", ARG_PATH, table, match=skip_token_is(token))
    )
    with pytest.raises(azure.AzureSourceError) as error:
        fetch_resource_graph(access(transport), "patchassessmentresources", [SUB0], tmp_path)
    assert transport.sleeps == [5 / 14]
    assert str(error.value) == (
        "Azure Resource Graph patchassessmentresources, page 2: Azure reported 2876 rows, then 2 while "
        "paging (the population changed during the fetch); nothing was loaded"
    )


@pytest.mark.parametrize(("remaining", "resets", "wait"), [
    ("14", "00:00:05", 5 / 14),  # the recorded values: spread the window over what is left
    ("0", "00:00:03", 3.0),      # quota used up: wait for the reset
    ("15", "00:01:00", 4.0),
    (None, None, 0.0),           # responses without the headers (2018 API version)
])
def test_quota_wait(remaining, resets, wait):
    headers = {k: v for k, v in {azure.QUOTA_REMAINING: remaining, azure.QUOTA_RESETS_AFTER: resets}.items() if v}
    assert azure.quota_wait(headers) == wait


def test_subscriptions_are_queried_in_batches_of_100(tmp_path):
    """250 subscriptions: three queries (100, 100, 50), each answered by the recorded table page
    (2 rows, totalRecords 2, quota 13 left of a 5 s window); one capture per batch."""
    subscriptions = [f"{n:08d}-0000-0000-0000-000000000000" for n in range(250)]
    table = recorded("resourcegraph/test_mgmt_resourcegraph.test_resources_basic_query_table.yaml")[0]
    transport = ReplayTransport().add("POST", ARG_PATH, table)
    now = datetime(2021, 3, 16, 7, 12, tzinfo=UTC)

    assert fetch_resource_graph(access(transport), "patchassessmentresources", subscriptions, tmp_path, now=now) == 6

    bodies = [json.loads(r.content) for r in transport.sent("POST", ARG_PATH)]
    assert [b["subscriptions"] for b in bodies] == [subscriptions[:100], subscriptions[100:200], subscriptions[200:]]
    assert transport.sleeps == [5 / 13, 5 / 13]
    files = sorted((tmp_path / "azure" / "resource_graph").iterdir())
    assert [f.name for f in files] == [f"patchassessmentresources-live-20210316T071200Z-00{n}.json" for n in (1, 2, 3)]
    assert [json.loads(f.read_text())["subscriptions"] for f in files] == [b["subscriptions"] for b in bodies]


@pytest.mark.parametrize(("name", "cause"), [
    ("test_mgmt_resourcegraph.test_resources_malformed_query.yaml",
     "HTTP 400 (InvalidQuery: Query is invalid. Please refer to the documentation for the Azure Resource "
     "Graph service and fix the error before retrying.; ParserFailure; BadRequest: Please provide below "
     "info when asking for support: timestamp = 2021-03-16T07:12:06.9604898Z, correlationId = "
     "8e1c247b-0c97-4b10-ac62-1b18099a3ef4.)"),
    ("test_mgmt_resourcegraph.test_resources_query_options.yaml",
     "HTTP 400 (CouldNotDecodeSkipToken: Skip token could not be decoded.; BadRequest: Please provide "
     "below info when asking for support: timestamp = 2020-03-23T19:01:58.7741737Z, correlationId = "
     "c5caf5c0-7503-42a2-85da-9be49371cd51.)"),
])
def test_recorded_resource_graph_errors_keep_their_details(tmp_path, name, cause):
    transport = ReplayTransport().add("POST", ARG_PATH, *recorded(f"resourcegraph/{name}"))
    with pytest.raises(azure.AzureSourceError) as error:
        fetch_resource_graph(access(transport), "patchassessmentresources", [SUB0], tmp_path)
    assert str(error.value) == f"Azure Resource Graph patchassessmentresources, page 1: {cause}"
    assert len(transport.requests) == 1  # a 400 is not retried


LA_PATH0 = f"/v1/workspaces/{SUB0}/query"
LA_NOW = datetime(2022, 11, 9, 21, 22, tzinfo=UTC)


def la_capture(folder: Path) -> dict:
    (written,) = (folder / "log_analytics").glob("*.json")
    return json.loads(written.read_text())["tables"][0]


def test_recorded_partial_result_names_the_inner_cause(tmp_path):
    transport = ReplayTransport().add(
        "POST", LA_PATH0, *recorded("loganalytics/test_logs_client.pyTestLogsClienttest_logs_single_query_with_partial_success.json")
    )
    with pytest.raises(LogAnalyticsPartialResultError) as error:
        fetch_log_analytics(access(transport), "Update", [SUB0], tmp_path, now=LA_NOW)
    # The cause is the innererror under details[]; not a limit, so no hint about shorter windows.
    assert str(error.value) == (
        f"Log Analytics workspace {SUB0}, table Update: partial result (-2133196788: Percentiles "
        "aggregator has encountered an overflow exception during evaluation (probably due to large "
        "weight expression). Results may be incorrect or incomplete (E_OVERFLOW; see "
        "https://aka.ms/kustoqueryfailures).; EngineError: Something went wrong processing your query "
        "on the server.; PartialError: There were some errors when processing your query.); nothing "
        "was loaded"
    )
    assert not (tmp_path / "log_analytics").exists()


def test_recorded_bad_request_names_the_innermost_cause(tmp_path):
    transport = ReplayTransport().add(
        "POST", LA_PATH0, *recorded("loganalytics/test_logs_client.pyTestLogsClienttest_logs_single_query_with_non_200.json")
    )
    with pytest.raises(azure.AzureSourceError) as error:
        fetch_log_analytics(access(transport), "Update", [SUB0], tmp_path, now=LA_NOW)
    assert str(error.value) == (
        f"Log Analytics workspace {SUB0}, table Update: HTTP 400 (SEM0100: 'where' operator: Failed to "
        "resolve table or column expression named 'AppInsights'; SemanticError: A semantic error "
        "occurred.; BadArgumentError: The request had some invalid properties)"
    )
    assert len(transport.requests) == 1


def test_recorded_gateway_timeouts_are_retried_then_named(tmp_path):
    """The recording holds the four 504s the SDK's own test got: one try and three retries (the
    retry policy retries the first at once, then backs off 0.01 x 2 and 0.01 x 4 s)."""
    transport = ReplayTransport().add(
        "POST", LA_PATH0, *recorded("loganalytics/test_logs_client.pyTestLogsClienttest_logs_server_timeout.json")
    )
    with pytest.raises(azure.AzureSourceError) as error:
        fetch_log_analytics(access(transport), "Update", [SUB0], tmp_path, now=LA_NOW)
    assert len(transport.requests) == 4 and transport.sleeps == [0.02, 0.04]
    assert str(error.value) == (
        f"Log Analytics workspace {SUB0}, table Update: HTTP 504 (GatewayTimeout: ADX query timed out; "
        "GatewayTimeout: Gateway timeout)"
    )


def test_recorded_native_types_are_written_as_received(tmp_path):
    transport = ReplayTransport().add(
        "POST", LA_PATH0, *recorded("loganalytics/test_logs_response.pyTestLogsResponsetest_query_response_types.json")
    )
    assert fetch_log_analytics(access(transport), "Update", [SUB0], tmp_path, now=LA_NOW) == 1
    table = la_capture(tmp_path)
    assert [(c["name"], c["type"]) for c in table["columns"]] == [
        ("stringcolumn", "string"), ("boolcolumn", "bool"), ("datecolumn", "datetime"),
        ("intcolumn", "int"), ("longcolumn", "long"), ("realcolumn", "real"),
    ]
    assert table["rows"] == [["hello", True, "2000-01-02T03:04:05Z", 100, 101, 102.1]]


def test_recorded_datetimes_keep_seven_fractional_digits(tmp_path):
    """Log Analytics sends 100 ns precision; the SDK's datetime holds microseconds (577655)."""
    transport = ReplayTransport().add(
        "POST", LA_PATH0, *recorded("loganalytics/test_logs_response.pyTestLogsResponsetest_query_response_data.json")
    )
    assert fetch_log_analytics(access(transport), "Update", [SUB0], tmp_path, now=LA_NOW) == 3
    rows = la_capture(tmp_path)["rows"]
    assert [row[0] for row in rows] == ["2022-11-09T07:39:09.5776558Z"] * 3
    assert [json.loads(row[3])["testContextKey"] for row in rows] == [1, 2, 3]


def test_recorded_vm_of_an_older_api_version_with_its_instance_view(tmp_path, conn):
    """The Compute recording (API version 2022-08-01): the VM as listed, its instance view; the SDK
    asks with its own newer API version and keeps what the older one answered, to the digit."""
    view, vm = recorded("compute/test_mgmt_compute_vm.pyTestMgmtComputetest_compute_vm.json")
    vm_path = f"/subscriptions/{SUB0}/resourceGroups/rgname/providers/Microsoft.Compute/virtualMachines"
    transport = (
        ReplayTransport()
        .add("GET", f"/subscriptions/{SUB0}/providers/Microsoft.Compute/virtualMachines",
             reply(body={"value": [json.loads(vm["body"])]}))
        .add("GET", f"{vm_path}/virtualmachinexeb772750/instanceView", view)
    )
    assert fetch_virtual_machines(access(transport), [SUB0], tmp_path) == 1

    (snapshot,) = (tmp_path / "azure" / "virtual_machines").glob("virtual_machines-*.json")
    (captured,) = json.loads(snapshot.read_text())["value"]
    assert captured["properties"]["timeCreated"] == "2022-11-16T03:57:54.7251916+00:00"
    assert captured["properties"]["osProfile"]["windowsConfiguration"]["patchSettings"]["patchMode"] == "AutomaticByOS"
    instance = captured["properties"]["instanceView"]
    assert (instance["osName"], instance["osVersion"]) == ("Windows Server 2016 Datacenter", "10.0.14393.5501")
    assert [s["code"] for s in instance["statuses"]] == ["ProvisioningState/succeeded", "PowerState/running"]
    assert instance["statuses"][0]["time"] == "2022-11-16T04:00:22.1352245+00:00"
    assert load_virtual_machines(conn, tmp_path, "raw.vms", "run").rows == 1
    assert conn.execute("SELECT name, resource->'properties'->>'vmId' FROM raw.vms").fetchall() == [
        ("virtualmachinexeb772750", "0f02c7cf-0606-456c-ad7c-3e0a3142091e")
    ]


# --- population completeness: Azure's totalRecords beside the rows fetched and loaded -------------


def population_run(root: Path, settings: RunSettings, live: azure.AzureResource | None = None,
                   ) -> tuple[dg.ExecuteInProcessResult, list[tuple]]:
    database = root / "warehouse.duckdb"
    result = materialize_every_day(
        # The completeness check is evaluated in the population's own step (its check_specs).
        dg.load_assets_from_modules([monitoring, population, *SCAN_ASSETS]),
        selection=dg.AssetSelection.keys(
            "raw/patch_assessment_resources", "raw/patch_installation_resources", "marts/azure_population_counts"
        ),
        resources={"warehouse": WarehouseResource(database=str(database)), "run_settings": settings,
                   "azure": live or azure.AzureResource()},
        raise_on_error=False,
    )
    with duckdb.connect(str(database), read_only=True) as conn:
        rows = conn.execute(
            "SELECT arg_table, source_file, captured_at, subscriptions, reported_rows, fetched_rows, "
            "loaded_rows, complete FROM marts.azure_population_counts ORDER BY ALL"
        ).fetchall()
    return result, rows


def check_passed(result: dg.ExecuteInProcessResult) -> bool:
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "resource_graph_population_complete"
    return evaluation.passed


def test_live_capture_population_reaches_the_marts(tmp_path, monkeypatch):
    """The fixture pages report totalRecords 3 (assessment) and 2 (installation); the live run
    writes them beside the rows, and the warehouse loaded as many."""
    transport = ReplayTransport()
    for arg_table in ("patchassessmentresources", "patchinstallationresources"):
        route_arg(transport, arg_table)
    monkeypatch.setattr(azure, "utc_now", lambda: datetime(2024, 3, 10, 6, 0, tzinfo=UTC))
    (tmp_path / "estate").mkdir()
    result, rows = population_run(tmp_path, RunSettings(
        estate_dir=str(tmp_path / "estate"), source="azure", as_of="2024-03-10",
    ), replayed_azure(transport, subscriptions=SUB))
    assert result.success and check_passed(result)
    captured = datetime(2024, 3, 10, 6, 0, tzinfo=UTC)
    assert [(a, f, c, s, r, n, loaded, ok) for a, f, c, s, r, n, loaded, ok in rows] == [
        ("patchassessmentresources", "azure/resource_graph/patchassessmentresources-live-20240310T060000Z.json",
         captured, [SUB], 3, 3, 3, True),
        ("patchinstallationresources", "azure/resource_graph/patchinstallationresources-live-20240310T060000Z.json",
         captured, [SUB], 2, 2, 2, True),
    ]


@pytest.mark.parametrize("lake", [False, True], ids=["warehouse", "lake"])
def test_planted_population_mismatch_fails_the_run(tmp_path, monkeypatch, lake):
    """An export whose totalRecords (5) is not the rows it holds (3): the table shows both, the
    blocking check fails and with it the run. A bare export (no totalRecords) is not judged. The
    same with the raw tables in the lake (Parquet behind views)."""
    if lake:
        monkeypatch.setenv("PATCHLEDGER_LAKE", str(tmp_path / "lake"))
    else:
        monkeypatch.delenv("PATCHLEDGER_LAKE", raising=False)
    folder = tmp_path / "estate" / "azure" / "resource_graph"
    folder.mkdir(parents=True)
    rows = [row for page in arg_pages("patchassessmentresources") for row in page["data"]]
    (folder / "patchassessmentresources-export.json").write_text(
        json.dumps({"totalRecords": 5, "count": 3, "data": rows})
    )
    (folder / "patchinstallationresources-export.json").write_text(
        json.dumps(arg_pages("patchinstallationresources")[0]["data"])
    )
    result, table = population_run(tmp_path, RunSettings(estate_dir=str(tmp_path / "estate"), source="files"))
    assert (tmp_path / "lake").is_dir() == lake
    assert not result.success and not check_passed(result)
    assert table == [
        ("patchassessmentresources", "azure/resource_graph/patchassessmentresources-export.json",
         None, None, 5, 3, 3, False),
        ("patchinstallationresources", "azure/resource_graph/patchinstallationresources-export.json",
         None, None, None, None, 2, None),
    ]


def test_report_population_section_shows_reported_beside_loaded(conn):
    """The evidence pack's population section: per Resource Graph table, Azure's totalRecords
    beside the rows fetched and loaded, over captures up to the as-of date (2024-03-10)."""
    conn.execute("CREATE SCHEMA marts")
    conn.execute(
        "CREATE TABLE marts.azure_population_counts (arg_table VARCHAR, source_file VARCHAR, "
        "captured_at TIMESTAMPTZ, subscriptions VARCHAR[], reported_rows BIGINT, fetched_rows BIGINT, "
        "loaded_rows BIGINT, complete BOOLEAN)"
    )
    conn.execute("""INSERT INTO marts.azure_population_counts VALUES
        ('patchassessmentresources', 'a-live-1', '2024-03-09 06:00:00+00', NULL, 3, 3, 3, true),
        ('patchassessmentresources', 'a-live-2', '2024-03-11 06:00:00+00', NULL, 10, 10, 10, true),
        ('patchassessmentresources', 'a-export', NULL, NULL, NULL, NULL, 4, NULL),
        ('patchinstallationresources', 'i-live-1', '2024-03-10 23:59:00+00', NULL, 2, 2, 1, false)""")
    data = reporting.report_data(conn, date(2024, 3, 10))
    assert data["resource_graph_population"] == [
        {"arg_table": "patchassessmentresources", "files": 2, "files_reported": 1, "reported": 3,
         "fetched": 3, "loaded": 3, "incomplete": 0, "loaded_unreported": 4},
        {"arg_table": "patchinstallationresources", "files": 1, "files_reported": 1, "reported": 2,
         "fetched": 2, "loaded": 1, "incomplete": 1, "loaded_unreported": 0},
    ]
    page = render_html({**data, "data_files": [], "known_by": None}, [])  # the pack adds its file list and charts
    assert ('<tr><td>patchinstallationresources</td><td class="num">1</td><td class="num">2</td>'
            '<td class="num">2</td><td class="num">1</td><td class="num">1</td></tr>') in page


def test_population_figures_follow_each_file_between_runs(tmp_path, monkeypatch):
    """A later run reads again only the files whose size or modification time changed: a
    corrected export is judged on its new figures; one rewritten under the same size and time is
    not read (rows and figures stay the old, consistent ones) unless every file is verified, which
    reads both again."""
    monkeypatch.delenv("PATCHLEDGER_LAKE", raising=False)
    folder = tmp_path / "estate" / "azure" / "resource_graph"
    folder.mkdir(parents=True)
    rows = [row for page in arg_pages("patchassessmentresources") for row in page["data"]]
    export = folder / "patchassessmentresources-export.json"
    export.write_text(json.dumps({"totalRecords": 5, "count": 3, "data": rows}))
    settings = RunSettings(estate_dir=str(tmp_path / "estate"), source="files")
    result, table = population_run(tmp_path, settings)
    assert not check_passed(result) and table[0][4:] == (5, 3, 3, False)

    export.write_text(json.dumps({"totalRecords": 3, "count": 3, "data": rows}))  # corrected
    result, table = population_run(tmp_path, settings)
    assert result.success and check_passed(result) and table[0][4:] == (3, 3, 3, True)

    before = export.stat()
    export.write_text(json.dumps({"totalRecords": 2, "count": 2, "data": rows[:2]}).ljust(before.st_size))
    os.utime(export, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert export.stat().st_size == before.st_size
    result, table = population_run(tmp_path, settings)
    # The quick check trusts the stamp: the 3 rows and the figures of the version read stay.
    assert check_passed(result) and table[0][4:] == (3, 3, 3, True)
    # Verifying every file reads the new bytes: 2 rows reported, fetched and loaded.
    verifying = RunSettings(estate_dir=str(tmp_path / "estate"), source="files", verify_files=True)
    result, table = population_run(tmp_path, verifying)
    assert result.success and check_passed(result) and table[0][4:] == (2, 2, 2, True)


def test_raw_load_records_each_files_population_figures(tmp_path, conn, monkeypatch):
    """The raw load keeps what each export says of its population (totalRecords, or az's
    total_records, count, subscriptions) under the file's stamp, parsed with its rows (one batch
    per file here), so the population table does not read the files again: an export rewritten
    afterwards under the same size and time still shows the figures of the version loaded."""
    from pipelines.ingest import bulk
    from pipelines.sources.resource_graph import reader

    monkeypatch.setattr(bulk, "DOCUMENT_BATCH_BYTES", 1)
    folder = tmp_path / "azure" / "resource_graph"
    folder.mkdir(parents=True)
    rows = [row for page in arg_pages("patchassessmentresources") for row in page["data"]]
    first = folder / "patchassessmentresources-a.json"
    first.write_text(json.dumps({"totalRecords": 5, "count": 3, "subscriptions": [SUB], "data": rows}))
    (folder / "patchassessmentresources-b.json").write_text(json.dumps({"total_records": 2, "count": 2,
                                                                        "data": rows[:2]}))
    (folder / "patchassessmentresources-c.json").write_text(json.dumps(rows[:1]))  # a bare array: no figures
    assert load_resource_graph(conn, tmp_path, "patchassessmentresources", "raw.pa", "run").rows == 6
    assert conn.execute("SELECT source_file, count(*) FROM raw.pa GROUP BY ALL ORDER BY ALL").fetchall() == [
        ("azure/resource_graph/patchassessmentresources-a.json", 3),
        ("azure/resource_graph/patchassessmentresources-b.json", 2),
        ("azure/resource_graph/patchassessmentresources-c.json", 1),
    ]
    recorded = conn.execute(
        "SELECT source_file, subscriptions, reported_rows, fetched_rows, size, mtime_ns "
        "FROM staging.resource_graph_file_figures ORDER BY source_file").fetchall()
    stat = first.stat()
    assert recorded == [
        ("azure/resource_graph/patchassessmentresources-a.json", [SUB], 5, 3, stat.st_size, stat.st_mtime_ns),
        ("azure/resource_graph/patchassessmentresources-b.json", None, 2, 2,
         (folder / "patchassessmentresources-b.json").stat().st_size,
         (folder / "patchassessmentresources-b.json").stat().st_mtime_ns),
    ]
    first.write_text(json.dumps({"totalRecords": 9, "count": 9, "data": rows}).ljust(stat.st_size))
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    reader.resource_graph_population_files(conn, tmp_path)
    assert conn.execute("SELECT source_file, reported_rows, fetched_rows FROM population_files "
                        "ORDER BY source_file").fetchall() == [
        ("azure/resource_graph/patchassessmentresources-a.json", 5, 3),
        ("azure/resource_graph/patchassessmentresources-b.json", 2, 2),
        ("azure/resource_graph/patchassessmentresources-c.json", None, None),
    ]
