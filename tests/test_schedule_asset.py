"""The remediation_schedule asset on planted windows across the spring DST change (as of 2026-03-20).

Window prod-su: Sundays 03:00 Europe/London, 120 minutes, ring 2, capacity 3 machines, max role
share 0.5. Europe/London moves to BST on Sunday 2026-03-29 (01:00 UTC), so, derived by hand:
  2026-03-22 03:00 GMT = 03:00 UTC .. 05:00 UTC
  2026-03-29 03:00 BST = 02:00 UTC .. 04:00 UTC
  2026-04-05            blackout for production (no occurrence)
  2026-04-12 03:00 BST = 02:00 UTC .. 04:00 UTC
No installation history: 15 minutes per step and per reboot.

Production machines on prod-su, in priority order: db1 90, db2 80, db3 70, db4 60 (role db), app1
50, app2 40 (no role), web1 30 (role web), app3 20. Two more db machines are in the test
environment: the production db role has 4 members, so at most floor(0.5 x 4) = 2 share an
occurrence (counted over the fleet's 6 it would be 3, and db3 would join db1 and db2 on 03-22).
  03-22: db1, db2, app1 (db3 and db4 refused by the role rule)     -> capacity 3 reached
  03-29: db3, db4, app2
  04-12: app3 (04-05 is blacked out)
Rollbacks: 7100001 on web1 (RB-1, 03-15) was authorized before the rollback and, again, only on
03-25 (after the as-of date): held. 7100002 on app3 (RB-2, 03-10) was authorized again on 03-12
(AE-3): scheduled as a re-apply.
Rollback readiness: every production machine is ready except app2 (stale, last point 03-19 02:00,
limit 24 h): its step on 03-29 02:00 UTC needs a restore point taken after 03-28 02:00 UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg

from assets import remediation
from pipelines.resources import RunSettings, WarehouseResource, connect_warehouse
from pipelines.sources.maintenance.reader import load_maintenance
from pipelines.warehouse import build_table

AS_OF = date(2026, 3, 20)
VM = "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/"
MACHINES = [  # name, role, environment, window, priority of its gap, patch
    ("db1", "db", "production", "prod-su", 90, "7000001"),
    ("db2", "db", "production", "prod-su", 80, "7000002"),
    ("db3", "db", "production", "prod-su", 70, "7000003"),
    ("db4", "db", "production", "prod-su", 60, "7000004"),
    ("app1", None, "production", "prod-su", 50, "7000005"),
    ("app2", None, "production", "prod-su", 40, "7000006"),
    ("web1", "web", "production", "prod-su", 30, "7100001"),
    ("app3", None, "production", "prod-su", 20, "7100002"),
    ("dbt1", "db", "test", "test-we", None, None),
    ("dbt2", "db", "test", "test-we", None, None),
]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def build(path) -> None:
    conn = connect_warehouse(str(path))
    conn.execute("CREATE TABLE marts.vm_inventory (vm_id VARCHAR, name VARCHAR, role VARCHAR, "
                 "environment VARCHAR, criticality VARCHAR, maintenance_window VARCHAR, asset_category VARCHAR)")
    conn.executemany("INSERT INTO marts.vm_inventory VALUES (?, ?, ?, ?, 'high', ?, 'app')",
                     [[VM + name, name, role, env, window] for name, role, env, window, _, _ in MACHINES])
    for column, value in (("machine_kind", "'azure_vm'"), ("in_inventory", "true"), ("os_type", "'Windows'"),
                          ("patch_mode", "'Manual'")):
        conn.execute(f"ALTER TABLE marts.vm_inventory ADD COLUMN {column} {'BOOLEAN' if value == 'true' else 'VARCHAR'} "
                     f"DEFAULT {value}")
    # No maintenance configurations: every machine keeps its tag's register window.
    load_maintenance(conn, path.parent, "raw.maintenance_resources", "run")
    build_table(conn, "staging.maintenance_configurations")
    build_table(conn, "staging.maintenance_assignments")
    conn.execute("CREATE TABLE marts.compliance_gaps (gap_id VARCHAR, vm_id VARCHAR, patch_key VARCHAR, "
                 "kb VARCHAR, gap_type VARCHAR, title VARCHAR, priority DOUBLE, sla_due DATE, as_of DATE)")
    conn.executemany(
        "INSERT INTO marts.compliance_gaps VALUES (?, ?, ?, ?, 'authorized_missing', 'update', ?, "
        "DATE '2026-06-30', ?)",
        [[f"GAP-{name}", VM + name, patch, patch, priority, AS_OF]
         for name, _, _, _, priority, patch in MACHINES if patch],
    )
    conn.execute("CREATE TABLE marts.patch_catalog AS SELECT DISTINCT patch_key, 'Security' AS classification "
                 "FROM marts.compliance_gaps")
    conn.execute("CREATE TABLE marts.authorization_status AS SELECT patch_key, 'authorized' AS status, "
                 "NULL::INTEGER AS deploy_order, []::VARCHAR[] AS impact_dependencies "
                 "FROM (SELECT DISTINCT patch_key FROM marts.compliance_gaps)")
    conn.execute("""
        CREATE TABLE staging.maintenance_windows AS SELECT * FROM (VALUES
            ('prod-su', 'Production Sunday', 'FREQ=WEEKLY;BYDAY=SU', TIME '03:00', 120, 'Europe/London',
             2, 'production', 3, 0.5),
            ('test-we', 'Test Wednesday', 'FREQ=WEEKLY;BYDAY=WE', TIME '20:00', 120, 'UTC', 0, 'test', 10, 1.0))
        AS t(window_id, name, rrule, start_time, duration_minutes, time_zone, ring, environment,
             capacity_vms, max_role_share)
    """)
    conn.execute("CREATE TABLE staging.blackout_dates AS SELECT 'B1' AS blackout_id, DATE '2026-04-05' AS starts_on, "
                 "DATE '2026-04-05' AS ends_on, 'production' AS environment, 'quarter close' AS reason")
    conn.execute(f"""
        CREATE TABLE staging.rollbacks AS SELECT * FROM (VALUES
            ('RB-1', '{VM}web1', '7100001', TIMESTAMPTZ '2026-03-15 04:00:00+00'),
            ('RB-2', '{VM}app3', '7100002', TIMESTAMPTZ '2026-03-10 04:00:00+00'))
        AS t(rollback_id, vm_id, patch_key, rolled_back_at)
    """)
    conn.execute("""
        CREATE TABLE staging.authorization_events AS SELECT * FROM (VALUES
            ('AE-1', '7100001', '*', '*', 'authorized', TIMESTAMPTZ '2026-03-01 09:00:00+00'),
            ('AE-2', '7100002', '*', '*', 'authorized', TIMESTAMPTZ '2026-03-01 09:00:00+00'),
            ('AE-3', '7100002', 'app', 'production', 'authorized', TIMESTAMPTZ '2026-03-12 09:00:00+00'),
            ('AE-4', '7100001', '*', 'test', 'authorized', TIMESTAMPTZ '2026-03-16 09:00:00+00'),
            ('AE-5', '7100001', '*', '*', 'authorized', TIMESTAMPTZ '2026-03-25 09:00:00+00'))
        AS t(event_id, patch_key, asset_category, environment, to_state, occurred_at)
    """)
    conn.execute(f"""
        CREATE TABLE marts.vm_rollback_readiness AS
        SELECT '{VM}' || name AS vm_id, CASE name WHEN 'app2' THEN 'stale' ELSE 'ready' END AS readiness,
               'last point 2026-03-19 02:00' AS reason, 24.0 AS max_age_hours, false AS pre_window_backup,
               TIMESTAMPTZ '2026-03-19 02:00:00+00' AS last_point_at
        FROM (VALUES {", ".join(f"('{m[0]}')" for m in MACHINES if m[2] == "production")}) AS t(name)
    """)
    conn.execute("CREATE TABLE raw.patch_installation_resources (id VARCHAR, type VARCHAR, properties VARCHAR)")
    conn.close()


def test_schedule_asset_across_dst(tmp_path):
    database = tmp_path / "w.duckdb"
    build(database)
    result = dg.materialize(
        [remediation.maintenance_schedules, remediation.remediation_schedule],
        resources={"warehouse": WarehouseResource(database=str(database)),
                   "run_settings": RunSettings(estate_dir=str(tmp_path), as_of=AS_OF.isoformat())},
    )
    assert result.success
    conn = connect_warehouse(str(database))
    rows = conn.execute(
        "SELECT vm_name, patch_key, action, status, window_start, window_end, sequence, rollback_id "
        "FROM marts.remediation_schedule ORDER BY vm_name"
    ).fetchall()
    app2_reason = conn.execute("SELECT reason FROM marts.remediation_schedule WHERE vm_name = 'app2'").fetchone()[0]
    holds = conn.execute(
        "SELECT rollback_id, reauthorized_at, reauthorization_event_id FROM staging.remediation_holds "
        "ORDER BY rollback_id"
    ).fetchall()
    conn.close()
    first, second, third = (utc(2026, 3, 22, 3), utc(2026, 3, 22, 5)), (utc(2026, 3, 29, 2), utc(2026, 3, 29, 4)), (
        utc(2026, 4, 12, 2), utc(2026, 4, 12, 4))
    assert rows == [
        ("app1", "7000005", "install", "scheduled", *first, 1, None),
        ("app2", "7000006", "install", "needs_restore_point", *second, 1, None),
        ("app3", "7100002", "reapply", "scheduled", *third, 1, "RB-2"),
        ("db1", "7000001", "install", "scheduled", *first, 1, None),
        ("db2", "7000002", "install", "scheduled", *first, 1, None),
        ("db3", "7000003", "install", "scheduled", *second, 1, None),
        ("db4", "7000004", "install", "scheduled", *second, 1, None),
        ("web1", "7100001", "reapply", "held_after_rollback", None, None, None, "RB-1"),
    ]
    # AE-4 is for the test environment, AE-5 is after the as-of date: RB-1 stays held.
    assert app2_reason.endswith("(stale: last point 2026-03-19 02:00): take an on-demand backup or VM restore "
                                "point after 2026-03-28 02:00 UTC, before the window")
    assert holds == [("RB-1", None, None), ("RB-2", utc(2026, 3, 12, 9), "AE-3")]
