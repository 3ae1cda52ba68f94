"""marts.patch_notifications: new patches that apply to the estate, notified once, optional webhook."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets import bulletins
from assets.notifications import patch_notifications
from pipelines.ledger import GENESIS, chain_hash
from pipelines.notify import WEBHOOK_RETRIES, NotificationWebhook, redact_url
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.bulletins.resource import bulletin_resources
from pipelines.sources.epss.assets import epss_scores
from pipelines.sources.kev.assets import kev_vulnerabilities
from pipelines.sources.msrc.assets import msrc_documents
from pipelines.sources.osv.assets import osv_advisories

ASSETS = [
    msrc_documents, kev_vulnerabilities, epss_scores,
    osv_advisories, bulletins.osv_fixes, bulletins.msrc_fixes,
    bulletins.patch_supersedence, bulletins.patch_fix_lineage, bulletins.patch_cves,
    bulletins.patch_catalog, patch_notifications,
]
PRODUCTS = {"11923": "Windows Server 2022", "10483": "Windows Server 2012",
            "10543": "Windows Server 2012 R2", "11926": "Windows Server 2022 (Server Core installation)",
            "12001": "Microsoft .NET Framework 3.5 and 4.8.1 on Windows Server 2022"}
# kb -> (cve, product ids, severity, exploited)
FIXES = {
    "5040001": ("CVE-2026-1001", ["11923", "11926"], "Critical", "Yes"),
    "5040002": ("CVE-2026-1002", ["10483"], "Important", "No"),
    "5040003": ("CVE-2026-1003", ["10543"], "Important", "No"),
    "5040004": ("CVE-2026-1004", ["12001"], "Important", "No"),  # a component: matched on its OS
}


def june_2026() -> dict:
    vulns = []
    for kb, (cve, products, severity, exploited) in FIXES.items():
        vulns.append({
            "CVE": cve,
            "ProductStatuses": [{"ProductID": products, "Type": 3}],
            "Threats": [{"Type": 3, "ProductID": products, "Description": {"Value": severity}},
                        {"Type": 1, "Description": {"Value": f"Publicly Disclosed:No;Exploited:{exploited};"}}],
            "Remediations": [{"Type": 2, "Description": {"Value": kb}, "ProductID": products,
                              "SubType": "Security Update"}],
        })
    return {
        "DocumentTitle": {"Value": "June 2026 Security Updates"},
        "DocumentTracking": {"Identification": {"ID": {"Value": "2026-Jun"}},
                             "InitialReleaseDate": "2026-06-09T07:00:00",
                             "CurrentReleaseDate": "2026-06-09T07:00:00"},
        "ProductTree": {"FullProductName": [{"ProductID": k, "Value": v} for k, v in PRODUCTS.items()]},
        "Vulnerability": vulns,
    }


def advisory(advisory_id: str, package: str, fixed: str, published: str, cve: str, binaries=()) -> dict:
    affected = {"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}
    if binaries:
        affected["ecosystem_specific"] = {"binaries": [{"binary_name": b, "binary_version": fixed} for b in binaries]}
    return {"id": advisory_id, "related": [cve], "published": published, "modified": published,
            "severity": [{"type": "Ubuntu", "score": "high"}], "affected": [affected]}


KEV_CSV = (
    "cveID,vendorProject,product,vulnerabilityName,dateAdded,shortDescription,requiredAction,"
    "dueDate,knownRansomwareCampaignUse,notes,cwes\n"
    "CVE-2026-1001,Microsoft,Windows,Windows RCE,2026-06-10,desc,Apply updates,2026-07-01,Known,,\n"
)
INVENTORY = [
    ("/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/win1",
     "Windows Server 2022 Datacenter: Azure Edition", "10.0.20348", "Windows"),
    ("/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/win2",
     "Windows Server 2022 Datacenter", "10.0.20348", "Windows"),
    ("/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/win3",
     "Windows Server 2012 R2 Datacenter", "6.3.9600", "Windows"),
    ("/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/ubu1", "Ubuntu", "22.04", "Linux"),
    ("/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/deb1", "Debian", "12", "Linux"),
    ("/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/ubu2", "Ubuntu", "20.04", "Linux"),
]
VM = {row[0].rsplit("/", 1)[1]: row[0] for row in INVENTORY}
OBSERVATIONS = [
    ("win1", "5039001", "5039001", "installed"),
    ("ubu1", "libssl3_3.0.2-0ubuntu1.14", None, "installed"),
    ("ubu1", "curl_7.81.0-1ubuntu1.16", None, "missing"),
    ("deb1", "libssl3_3.0.11-1~deb12u2", None, "installed"),
    ("ubu2", "libssl3_1.1.1f-1ubuntu2.20", None, "installed"),
]


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    root = tmp_path / "estate"
    for source in ("msrc", "kev", "osv"):
        (root / "bulletins" / source).mkdir(parents=True)
    (root / "bulletins" / "msrc" / "2026-Jun.json").write_text(json.dumps(june_2026()))
    (root / "bulletins" / "kev" / "kev.csv").write_text(KEV_CSV)
    (root / "bulletins" / "osv" / "usn.json").write_text(json.dumps([
        advisory("USN-7100-1", "openssl", "3.0.2-0ubuntu1.15", "2026-06-15T00:00:00Z", "CVE-2026-2001",
                 binaries=["libssl3", "libssl-dev"]),
        # Applies (libssl3 on ubu1) but released long before the lookback window.
        advisory("USN-6000-1", "openssl", "3.0.2-0ubuntu1.10", "2025-01-01T00:00:00Z", "CVE-2025-0001",
                 binaries=["libssl3"]),
    ]))
    return root


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """marts.vm_inventory, staging.patch_observations and marts.vm_patch_state (one row per patch
    observed on a machine) as the inventory and monitoring stages leave them."""
    path = tmp_path / "w.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE SCHEMA marts; CREATE SCHEMA staging")
    conn.execute("CREATE TABLE marts.vm_inventory (vm_id VARCHAR, os_name VARCHAR, os_version VARCHAR, os_type VARCHAR)")
    conn.executemany("INSERT INTO marts.vm_inventory VALUES (?, ?, ?, ?)", INVENTORY)
    conn.execute("CREATE TABLE staging.patch_observations (vm_id VARCHAR, patch_key VARCHAR, kb VARCHAR, "
                 "state VARCHAR, observed_at TIMESTAMPTZ)")
    conn.executemany(
        "INSERT INTO staging.patch_observations VALUES (?, ?, ?, ?, TIMESTAMPTZ '2026-06-29 06:00:00+00')",
        [(VM[vm], key, kb, state) for vm, key, kb, state in OBSERVATIONS],
    )
    conn.execute("CREATE TABLE marts.vm_patch_state AS SELECT DISTINCT vm_id, patch_key, kb FROM staging.patch_observations")
    conn.close()
    return path


INSTANCES: dict[str, dg.DagsterInstance] = {}


def run(warehouse: Path, estate: Path, webhook: NotificationWebhook | None = None,
        ) -> tuple[dg.ExecuteInProcessResult, duckdb.DuckDBPyConnection]:
    """The assets as of 2026-06-30; notices recorded only, or POSTed to `webhook`."""
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        ASSETS,
        instance=instance,
        resources={
            **bulletin_resources(),
            "warehouse": WarehouseResource(database=str(warehouse)),
            "run_settings": RunSettings(estate_dir=str(estate), as_of="2026-06-30"),
            "notification_webhook": webhook or NotificationWebhook(),
        },
        raise_on_error=False,
    )
    INSTANCES[result.run_id] = instance
    return result, duckdb.connect(str(warehouse), read_only=True)


def notified(conn) -> list[tuple]:
    return conn.execute(
        "SELECT patch_key, severity, exploited, in_kev, affected_machines, new_in_this_run "
        "FROM marts.patch_notifications ORDER BY seq").fetchall()


def applicability_unchanged(result: dg.ExecuteInProcessResult) -> bool:
    (m,) = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()
            if e.step_materialization_data.materialization.asset_key.path == ["staging", "patch_applicability"]]
    return m.metadata["unchanged"].value


def test_new_applicable_patches_are_notified_once(warehouse, estate):
    result, conn = run(warehouse, estate)
    assert result.success
    applicability = conn.execute(
        "SELECT patch_key, vm_id, matched_on FROM staging.patch_applicability ORDER BY ALL").fetchall()
    assert ("5040001", VM["win1"], "os_name") in applicability
    assert ("5040003", VM["win3"], "os_name") in applicability
    assert not any(p == "5040002" for p, _, _ in applicability)  # 2012 is not 2012 R2
    assert {v for p, v, _ in applicability if p.startswith("libssl3_")} == {VM["ubu1"]}  # not Debian, not 20.04
    # Most urgent first: in KEV and exploited, then severity, then machines, then patch key.
    # The older USN-6000-1 applies too but was released before the 35-day lookback.
    assert notified(conn) == [
        ("5040001", "Critical", True, True, 2, True),
        ("5040004", "Important", False, False, 2, True),
        ("5040003", "Important", False, False, 1, True),
        ("libssl3_3.0.2-0ubuntu1.15", "Important", False, False, 1, True),
    ]
    ledger = conn.execute(
        "SELECT seq, content, row_sha256, prev_sha256, chain_sha256, delivery FROM ledger.notifications_sent ORDER BY seq"
    ).fetchall()
    prev = GENESIS
    for position, (seq, content, row_sha, prev_sha, chain, delivery) in enumerate(ledger, start=1):
        assert seq == position and hashlib.sha256(content.encode()).hexdigest() == row_sha
        assert prev_sha == prev and chain == chain_hash(prev, row_sha) and delivery == "warehouse"
        prev = chain
    assert json.loads(ledger[0][1])["cves"] == ["CVE-2026-1001"]
    conn.close()

    # Same bulletins again: nothing new, nothing notified twice.
    result, conn = run(warehouse, estate)
    assert result.success
    assert [r[:5] for r in notified(conn)] == [
        ("5040001", "Critical", True, True, 2),
        ("5040004", "Important", False, False, 2),
        ("5040003", "Important", False, False, 1),
        ("libssl3_3.0.2-0ubuntu1.15", "Important", False, False, 1),
    ]
    assert not any(r[5] for r in notified(conn))
    assert conn.execute("SELECT count(*) FROM staging.notification_candidates").fetchall() == [(0,)]
    assert applicability_unchanged(result) is True  # same machines, packages and fixes: not rebuilt
    conn.close()

    # A new advisory for a package on ubu1 is notified alone, continuing the chain.
    (estate / "bulletins" / "osv" / "curl.json").write_text(json.dumps(
        advisory("USN-7200-1", "curl", "7.81.0-1ubuntu1.20", "2026-06-25T00:00:00Z", "CVE-2026-3001")))
    result, conn = run(warehouse, estate)
    assert result.success
    rows = conn.execute(
        "SELECT seq, patch_key, new_in_this_run FROM marts.patch_notifications WHERE new_in_this_run").fetchall()
    assert rows == [(5, "curl_7.81.0-1ubuntu1.20", True)]
    assert applicability_unchanged(result) is False  # a new fix: rebuilt
    assert conn.execute("SELECT count(*) FROM ledger.notifications_sent").fetchall() == [(5,)]
    conn.close()

    # ubu1 upgraded to 20.04: rebuilt, the 22.04 advisories no longer apply to any machine.
    with duckdb.connect(str(warehouse)) as w:
        w.execute("UPDATE marts.vm_inventory SET os_version = '20.04' WHERE vm_id = ?", [VM["ubu1"]])
    result, conn = run(warehouse, estate)
    assert result.success and applicability_unchanged(result) is False
    assert conn.execute("SELECT patch_key, affected_machines, affected_machines_now FROM marts.patch_notifications "
                        "WHERE patch_key NOT SIMILAR TO '[0-9]+' ORDER BY seq").fetchall() == [
        ("libssl3_3.0.2-0ubuntu1.15", 1, 0), ("curl_7.81.0-1ubuntu1.20", 1, 0)]


class Hook(BaseHTTPRequestHandler):
    received: list = []
    statuses: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        status = Hook.statuses.pop(0) if Hook.statuses else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook_server():
    Hook.received, Hook.statuses = [], []
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _messages(result: dg.ExecuteInProcessResult) -> str:
    """Every log line and event of the run, as the UI would show them."""
    logs = INSTANCES[result.run_id].all_logs(result.run_id)
    return "\n".join(f"{e.user_message} {e.dagster_event}" for e in logs)


def test_webhook_receives_new_notices_with_retry(warehouse, estate, hook_server, caplog):
    webhook = NotificationWebhook(url=f"{hook_server}/hooks/patches?token=s3cr3t-token", backoff_seconds=0.01)
    Hook.statuses = [503]  # the first attempt fails, the retry succeeds
    result, conn = run(warehouse, estate, webhook)
    assert result.success
    assert len(Hook.received) == 2
    path, content_type, payload = Hook.received[-1]
    assert path == "/hooks/patches?token=s3cr3t-token" and content_type == "application/json"
    assert payload["event"] == "patchledger.new_patches" and payload["as_of"] == "2026-06-30"
    assert payload["count"] == 4
    first = payload["notifications"][0]
    assert (first["patch_key"], first["severity"], first["exploited"], first["in_kev"],
            first["kev_due_date"], first["affected_machines"]) == ("5040001", "Critical", True, True, "2026-07-01", 2)
    assert conn.execute("SELECT DISTINCT delivery FROM ledger.notifications_sent").fetchall() == [("webhook",)]
    assert "s3cr3t" not in _messages(result) and "s3cr3t" not in caplog.text
    assert f"{hook_server}/hooks/patches accepted 4 notices" in _messages(result)
    conn.close()

    result, conn = run(warehouse, estate, webhook)  # nothing new: no POST
    assert result.success and len(Hook.received) == 2


def test_a_webhook_that_must_not_deliver_is_not_called(warehouse, estate, hook_server, monkeypatch):
    """What a past-date rebuild runs with (bulletin_resources(deliver_notices=False)): the URL is
    configured, but the four new notices are only recorded, with delivery 'warehouse'. (A copy
    of the resource with its URL blanked, `model_copy`, would not do: Dagster builds the run's
    resource from its configuration, URL included.)"""
    monkeypatch.setenv("PATCHLEDGER_NOTIFY_WEBHOOK", f"{hook_server}/hooks/patches")
    webhook = bulletin_resources(deliver_notices=False)["notification_webhook"]
    result, conn = run(warehouse, estate, webhook)
    assert result.success
    assert Hook.received == []
    assert conn.execute("SELECT delivery, count(*) FROM ledger.notifications_sent GROUP BY ALL").fetchall() == [
        ("warehouse", 4)]


def test_webhook_failure_records_nothing_and_hides_the_token(warehouse, estate, hook_server, caplog):
    webhook = NotificationWebhook(url=f"{hook_server}/hooks/patches?token=s3cr3t-token", backoff_seconds=0.01)
    Hook.statuses = [500] * 10
    result, conn = run(warehouse, estate, webhook)
    assert not result.success
    assert len(Hook.received) == 1 + WEBHOOK_RETRIES
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert f"notification webhook {hook_server}/hooks/patches failed after 4 attempt(s): HTTP 500" in str(
        failure.event_specific_data.error)
    assert "s3cr3t" not in _messages(result) and "s3cr3t" not in caplog.text
    assert conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'notifications_sent'").fetchall() == [(0,)]


def test_redact_url():
    assert redact_url("https://user:pw@hooks.example.com:8443/a/b?token=x#f") == "https://hooks.example.com:8443/a/b"


def test_without_inventory_nothing_is_notified(tmp_path, estate):
    result, conn = run(tmp_path / "empty.duckdb", estate)
    assert result.success
    assert conn.execute("SELECT count(*) FROM marts.patch_notifications").fetchall() == [(0,)]
    assert conn.execute("SELECT count(*) FROM staging.patch_applicability").fetchall() == [(0,)]


def test_a_patch_entering_kev_after_its_notice_is_notified_again(warehouse, estate):
    result, conn = run(warehouse, estate)
    assert result.success
    first = dict(conn.execute(
        "SELECT patch_key, in_kev FROM marts.patch_notifications WHERE reason = 'new'").fetchall())
    assert first["libssl3_3.0.2-0ubuntu1.15"] is False
    conn.close()

    # CISA lists the libssl3 CVE (and, earlier, the already-KEV 5040001's): a new catalog snapshot.
    (estate / "bulletins" / "kev" / "kev.csv").write_text(
        KEV_CSV + "CVE-2026-2001,OpenSSL,OpenSSL,OpenSSL overflow,2026-06-29,desc,Apply updates,"
                  "2026-07-20,Unknown,,\n")
    result, conn = run(warehouse, estate)
    assert result.success
    again = conn.execute(
        "SELECT seq, patch_key, reason, in_kev, kev_due_date, notification_id, new_in_this_run "
        "FROM marts.patch_notifications WHERE new_in_this_run ORDER BY seq").fetchall()
    # Only the patch whose CVE entered KEV: 5040001 was in KEV when first notified.
    assert [(p, r, k, str(d)) for _, p, r, k, d, _, _ in again] == [
        ("libssl3_3.0.2-0ubuntu1.15", "entered_kev", True, "2026-07-20")]
    assert again[0][0] == 5
    assert again[0][5] == hashlib.sha256(b"libssl3_3.0.2-0ubuntu1.15|entered_kev").hexdigest()[:16]
    conn.close()

    result, conn = run(warehouse, estate)  # notified in KEV once: not again
    assert result.success
    assert conn.execute("SELECT count(*) FROM ledger.notifications_sent").fetchall() == [(5,)]
