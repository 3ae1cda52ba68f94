"""Live mode against replayed HTTP: the real SDK clients (pipelines, paging, retries, LRO
polling, deserialization) talk to a fake azure-core transport that answers with canned REST
bodies (tests/fixtures_azure_live, the real REST examples in ../shared/samples). Nothing of our
own is mocked: only the transport and the credential are injected, through
`azure_live.open_access`."""

import io
import json
import logging
import re
import shutil
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import duckdb
import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.transport import HttpTransport

# The response type RequestsTransport itself returns, so the SDKs see what they see in production.
from azure.core.rest._requests_basic import RestRequestsTransportResponse

from assets import inventory, monitoring
from pipelines.connectors import azure_live
from pipelines.connectors.azure_files import (
    load_patch_operations,
    load_resource_graph,
    load_virtual_machines,
)
from pipelines.connectors.log_analytics import load_log_analytics
from pipelines.resources import RunSettings, WarehouseResource

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


def access(transport: ReplayTransport, credential=None) -> azure_live.AzureAccess:
    return azure_live.AzureAccess(credential or StaticCredential(), {"transport": transport, **FAST})


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
        # myVM2 is deleted between the list and its instance view.
        .add("GET", f"{VM_PATH}/myVM2/instanceView",
             reply(404, {"error": {"code": "ResourceNotFound", "message": "gone"}}))
    )

    count = azure_live.fetch_virtual_machines(access(transport, credential), [SUB], tmp_path)

    assert count == 2
    assert len(transport.sent("GET", LIST_PATH)) == 2
    assert {r.headers["Authorization"] for r in transport.requests} == {f"Bearer {TOKEN}"}
    assert credential.scopes[0] == ("https://management.azure.com/.default",)
    assert load_virtual_machines(conn, tmp_path, "raw.vms", "run") == 2
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

    assert azure_live.fetch_virtual_machines(access(transport), [SUB], tmp_path) == 1
    assert len(transport.sent("GET", LIST_PATH)) == 2


def test_expired_credentials_give_a_clear_error(tmp_path):
    transport = ReplayTransport()
    with pytest.raises(azure_live.AzureSourceError) as error:
        azure_live.fetch_virtual_machines(access(transport, ExpiredCredential()), [SUB], tmp_path)
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
    with caplog.at_level(logging.DEBUG), pytest.raises(azure_live.AzureSourceError) as error:
        azure_live.fetch_virtual_machines(access(transport), [SUB], tmp_path)
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
    assert "SECRET" not in azure_live.redact(text)


# --- Resource Graph ---------------------------------------------------------------------------


def test_resource_graph_pages_with_skip_token(tmp_path, conn):
    transport = ReplayTransport()
    route_arg(transport, "patchassessmentresources")

    count = azure_live.fetch_resource_graph(
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
    assert load_resource_graph(conn, tmp_path, "patchassessmentresources", "raw.pa", "run") == 3
    assert conn.execute("SELECT count(*) FILTER (WHERE type LIKE '%softwarepatches') FROM raw.pa").fetchone() == (2,)


def test_throttling_honours_retry_after(tmp_path):
    page = arg_pages("patchinstallationresources")[0]
    transport = ReplayTransport().add(
        "POST", ARG_PATH,
        reply(429, {"error": {"code": "RateLimiting", "message": "slow down"}}, {"Retry-After": "1"}),
        reply(body=page),
    )
    count = azure_live.fetch_resource_graph(access(transport), "patchinstallationresources", [SUB], tmp_path)
    assert count == len(page["data"]) == 2
    assert len(transport.sent("POST", ARG_PATH)) == 2
    assert transport.sleeps == [1]


def test_broken_page_gives_a_clear_error(tmp_path):
    first = arg_pages("patchassessmentresources")[0]
    transport = ReplayTransport().add("POST", ARG_PATH, reply(body=first), match=skip_token_is(None))
    transport.add("POST", ARG_PATH, reply(body='{"totalRecords": 3, "data": [{"id": '))
    with pytest.raises(azure_live.AzureSourceError, match=r"Resource Graph patchassessmentresources, page 2: .*not valid JSON"):
        azure_live.fetch_resource_graph(access(transport), "patchassessmentresources", [SUB], tmp_path)
    assert not (tmp_path / "azure" / "resource_graph").exists()


# --- Log Analytics ----------------------------------------------------------------------------


def test_log_analytics_sample_body_is_typed(tmp_path, conn):
    """The real query API example: long and bool values arrive as strings and are written typed;
    it has the UpdateSummary key columns (TimeGenerated, Computer), so it loads as that table."""
    body = sample("log-analytics", "LogAnalytics_query_POST_response.rest-spec-v1.json")
    credential = StaticCredential()
    transport = ReplayTransport().add("POST", LA_PATH, reply(body=body["responses"]["200"]["body"]))
    now = datetime(2017, 8, 24, 12, 15, tzinfo=UTC)

    assert azure_live.fetch_log_analytics(
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

    assert load_log_analytics(conn, tmp_path, "UpdateSummary", "raw.s", "run") == 2
    assert conn.execute(
        "SELECT Computer, TimeGenerated = TIMESTAMPTZ '2017-08-24 06:59:59+00', SourceSystem, Type "
        "FROM raw.s ORDER BY Computer"
    ).fetchall() == [("ContosoSQLSrv1", True, "OMS", "Usage"), ("Store010Web3", True, "OMS", "Usage")]


def test_log_analytics_window_is_incremental(tmp_path):
    transport = ReplayTransport().add("POST", LA_PATH, reply(body=fixture("la-Update.json")))
    first, second = datetime(2024, 3, 9, 6, 15, tzinfo=UTC), datetime(2024, 3, 10, 6, 15, tzinfo=UTC)
    for now in (first, second, second):
        azure_live.fetch_log_analytics(access(transport), "Update", [WORKSPACE], tmp_path, now=now)
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
    with pytest.raises(azure_live.LogAnalyticsPartialResultError) as error:
        azure_live.fetch_log_analytics(access(transport), "Update", [WORKSPACE], tmp_path)
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
    with pytest.raises(azure_live.AzureSourceError, match=r"table UpdateSummary, row 1, column TotalUpdatesMissing: 'two' is not a valid int"):
        azure_live.fetch_log_analytics(access(transport), "UpdateSummary", [WORKSPACE], tmp_path)


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

    assert azure_live.fetch_into("raw.patch_operations", tmp_path, **settings) == 0
    assert transport.requests == []

    assert azure_live.fetch_into("raw.patch_operations", tmp_path, assess=True, **settings) == 1
    assert len(transport.sent("GET", operation)) == 2
    assert load_patch_operations(conn, tmp_path, "raw.ops", "run") == 1
    assert conn.execute(
        "SELECT resourceId, operation, result->>'assessmentActivityId', json_array_length(result->'availablePatches') "
        "FROM raw.ops"
    ).fetchall() == [(VM_ID, "assessPatches", "68f8b292-dfc2-4646-9781-33cc88631968", 2)]


# --- end to end: the assets in live mode give the marts of the equivalent exports ----------------


def materialize(root: Path, settings: RunSettings) -> Path:
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
    result = dg.materialize(
        [*dg.load_assets_from_modules([inventory, monitoring])],
        resources={"warehouse": WarehouseResource(database=str(database)), "run_settings": settings},
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


def test_live_assets_equal_offline_assets(tmp_path, monkeypatch):
    transport = azure_estate(ReplayTransport())

    @contextmanager
    def replayed_access():
        yield access(transport)

    monkeypatch.setattr(azure_live, "open_access", replayed_access)
    monkeypatch.delenv(azure_live.ASSESS_ENV, raising=False)
    (tmp_path / "live" / "estate").mkdir(parents=True)
    (tmp_path / "files").mkdir()
    live = marts_of(materialize(tmp_path / "live", RunSettings(
        estate_dir=str(tmp_path / "live" / "estate"), source="azure", as_of="2024-03-10",
        subscriptions=SUB, workspace_ids=WORKSPACE,
    )))
    files = marts_of(materialize(tmp_path / "files", RunSettings(
        estate_dir=str(offline_estate(tmp_path / "files" / "estate")), source="files", as_of="2024-03-10",
    )))

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
