"""A Linux machine seen through every source gets one patch_key per package, and an installation
run is a full listing of a machine's patches (freshness). Handmade estate, as of 2024-03-10.

vm-lnx02: libc6 2.35-0ubuntu3.13 seen by a Resource Graph assessment (03-01, patchName + version),
a Resource Graph installation (03-02, Failed), assessPatches (03-03, name + version; patchId
name_version_Ubuntu_22.04), installPatches (03-04, Failed), Log Analytics Update (03-05, Product +
ProductVersion) and UpdateRunProgress (03-06, Product "libc6", Title "libc6 2.35-0ubuntu3.13",
Succeeded). Every source must key it libc6_2.35-0ubuntu3.13.

vm-lnx03: assessed by Resource Graph on 03-01 only (8 days before the as-of date: stale after 2),
then an installation run on 03-09 (rebootStatus Required) installs openssl (reboot required) and
lists curl as NotSelected. The run is its newest full listing: the machine is assessed, openssl
waits for a reboot and curl is not selected.

A failed install stays failed (openssl 3.0.2-0ubuntu1.16, an installation run on 03-05 fails it on
vm-lnx04 .. vm-lnx07; every machine has a full listing on 03-08 or 03-09):
  vm-lnx04  assessments 03-06 and 03-09 list it missing               -> failed (last known missing)
  vm-lnx05  a run on 03-07 installs it; the 03-09 assessment lists it -> missing (the retry succeeded)
  vm-lnx06  Log Analytics says Not needed on 03-06; 03-09 lists it    -> missing (resolved after the failure)
  vm-lnx07  a run on 03-08 lists it NotSelected                       -> failed

A newer installed version satisfies an older one (vm-lnx08): sudo 1.9.9-1ubuntu2.9 missing on 03-06,
a run on 03-08 installs sudo 1.9.9-1ubuntu2.11 and curl 7.81.0-1ubuntu1.17, the 03-09 assessment
lists curl 7.81.0-1ubuntu1.18: sudo ...2.9 is superseded_satisfied by ...2.11 (2.11 > 2.9, number by
number), curl ...1.18 stays missing (the installed curl is older).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from partition_runs import materialize_every_day

from assets import inventory, monitoring
from pipelines.ingest.azure import AzureResource
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.compute import assets as compute_assets
from pipelines.sources.log_analytics import assets as la_assets
from pipelines.sources.patch_operations import assets as operations_assets
from pipelines.sources.resource_graph import assets as resource_graph_assets

SCAN_ASSETS = [la_assets, operations_assets, resource_graph_assets]

SUB = "11111111-1111-1111-1111-111111111111"
ARM = f"/subscriptions/{SUB}/resourceGroups/RG-Lnx/providers/Microsoft.Compute/virtualMachines/"
LNX2, LNX3 = (ARM + "vm-lnx02").lower(), (ARM + "vm-lnx03").lower()
LIBC = ("libc6", "2.35-0ubuntu3.13")
SSL = ("openssl", "3.0.2-0ubuntu1.16")
HELD = [f"vm-lnx0{i}" for i in range(4, 8)]


def _vm(name: str, guid: str) -> dict:
    return {"id": ARM + name, "name": name, "location": "westeurope", "resourceGroup": "RG-Lnx", "vmId": guid,
            "tags": {"environment": "production", "role": "db"}, "powerState": "VM running",
            "storageProfile": {"osDisk": {"osType": "Linux"}},
            "osProfile": {"computerName": name, "linuxConfiguration": {"patchSettings": {"patchMode": "AutomaticByPlatform"}}}}


def _assessment(vm: str, run: str, at: str, patches: list[tuple[str, str]]) -> list[dict]:
    parent = f"{ARM}{vm}/patchAssessmentResults/latest"
    rows = [{"id": parent, "name": "latest", "type": "microsoft.compute/virtualmachines/patchassessmentresults",
             "properties": {"status": "Succeeded", "assessmentActivityId": run, "rebootPending": False,
                            "startDateTime": at, "lastModifiedDateTime": at, "osType": "Linux",
                            "availablePatchCountByClassification": {"security": len(patches)}}}]
    rows += [{"id": f"{parent}/softwarePatches/{name}_{version}_Ubuntu_22.04", "name": f"{name}_{version}_Ubuntu_22.04",
              "type": "microsoft.compute/virtualmachines/patchassessmentresults/softwarepatches",
              "properties": {"patchName": name, "version": version, "kbId": None, "classifications": ["Security"],
                             "assessmentState": "Available", "lastModifiedDateTime": at}}
             for name, version in patches]
    return rows


def _installation(vm: str, run: str, at: str, reboot: str, status: str,
                  patches: list[tuple[str, str, str, bool]]) -> list[dict]:
    parent = f"{ARM}{vm}/patchInstallationResults/{run}"
    count = {s: sum(p[2] == s for p in patches) for s in ("Installed", "Failed", "NotSelected")}
    rows = [{"id": parent, "name": run, "type": "microsoft.compute/virtualmachines/patchinstallationresults",
             "properties": {"installationActivityId": run, "status": status, "rebootStatus": reboot,
                            "installedPatchCount": count["Installed"], "failedPatchCount": count["Failed"],
                            "notSelectedPatchCount": count["NotSelected"], "excludedPatchCount": 0,
                            "pendingPatchCount": 0, "startDateTime": at, "lastModifiedDateTime": at,
                            "osType": "Linux"}}]
    rows += [{"id": f"{parent}/softwarePatches/{name}_{version}_Ubuntu_22.04", "name": f"{name}_{version}_Ubuntu_22.04",
              "type": "microsoft.compute/virtualmachines/patchinstallationresults/softwarepatches",
              "properties": {"patchName": name, "version": version, "kbId": None, "classifications": ["Security"],
                             "installationState": state, "rebootRequired": reboot_required,
                             "lastModifiedDateTime": at}}
             for name, version, state, reboot_required in patches]
    return rows


def _la(columns: dict[str, str], rows: list[list]) -> dict:
    return {"tables": [{"name": "PrimaryResult", "columns": [{"name": n, "type": t} for n, t in columns.items()],
                        "rows": rows}]}


def _la_update(rows: list[list]) -> dict:
    """Log Analytics Update rows (a Linux package: Product and ProductVersion)."""
    return _la(
        {"TimeGenerated": "datetime", "Computer": "string", "ComputerEnvironment": "string",
         "SourceComputerId": "string", "_ResourceId": "string", "OSType": "string", "Title": "string",
         "KBID": "string", "Classification": "string", "UpdateState": "string", "Approved": "bool",
         "Product": "string", "ProductVersion": "string"},
        rows)


def write_estate(root: Path) -> Path:
    estate = root / "estate"
    rg, ops, la = estate / "azure" / "resource_graph", estate / "azure" / "patch_operations", estate / "log_analytics"
    for folder in (rg, ops, la):
        folder.mkdir(parents=True)
    (estate / "azure" / "virtual_machines.json").write_text(json.dumps([
        _vm(f"vm-lnx0{i}", f"22222222-aaaa-bbbb-cccc-00000000000{i}") for i in range(2, 9)]))
    _write_failed_installs(rg, la)
    (rg / "patchassessmentresources-2024-03-01.json").write_text(json.dumps({"data": [
        *_assessment("vm-lnx02", "a-0301", "2024-03-01T02:00:00Z", [LIBC]),
        *_assessment("vm-lnx03", "b-0301", "2024-03-01T02:00:00Z",
                     [("openssl", "3.0.2-0ubuntu1.15"), ("curl", "7.81.0-1ubuntu1.16")])]}))
    (rg / "patchinstallationresources-2024-03-09.json").write_text(json.dumps({"data": [
        *_installation("vm-lnx02", "i-0302", "2024-03-02T03:00:00Z", "NotNeeded", "Failed",
                       [(*LIBC, "Failed", False)]),
        *_installation("vm-lnx03", "j-0309", "2024-03-09T03:00:00Z", "Required", "Succeeded",
                       [("openssl", "3.0.2-0ubuntu1.15", "Installed", True),
                        ("curl", "7.81.0-1ubuntu1.16", "NotSelected", False)])]}))
    line = {"patchId": f"{LIBC[0]}_{LIBC[1]}_Ubuntu_22.04", "name": LIBC[0], "version": LIBC[1], "kbId": "",
            "classifications": ["Security"]}
    (ops / "assessPatches_vm-lnx02.json").write_text(json.dumps({
        "resourceId": ARM + "vm-lnx02", "operation": "assessPatches",
        "result": {"status": "Succeeded", "assessmentActivityId": "op-a-0303", "rebootPending": False,
                   "startDateTime": "2024-03-03T02:00:00Z", "lastModifiedDateTime": "2024-03-03T02:05:00Z",
                   "availablePatches": [{**line, "assessmentState": "Available"}]}}))
    (ops / "installPatches_vm-lnx02.json").write_text(json.dumps({
        "resourceId": ARM + "vm-lnx02", "operation": "installPatches",
        "result": {"status": "Failed", "installationActivityId": "op-i-0304", "rebootStatus": "NotNeeded",
                   "startDateTime": "2024-03-04T02:00:00Z", "lastModifiedDateTime": "2024-03-04T02:30:00Z",
                   "patches": [{**line, "installationState": "Failed"}]}}))
    host = ["vm-lnx02", "Azure", "src-lnx02", ARM + "vm-lnx02"]
    (la / "Update-lnx02.json").write_text(json.dumps(_la_update(
        [["2024-03-05T10:00:00Z", *host, "Linux", "libc6", "", "Security Updates", "Needed", True, *LIBC]])))
    (la / "UpdateRunProgress-lnx02.json").write_text(json.dumps(_la(
        {"TimeGenerated": "datetime", "Computer": "string", "ComputerEnvironment": "string",
         "SourceComputerId": "string", "_ResourceId": "string", "OSType": "string", "UpdateRunName": "string",
         "CorrelationId": "string", "KBID": "string", "Title": "string", "Product": "string",
         "InstallationStatus": "string"},
        [["2024-03-06T01:00:00Z", *host, "Linux", "march", "corr-0306", "", f"{LIBC[0]} {LIBC[1]}", LIBC[0],
          "Succeeded"]])))
    return estate


def _write_failed_installs(rg: Path, la: Path) -> None:
    """The four machines of the failed-install rule (module docstring)."""
    (rg / "patchinstallationresources-2024-03-05.json").write_text(json.dumps({"data": [
        row for i, vm in enumerate(HELD)
        for row in _installation(vm, f"f-0305-{i}", "2024-03-05T03:00:00Z", "NotNeeded", "Failed", [(*SSL, "Failed", False)])]}))
    (rg / "patchinstallationresources-2024-03-07.json").write_text(json.dumps({"data": _installation(
        "vm-lnx05", "r-0307", "2024-03-07T03:00:00Z", "NotNeeded", "Succeeded", [(*SSL, "Installed", False)])}))
    (rg / "patchinstallationresources-2024-03-08.json").write_text(json.dumps({"data": [
        *_installation("vm-lnx07", "n-0308", "2024-03-08T03:00:00Z", "NotNeeded", "Succeeded",
                       [("curl", "7.81.0-1ubuntu1.17", "Installed", False), (*SSL, "NotSelected", False)]),
        *_installation("vm-lnx08", "u-0308", "2024-03-08T03:00:00Z", "NotNeeded", "Succeeded",
                       [("sudo", "1.9.9-1ubuntu2.11", "Installed", False),
                        ("curl", "7.81.0-1ubuntu1.17", "Installed", False)])]}))
    (rg / "patchassessmentresources-2024-03-06.json").write_text(json.dumps({"data": [
        *_assessment("vm-lnx04", "a4-0306", "2024-03-06T02:00:00Z", [SSL]),
        *_assessment("vm-lnx08", "a8-0306", "2024-03-06T02:00:00Z", [("sudo", "1.9.9-1ubuntu2.9")])]}))
    (rg / "patchassessmentresources-2024-03-09.json").write_text(json.dumps({"data": [
        *[row for i, vm in enumerate(("vm-lnx04", "vm-lnx05", "vm-lnx06"))
          for row in _assessment(vm, f"a-0309-{i}", "2024-03-09T02:00:00Z", [SSL])],
        *_assessment("vm-lnx08", "a8-0309", "2024-03-09T02:00:00Z", [("curl", "7.81.0-1ubuntu1.18")])]}))
    host = ["vm-lnx06", "Azure", "src-lnx06", ARM + "vm-lnx06"]
    (la / "Update-lnx06.json").write_text(json.dumps(_la_update(
        [["2024-03-06T10:00:00Z", *host, "Linux", "openssl", "", "Security Updates", "Not needed", True, *SSL]])))


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("linux")
    estate = write_estate(root)
    database = root / "warehouse.duckdb"
    with duckdb.connect(str(database)) as conn:
        # Tables of other stages that these assets read, empty.
        conn.execute("CREATE SCHEMA staging; CREATE SCHEMA marts")
        conn.execute("CREATE TABLE staging.asset_categories (category_id VARCHAR, name VARCHAR, description VARCHAR, "
                     "criticality VARCHAR, rule_order INTEGER, tag_key VARCHAR, tag_value VARCHAR, os_type VARCHAR)")
        conn.execute("CREATE TABLE marts.patch_supersedence_closure "
                     "(kb VARCHAR, superseded_kb VARCHAR, depth INTEGER, in_cycle BOOLEAN)")
    result = materialize_every_day(
        [*dg.load_assets_from_modules([compute_assets, inventory, monitoring, *SCAN_ASSETS])],
        resources={"warehouse": WarehouseResource(database=str(database)),
                   "run_settings": RunSettings(estate_dir=str(estate), as_of="2024-03-10"),
                   "azure": AzureResource()},
    )
    assert result.success
    conn = duckdb.connect(str(database), read_only=True)
    yield conn
    conn.close()


def test_every_source_gives_the_same_linux_key(warehouse):
    keys = warehouse.execute(
        "SELECT source, list(DISTINCT patch_key) FROM staging.patch_observations WHERE vm_id = ? "
        "GROUP BY source ORDER BY source", [LNX2]
    ).fetchall()
    assert keys == [(source, ["libc6_2.35-0ubuntu3.13"]) for source in (
        "log_analytics_run", "log_analytics_update", "patch_operation_assess", "patch_operation_install",
        "resource_graph_assessment", "resource_graph_installation")]
    # One pair, so the newest observation (UpdateRunProgress Succeeded on 03-06) decides; the
    # newest full listing (Log Analytics Update, 03-05) is 5 days old, so the state is unknown.
    assert warehouse.execute("SELECT patch_key, last_known_state, state FROM marts.vm_patch_state WHERE vm_id = ?",
                             [LNX2]).fetchall() == [("libc6_2.35-0ubuntu3.13", "installed", "unknown_stale")]


def test_an_installation_run_is_a_full_listing(warehouse):
    runs = warehouse.execute(
        "SELECT source, run_id, assessed_at, succeeded, reboot_pending, lists_missing_patches, missing_count "
        "FROM staging.assessment_runs WHERE vm_id = ? ORDER BY assessed_at", [LNX3]
    ).fetchall()
    assert runs == [
        ("resource_graph_assessment", "b-0301", datetime(2024, 3, 1, 2, tzinfo=UTC), True, False, True, 2),
        ("resource_graph_installation", "j-0309", datetime(2024, 3, 9, 3, tzinfo=UTC), True, True, True, 1),
    ]
    coverage = warehouse.execute(
        "SELECT coverage_status, last_assessed_at, assessment_age_days FROM marts.vm_inventory WHERE vm_id = ?",
        [LNX3]).fetchall()
    assert coverage == [("assessed", datetime(2024, 3, 9, 3, tzinfo=UTC), 1)]
    states = warehouse.execute(
        "SELECT patch_key, state FROM marts.vm_patch_state WHERE vm_id = ? ORDER BY patch_key", [LNX3]
    ).fetchall()
    assert states == [("curl_7.81.0-1ubuntu1.16", "not_selected"),
                      ("openssl_3.0.2-0ubuntu1.15", "installed_pending_reboot")]


def test_a_failed_installation_run_that_lists_its_patches_counts(warehouse):
    runs = warehouse.execute(
        "SELECT source, status, succeeded, missing_count FROM staging.assessment_runs "
        "WHERE vm_id = ? AND source LIKE '%install%' ORDER BY assessed_at", [LNX2]
    ).fetchall()
    assert runs == [("resource_graph_installation", "Failed", True, 1), ("patch_operation_install", "Failed", True, 1)]


def test_a_failed_install_stays_failed_until_a_success_or_a_resolution(warehouse):
    rows = warehouse.execute(
        "SELECT s.vm_id, s.state, s.last_known_state, s.last_attempt_state, s.last_attempt_at "
        "FROM marts.vm_patch_state AS s WHERE s.patch_key = ? AND s.vm_id IN (SELECT unnest(?)) ORDER BY s.vm_id",
        ["openssl_3.0.2-0ubuntu1.16", [(ARM + vm).lower() for vm in HELD]]).fetchall()
    failed_at = datetime(2024, 3, 5, 3, tzinfo=UTC)
    assert [(vm.rsplit("/", 1)[1], *rest) for vm, *rest in rows] == [
        ("vm-lnx04", "failed", "missing", "failed", failed_at),
        ("vm-lnx05", "missing", "missing", "installed", datetime(2024, 3, 7, 3, tzinfo=UTC)),
        ("vm-lnx06", "missing", "missing", "failed", failed_at),
        ("vm-lnx07", "failed", "not_selected", "failed", failed_at),
    ]
    assert warehouse.execute(
        "SELECT coverage_status, count(*) FROM marts.vm_inventory WHERE vm_id IN (SELECT unnest(?)) GROUP BY ALL",
        [[(ARM + vm).lower() for vm in HELD]]).fetchall() == [("assessed", 4)]


def test_a_newer_installed_package_version_satisfies_an_older_one(warehouse):
    assert warehouse.execute(
        "SELECT patch_key, state, last_known_state, satisfied_by_kb FROM marts.vm_patch_state "
        "WHERE vm_id = ? ORDER BY patch_key", [(ARM + "vm-lnx08").lower()]).fetchall() == [
        ("curl_7.81.0-1ubuntu1.17", "installed", "installed", None),
        ("curl_7.81.0-1ubuntu1.18", "missing", "missing", None),
        ("sudo_1.9.9-1ubuntu2.11", "installed", "installed", None),
        ("sudo_1.9.9-1ubuntu2.9", "superseded_satisfied", "missing", "sudo_1.9.9-1ubuntu2.11"),
    ]
