"""The automatic-updates control on a planted estate, evaluated as of 2026-03-31.

Three dated inventory snapshots (2026-03-01, 03-11, 03-21, 06:00 UTC), maintenance
configurations and assignments in their ARM shapes, Log Analytics UpdateSummary records and the
policy's exceptions go through the real loaders and SQL; every expected period, duration and
finding below is worked out by hand from those inputs.

    w1   Windows production, AutomaticByOS, switched to Manual at the third snapshot
    p1   Linux production, AutomaticByPlatform + bypass + assigned: customer-managed schedule
    p2   Windows production, AutomaticByPlatform, assigned but no bypass: still Azure autopatch
    p3   Windows production, AutomaticByPlatform + bypass, no assignment: not patched by Azure
    l1   Linux production, ImageDefault: the image decides (cannot be judged)
    d1   Windows dev, AutomaticByOS (allowed), tagged production from the second snapshot
    e1   Windows production, AutomaticByOS, exception E-1 valid until 2026-03-15
    e2   Windows production, AutomaticByOS, exception E-2 approved by its requester
    s1   Windows production, Manual, but its agent reports "Scheduled installation" from 03-10
    n1   Windows production with no patch settings: Azure's default AutomaticByOS
    m2   Windows production, Manual, but the instance view says the mode is still Pending
    onprem1  non-Azure Windows (production by the policy's scope), "Scheduled installation"
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from assets.inventory import open_intervals
from pipelines.auto_updates import (
    AutoUpdatePolicyError,
    load_auto_update_policy,
    write_policy_tables,
)
from pipelines.ingest.errors import SourceFileError
from pipelines.resources import connect_warehouse
from pipelines.sources.compute.reader import load_virtual_machines
from pipelines.sources.maintenance.reader import load_maintenance
from pipelines.warehouse import build_table

AS_OF = date(2026, 3, 31)
SUB = "11111111-1111-1111-1111-111111111111"
BASE = f"/subscriptions/{SUB}/resourceGroups/RG-PRD/providers/Microsoft.Compute/virtualMachines"
CONFIG_ID = f"/subscriptions/{SUB}/resourceGroups/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations/weekly"
SNAPSHOTS = ("20260301T060000Z", "20260311T060000Z", "20260321T060000Z")
ONPREM = "nonazure/onprem1"


def vm_id(name: str) -> str:
    return f"{BASE}/{name}".lower()


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def vm(name: str, os_type: str, environment: str, patch_mode: str, auto: bool | None = None,
       bypass: bool | None = None, mode_state: str | None = None) -> dict:
    """One VM as `GET .../virtualMachines` returns it (API 2024-07-01 shape, trimmed)."""
    settings = {"patchMode": patch_mode, "assessmentMode": "AutomaticByPlatform"} if patch_mode else {}
    if bypass is not None:
        settings["automaticByPlatformSettings"] = {"bypassPlatformSafetyChecksOnUserSchedule": bypass,
                                                   "rebootSetting": "IfRequired"}
    config = {"patchSettings": settings} if settings else {}
    if auto is not None:
        config["enableAutomaticUpdates"] = auto
    key = "windowsConfiguration" if os_type == "Windows" else "linuxConfiguration"
    properties = {"storageProfile": {"osDisk": {"osType": os_type}}, "osProfile": {"computerName": name, key: config}}
    if mode_state:
        # The instance view's patch status (VirtualMachine_Get_InstanceView example shape).
        properties["instanceView"] = {"patchStatus": {"configurationStatuses": [
            {"code": f"PatchModeConfigurationState/{mode_state}", "level": "Info"},
            {"code": "AssessmentModeConfigurationState/Ready", "level": "Info"}]}}
    return {"id": f"{BASE}/{name}", "name": name, "type": "Microsoft.Compute/virtualMachines",
            "location": "westeurope", "tags": {"environment": environment}, "properties": properties}


def snapshot(k: int) -> list[dict]:
    """The fleet as the k-th snapshot (0, 1, 2) shows it."""
    return [
        vm("w1", "Windows", "production", "Manual" if k == 2 else "AutomaticByOS", auto=k < 2),
        vm("p1", "Linux", "production", "AutomaticByPlatform", bypass=True),
        vm("p2", "Windows", "production", "AutomaticByPlatform", auto=True),
        vm("p3", "Windows", "production", "AutomaticByPlatform", auto=True, bypass=True),
        vm("l1", "Linux", "production", "ImageDefault"),
        vm("d1", "Windows", "dev" if k == 0 else "production", "AutomaticByOS", auto=True),
        vm("e1", "Windows", "production", "AutomaticByOS", auto=True),
        vm("e2", "Windows", "production", "AutomaticByOS", auto=True),
        vm("s1", "Windows", "production", "Manual", auto=False),
        vm("n1", "Windows", "production", None),
        vm("m2", "Windows", "production", "Manual", auto=False, mode_state="Pending"),
    ]


def write_estate(estate: Path) -> None:
    folder = estate / "azure" / "virtual_machines"
    folder.mkdir(parents=True)
    for k, stamp in enumerate(SNAPSHOTS):
        (folder / f"virtual_machines-{stamp}.json").write_text(json.dumps({"value": snapshot(k)}))
    maintenance = estate / "azure" / "maintenance"
    maintenance.mkdir(parents=True)
    # Shapes of the 2023-04-01 examples (MaintenanceConfigurations_List, ConfigurationAssignments_List).
    (maintenance / "maintenance_configurations.json").write_text(json.dumps({"value": [{
        "id": CONFIG_ID, "name": "weekly", "type": "Microsoft.Maintenance/maintenanceConfigurations",
        "location": "westeurope",
        "properties": {
            "namespace": "Microsoft.Maintenance", "maintenanceScope": "InGuestPatch", "visibility": "Custom",
            "maintenanceWindow": {"startDateTime": "2026-01-03 22:00", "duration": "03:55",
                                  "timeZone": "GMT Standard Time", "recurEvery": "1Week Saturday"},
            "installPatches": {"rebootSetting": "IfRequired",
                               "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]},
                               "linuxParameters": {"classificationsToInclude": ["Critical", "Security"]}},
        },
    }]}))
    (maintenance / "configuration_assignments.json").write_text(json.dumps({"value": [
        {"id": f"{BASE}/p1/providers/Microsoft.Maintenance/configurationAssignments/weekly", "name": "weekly",
         "type": "Microsoft.Maintenance/configurationAssignments",
         "properties": {"maintenanceConfigurationId": CONFIG_ID, "resourceId": f"{BASE}/p1"}},
        # Without resourceId: the machine is the id before /providers/Microsoft.Maintenance/.
        {"id": f"{BASE}/p2/providers/Microsoft.Maintenance/configurationAssignments/weekly", "name": "weekly",
         "type": "Microsoft.Maintenance/configurationAssignments",
         "properties": {"maintenanceConfigurationId": CONFIG_ID}},
        # A dynamic scope names no machine.
        {"id": f"/subscriptions/{SUB}/providers/Microsoft.Maintenance/configurationAssignments/dyn",
         "name": "dyn", "type": "Microsoft.Maintenance/configurationAssignments",
         "properties": {"maintenanceConfigurationId": CONFIG_ID, "resourceId": f"/subscriptions/{SUB}",
                        "filter": {"resourceTypes": ["Microsoft.Compute/virtualMachines"]}}},
    ]}))


POLICY = {
    "production_environments": ["production"],
    "production_scopes": ["nonazure/"],
    "exceptions": [
        {"exception_id": "E-1", "vm_id": f"{BASE}/e1", "reason": "vendor appliance", "requested_by": "ops@contoso.com",
         "approver": "risk@contoso.com", "approved_at": "2026-02-01T00:00:00Z", "expires_at": "2026-03-15T00:00:00Z",
         "status": "active"},
        {"exception_id": "E-2", "vm_id": f"{BASE}/e2", "reason": "build server", "requested_by": "ops@contoso.com",
         "approver": "ops@contoso.com", "approved_at": "2026-02-01T00:00:00Z", "expires_at": "2026-12-31T00:00:00Z",
         "status": "active"},
    ],
}


def log_analytics(conn) -> None:
    """UpdateSummary records of s1 (an Azure VM) and onprem1 (known only to Log Analytics)."""
    conn.execute(f"""
        CREATE TABLE raw.la_update_summary AS
        SELECT CAST(t AS TIMESTAMPTZ) AS TimeGenerated, NULL::VARCHAR AS WSUSServer, setting AS WindowsUpdateSetting,
               '' AS OsVersion, rid AS _ResourceId, '' AS ResourceId, '' AS VMUUID, '' AS SourceComputerId,
               computer AS Computer
        FROM (VALUES
            ('2026-03-02 01:00:00+00', 'Manual', '{BASE}/s1', 's1'),
            ('2026-03-06 01:00:00+00', 'Manual', '{BASE}/s1', 's1'),
            ('2026-03-10 01:00:00+00', 'Scheduled installation', '{BASE}/s1', 's1'),
            ('2026-03-05 00:00:00+00', 'Scheduled installation', '', 'onprem1'),
            ('2026-04-02 00:00:00+00', 'Manual', '', 'onprem1')
        ) AS t(t, setting, rid, computer)
    """)
    conn.execute(f"""
        CREATE TABLE staging.vm_la_machines AS
        SELECT * FROM (VALUES ('{vm_id("s1")}|||s1', '{vm_id("s1")}'), ('|||onprem1', '{ONPREM}')) AS t(la_key, vm_id)
    """)


@pytest.fixture
def warehouse(tmp_path):
    estate = tmp_path / "estate"
    write_estate(estate)
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    load_virtual_machines(conn, estate, "raw.virtual_machines", "run")
    load_maintenance(conn, estate, "raw.maintenance_resources", "run")
    log_analytics(conn)
    names = ["w1", "p1", "p2", "p3", "l1", "d1", "e1", "e2", "s1", "n1", "m2"]
    os_types = {"p1": "Linux", "l1": "Linux"}
    # Maintenance-window tags: p3 has none, l1 names a window the register does not list.
    windows = {"p3": "NULL", "l1": "'mw-unknown'"}
    rows = ", ".join(f"('{vm_id(n)}', '{n}', '{os_types.get(n, 'Windows')}', true, 'azure_vm', "
                     f"{windows.get(n, repr('mw-sat'))})" for n in names)
    conn.execute(f"""
        CREATE TABLE marts.vm_inventory AS
        SELECT *, 'win-app' AS asset_category, NULL::VARCHAR AS environment, NULL::VARCHAR AS patch_mode
        FROM (VALUES {rows}, ('{ONPREM}', 'onprem1', 'Windows', false, 'non_azure', NULL))
            AS t(vm_id, name, os_type, in_inventory, machine_kind, maintenance_window)
    """)
    conn.execute("CREATE TABLE staging.maintenance_windows AS SELECT 'mw-sat' AS window_id")
    conn.execute(f"""
        CREATE TABLE staging.patch_observations AS
        SELECT vm_id, patch_key, state, CAST(t AS TIMESTAMPTZ) AS observed_at, 'resource_graph_installation' AS source,
               'run-' || patch_key AS run_id
        FROM (VALUES
            ('{vm_id("w1")}', '5000001', 'installed', '2026-03-05 10:00:00+00'),
            ('{vm_id("w1")}', '5000001', 'installed', '2026-03-06 10:00:00+00'),
            ('{vm_id("w1")}', '5000002', 'installed', '2026-03-25 10:00:00+00'),
            ('{vm_id("w1")}', '5000006', 'missing', '2026-03-07 10:00:00+00'),
            ('{vm_id("e1")}', '5000003', 'installed', '2026-03-10 10:00:00+00'),
            ('{vm_id("e1")}', '5000004', 'installed_pending_reboot', '2026-03-20 10:00:00+00'),
            ('{vm_id("p1")}', '5000005', 'installed', '2026-03-12 10:00:00+00')
        ) AS t(vm_id, patch_key, state, t)
    """)
    conn.execute(f"""
        CREATE TABLE marts.authorization_install_findings AS
        SELECT * FROM (VALUES ('{vm_id("w1")}', '5000001', 'production_install_without_test'),
                              ('{vm_id("w1")}', '5000001', 'install_before_approval')) AS t(vm_id, patch_key, rule)
    """)
    write_policy_tables(conn, POLICY, "policy")
    build_table(conn, "staging.vm_snapshots", params={"captures": None})
    build_table(conn, "staging.maintenance_configurations")
    build_table(conn, "staging.maintenance_assignments")
    open_intervals(conn, merge=False)  # a first build: no intervals to continue
    build_table(conn, "marts.vm_config_history", params={"as_of": AS_OF, "since": None})
    for table in ("marts.auto_update_periods", "marts.auto_update_installs",
                  "marts.auto_update_findings", "marts.vm_maintenance_windows", "marts.unscheduled_machines"):
        build_table(conn, table, params={"as_of": AS_OF})
    yield conn
    conn.close()


def periods(conn, name: str) -> list[tuple]:
    key = ONPREM if name == "onprem1" else vm_id(name)
    return conn.execute(
        "SELECT valid_from, valid_to, days, setting, status, exception_id FROM marts.auto_update_periods "
        "WHERE vm_id = ? ORDER BY valid_from", [key]).fetchall()


def test_snapshots_become_intervals(warehouse):
    rows = warehouse.execute(
        "SELECT attribute, value, valid_from, valid_to, observations FROM marts.vm_config_history "
        "WHERE vm_id = ? AND attribute IN ('patch_mode', 'automatic_updates_enabled') ORDER BY attribute, valid_from",
        [vm_id("w1")]).fetchall()
    assert rows == [
        ("automatic_updates_enabled", "true", ts("2026-03-01 06:00"), ts("2026-03-21 06:00"), 2),
        ("automatic_updates_enabled", "false", ts("2026-03-21 06:00"), None, 1),
        ("patch_mode", "AutomaticByOS", ts("2026-03-01 06:00"), ts("2026-03-21 06:00"), 2),
        ("patch_mode", "Manual", ts("2026-03-21 06:00"), None, 1),
    ]
    # The tag change of d1 at the second snapshot.
    assert warehouse.execute(
        "SELECT value, valid_from FROM marts.vm_config_history WHERE vm_id = ? AND attribute = 'environment' "
        "ORDER BY valid_from", [vm_id("d1")]).fetchall() == [
        ("dev", ts("2026-03-01 06:00")), ("production", ts("2026-03-11 06:00"))]


def test_maintenance_staging(warehouse):
    assert warehouse.execute(
        "SELECT configuration_id, maintenance_scope, recur_every, duration, time_zone, start_date_time, "
        "reboot_setting, windows_classifications FROM staging.maintenance_configurations").fetchall() == [
        (CONFIG_ID.lower(), "InGuestPatch", "1Week Saturday", "03:55", "GMT Standard Time", "2026-01-03 22:00",
         "IfRequired", ["Critical", "Security"])]
    assert warehouse.execute(
        "SELECT vm_id, dynamic_scope FROM staging.maintenance_assignments ORDER BY vm_id NULLS LAST").fetchall() == [
        (vm_id("p1"), False), (vm_id("p2"), False), (None, True)]


def test_unscheduled_machines(warehouse):
    # p1 and p2 are assigned; the rest carry a registered window tag except p3 (none) and l1.
    assert warehouse.execute("SELECT name, maintenance_window FROM marts.unscheduled_machines ORDER BY name"
                             ).fetchall() == [("l1", "mw-unknown"), ("p3", None)]


def test_periods_per_setting(warehouse):
    assert periods(warehouse, "w1") == [
        (ts("2026-03-01 06:00"), ts("2026-03-21 06:00"), 20.0, "automatic_by_os", "violation", None),
        (ts("2026-03-21 06:00"), ts("2026-04-01 00:00"), 10.75, "manual", "compliant", None),
    ]
    assert periods(warehouse, "p1") == [
        (ts("2026-03-01 06:00"), ts("2026-04-01 00:00"), 30.75, "platform_customer_schedule", "compliant", None)]
    assert periods(warehouse, "p2")[0][3:5] == ("platform_autopatch", "violation")
    assert periods(warehouse, "p3")[0][3:5] == ("platform_schedule_missing", "compliant")
    assert periods(warehouse, "l1")[0][3:5] == ("image_default", "unverified")
    assert periods(warehouse, "n1")[0][3:5] == ("automatic_by_os", "violation")
    assert periods(warehouse, "m2")[0][3:5] == ("mode_not_applied", "unverified")
    assert periods(warehouse, "d1") == [
        (ts("2026-03-01 06:00"), ts("2026-03-11 06:00"), 10.0, "automatic_by_os", "allowed_non_production", None),
        (ts("2026-03-11 06:00"), ts("2026-04-01 00:00"), 20.75, "automatic_by_os", "violation", None),
    ]
    # E-1 is in force until 03-15 00:00: the period splits at its expiry.
    assert periods(warehouse, "e1") == [
        (ts("2026-03-01 06:00"), ts("2026-03-15 00:00"), 13.75, "automatic_by_os", "excepted", "E-1"),
        (ts("2026-03-15 00:00"), ts("2026-04-01 00:00"), 17.0, "automatic_by_os", "violation", "E-1"),
    ]
    assert periods(warehouse, "e2") == [
        (ts("2026-03-01 06:00"), ts("2026-04-01 00:00"), 30.75, "automatic_by_os", "violation", "E-2")]
    # s1: Manual in the model; its agent reports Manual, then schedules installation from 03-10.
    # 19 h = 0.79 days; 03-10 01:00 .. 04-01 00:00 = 21 days 23 h = 21.96 days.
    assert periods(warehouse, "s1") == [
        (ts("2026-03-01 06:00"), ts("2026-03-02 01:00"), 0.79, "manual", "compliant", None),
        (ts("2026-03-02 01:00"), ts("2026-03-10 01:00"), 8.0, "manual", "compliant", None),
        (ts("2026-03-10 01:00"), ts("2026-04-01 00:00"), 21.96, "windows_update_scheduled", "violation", None),
    ]
    # Production by the policy's scope; the record of 04-02 is after the evaluation date.
    assert periods(warehouse, "onprem1") == [
        (ts("2026-03-05 00:00"), ts("2026-04-01 00:00"), 27.0, "windows_update_scheduled", "violation", None)]


def test_installs_while_self_updating(warehouse):
    assert warehouse.execute(
        "SELECT vm_id, patch_key, installed_at, status, install_findings FROM marts.auto_update_installs "
        "ORDER BY installed_at").fetchall() == [
        (vm_id("w1"), "5000001", ts("2026-03-05 10:00"), "violation",
         ["install_before_approval", "production_install_without_test"]),
        (vm_id("e1"), "5000003", ts("2026-03-10 10:00"), "excepted", None),
        (vm_id("e1"), "5000004", ts("2026-03-20 10:00"), "violation", None),
    ]


def test_findings(warehouse):
    found = {(rule, subject): condition for rule, subject, condition in warehouse.execute(
        "SELECT rule, subject, condition FROM marts.auto_update_findings").fetchall()}
    in_production = {s for r, s in found if r == "automatic_updates_in_production"}
    assert in_production == {f"vm/{vm_id(n)}" for n in ("w1", "p2", "d1", "e1", "e2", "s1", "n1")} | {f"vm/{ONPREM}"}
    assert {s for r, s in found if r == "automatic_updates_unverified"} == {f"vm/{vm_id(n)}" for n in ("l1", "m2")}
    assert {s for r, s in found if r == "install_by_automatic_updates"} == {
        f"vm/{vm_id('w1')}/patch/5000001", f"vm/{vm_id('e1')}/patch/5000004"}
    assert {s for r, s in found if r == "automatic_update_exception_invalid"} == {
        "auto_update_exception/E-1", "auto_update_exception/E-2"}
    assert found[("automatic_updates_in_production", f"vm/{vm_id('w1')}")] == (
        "w1 (production, Windows) could install updates on its own from 2026-03-01 06:00 to 2026-03-21 06:00, "
        "20.0 days (automatic_by_os); 1 install(s) in that time: 5000001")
    assert found[("install_by_automatic_updates", f"vm/{vm_id('w1')}/patch/5000001")].endswith(
        "while the machine updated itself (automatic_by_os); also install_before_approval, production_install_without_test")
    assert "approved by its requester ops@contoso.com" in found[("automatic_update_exception_invalid", "auto_update_exception/E-2")]
    causes = dict(warehouse.execute(
        "SELECT subject, cause FROM marts.auto_update_findings WHERE rule = 'automatic_updates_in_production'").fetchall())
    assert causes[f"vm/{vm_id('p2')}"].startswith("patchMode AutomaticByPlatform without a customer-managed schedule")


def test_inventory_takes_the_latest_snapshot_up_to_the_evaluation_date(tmp_path):
    estate = tmp_path / "estate"
    write_estate(estate)
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    load_virtual_machines(conn, estate, "raw.virtual_machines", "run")
    build_table(conn, "staging.vm_snapshots", params={"captures": None})
    conn.execute(f"""CREATE TABLE staging.vm_identity AS SELECT vm_id, name, '{SUB}' AS subscription_id,
        'rg-prd' AS resource_group, 'azure_vm' AS machine_kind, true AS in_inventory, []::VARCHAR[] AS computer_names
        FROM (VALUES ('{vm_id("d1")}', 'd1'), ('{vm_id("w1")}', 'w1')) AS t(vm_id, name)""")
    conn.execute("CREATE TABLE staging.assessment_runs (vm_id VARCHAR, assessed_at TIMESTAMPTZ, succeeded BOOLEAN, "
                 "source VARCHAR, reboot_pending BOOLEAN, os_type VARCHAR)")
    conn.execute("CREATE TABLE staging.asset_categories (category_id VARCHAR, tag_key VARCHAR, tag_value VARCHAR, "
                 "os_type VARCHAR, rule_order INTEGER)")
    log_analytics(conn)
    conn.execute("CREATE TABLE raw.la_update AS SELECT *, '' AS OSType, '' AS OSFullName, '' AS OSName, "
                 "'' AS OSVersion FROM raw.la_update_summary WHERE false")
    seen = {}
    for day in ("2026-02-28", "2026-03-15", "2026-03-25"):
        build_table(conn, "marts.vm_inventory", params={"as_of": date.fromisoformat(day), "stale_after_days": 7})
        seen[day] = conn.execute("SELECT environment, patch_mode, automatic_updates_enabled FROM marts.vm_inventory "
                                 "WHERE vm_id IN (?, ?) ORDER BY name", [vm_id("d1"), vm_id("w1")]).fetchall()
    # A machine that was in a snapshot up to the date but not in a later one keeps its last one.
    (estate / "azure" / "virtual_machines" / f"virtual_machines-{SNAPSHOTS[2]}.json").write_text(
        json.dumps({"value": [v for v in snapshot(2) if v["name"] != "d1"]}))
    load_virtual_machines(conn, estate, "raw.virtual_machines", "run")
    build_table(conn, "staging.vm_snapshots", params={"captures": None})
    build_table(conn, "marts.vm_inventory", params={"as_of": date(2026, 3, 25), "stale_after_days": 7})
    dropped = conn.execute("SELECT environment FROM marts.vm_inventory WHERE vm_id = ?", [vm_id("d1")]).fetchall()
    conn.close()
    assert seen == {
        # Before the first capture, the first capture stands in (no earlier record of the fleet).
        "2026-02-28": [("dev", "AutomaticByOS", True), ("production", "AutomaticByOS", True)],
        "2026-03-15": [("production", "AutomaticByOS", True), ("production", "AutomaticByOS", True)],
        "2026-03-25": [("production", "AutomaticByOS", True), ("production", "Manual", False)],
    }
    assert dropped == [("production",)]


def test_bad_inputs_name_file_row_and_field(tmp_path):
    estate = tmp_path / "estate"
    write_estate(estate)
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    (estate / "azure" / "virtual_machines" / "latest.json").write_text("[]")
    with pytest.raises(SourceFileError, match=r"azure/virtual_machines/latest\.json: a dated inventory snapshot is named"):
        load_virtual_machines(conn, estate, "raw.virtual_machines", "run")
    bad = estate / "azure" / "maintenance" / "configuration_assignments.json"
    body = json.loads(bad.read_text())
    del body["value"][1]["properties"]["maintenanceConfigurationId"]
    bad.write_text(json.dumps(body))
    with pytest.raises(SourceFileError, match=r"configuration_assignments\.json: row 2, field "
                                              r"properties\.maintenanceConfigurationId: missing"):
        load_maintenance(conn, estate, "raw.maintenance_resources", "run")
    conn.close()
    policy = estate / "policy" / "automatic_updates.yaml"
    policy.parent.mkdir()
    policy.write_text("exceptions:\n  - {exception_id: X, vm_id: a, scope: b}\n")
    with pytest.raises(AutoUpdatePolicyError, match=r"automatic_updates\.yaml: exceptions\[0\]: give exactly one of vm_id or scope"):
        load_auto_update_policy(estate)


def test_live_fetch_writes_one_dated_capture_the_reader_loads(tmp_path):
    """azure-mgmt-maintenance against a replayed HTTP transport: the two list calls per
    subscription, then the offline reader."""
    from test_azure_live import ReplayTransport, access, reply

    from pipelines.sources.maintenance.live import fetch_maintenance

    write_estate(tmp_path / "canned")
    canned = tmp_path / "canned" / "azure" / "maintenance"
    configurations = json.loads((canned / "maintenance_configurations.json").read_text())
    assignments = json.loads((canned / "configuration_assignments.json").read_text())
    transport = (
        ReplayTransport()
        .add("GET", f"/subscriptions/{SUB}/providers/Microsoft.Maintenance/maintenanceConfigurations",
             reply(body=configurations))
        .add("GET", f"/subscriptions/{SUB}/providers/Microsoft.Maintenance/configurationAssignments",
             reply(body=assignments))
    )
    estate = tmp_path / "estate"
    count = fetch_maintenance(access(transport), [SUB], estate, now=datetime(2026, 3, 31, 6, 0, tzinfo=UTC))
    assert count == 4
    assert [p.name for p in (estate / "azure" / "maintenance").iterdir()] == ["maintenance-20260331T060000Z.json"]
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    assert load_maintenance(conn, estate, "raw.maintenance_resources", "run").rows == 4
    build_table(conn, "staging.maintenance_configurations")
    build_table(conn, "staging.maintenance_assignments")
    assert conn.execute("SELECT configuration_id, recur_every, captured_at FROM staging.maintenance_configurations"
                        ).fetchall() == [(CONFIG_ID.lower(), "1Week Saturday", ts("2026-03-31 06:00"))]
    assert conn.execute("SELECT vm_id, configuration_id FROM staging.maintenance_assignments "
                        "WHERE vm_id IS NOT NULL ORDER BY vm_id").fetchall() == [
        (vm_id("p1"), CONFIG_ID.lower()), (vm_id("p2"), CONFIG_ID.lower())]
    conn.close()
    assert all(r.url.startswith("https://management.azure.com/") for r in transport.requests)


def test_live_raw_asset_fetches_through_the_azure_resource(tmp_path):
    """The raw asset in live mode: the `azure` resource of the run (here on the replayed
    transport, passed with resources=) names the subscription and opens the access; the capture
    it writes is loaded in the same step (4 resources: 2 configurations, 2 assignments)."""
    import dagster as dg
    from test_azure_live import ReplayTransport, replayed_azure, reply

    from pipelines.resources import RunSettings, WarehouseResource
    from pipelines.sources.maintenance.assets import raw_maintenance_resources

    write_estate(tmp_path / "canned")
    canned = tmp_path / "canned" / "azure" / "maintenance"
    transport = (
        ReplayTransport()
        .add("GET", f"/subscriptions/{SUB}/providers/Microsoft.Maintenance/maintenanceConfigurations",
             reply(body=json.loads((canned / "maintenance_configurations.json").read_text())))
        .add("GET", f"/subscriptions/{SUB}/providers/Microsoft.Maintenance/configurationAssignments",
             reply(body=json.loads((canned / "configuration_assignments.json").read_text())))
    )
    database = tmp_path / "w.duckdb"
    result = dg.materialize([raw_maintenance_resources], resources={
        "warehouse": WarehouseResource(database=str(database)),
        "run_settings": RunSettings(estate_dir=str(tmp_path / "estate"), source="azure"),
        "azure": replayed_azure(transport, subscriptions=SUB),
    })
    assert result.success
    assert len(transport.requests) == 2
    assert len(list((tmp_path / "estate" / "azure" / "maintenance").glob("maintenance-*.json"))) == 1
    conn = connect_warehouse(str(database), read_only=True)
    assert conn.execute("SELECT count(*) FROM raw.maintenance_resources").fetchall() == [(4,)]
    conn.close()


@pytest.mark.slow
def test_demo_cases(demo_run):
    """The planted cases of the generated estate (docs/demo-estate.md) land in the statuses they
    were planted for; snapshot times come from demo_truth.json."""
    import duckdb

    estate, path, _, result = demo_run
    assert result.success
    cases = {c["case"]: c for c in json.loads((estate / "demo_truth.json").read_text())["cases"]
             if c["case"].startswith("auto_updates_")}
    assert len(cases) == 6
    snapshots = [ts(f"{d} 06:00") for d in cases["auto_updates_platform_autopatch"]["snapshots"]]
    conn = duckdb.connect(str(path), read_only=True)

    def rows(case):
        return conn.execute(
            "SELECT valid_from, valid_to, setting, status, exception_id FROM marts.auto_update_periods "
            "WHERE vm_id = ? ORDER BY valid_from", [cases[f"auto_updates_{case}"]["vm_id"]]).fetchall()

    cutoff = rows("platform_autopatch")[-1][1]
    assert cutoff.date().isoformat() > cases["auto_updates_platform_autopatch"]["snapshots"][-1]
    for case in ("platform_autopatch", "platform_schedule_no_bypass"):
        assert rows(case) == [(snapshots[0], cutoff, "platform_autopatch", "violation", None)]
    switched = rows("switched_to_manual")
    assert all(r[3] == "violation" for r in switched if r[0] < snapshots[2])
    # Manual from the third snapshot on; the agent's own setting may lag until its next record.
    assert switched[-1][2:4] == ("manual", "compliant") and snapshots[2] <= switched[-1][0] < snapshots[3]
    promoted = rows("promoted_to_production")
    assert {r[3] for r in promoted if r[0] < snapshots[1]} == {"allowed_non_production"}
    assert {r[3] for r in promoted if r[0] >= snapshots[1]} == {"violation"}
    assert rows("exception_valid") == [(snapshots[0], cutoff, "automatic_by_os", "excepted", "AU-EX-001")]
    assert {r[3:] for r in rows("exception_self_approved")} == {("violation", "AU-EX-002")}
    invalid = conn.execute("SELECT subject FROM marts.audit_findings WHERE rule = 'automatic_update_exception_invalid'"
                           ).fetchall()
    conn.close()
    assert invalid == [("auto_update_exception/AU-EX-002",)]


def test_warning_check_counts_per_environment(warehouse, tmp_path):
    """The asset check (evaluated in the periods' step, on its connection) reads each machine's
    latest period: w1 is Manual by then; p2, d1, e1 (E-1 expired), e2, s1, n1 and onprem1 still
    update themselves; l1 and m2 cannot be judged."""
    import dagster as dg

    from assets.auto_updates import no_automatic_updates_in_production

    result = no_automatic_updates_in_production(warehouse)
    assert (result.passed, result.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert result.metadata["self_updating_production_machines"].value == 7
    assert result.metadata["unverified_production_machines"].value == 2
    assert result.metadata["by_environment"].value == {
        "(scope)/violation": 1, "production/unverified": 2, "production/violation": 6}
