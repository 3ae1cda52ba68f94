"""The backup source (azure/backup/), rollback readiness per machine, the schedule's
needs_restore_point steps and the rollback findings, on planted machines as of 2026-03-20.

Policy limits (pipelines/config/rollback_readiness.yaml): critical 24 h, high 24 h, medium 48 h,
low 72 h, default 48 h; a pre-window backup is always proposed for critical machines.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from pipelines.ingest.errors import SourceFileError
from pipelines.resources import connect_warehouse
from pipelines.sources.backup.policy import load_rollback_policy
from pipelines.sources.backup.reader import load_backup
from pipelines.warehouse import build_table, replace_table

AS_OF = date(2026, 3, 20)
SUB = "22222222-2222-2222-2222-222222222222"
VM = f"/subscriptions/{SUB}/resourceGroups/RG-PRD/providers/Microsoft.Compute/virtualMachines/"
VAULT = f"/subscriptions/{SUB}/resourceGroups/rg-backup/providers/Microsoft.RecoveryServices/vaults/rsv-prd"
DAILY = f"{VAULT}/backupPolicies/DailyPolicy"
WEEKLY = f"{VAULT}/backupPolicies/WeeklyPolicy"
ITEM_TYPE = "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectedItems"

# name, environment, criticality
MACHINES = [
    ("fresh", "production", "high"),
    ("stale", "production", "medium"),
    ("failed", "production", "critical"),
    ("never", "production", "high"),
    ("stopped", "test", "low"),
    ("weekly", "production", "high"),
    ("rp1", "production", None),
]


def vm_id(name: str) -> str:
    return (VM + name).lower()


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def item(name: str, state: str, status: str, last: str, point: str | None = None, policy: str = DAILY) -> dict:
    """An AzureIaasVM protected item in the ARM shape (ProtectedItems_List example)."""
    container = f"iaasvmcontainerv2;rg-prd;{name}"
    properties = {
        "friendlyName": name, "virtualMachineId": VM + name, "sourceResourceId": VM + name,
        "protectionStatus": "Healthy", "protectionState": state, "healthStatus": "Passed",
        "lastBackupStatus": status, "lastBackupTime": last, "protectedItemType": "Microsoft.Compute/virtualMachines",
        "backupManagementType": "AzureIaasVM", "workloadType": "VM", "containerName": container,
        "policyId": policy,
    }
    if point:
        properties["lastRecoveryPoint"] = point
    return {"id": f"{VAULT}/backupFabrics/Azure/protectionContainers/{container}/protectedItems/vm;{container}",
            "name": f"vm;{container}", "type": ITEM_TYPE, "properties": properties}


def write_estate(estate: Path) -> None:
    folder = estate / "azure" / "backup"
    folder.mkdir(parents=True)
    first = [
        item("fresh", "Protected", "Completed", "2026-03-18T02:00:00Z"),
        item("stale", "Protected", "Completed", "2026-03-17T02:00:00Z"),
    ]
    (folder / "protected_items-20260318T060000Z.json").write_text(json.dumps({"value": first}))
    # The second capture comes from Resource Graph (recoveryservicesresources): lower-case type.
    second = [
        item("fresh", "Protected", "Completed", "2026-03-20T02:00:00Z"),
        item("stale", "Protected", "Completed", "2026-03-17T02:00:00Z"),
        item("failed", "Protected", "Failed", "2026-03-20T02:00:00Z", point="2026-03-19T02:00:00Z"),
        item("stopped", "ProtectionStopped", "Completed", "2026-03-01T02:00:00Z"),
        item("weekly", "Protected", "Completed", "2026-03-20T01:00:00Z", policy=WEEKLY),
    ]
    for row in second:
        row["type"] = row["type"].lower()
    (folder / "protected_items-20260320T060000Z.json").write_text(json.dumps({"data": second}))
    # A capture after the evaluation date: never read for it.
    late = [item("never", "Protected", "Completed", "2026-03-21T02:00:00Z")]
    (folder / "protected_items-20260321T060000Z.json").write_text(json.dumps({"value": late}))
    policies = [
        {"id": DAILY, "name": "DailyPolicy", "type": "Microsoft.RecoveryServices/vaults/backupPolicies",
         "properties": {"backupManagementType": "AzureIaasVM", "schedulePolicy": {
             "schedulePolicyType": "SimpleSchedulePolicy", "scheduleRunFrequency": "Daily",
             "scheduleRunTimes": ["2026-01-01T02:00:00Z"]}}},
        {"id": WEEKLY, "name": "WeeklyPolicy", "type": "Microsoft.RecoveryServices/vaults/backupPolicies",
         "properties": {"backupManagementType": "AzureIaasVM", "schedulePolicy": {
             "schedulePolicyType": "SimpleSchedulePolicy", "scheduleRunFrequency": "Weekly",
             "scheduleRunDays": ["Friday"], "scheduleRunTimes": ["2026-01-01T01:00:00Z"]}}},
    ]
    (folder / "policies.json").write_text(json.dumps({"value": policies}))
    # After the evaluation date the daily policy becomes weekly: not known on 03-20.
    later = [dict(policies[1], id=DAILY, name="DailyPolicy")]
    (folder / "policies-20260321T060000Z.json").write_text(json.dumps({"value": later}))
    # The vault's recovery points of "fresh" (protectedItems/{item}/recoveryPoints list).
    fresh_item = item("fresh", "Protected", "Completed", "x")["id"]
    points = [{"id": f"{fresh_item}/recoveryPoints/{n}", "name": str(n), "type": f"{ITEM_TYPE}/recoveryPoints",
               "properties": {"objectType": "IaasVMRecoveryPoint", "recoveryPointTime": t}}
              for n, t in enumerate(["2026-03-17T02:00:00Z", "2026-03-19T02:00:00Z"], start=1)]
    (folder / "recovery_points_fresh.json").write_text(json.dumps({"value": points}))
    # A VM restore point collection of rp1 ($expand=restorePoints), one point failed to create.
    collection = f"/subscriptions/{SUB}/resourceGroups/rg-prd/providers/Microsoft.Compute/restorePointCollections/rpc-rp1"
    restore = [{"id": collection, "name": "rpc-rp1", "type": "Microsoft.Compute/restorePointCollections",
                "location": "westeurope", "properties": {
                    "source": {"id": VM + "rp1", "location": "westeurope"}, "provisioningState": "Succeeded",
                    "restorePoints": [
                        {"id": f"{collection}/restorePoints/rp-a", "name": "rp-a", "properties": {
                            "timeCreated": "2026-03-19T12:00:00Z", "consistencyMode": "CrashConsistent",
                            "provisioningState": "Succeeded"}},
                        {"id": f"{collection}/restorePoints/rp-b", "name": "rp-b", "properties": {
                            "timeCreated": "2026-03-20T12:00:00Z", "provisioningState": "Failed"}},
                    ]}}]
    (folder / "restore_point_collections.json").write_text(json.dumps(restore))


@pytest.fixture
def conn(tmp_path):
    estate = tmp_path / "estate"
    write_estate(estate)
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    load_backup(conn, estate, "raw.backup_resources", "run")
    rows = ", ".join(f"('{vm_id(n)}', '{n}', '{e}', {repr(c) if c else 'NULL'}, 'app')" for n, e, c in MACHINES)
    conn.execute(f"CREATE TABLE marts.vm_inventory AS SELECT * FROM (VALUES {rows}) "
                 "AS t(vm_id, name, environment, criticality, asset_category)")
    for table in ("staging.backup_protected_items", "staging.backup_policies", "staging.backup_recovery_points"):
        build_table(conn, table)
    replace_table(conn, "staging.rollback_policy", load_rollback_policy(estate))
    build_table(conn, "marts.vm_rollback_readiness", params={"as_of": AS_OF})
    yield conn
    conn.close()


def test_staging_reads_both_shapes_and_keeps_every_capture(conn):
    captures = conn.execute(
        "SELECT vm_id, captured_at, protection_state, last_backup_status, last_recovery_point_at, policy_name "
        "FROM staging.backup_protected_items WHERE vm_id IN (?, ?) ORDER BY vm_id, captured_at",
        [vm_id("fresh"), vm_id("failed")]).fetchall()
    assert captures == [
        # lastRecoveryPoint is absent: the completed lastBackupTime is the point; Failed keeps lastRecoveryPoint.
        (vm_id("failed"), ts("2026-03-20 06:00"), "Protected", "Failed", ts("2026-03-19 02:00"), "DailyPolicy"),
        (vm_id("fresh"), ts("2026-03-18 06:00"), "Protected", "Completed", ts("2026-03-18 02:00"), "DailyPolicy"),
        (vm_id("fresh"), ts("2026-03-20 06:00"), "Protected", "Completed", ts("2026-03-20 02:00"), "DailyPolicy"),
    ]
    assert conn.execute("SELECT name, frequency_hours, captured_at FROM staging.backup_policies "
                        "ORDER BY name, captured_at NULLS FIRST").fetchall() == [
        ("DailyPolicy", 24, None), ("DailyPolicy", 168, ts("2026-03-21 06:00")), ("WeeklyPolicy", 168, None)]
    points = conn.execute("SELECT point_at, kind FROM staging.backup_recovery_points WHERE vm_id IN (?, ?) "
                          "ORDER BY point_at", [vm_id("fresh"), vm_id("rp1")]).fetchall()
    # fresh: 03-17 and 03-19 from the recovery-point list, 03-18 and 03-20 from the captures;
    # rp1: the succeeded restore point only.
    assert points == [
        (ts("2026-03-17 02:00"), "vault_backup"), (ts("2026-03-18 02:00"), "vault_backup"),
        (ts("2026-03-19 02:00"), "vault_backup"), (ts("2026-03-19 12:00"), "restore_point"),
        (ts("2026-03-20 02:00"), "vault_backup"),
    ]


def test_readiness_per_machine(conn):
    rows = conn.execute(
        "SELECT name, protected, last_point_at, point_age_hours, frequency_hours, max_age_hours, readiness "
        "FROM marts.vm_rollback_readiness ORDER BY name").fetchall()
    assert [(n, p, t, None if a is None else float(a), f, m, r) for n, p, t, a, f, m, r in rows] == [
        # 03-20 06:00 capture - 03-19 02:00 lastRecoveryPoint = 28 h; the last backup failed.
        ("failed", True, ts("2026-03-19 02:00"), 28.0, 24, 24.0, "last_backup_failed"),
        # 06:00 - 02:00 = 4 h, daily <= 24 h.
        ("fresh", True, ts("2026-03-20 02:00"), 4.0, 24, 24.0, "ready"),
        # Only listed by the capture of 03-21, after the evaluation date.
        ("never", False, None, None, None, 24.0, "never_protected"),
        # A VM restore point but no vault: default limit 48 h; 03-21 00:00 - 03-19 12:00 = 36 h.
        ("rp1", False, ts("2026-03-19 12:00"), 36.0, None, 48.0, "never_protected"),
        # 03-20 06:00 - 03-17 02:00 = 76 h > 48 h.
        ("stale", True, ts("2026-03-17 02:00"), 76.0, 24, 48.0, "stale"),
        # 03-20 06:00 - 03-01 02:00 = 19 days 4 h; its policy is still daily.
        ("stopped", False, ts("2026-03-01 02:00"), 460.0, 24, 72.0, "unprotected"),
        # 5 h old but weekly (168 h) > 24 h.
        ("weekly", True, ts("2026-03-20 01:00"), 5.0, 168, 24.0, "policy_too_infrequent"),
    ]


def test_readiness_on_a_past_date_uses_that_day_s_capture(conn):
    build_table(conn, "marts.vm_rollback_readiness", params={"as_of": date(2026, 3, 18)})
    rows = conn.execute("SELECT name, last_point_at, point_age_hours, readiness FROM marts.vm_rollback_readiness "
                        "WHERE name IN ('fresh', 'stale') ORDER BY name").fetchall()
    # 03-18 06:00 capture: fresh 06:00 - 02:00 = 4 h; stale 03-18 06:00 - 03-17 02:00 = 28 h <= 48 h.
    assert [(n, t, float(a), r) for n, t, a, r in rows] == [
        ("fresh", ts("2026-03-18 02:00"), 4.0, "ready"), ("stale", ts("2026-03-17 02:00"), 28.0, "ready")]


def test_schedule_marks_production_steps_without_a_fresh_point(conn):
    start = ts("2026-03-22 03:00")
    end = ts("2026-03-22 05:00")
    placements = pd.DataFrame(
        [(f"G-{n}", vm_id(n), n, "7000001", "7000001", "authorized_missing", "install", "prod", 2, start, end, 1,
          date(2026, 4, 30), "scheduled", "first occurrence of prod (ring 2) with room", None)
         for n in ("fresh", "stale", "failed", "stopped", "rp1")]
        # rp1's restore point (03-19 12:00) is 63 h before a window on 03-22 03:00 but 12 h before one on 03-20 00:00.
        + [("G-rp1-soon", vm_id("rp1"), "rp1", "7000002", "7000002", "authorized_missing", "install", "prod", 2,
            ts("2026-03-20 00:00"), ts("2026-03-20 02:00"), 1, date(2026, 4, 30), "scheduled", "first", None)],
        columns=["gap_id", "vm_id", "vm_name", "patch_key", "kb", "gap_type", "action", "window_id", "ring",
                 "window_start", "window_end", "sequence", "sla_due", "status", "reason", "rollback_id"])
    replace_table(conn, "staging.remediation_placements", placements)
    # No maintenance configurations: the classification rule of configuration windows does not apply.
    conn.execute("CREATE TABLE staging.maintenance_configuration_windows (window_id VARCHAR, "
                 "windows_classifications VARCHAR[], linux_classifications VARCHAR[])")
    conn.execute("CREATE TABLE marts.patch_catalog (patch_key VARCHAR, classification VARCHAR)")
    conn.execute("ALTER TABLE marts.vm_inventory ADD COLUMN os_type VARCHAR DEFAULT 'Windows'")
    build_table(conn, "marts.remediation_schedule", params={"as_of": AS_OF})
    rows = dict((g, (s, b, r)) for g, s, b, r in conn.execute(
        "SELECT gap_id, status, pre_window_backup, reason FROM marts.remediation_schedule").fetchall())
    assert {g: v[:2] for g, v in rows.items()} == {
        "G-fresh": ("scheduled", False),
        "G-stale": ("needs_restore_point", True),
        "G-failed": ("needs_restore_point", True),
        "G-stopped": ("scheduled", False),  # test environment: not a production step
        "G-rp1": ("needs_restore_point", True),
        "G-rp1-soon": ("scheduled", False),
    }
    # 03-22 03:00 - 48 h = 03-20 03:00.
    assert rows["G-stale"][2].endswith(
        "no recovery point younger than 48.0 h expected at the window start (stale: last recovery point 76.0 h old "
        "on 2026-03-20 06:00 UTC, limit 48.0 h): take an on-demand backup or VM restore point after "
        "2026-03-20 03:00 UTC, before the window")


def test_findings(conn):
    conn.execute(f"""
        CREATE TABLE marts.vm_patch_history AS SELECT * FROM (VALUES
            ('{vm_id("stale")}', '5000001', 'installed', 'missing', TIMESTAMPTZ '2026-03-19 03:00:00+00'),
            ('{vm_id("fresh")}', '5000002', 'installed', 'missing', TIMESTAMPTZ '2026-03-19 03:00:00+00'),
            ('{vm_id("never")}', '5000003', 'installed', 'missing', TIMESTAMPTZ '2026-03-19 04:00:00+00'),
            ('{vm_id("fresh")}', '5000004', 'installed', 'missing', TIMESTAMPTZ '2026-03-10 03:00:00+00'),
            ('{vm_id("never")}', '5000005', 'installed', NULL, TIMESTAMPTZ '2026-03-19 04:00:00+00'),
            ('{vm_id("stopped")}', '5000006', 'installed', 'missing', TIMESTAMPTZ '2026-03-19 04:00:00+00'))
        AS t(vm_id, patch_key, state, previous_state, observed_at)
    """)
    conn.execute(f"""
        CREATE TABLE staging.rollbacks AS SELECT * FROM (VALUES
            ('RB-1', '{vm_id("stale")}', '5000001', TIMESTAMPTZ '2026-03-19 10:00:00+00'),
            ('RB-2', '{vm_id("never")}', '5000003', TIMESTAMPTZ '2026-03-19 12:00:00+00'),
            ('RB-3', '{vm_id("rp1")}', '5000009', TIMESTAMPTZ '2026-03-19 18:00:00+00'),
            ('RB-4', '{vm_id("never")}', '5000003', TIMESTAMPTZ '2026-03-21 12:00:00+00'))
        AS t(rollback_id, vm_id, patch_key, rolled_back_at)
    """)
    build_table(conn, "marts.rollback_findings", params={"as_of": AS_OF})
    rows = conn.execute("SELECT rule, subject FROM marts.rollback_findings ORDER BY rule, subject").fetchall()
    assert rows == [
        # stale: its last point before the install, 03-17 02:00, is 49 h old (limit 48 h). never: no point
        # at all. fresh's 5000002 had the 03-19 02:00 point (1 h old); fresh's 5000004 on 03-10 is before
        # the first backup capture (03-18 06:00); never's
        # 5000005 is a first observation, not an install seen; stopped is not production.
        ("production_install_without_recovery_point", f"vm/{vm_id('never')}/patch/5000003"),
        ("production_install_without_recovery_point", f"vm/{vm_id('stale')}/patch/5000001"),
        ("production_unprotected", f"vm/{vm_id('never')}"),
        ("production_unprotected", f"vm/{vm_id('rp1')}"),
        # RB-1 had the 03-17 point before its install, RB-3 the 03-19 12:00 restore point before the
        # rollback (install not in the history); RB-4 is after the evaluation date.
        ("rollback_without_recovery_point", "rollback/RB-2"),
    ]


def test_bad_input_names_file_row_and_field(tmp_path):
    estate = tmp_path / "estate"
    write_estate(estate)
    bad = [item("x", "Protected", "Completed", "yesterday")]
    (estate / "azure" / "backup" / "protected_items-20260319T060000Z.json").write_text(json.dumps({"value": bad}))
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    with pytest.raises(SourceFileError, match=r"protected_items-20260319T060000Z\.json: row 1, field "
                                              r"properties\.lastBackupTime: 'yesterday'"):
        load_backup(conn, estate, "raw.backup_resources", "run")
    conn.close()


def test_raw_columns_read_each_field_as_received(tmp_path):
    """A field of another JSON type than its column reads as its JSON text (a number name, an
    object location), an absent or null one as NULL, and properties keeps its document."""
    folder = tmp_path / "estate" / "azure" / "backup"
    folder.mkdir(parents=True)
    odd = [{"id": "/p/1", "name": 17, "type": "Microsoft.RecoveryServices/vaults/backupPolicies",
            "location": {"region": "weu"}, "properties": {"a": [1, 2], "b": "x"}},
           {"id": "/p/2", "name": None, "type": "Microsoft.RecoveryServices/vaults/backupPolicies",
            "properties": {}}]
    (folder / "policies.json").write_text(json.dumps({"value": odd}))
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    load_backup(conn, tmp_path / "estate", "raw.backup_resources", "run")
    rows = conn.execute("SELECT id, name, type, location, properties::VARCHAR FROM raw.backup_resources "
                        "ORDER BY id").fetchall()
    conn.close()
    assert rows == [
        ("/p/1", "17", "Microsoft.RecoveryServices/vaults/backupPolicies", '{"region":"weu"}', '{"a":[1,2],"b":"x"}'),
        ("/p/2", None, "Microsoft.RecoveryServices/vaults/backupPolicies", None, "{}"),
    ]


def test_policy_override_and_bad_policy(tmp_path):
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "rollback_readiness.yaml").write_text("max_age_hours: {default: 12, critical: 6}\n")
    policy = load_rollback_policy(tmp_path)
    assert policy.to_records(index=False).tolist() == [("critical", 6.0, True), ("default", 12.0, False)]
    (tmp_path / "policy" / "rollback_readiness.yaml").write_text("max_age_hours: {default: -1}\n")
    with pytest.raises(SourceFileError, match=r"max_age_hours\.default: -1"):
        load_rollback_policy(tmp_path)


@pytest.mark.slow
def test_demo_cases(demo_run):
    """The planted backup cases of the generated estate (pipelines/demo/backup.py): last capture
    on the final day 06:00 UTC, daily backups at 02:00 UTC."""
    import duckdb

    estate, path, _, result = demo_run
    assert result.success
    cases = {c["case"]: c["vm_id"] for c in json.loads((estate / "demo_truth.json").read_text())["cases"]
             if c["case"].startswith("backup_")}
    end = date.fromisoformat(json.loads((estate / "demo_truth.json").read_text())["generator"]["end"])
    conn = duckdb.connect(str(path), read_only=True)

    def readiness(case):
        row = conn.execute("SELECT readiness, last_point_at, point_age_hours FROM marts.vm_rollback_readiness "
                           "WHERE vm_id = ?", [cases[case]]).fetchone()
        return row[0], row[1], None if row[2] is None else float(row[2])

    def at(days_before: int, hour: int) -> datetime:
        return datetime.combine(end, datetime.min.time(), UTC).replace(hour=hour) - pd.Timedelta(days=days_before)

    def rules(case):
        return sorted({r for (r,) in conn.execute("SELECT rule FROM marts.rollback_findings WHERE vm_id = ?",
                                                  [cases[case]]).fetchall()})

    def statuses(case):
        return {s for (s,) in conn.execute("SELECT status FROM marts.remediation_schedule WHERE vm_id = ? "
                                           "AND window_id IS NOT NULL", [cases[case]]).fetchall()}

    # Ages at the final capture, 06:00: 4 h; 9 days + 4 h = 220 h; 3 days + 4 h = 76 h.
    assert readiness("backup_fresh") == ("ready", at(0, 2), 4.0)
    assert readiness("backup_stale") == ("stale", at(9, 2), 220.0)
    assert readiness("backup_failed") == ("last_backup_failed", at(3, 2), 76.0)
    assert readiness("backup_never") == ("never_protected", None, None)
    # The restore point (final day 00:00) is 24 h old at the end of the evaluation date.
    assert readiness("backup_restore_point") == ("never_protected", at(0, 0), 24.0)
    assert readiness("backup_rollback_1")[0] == "ready"
    for case in ("backup_never", "backup_restore_point", "backup_rollback_2"):
        assert "production_unprotected" in rules(case)
    assert rules("backup_fresh") == rules("backup_rollback_1") == []
    rollbacks = conn.execute("SELECT subject FROM marts.rollback_findings "
                             "WHERE rule = 'rollback_without_recovery_point'").fetchall()
    assert rollbacks == [("rollback/RB-0002",)]
    # No planted machine other than the fresh ones has a production step without a restore point
    # that is scheduled as if it had one.
    for case in ("backup_stale", "backup_failed", "backup_never", "backup_restore_point", "backup_rollback_2"):
        assert statuses(case) <= {"needs_restore_point"}
    assert "needs_restore_point" not in statuses("backup_fresh") | statuses("backup_rollback_1")

    # The pack's section and the dashboard's table.
    from pipelines.reporting.dashboard import dashboard_data
    from pipelines.reporting.queries import report_data

    data = report_data(conn, end)
    name = conn.execute("SELECT name FROM marts.vm_inventory WHERE vm_id = ?", [cases["backup_stale"]]).fetchone()[0]
    stale = [r for r in data["rollback_not_ready"] if r["name"] == name]
    assert [(r["readiness"], float(r["point_age_hours"]), r["max_age_hours"]) for r in stale] == [
        ("stale", 220.0, 48.0)]
    assert all(r["readiness"] != "ready" for r in data["rollback_not_ready"])
    from pipelines.reporting.queries import population_rows

    population = population_rows(conn, "rollback_readiness", end)
    assert [r["readiness"] for r in population if r["vm_id"] == cases["backup_failed"]] == ["last_backup_failed"]
    rollback = dashboard_data(conn, data)["tables"]["rollback"]
    assert rollback["columns"][:5] == ["name", "vm_id", "environment", "criticality", "readiness"]
    assert len(rollback["rows"]) == conn.execute("SELECT count(*) FROM marts.vm_rollback_readiness").fetchone()[0]
    conn.close()


def test_live_fetch_from_resource_graph_writes_one_capture_the_reader_loads(tmp_path):
    """The Resource Graph SDK against a replayed HTTP transport: one query per table (protected
    VMs, restore point collections), then the offline reader."""
    from test_azure_live import ARG_PATH, ReplayTransport, access, reply

    from pipelines.sources.backup.live import fetch_backup

    write_estate(tmp_path / "canned")
    canned = tmp_path / "canned" / "azure" / "backup"
    items = [dict(r, type=r["type"].lower()) for r in
             json.loads((canned / "protected_items-20260320T060000Z.json").read_text())["data"]]
    collections = json.loads((canned / "restore_point_collections.json").read_text())

    def page(rows):
        return reply(body={"totalRecords": len(rows), "count": len(rows), "data": rows, "resultTruncated": "false"})

    def asks(table):
        return lambda request: json.loads(request.content)["query"].startswith(f"{table} |")

    transport = (ReplayTransport()
                 .add("POST", ARG_PATH, page(items), match=asks("recoveryservicesresources"))
                 .add("POST", ARG_PATH, page(collections), match=asks("resources")))
    estate = tmp_path / "estate"
    count = fetch_backup(access(transport), [SUB], estate, now=datetime(2026, 3, 20, 6, 0, tzinfo=UTC))
    assert count == 6  # 5 protected items + 1 collection
    assert [p.name for p in (estate / "azure" / "backup").iterdir()] == ["backup-live-20260320T060000Z.json"]
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    assert load_backup(conn, estate, "raw.backup_resources", "run").rows == 6
    build_table(conn, "staging.backup_protected_items")
    build_table(conn, "staging.backup_recovery_points")
    assert conn.execute("SELECT vm_id, captured_at, last_backup_status FROM staging.backup_protected_items "
                        "WHERE vm_id = ?", [vm_id("failed")]).fetchall() == [
        (vm_id("failed"), ts("2026-03-20 06:00"), "Failed")]
    assert conn.execute("SELECT point_at, kind FROM staging.backup_recovery_points WHERE vm_id = ?",
                        [vm_id("rp1")]).fetchall() == [(ts("2026-03-19 12:00"), "restore_point")]
    conn.close()
    queries = [json.loads(r.content)["query"] for r in transport.requests]
    assert [q.split(" |")[0] for q in queries] == ["recoveryservicesresources", "resources"]
    assert all(r.url.startswith("https://management.azure.com/") for r in transport.requests)
