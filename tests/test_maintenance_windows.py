"""Maintenance configurations as the schedule's windows, on planted cases as of 2026-11-27 (a Friday).

Configurations (ARM list body, API 2023-04-01 shape) through the real reader and SQL:
    mw-sun    InGuestPatch "1Week Sunday", 2026-09-06 02:00 GMT Standard Time, 03:55; a register
              window of the same name gives ring 2, production, capacity 10
    aum-thu   InGuestPatch "1Month Second Tuesday Offset2", 2026-08-29 03:00 W. Europe Standard
              Time, 03:00; no register window: production defaults (ring 2, open capacity)
    host-cfg  scope Host: not a patch schedule
Register windows: mw-sat (Saturdays 22:00 Europe/London, 240 min) and mw-sun (Sundays 02:00).
Machines (production Azure VMs, one gap each, 15 minutes per step and per reboot):
    a  tag mw-sat, assigned to mw-sun       -> mw-sun's occurrences; the tag disagrees
    b  no tag, assigned to aum-thu          -> aum-thu's occurrences
    c  tag mw-sat                            -> the register window mw-sat
    d  no tag, no assignment                -> unplaceable, unscheduled, finding
    e  tag mw-sun, assigned to mw-sun       -> mw-sun's occurrences; the tag agrees; its patch is
                                               of classification Updates, which mw-sun does not
                                               install (Critical, Security): flagged
    c's patch is of classification Updates too: a register window installs what it is given
    f  tag mw-sat, assigned to host-cfg     -> the register window mw-sat (Host is no patch schedule)
Occurrences after 2026-11-27, derived by hand:
    mw-sun (config)  Sunday 2026-11-29 02:00 GMT = 02:00 UTC, until 05:55 UTC (03:55)
    aum-thu          Second Tuesday of December is 12-08 (12-01 is a Tuesday), +2 days = Thursday
                     12-10 03:00 CET = 02:00 UTC, until 05:00 UTC; then 2027-01-14 and 2027-02-11
    mw-sat (register) Saturday 2026-11-28 22:00 GMT = 22:00 UTC, until 11-29 02:00 UTC
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import dagster as dg
import pandas as pd
import pytest

from assets import remediation
from pipelines.resources import RunSettings, WarehouseResource, connect_warehouse
from pipelines.scheduling import window_occurrences
from pipelines.sources.maintenance.reader import load_maintenance
from pipelines.sources.maintenance.recurrence import (
    configuration_schedules,
    iana_time_zone,
    parse_recur_every,
)
from pipelines.warehouse import build_table, create_macros

AS_OF = date(2026, 11, 27)
SUB = "22222222-2222-2222-2222-222222222222"
VM = f"/subscriptions/{SUB}/resourceGroups/RG-PRD/providers/Microsoft.Compute/virtualMachines/"
CONFIG = f"/subscriptions/{SUB}/resourceGroups/rg-patching/providers/Microsoft.Maintenance/maintenanceConfigurations/"
MACHINES = {"a": "mw-sat", "b": None, "c": "mw-sat", "d": None, "e": "mw-sun", "f": "mw-sat"}
ASSIGNED = {"a": "mw-sun", "b": "aum-thu", "e": "mw-sun", "f": "host-cfg"}


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def vm_id(name: str) -> str:
    return (VM + name).lower()


@pytest.mark.parametrize(("text", "rrule", "offset"), [
    ("1Day", "FREQ=DAILY;INTERVAL=1", 0),
    ("3Days", "FREQ=DAILY;INTERVAL=3", 0),
    ("6Hours", "FREQ=HOURLY;INTERVAL=6", 0),
    ("Week Saturday,Sunday", "FREQ=WEEKLY;INTERVAL=1;BYDAY=SA,SU", 0),
    ("1Week Saturday, Sunday", "FREQ=WEEKLY;INTERVAL=1;BYDAY=SA,SU", 0),
    ("3Weeks", "FREQ=WEEKLY;INTERVAL=3", 0),
    ("2Months", "FREQ=MONTHLY;INTERVAL=2", 0),
    ("Month day23,day24", "FREQ=MONTHLY;INTERVAL=1;BYMONTHDAY=23,24", 0),
    ("1Month Last Sunday", "FREQ=MONTHLY;INTERVAL=1;BYDAY=-1SU", 0),
    ("Month Fourth Monday", "FREQ=MONTHLY;INTERVAL=1;BYDAY=+4MO", 0),
    ("Month Last Sunday Offset-3", "FREQ=MONTHLY;INTERVAL=1;BYDAY=-1SU", -3),
    ("1Month Second Tuesday Offset2", "FREQ=MONTHLY;INTERVAL=1;BYDAY=+2TU", 2),
    ("Month Third Sunday Offset6", "FREQ=MONTHLY;INTERVAL=1;BYDAY=+3SU", 6),
])
def test_recur_every_grammar(text, rrule, offset):
    # The examples of the Microsoft.Maintenance REST API (MaintenanceWindow.recurEvery).
    parsed = parse_recur_every(text)
    assert (parsed.rrule, parsed.offset_days) == (rrule, offset)


@pytest.mark.parametrize("text", ["", "1Fortnight", "0Days", "1Week Funday", "1Day Monday", "1Month day32",
                                  "1Month Second Tuesday Offset7", "1Month Fifth Friday", "1Weekly"])
def test_recur_every_rejects_what_it_cannot_read(text):
    with pytest.raises(ValueError):
        parse_recur_every(text)


def test_windows_time_zones_through_cldr():
    assert iana_time_zone("GMT Standard Time") == "Europe/London"
    assert iana_time_zone("W. Europe Standard Time") == "Europe/Berlin"
    assert iana_time_zone("Pacific Standard Time") == "America/Los_Angeles"
    assert iana_time_zone("UTC") == "Etc/UTC"
    with pytest.raises(ValueError):
        iana_time_zone("Europe/London")  # an IANA name is not what Azure states


def test_a_bad_field_names_file_configuration_and_field():
    bad = pd.DataFrame([{"configuration_id": "cfg-1", "source_file": "azure/maintenance/m.json",
                         "recur_every": "1Week Saturday", "time_zone": "Mars Standard Time",
                         "start_date_time": "2026-01-03 22:00", "expiration_date_time": None, "duration": "03:55"}])
    with pytest.raises(ValueError, match=r"azure/maintenance/m\.json: maintenance configuration cfg-1: "
                                         r"maintenanceWindow\.timeZone 'Mars Standard Time'"):
        configuration_schedules(bad)


def test_schedule_fields_as_azure_returns_them():
    # An open expiration comes back as Azure's maximum datetime, with seconds.
    parsed = configuration_schedules(pd.DataFrame([{
        "configuration_id": "cfg-1", "source_file": "m.json", "recur_every": "1Month Second Tuesday Offset2",
        "time_zone": "W. Europe Standard Time", "start_date_time": "2026-08-29 03:00",
        "expiration_date_time": "9999-12-31 23:59:59", "duration": "03:55"}]))
    assert parsed.to_dict("records") == [{
        "configuration_id": "cfg-1", "source_file": "m.json", "rrule": "FREQ=MONTHLY;INTERVAL=1;BYDAY=+2TU",
        "offset_days": 2, "time_zone": "Europe/Berlin", "starts_at": pd.Timestamp("2026-08-29 03:00"),
        "expires_at": pd.Timestamp("9999-12-31 23:59:59"), "duration_minutes": 235}]


def window(rrule, starts_at, expires_at=None, offset=0, zone="Europe/London", minutes=60):
    return pd.DataFrame([{"window_id": "w", "rrule": rrule, "start_time": None, "duration_minutes": minutes,
                          "time_zone": zone, "ring": 2, "environment": "production", "capacity_vms": None,
                          "max_role_share": None, "starts_at": pd.Timestamp(starts_at),
                          "expires_at": pd.Timestamp(expires_at) if expires_at else None, "offset_days": offset}])


NO_BLACKOUTS = pd.DataFrame(columns=["blackout_id", "starts_on", "ends_on", "environment", "reason"])


def starts(frame, as_of=AS_OF, horizon=90) -> list[datetime]:
    return [o.start for o in window_occurrences(frame, NO_BLACKOUTS, as_of, horizon)["w"]]


def test_occurrences_of_configuration_schedules():
    # Two days after Patch Tuesday, 03:00 Berlin (CET, UTC+1): 12-10, 01-14, 02-11 within 90 days.
    assert starts(window("FREQ=MONTHLY;INTERVAL=1;BYDAY=+2TU", "2026-08-29 03:00", offset=2,
                         zone="Europe/Berlin")) == [utc(2026, 12, 10, 2), utc(2027, 1, 14, 2), utc(2027, 2, 11, 2)]
    # Every other Saturday counted from startDateTime (11-07): 11-21, 12-05, 12-19; 30 days from 11-28.
    assert starts(window("FREQ=WEEKLY;INTERVAL=2;BYDAY=SA", "2026-11-07 22:00"), horizon=30) == [
        utc(2026, 12, 5, 22), utc(2026, 12, 19, 22)]
    # expirationDateTime 12-12 21:00: the 12-12 22:00 occurrence is after it.
    assert starts(window("FREQ=WEEKLY;INTERVAL=1;BYDAY=SA", "2026-11-01 22:00", "2026-12-12 21:00"), horizon=30) == [
        utc(2026, 11, 28, 22), utc(2026, 12, 5, 22)]
    # Daily 22:00 London across the change to BST on 2027-03-28: 22:00 UTC, then 21:00 UTC.
    assert starts(window("FREQ=DAILY;INTERVAL=1", "2027-01-01 22:00"), as_of=date(2027, 3, 26), horizon=2) == [
        utc(2027, 3, 27, 22), utc(2027, 3, 28, 21)]
    # A start after the horizon gives nothing.
    assert starts(window("FREQ=DAILY;INTERVAL=1", "2027-06-01 22:00")) == []


def configuration(name: str, scope: str, recur: str, start: str, duration: str, zone: str) -> dict:
    return {"id": CONFIG + name, "name": name, "type": "Microsoft.Maintenance/maintenanceConfigurations",
            "location": "westeurope",
            "properties": {"namespace": "Microsoft.Maintenance", "maintenanceScope": scope, "visibility": "Custom",
                           "maintenanceWindow": {"startDateTime": start, "expirationDateTime": None,
                                                 "duration": duration, "timeZone": zone, "recurEvery": recur},
                           "installPatches": {"rebootSetting": "IfRequired", "windowsParameters": {
                               "classificationsToInclude": ["Critical", "Security"]}}}}


def build(root, thursday: str = "1Month Second Tuesday Offset2") -> str:
    folder = root / "estate" / "azure" / "maintenance"
    folder.mkdir(parents=True)
    resources = [
        configuration("mw-sun", "InGuestPatch", "1Week Sunday", "2026-09-06 02:00", "03:55", "GMT Standard Time"),
        configuration("aum-thu", "InGuestPatch", thursday, "2026-08-29 03:00", "03:00",
                      "W. Europe Standard Time"),
        configuration("host-cfg", "Host", "1Day", "2026-08-29 01:00", "05:00", "UTC"),
    ] + [
        {"id": f"{VM}{vm}/providers/Microsoft.Maintenance/configurationAssignments/{cfg}", "name": cfg,
         "type": "Microsoft.Maintenance/configurationAssignments",
         "properties": {"maintenanceConfigurationId": CONFIG + cfg, "resourceId": VM + vm}}
        for vm, cfg in ASSIGNED.items()
    ]
    (folder / "maintenance.json").write_text(json.dumps({"value": resources}))
    database = str(root / "w.duckdb")
    conn = connect_warehouse(database)
    load_maintenance(conn, root / "estate", "raw.maintenance_resources", "run")
    build_table(conn, "staging.maintenance_configurations")
    build_table(conn, "staging.maintenance_assignments")
    conn.execute("""
        CREATE TABLE marts.vm_inventory (vm_id VARCHAR, name VARCHAR, machine_kind VARCHAR, in_inventory BOOLEAN,
            environment VARCHAR, os_type VARCHAR, patch_mode VARCHAR, role VARCHAR, criticality VARCHAR,
            maintenance_window VARCHAR, asset_category VARCHAR)""")
    conn.executemany("INSERT INTO marts.vm_inventory VALUES (?, ?, 'azure_vm', true, 'production', 'Windows', "
                     "'AutomaticByPlatform', NULL, 'high', ?, 'win-app')",
                     [[vm_id(name), name, tag] for name, tag in MACHINES.items()])
    conn.execute("""
        CREATE TABLE staging.maintenance_windows AS SELECT * FROM (VALUES
            ('mw-sat', 'Saturday', 'FREQ=WEEKLY;BYDAY=SA', TIME '22:00', 240, 'Europe/London', 2, 'production', 10, 1.0),
            ('mw-sun', 'Sunday', 'FREQ=WEEKLY;BYDAY=SU', TIME '02:00', 240, 'Europe/London', 2, 'production', 10, 1.0))
        AS t(window_id, name, rrule, start_time, duration_minutes, time_zone, ring, environment,
             capacity_vms, max_role_share)""")
    conn.execute("CREATE TABLE marts.compliance_gaps (gap_id VARCHAR, vm_id VARCHAR, patch_key VARCHAR, "
                 "kb VARCHAR, gap_type VARCHAR, title VARCHAR, priority DOUBLE, sla_due DATE, as_of DATE)")
    conn.executemany("INSERT INTO marts.compliance_gaps VALUES (?, ?, ?, ?, 'authorized_missing', 'update', 50, "
                     "DATE '2026-12-31', ?)",
                     [[f"GAP-{name}", vm_id(name), f"800000{n}", f"800000{n}", AS_OF]
                      for n, name in enumerate(MACHINES)])
    # c's and e's patches are of classification Updates, which the configurations do not include.
    conn.execute("CREATE TABLE marts.patch_catalog AS SELECT patch_key, CASE WHEN vm_id IN (?, ?) THEN 'Updates' "
                 "ELSE 'Security' END AS classification FROM marts.compliance_gaps", [vm_id("c"), vm_id("e")])
    conn.execute("CREATE TABLE marts.authorization_status AS SELECT patch_key, 'authorized' AS status, "
                 "NULL::INTEGER AS deploy_order, []::VARCHAR[] AS impact_dependencies "
                 "FROM (SELECT DISTINCT patch_key FROM marts.compliance_gaps)")
    conn.execute("CREATE TABLE staging.blackout_dates (blackout_id VARCHAR, starts_on DATE, ends_on DATE, "
                 "environment VARCHAR, reason VARCHAR)")
    conn.execute("CREATE TABLE staging.rollbacks (rollback_id VARCHAR, vm_id VARCHAR, patch_key VARCHAR, "
                 "rolled_back_at TIMESTAMPTZ)")
    conn.execute("CREATE TABLE staging.authorization_events (event_id VARCHAR, patch_key VARCHAR, "
                 "asset_category VARCHAR, environment VARCHAR, to_state VARCHAR, occurred_at TIMESTAMPTZ)")
    conn.execute("CREATE TABLE marts.vm_rollback_readiness AS SELECT vm_id, 'ready' AS readiness, 'ok' AS reason, "
                 "24.0 AS max_age_hours, false AS pre_window_backup, NULL::TIMESTAMPTZ AS last_point_at "
                 "FROM marts.vm_inventory")
    conn.execute("CREATE TABLE raw.patch_installation_resources (id VARCHAR, type VARCHAR, properties VARCHAR)")
    conn.close()
    return database


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("maintenance")
    database = build(root)
    result = dg.materialize(
        [remediation.maintenance_schedules, remediation.remediation_schedule, remediation.every_machine_scheduled],
        resources={"warehouse": WarehouseResource(database=database),
                   "run_settings": RunSettings(estate_dir=str(root / "estate"), as_of=AS_OF.isoformat())},
    )
    assert result.success
    conn = connect_warehouse(database)
    yield conn, result
    conn.close()


@pytest.fixture(scope="module")
def conn(warehouse):
    return warehouse[0]


def test_which_window_patches_each_machine(conn):
    assert conn.execute(
        "SELECT name, tag_window, configuration_name, window_source, tag_disagrees, window_id "
        "FROM marts.vm_maintenance_windows ORDER BY name").fetchall() == [
        ("a", "mw-sat", "mw-sun", "maintenance_configuration", True, (CONFIG + "mw-sun").lower()),
        ("b", None, "aum-thu", "maintenance_configuration", False, (CONFIG + "aum-thu").lower()),
        ("c", "mw-sat", None, "register_window", False, "mw-sat"),
        ("d", None, None, None, False, None),
        ("e", "mw-sun", "mw-sun", "maintenance_configuration", False, (CONFIG + "mw-sun").lower()),
        ("f", "mw-sat", None, "register_window", False, "mw-sat"),
    ]


def test_configuration_windows(conn):
    assert conn.execute(
        "SELECT name, rrule, offset_days, time_zone, start_time::VARCHAR, duration_minutes, ring, environment, "
        "capacity_vms, settings_from, machines FROM staging.maintenance_configuration_windows ORDER BY name"
    ).fetchall() == [
        ("aum-thu", "FREQ=MONTHLY;INTERVAL=1;BYDAY=+2TU", 2, "Europe/Berlin", "03:00:00", 180, 2, "production",
         None, "default for production machines", 1),
        ("mw-sun", "FREQ=WEEKLY;INTERVAL=1;BYDAY=SU", 0, "Europe/London", "02:00:00", 235, 2, "production",
         10, "register window mw-sun", 2),
    ]


def test_schedule_follows_the_configurations(conn):
    rows = conn.execute(
        "SELECT vm_name, window_id, status, window_start, window_end, outside_configuration "
        "FROM marts.remediation_schedule ORDER BY vm_name").fetchall()
    sunday = ((CONFIG + "mw-sun").lower(), "scheduled", utc(2026, 11, 29, 2), utc(2026, 11, 29, 5, 55))
    saturday = ("mw-sat", "scheduled", utc(2026, 11, 28, 22), utc(2026, 11, 29, 2))
    assert rows == [
        ("a", *sunday, False),
        ("b", (CONFIG + "aum-thu").lower(), "scheduled", utc(2026, 12, 10, 2), utc(2026, 12, 10, 5), False),
        ("c", *saturday, False),
        ("d", None, "unplaceable", None, None, False),
        ("e", *sunday, True),
        ("f", *saturday, False),
    ]
    reason = conn.execute("SELECT reason FROM marts.remediation_schedule WHERE vm_name = 'e'").fetchone()[0]
    assert reason.endswith("; classification Updates is not in the configuration's classificationsToInclude "
                           "(Critical, Security): Azure Update Manager will not install it in this run unless "
                           "the configuration includes it")


def test_unscheduled_machines_and_findings(conn, warehouse):
    assert conn.execute("SELECT name, maintenance_window FROM marts.unscheduled_machines").fetchall() == [
        ("d", None)]
    assert conn.execute(
        "SELECT rule, severity, vm_id, condition FROM marts.maintenance_findings ORDER BY rule").fetchall() == [
        ("machine_unscheduled", "medium", vm_id("d"),
         "d (production) is on no InGuestPatch maintenance configuration and has no maintenance-window tag "
         "as of 2026-11-27"),
        ("maintenance_tag_disagrees", "low", vm_id("a"),
         "a is patched by maintenance configuration mw-sun while its maintenance-window tag says mw-sat "
         "(as of 2026-11-27)"),
    ]
    (check,) = warehouse[1].get_asset_check_evaluations()
    assert (check.check_name, check.passed, check.metadata["unscheduled_machines"].value) == (
        "every_machine_scheduled", False, 1)


def test_an_unreadable_schedule_fails_the_step_and_keeps_the_last_good_state(tmp_path):
    database = build(tmp_path, thursday="1Month Fifth Friday")
    result = dg.materialize(
        [remediation.maintenance_schedules],
        resources={"warehouse": WarehouseResource(database=database),
                   "run_settings": RunSettings(estate_dir=str(tmp_path / "estate"), as_of=AS_OF.isoformat())},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.cause.message
    assert "maintenance.json: maintenance configuration " + (CONFIG + "aum-thu").lower() in message
    assert "maintenanceWindow.recurEvery '1Month Fifth Friday'" in message
    conn = connect_warehouse(database)
    assert conn.execute("SELECT count(*) FROM information_schema.tables "
                        "WHERE table_name IN ('vm_maintenance_windows', 'maintenance_recurrences')").fetchone()[0] == 0
    conn.close()


def test_demo_cases(demo_run):
    """The planted maintenance cases of the generated estate (pipelines/demo/auto_updates.py),
    evaluated on its last day, 2026-11-27 (a Friday)."""
    import duckdb

    from pipelines.reporting.queries import population_rows, report_data

    estate, path, _, result = demo_run
    assert result.success
    truth = json.loads((estate / "demo_truth.json").read_text())
    cases = {c["case"]: c["vm_id"] for c in truth["cases"] if c["case"].startswith("maintenance_")}
    assert sorted(cases) == ["maintenance_azure_only", "maintenance_tag_disagrees", "maintenance_unscheduled"]
    end = date.fromisoformat(truth["generator"]["end"])
    assert end == AS_OF
    conn = duckdb.connect(str(path), read_only=True)

    def windows(case):
        return conn.execute("SELECT tag_window, configuration_name, window_source, tag_disagrees "
                            "FROM marts.vm_maintenance_windows WHERE vm_id = ?", [cases[case]]).fetchone()

    assert windows("maintenance_tag_disagrees") == ("mw-prod-sa", "mw-prod-su", "maintenance_configuration", True)
    assert windows("maintenance_azure_only") == (None, "aum-prod-patch-thursday", "maintenance_configuration", False)
    assert windows("maintenance_unscheduled") == (None, None, None, False)
    assert conn.execute("SELECT settings_from, ring, time_zone FROM staging.maintenance_configuration_windows "
                        "WHERE name = 'aum-prod-patch-thursday'").fetchone() == (
        "default for production machines", 2, "Europe/Berlin")
    # Two days after the second Tuesdays (12-08, 01-12, 02-09), 03:00 CET = 02:00 UTC.
    thursdays = {utc(2026, 12, 10, 2), utc(2027, 1, 14, 2), utc(2027, 2, 11, 2)}
    starts = {s for (s,) in conn.execute("SELECT window_start FROM marts.remediation_schedule "
                                         "WHERE vm_id = ? AND window_start IS NOT NULL",
                                         [cases["maintenance_azure_only"]]).fetchall()}
    assert starts <= thursdays
    assert {r for (r,) in conn.execute("SELECT rule FROM marts.audit_findings WHERE vm_id = ?",
                                       [cases["maintenance_unscheduled"]]).fetchall()} >= {"machine_unscheduled"}
    assert conn.execute("SELECT rule FROM marts.audit_findings WHERE rule = 'maintenance_tag_disagrees'"
                        ).fetchall() == [("maintenance_tag_disagrees",)]
    # The evidence pack: the population and the scope line's figures.
    assert [r["vm_id"] for r in population_rows(conn, "unscheduled_machines", end)] == [
        cases["maintenance_unscheduled"]]
    data = report_data(conn, end)
    assert [m["vm_id"] for m in data["unscheduled_machines"]] == [cases["maintenance_unscheduled"]]
    assert sum(m["tag_disagrees"] for m in data["maintenance_schedules"]) == 1
    conn.close()


def test_a_role_is_not_patched_whole_across_windows_starting_together():
    """db1 on a register window and db2 on a configuration, both Sundays 02:00 UTC: the two
    production db machines are the whole role, so db2 waits a week (2026-11-29, then 12-06)."""
    from pipelines.scheduling import build_schedule

    windows = pd.concat([
        window("FREQ=WEEKLY;INTERVAL=1;BYDAY=SU", "2026-09-06 02:00", zone="UTC", minutes=120).assign(window_id="cfg"),
        pd.DataFrame([{"window_id": "reg", "rrule": "FREQ=WEEKLY;BYDAY=SU", "start_time": "02:00",
                       "duration_minutes": 120, "time_zone": "UTC", "ring": 2, "environment": "production",
                       "capacity_vms": 10, "max_role_share": 1.0}]),
    ], ignore_index=True)
    machines = pd.DataFrame([{"vm_id": v, "name": v, "role": "db", "environment": "production",
                              "criticality": "high", "maintenance_window": w} for v, w in (("db1", "reg"), ("db2", "cfg"))])
    gaps = pd.DataFrame([{"gap_id": f"G-{v}", "vm_id": v, "patch_key": "5002", "kb": "5002",
                          "gap_type": "authorized_missing", "title": "CU", "priority": p, "sla_due": date(2026, 12, 31),
                          "deploy_order": None, "dependencies": []} for v, p in (("db1", 90), ("db2", 80))])
    schedule = build_schedule(gaps, machines, windows, NO_BLACKOUTS, AS_OF)
    assert list(zip(schedule["vm_id"], schedule["window_id"], schedule["window_start"], strict=True)) == [
        ("db1", "reg", utc(2026, 11, 29, 2)), ("db2", "cfg", utc(2026, 12, 6, 2))]


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        # Before any dated capture: the undated export.
        ("2026-02-28", ["undated"]),
        # A capture made during the as-of day counts (06:00 and 23:59 on 03-01, the later wins) ...
        ("2026-03-01", ["late-1", "late-2"]),
        # ... one made at midnight UTC after it does not; it does the next day.
        ("2026-03-04", ["late-1", "late-2"]),
        ("2026-03-05", ["next-day"]),
    ],
)
def test_latest_capture_macro_picks_the_capture_of_the_evaluation_date(as_of, expected):
    """The macro the maintenance SQL files share (pipelines/warehouse.py), on planted captures."""
    conn = connect_warehouse(":memory:")
    conn.execute("CREATE TABLE staging.captures (name VARCHAR, captured_at TIMESTAMPTZ)")
    conn.execute("""INSERT INTO staging.captures VALUES
        ('undated', NULL), ('early', '2026-03-01 06:00:00+00'),
        ('late-1', '2026-03-01 23:59:00+00'), ('late-2', '2026-03-01 23:59:00+00'),
        ('next-day', '2026-03-05 00:00:00+00')""")
    create_macros(conn)
    picked = conn.execute("SELECT name FROM latest_capture('staging.captures', $as_of) ORDER BY name",
                          {"as_of": as_of}).fetchall()
    assert [name for (name,) in picked] == expected
