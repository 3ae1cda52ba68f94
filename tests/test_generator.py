"""The demo estate generator: determinism, file set, real source shapes, planted cases."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from datetime import date
from pathlib import Path

import pytest

from pipelines.demo import generate_estate
from pipelines.demo.registers import HEADERS

VMS, DAYS = 30, 20  # period 2026-11-08 .. 2026-11-27 (the default end)


@pytest.fixture(scope="module")
def estate(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("estate")
    return out, generate_estate(out, vms=VMS, days=DAYS, seed=7)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_same_seed_gives_byte_identical_files(estate, tmp_path):
    root, _ = estate
    again = generate_estate(tmp_path / "again", vms=VMS, days=DAYS, seed=7)
    assert _digests(root) == _digests(again.path)
    other = generate_estate(tmp_path / "other", vms=VMS, days=DAYS, seed=8)
    assert _digests(root) != _digests(other.path)


def test_expected_files_and_summary(estate):
    root, summary = estate
    assert summary.start == date(2026, 11, 8) and summary.end == date(2026, 11, 27)
    msrc = sorted(p.name for p in (root / "bulletins/msrc").iterdir())
    # the period's month plus six months before it
    assert msrc == sorted(f"2026-{m}.json" for m in ["May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov"])
    rg = root / "azure/resource_graph"
    assert len(list(rg.glob("patchassessmentresources-*.json"))) == DAYS
    assert len(list(rg.glob("patchinstallationresources-*.json"))) == DAYS
    assert len(list((root / "log_analytics").glob("Update_*.csv"))) == DAYS
    for name in [
        "bulletins/kev/known_exploited_vulnerabilities.json",
        "bulletins/epss/epss_scores-2026-11-08.csv.gz",
        "bulletins/epss/epss_scores-2026-11-27.csv.gz",
        "azure/virtual_machines/virtual_machines-20261108T060000Z.json",
        "azure/virtual_machines/virtual_machines-20261127T060000Z.json",
        "azure/maintenance/maintenance_configurations.json",
        "azure/maintenance/configuration_assignments.json",
        "policy/automatic_updates.yaml",
        "log_analytics/UpdateSummary.json",
        "log_analytics/UpdateRunProgress.json",
        "demo_truth.json",
    ] + [f"registers/{n}.csv" for n in HEADERS]:
        assert (root / name).is_file(), name
    assert summary.counts["virtual_machines"] == VMS
    assert summary.files == len(_digests(root))
    assert "30 VMs, 20 days" in str(summary)


def test_every_json_file_parses(estate):
    root, _ = estate
    for path in root.rglob("*.json"):
        _json(path)


def test_msrc_month_documents_use_the_api_json_shapes(estate):
    root, _ = estate
    doc = _json(root / "bulletins/msrc/2026-Nov.json")
    assert doc["DocumentTitle"] == {"Value": "November 2026 Security Updates"}
    assert doc["DocumentTracking"]["Identification"]["ID"] == {"Value": "2026-Nov"}
    assert doc["DocumentTracking"]["Status"] == 2
    products = {p["ProductID"]: p["Value"] for p in doc["ProductTree"]["FullProductName"]}
    assert products["11923"] == "Windows Server 2022"
    vuln = doc["Vulnerability"][0]
    assert vuln["CVE"].startswith("CVE-2026-")
    threats = vuln["Threats"]
    status = [t for t in threats if t["Type"] == 1]
    assert len(status) == 1 and "ProductID" not in status[0]
    assert "Exploited:" in status[0]["Description"]["Value"]
    affected = vuln["ProductStatuses"][0]["ProductID"]
    for kind in (0, 3):
        assert sorted(p for t in threats if t["Type"] == kind for p in t["ProductID"]) == affected
    assert {s["ProductID"][0] for s in vuln["CVSSScoreSets"]} == set(affected)
    fix = next(r for r in vuln["Remediations"] if r["Type"] == 2 and "11923" in r["ProductID"])
    assert fix["Description"]["Value"].isdigit()
    assert fix["RestartRequired"] == {"Value": "Yes"}
    assert fix["FixedBuild"].startswith("10.0.20348.")
    assert fix["Supercedence"].isdigit()
    # third-party CVEs carry no severity
    months = [_json(p) for p in (root / "bulletins/msrc").glob("*.json")]
    third = [v for d in months for v in d["Vulnerability"] if v["Notes"][-1]["Value"] == "Chrome"]
    assert len(third) == 2
    assert all(t["Type"] == 1 for v in third for t in v["Threats"])


def test_cumulative_updates_form_supersedence_chains(estate):
    root, _ = estate
    kb_by_month = {}
    for path in (root / "bulletins/msrc").glob("*.json"):
        doc = _json(path)
        for v in doc["Vulnerability"]:
            for r in v["Remediations"]:
                if r["Type"] == 2 and r["ProductID"] == ["11571"]:
                    kb_by_month[doc["DocumentTracking"]["InitialReleaseDate"]] = (
                        r["Description"]["Value"],
                        r.get("Supercedence"),
                    )
    ordered = [kb_by_month[k] for k in sorted(kb_by_month)]
    assert len(ordered) == 7
    for (previous, _), (_, supersedes) in zip(ordered, ordered[1:], strict=False):
        assert supersedes == previous


def test_kev_and_epss(estate):
    root, _ = estate
    kev = _json(root / "bulletins/kev/known_exploited_vulnerabilities.json")
    assert kev["catalogVersion"] == "2026.11.27" and kev["count"] == len(kev["vulnerabilities"])
    assert set(kev["vulnerabilities"][0]) == {
        "cveID", "vendorProject", "product", "vulnerabilityName", "dateAdded", "shortDescription",
        "requiredAction", "dueDate", "knownRansomwareCampaignUse", "notes", "cwes",
    }
    truth = _json(root / "demo_truth.json")
    kev_cases = [c for c in truth["cases"] if c["case"] == "kev_past_due"]
    entry = next(v for v in kev["vulnerabilities"] if v["cveID"] == kev_cases[0]["cve"])
    assert entry["dueDate"] < "2026-11-27"
    lines = gzip.decompress((root / "bulletins/epss/epss_scores-2026-11-27.csv.gz").read_bytes())
    lines = lines.decode().splitlines()
    assert lines[0].startswith("#model_version:") and lines[1] == "cve,epss,percentile"
    assert entry["cveID"] in {line.split(",")[0] for line in lines[2:]}


def test_virtual_machines_shape(estate):
    root, _ = estate
    # Four dated snapshots: the first day, a third and two thirds into the period, the last day.
    assert [p.name for p in sorted((root / "azure/virtual_machines").glob("*.json"))] == [
        f"virtual_machines-202611{d}T060000Z.json" for d in ("08", "14", "21", "27")]
    vms = _json(root / "azure/virtual_machines/virtual_machines-20261127T060000Z.json")
    assert len(vms) == VMS
    vm = vms[0]
    assert "/resourceGroups/" in vm["id"] and vm["type"] == "Microsoft.Compute/virtualMachines"
    assert vm["powerState"] in {"VM running", "VM deallocated"}
    assert sum(v["powerState"] == "VM deallocated" for v in vms) == 2
    assert {v["storageProfile"]["osDisk"]["osType"] for v in vms} == {"Windows", "Linux"}
    assert len({v["id"].split("/")[2] for v in vms}) <= 3
    win = next(v for v in vms if v["osProfile"]["windowsConfiguration"])
    assert set(win["osProfile"]["windowsConfiguration"]["patchSettings"]) == {
        "assessmentMode", "automaticByPlatformSettings", "enableHotpatching", "patchMode"
    }
    keys = {k.lower() for v in vms for k in v["tags"]}
    assert keys == {"role", "owner", "criticality", "environment", "asset-category",
                    "maintenance-window", "internet-exposed", "pci-scope"}


def test_resource_graph_rows(estate):
    root, _ = estate
    rows = _json(root / "azure/resource_graph/patchassessmentresources-2026-11-20.json")["data"]
    parents = [r for r in rows if r["type"].endswith("/patchassessmentresults")]
    children = [r for r in rows if r["type"].endswith("/softwarepatches")]
    assert parents and children
    assert all(r["id"].endswith("/patchAssessmentResults/latest") for r in parents)
    assert all("/patchAssessmentResults/latest/softwarePatches/" in r["id"] for r in children)
    assert all(r["type"] == r["type"].lower() for r in rows)
    linux = [r["properties"] for r in children if r["properties"]["kbId"] is None]
    assert all(p["version"] and "_" not in p["patchName"] for p in linux)
    states = set()
    for path in (root / "azure/resource_graph").glob("patchinstallationresources-*.json"):
        for r in _json(path)["data"]:
            if r["type"].endswith("/softwarepatches"):
                states.add(r["properties"]["installationState"])
    assert {"Installed", "Failed", "Excluded", "NotSelected"} <= states


def test_log_analytics_forms(estate):
    root, _ = estate
    raw = (root / "log_analytics/Update_2026-11-20.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert "TimeGenerated [UTC]" in rows[0] and ", " in rows[0]["TimeGenerated [UTC]"]
    assert {r["ComputerEnvironment"] for r in rows} == {"Azure", "Non-Azure"}
    summary = _json(root / "log_analytics/UpdateSummary.json")["tables"][0]
    names = [c["name"] for c in summary["columns"]]
    assert "WSUSServer" in names and "OsVersion" in names
    assert all(isinstance(v, str) or v is None for v in summary["rows"][0])
    progress = _json(root / "log_analytics/UpdateRunProgress.json")
    assert progress and all(r["TableName"] == "PrimaryResult" for r in progress)


def test_patch_operations_carry_the_success_error_quirk(estate):
    root, _ = estate
    ops = [_json(p) for p in sorted((root / "azure/patch_operations").glob("*.json"))]
    assert sorted(o["operation"] for o in ops) == ["assessPatches"] * 3 + ["installPatches"] * 5
    # The planted failed install (failed_install_still_failed) is the one failure.
    failed = [o for o in ops if o["result"]["status"] == "Failed"]
    assert [(o["result"]["error"]["code"], [p["installationState"] for p in o["result"]["patches"]])
            for o in failed] == [("PatchInstallationFailure", ["Failed"])]
    assert all(o["result"]["error"]["details"] == [] and o["result"]["error"]["code"] in ("Success", "0")
               for o in ops if o not in failed)


def test_register_headers_are_exactly_documented(estate):
    root, summary = estate
    documented = Path(__file__).resolve().parents[1] / "docs" / "estate.md"
    text = documented.read_text(encoding="utf-8")
    for name, header in HEADERS.items():
        with open(root / "registers" / f"{name}.csv", encoding="utf-8", newline="") as f:
            assert next(csv.reader(f)) == header
        for column in header:
            assert f"| {column}" in text or f"{column}," in text or f", {column}" in text, column
        assert summary.counts[name] >= 1


def test_authorization_log_has_planted_violations(estate):
    root, _ = estate
    with open(root / "registers/authorization_events.csv", encoding="utf-8") as f:
        events = list(csv.DictReader(f))
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    illegal = [e for e in events if e["from_state"] in ("rejected", "revoked") and e["to_state"] == "authorized"]
    assert len(illegal) == 2
    no_pir = [e for e in events if e["emergency"] == "true" and e["to_state"] == "authorized" and not e["pir_completed_at"]]
    assert len(no_pir) == 2


def test_planted_cases_refer_to_known_machines(estate):
    root, _ = estate
    truth = _json(root / "demo_truth.json")
    arm = {v["id"].lower() for v in _json(root / "azure/virtual_machines/virtual_machines-20261127T060000Z.json")}
    computers = set()
    for path in (root / "log_analytics").glob("Update_*.csv"):
        with open(path, encoding="utf-8-sig") as f:
            computers |= {r["Computer"].lower() for r in csv.DictReader(f) if r["ComputerEnvironment"] == "Non-Azure"}
    known = arm | {f"nonazure/{c}" for c in computers}
    cases = truth["cases"]
    for case in cases:
        assert case["vm_id"] is None or case["vm_id"] in known, case
    kinds = {c["case"] for c in cases}
    assert {"pending_reboot", "failed_then_retry_succeeded", "missing_superseded_by_installed",
            "installed_never_authorized", "installed_rejected", "untested_in_production",
            "approved_by_tester", "approved_by_requester", "approved_after_install",
            "emergency_without_pir", "expired_exception", "illegal_transition",
            "rollback_after_incident", "stale_assessment", "deallocated_vm", "kev_past_due",
            "excluded_in_run", "not_selected_in_run", "log_analytics_only",
            "resource_graph_only", "resource_graph_and_log_analytics", "failed_install_still_failed",
            "available_never_authorized"} <= kinds
    assert len(computers) == 3
    assert all(t["vm_id"] in known for t in truth["truth"])


def test_pending_reboot_case_is_in_the_installation_rows(estate):
    root, _ = estate
    truth = _json(root / "demo_truth.json")
    case = next(c for c in truth["cases"] if c["case"] == "pending_reboot")
    required = []
    for path in (root / "azure/resource_graph").glob("patchinstallationresources-*.json"):
        for r in _json(path)["data"]:
            if r["id"].lower().startswith(case["vm_id"] + "/") and r["type"].endswith("results"):
                required.append(r["properties"]["rebootStatus"])
    assert "Required" in required
    last = _json(root / "azure/resource_graph/patchassessmentresources-2026-11-27.json")["data"]
    mine = next(r for r in last if r["id"].lower() == case["vm_id"] + "/patchassessmentresults/latest")
    assert mine["properties"]["rebootPending"] is True


def test_too_small_fleet_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least"):
        generate_estate(tmp_path, vms=10, days=DAYS)


def test_instance_view_build_follows_the_installed_cumulative_update(estate):
    """Each snapshot's instanceView.osVersion on a Windows VM is the MSRC FixedBuild of the newest
    cumulative update its Resource Graph installation results show installed before the capture;
    between two snapshots without such an install the build does not change."""
    root, _ = estate
    builds = {}  # KB -> FixedBuild of the OS (10.0.x), from the MSRC documents
    for path in (root / "bulletins/msrc").glob("*.json"):
        for vuln in _json(path)["Vulnerability"]:
            for fix in vuln["Remediations"]:
                kb, build = fix["Description"].get("Value"), fix.get("FixedBuild", "")
                if fix.get("SubType") == "Security Update" and build.startswith("10.0."):
                    builds[kb] = build
    truth = _json(root / "demo_truth.json")
    skip = {c["vm_id"] for c in truth["cases"] if c["case"] in {"pending_reboot", "rollback_after_incident"}}
    installs: dict[str, list[tuple[str, str]]] = {}  # vm -> [(run start, KB)]
    for path in (root / "azure/resource_graph").glob("patchinstallationresources-*.json"):
        rows = _json(path)["data"]
        starts = {r["id"].lower(): r["properties"]["startDateTime"] for r in rows if r["type"].endswith("results")}
        for r in rows:
            p = r["properties"]
            if r["type"].endswith("/softwarepatches") and p["installationState"] == "Installed" and p["kbId"] in builds:
                run = r["id"].lower().split("/softwarepatches/")[0]
                installs.setdefault(run.split("/patchinstallationresults/")[0], []).append((starts[run], p["kbId"]))
    paths = sorted((root / "azure/virtual_machines").glob("*.json"))
    captured = [f"{p.stem[17:21]}-{p.stem[21:23]}-{p.stem[23:25]}T06:00:00" for p in paths]
    snapshots = [{v["id"].lower(): v for v in _json(p)} for p in paths]
    # Machines on the legacy agent report their runs to Log Analytics only.
    on_rg = {r["id"].lower().split("/patchassessmentresults/")[0]
             for r in _json(root / "azure/resource_graph/patchassessmentresources-2026-11-08.json")["data"]}
    windows = [vm for vm, v in snapshots[-1].items()
               if v["storageProfile"]["osDisk"]["osType"] == "Windows" and vm in on_rg]
    changed = 0
    for vm in windows:
        if vm in skip:
            continue
        for k in range(1, len(paths)):
            before, after = (s[vm]["instanceView"]["osVersion"] for s in (snapshots[k - 1], snapshots[k]))
            done = sorted(i for i in installs.get(vm, []) if captured[k - 1] < i[0] < captured[k])
            expected = builds[done[-1][1]] if done else before
            assert after == expected, (vm, captured[k])
            changed += before != after
    linux = {v["instanceView"]["osName"] + " " + v["instanceView"]["osVersion"]
             for v in snapshots[-1].values() if v["storageProfile"]["osDisk"]["osType"] == "Linux"}
    assert linux == {"ubuntu 22.04"}
    assert changed >= 5  # the November cumulative update lands between snapshots on many machines
