"""The tables staging.vm_identity is built from that are kept by file: staging.resource_graph_machines
(the machines Resource Graph results name), staging.la_identities (the Log Analytics agent
identities) and staging.inventory_identifiers (the snapshots' identifiers). Each reads only the
files added since its last build; a file changed or gone rebuilds it from every file."""

from __future__ import annotations

import duckdb
import pytest

from assets.inventory import (
    INVENTORY_IDENTIFIERS,
    LA_IDENTITIES,
    RESOURCE_GRAPH_MACHINES,
    _inventory_identifiers,
    _la_identities,
    _resource_graph_machines,
)

ARM = "/subscriptions/s1/resourceGroups/G1/providers/Microsoft.Compute/virtualMachines/"
DAY1 = "azure/resource_graph/patchassessmentresources-2026-03-01.json"
DAY2 = "azure/resource_graph/patchassessmentresources-2026-03-02.json"
INSTALLS = "azure/resource_graph/patchinstallationresources-2026-03-01.json"


@pytest.fixture
def conn():
    c = duckdb.connect()
    for schema in ("raw", "staging"):
        c.execute(f"CREATE SCHEMA {schema}")
    for table in ("patch_assessment_resources", "patch_installation_resources"):
        c.execute(f"CREATE TABLE raw.{table} (id VARCHAR, source_file VARCHAR, source_sha256 VARCHAR)")
    return c


def result(c, table: str, vm: str, rest: str, file: str, sha: str = "a") -> None:
    c.execute(f"INSERT INTO raw.{table} VALUES (?, ?, ?)", [ARM + vm + rest, file, sha])


def machines(c) -> list[str]:
    return [v for (v,) in c.execute(f"SELECT vm_id FROM {RESOURCE_GRAPH_MACHINES} ORDER BY 1").fetchall()]


def vm(name: str) -> str:
    return (ARM + name).lower()


def test_a_new_file_adds_its_machines_and_a_changed_one_rebuilds(conn):
    result(conn, "patch_assessment_resources", "vm1", "/patchAssessmentResults/latest", DAY1)
    result(conn, "patch_assessment_resources", "vm1", "/patchAssessmentResults/latest/softwarePatches/p1", DAY1)
    result(conn, "patch_installation_resources", "vm2", "/patchInstallationResults/run1", INSTALLS)
    result(conn, "patch_assessment_resources", "vm9", "/somethingElse", DAY1)  # names no machine
    assert _resource_graph_machines(conn) == "all"  # the first build
    assert machines(conn) == [vm("vm1"), vm("vm2")]

    # Day 2's file names vm1 again and vm3: only that file is read, vm3 joins.
    result(conn, "patch_assessment_resources", "vm1", "/patchAssessmentResults/latest", DAY2)
    result(conn, "patch_assessment_resources", "vm3", "/patchAssessmentResults/latest", DAY2)
    assert _resource_graph_machines(conn) == [DAY2]
    assert machines(conn) == [vm("vm1"), vm("vm2"), vm("vm3")]
    assert _resource_graph_machines(conn) == []  # nothing new: nothing read
    assert machines(conn) == [vm("vm1"), vm("vm2"), vm("vm3")]

    # The installation file is replaced by a version without vm2: rebuilt, vm2 is gone.
    conn.execute("DELETE FROM raw.patch_installation_resources")
    result(conn, "patch_installation_resources", "vm3", "/patchInstallationResults/run2", INSTALLS, sha="b")
    assert _resource_graph_machines(conn) == "all"
    assert machines(conn) == [vm("vm1"), vm("vm3")]

    # Day 2's file removed: rebuilt, vm3 stays (the installation file still names it).
    conn.execute("DELETE FROM raw.patch_assessment_resources WHERE source_file = ?", [DAY2])
    assert _resource_graph_machines(conn) == "all"
    assert machines(conn) == [vm("vm1"), vm("vm3")]


# Log Analytics identities and inventory identifiers: kept by file the same way.
UPDATES1 = "log_analytics/Update_2026-03-01.csv"
UPDATES2 = "log_analytics/Update_2026-03-02.csv"
SUMMARY = "log_analytics/UpdateSummary.json"
LA_COLUMNS = ("TimeGenerated TIMESTAMPTZ, Computer VARCHAR, ComputerEnvironment VARCHAR, SourceComputerId VARCHAR, "
              "VMUUID VARCHAR, _ResourceId VARCHAR, ResourceId VARCHAR, source_file VARCHAR, source_sha256 VARCHAR")


def inventory_sources(database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """The raw Log Analytics and inventory tables, empty."""
    c = duckdb.connect(database)
    c.execute("SET TimeZone = 'UTC'")
    for schema in ("raw", "staging"):
        c.execute(f"CREATE SCHEMA {schema}")
    for table in ("la_update", "la_update_summary", "la_update_run_progress"):
        c.execute(f"CREATE TABLE raw.{table} ({LA_COLUMNS})")
    c.execute("CREATE TABLE raw.virtual_machines (id VARCHAR, name VARCHAR, resource JSON, source_file VARCHAR, "
              "source_sha256 VARCHAR)")
    return c


@pytest.fixture
def la_conn():
    return inventory_sources()


def la_row(c, table: str, at: str, computer: str, environment: str, file: str, sha: str = "a") -> None:
    c.execute(f"INSERT INTO raw.{table} VALUES (?, ?, ?, 'agent-' || ?, NULL, '', NULL, ?, ?)",
              [f"2026-03-{at}+00", computer, environment, computer, file, sha])


def identities(c) -> list[tuple]:
    return c.execute(f"SELECT Computer, computer_environment, first_seen_at::VARCHAR, last_seen_at::VARCHAR "
                     f"FROM {LA_IDENTITIES} ORDER BY ALL").fetchall()


def test_log_analytics_identities_merge_the_added_exports(la_conn):
    la_row(la_conn, "la_update", "01 10:00", "web1", "Azure", UPDATES1)
    la_row(la_conn, "la_update", "01 11:00", "web1", "Azure", UPDATES1)
    la_row(la_conn, "la_update_summary", "01 09:00", "db1", "Non-Azure", SUMMARY)
    assert _la_identities(la_conn) == "all"
    assert identities(la_conn) == [("db1", "Non-Azure", "2026-03-01 09:00:00+00", "2026-03-01 09:00:00+00"),
                                   ("web1", "Azure", "2026-03-01 10:00:00+00", "2026-03-01 11:00:00+00")]

    # Day 2's export: web1 seen later (its last_seen_at moves, first_seen_at stays), app1 is new;
    # only that file is read.
    la_row(la_conn, "la_update", "02 08:00", "web1", "Azure", UPDATES2)
    la_row(la_conn, "la_update", "02 08:30", "app1", "Azure", UPDATES2)
    assert _la_identities(la_conn) == [UPDATES2]
    assert identities(la_conn) == [("app1", "Azure", "2026-03-02 08:30:00+00", "2026-03-02 08:30:00+00"),
                                   ("db1", "Non-Azure", "2026-03-01 09:00:00+00", "2026-03-01 09:00:00+00"),
                                   ("web1", "Azure", "2026-03-01 10:00:00+00", "2026-03-02 08:00:00+00")]
    assert _la_identities(la_conn) == []

    # Day 1's export replaced without web1's 10:00 row: rebuilt from every file.
    la_conn.execute("DELETE FROM raw.la_update WHERE source_file = ?", [UPDATES1])
    la_row(la_conn, "la_update", "01 11:00", "web1", "Azure", UPDATES1, sha="b")
    assert _la_identities(la_conn) == "all"
    assert identities(la_conn)[2] == ("web1", "Azure", "2026-03-01 11:00:00+00", "2026-03-02 08:00:00+00")


def snapshot_vm(c, name: str, uuid: str, file: str, sha: str = "a") -> None:
    resource = f'{{"properties": {{"vmId": "{uuid}", "osProfile": {{"computerName": "{name.upper()}"}}}}}}'
    c.execute("INSERT INTO raw.virtual_machines VALUES (?, ?, ?, ?, ?)", [ARM + name, name, resource, file, sha])


def test_inventory_identifiers_add_the_new_snapshots(la_conn):
    snapshot_vm(la_conn, "vm1", "U1", "azure/virtual_machines/virtual_machines-20260301T060000Z.json")
    assert _inventory_identifiers(la_conn) == "all"
    # A second snapshot: vm1 again with the same identifiers (one row), vm2 new.
    second = "azure/virtual_machines/virtual_machines-20260302T060000Z.json"
    snapshot_vm(la_conn, "vm1", "U1", second)
    snapshot_vm(la_conn, "vm2", "U2", second)
    assert _inventory_identifiers(la_conn) == [second]
    assert la_conn.execute(f"SELECT * FROM {INVENTORY_IDENTIFIERS} ORDER BY ALL").fetchall() == [
        (vm("vm1"), "u1", "vm1", "vm1"), (vm("vm2"), "u2", "vm2", "vm2")]


def test_a_day_without_new_identifiers_keeps_the_aliases(tmp_path):
    """The vm_identity step: a Log Analytics day that only sees known agents rebuilds the
    resolution (their last_seen_at moves) but not staging.vm_aliases; a new agent rebuilds it."""
    import dagster as dg

    from assets.inventory import vm_identity
    from pipelines.resources import WarehouseResource

    path = tmp_path / "w.duckdb"
    c = inventory_sources(str(path))
    for table in ("patch_assessment_resources", "patch_installation_resources"):
        c.execute(f"CREATE TABLE raw.{table} (id VARCHAR, source_file VARCHAR, source_sha256 VARCHAR)")
    c.execute("CREATE TABLE raw.patch_operations (resourceId VARCHAR, source_file VARCHAR, source_sha256 VARCHAR)")
    snapshot_vm(c, "web1", "U1", "azure/virtual_machines.json")
    la_row(c, "la_update", "01 10:00", "web1", "Azure", UPDATES1)
    c.close()

    def run() -> tuple[dict, list]:
        result = dg.materialize([vm_identity], resources={"warehouse": WarehouseResource(database=str(path))})
        flags = {e.step_materialization_data.materialization.asset_key.path[1]:
                 e.step_materialization_data.materialization.metadata["unchanged"].value
                 for e in result.get_asset_materialization_events()}
        with duckdb.connect(str(path), read_only=True) as r:
            seen = r.execute("SELECT computer, vm_id, last_seen_at::VARCHAR FROM staging.vm_la_machines "
                             "ORDER BY ALL").fetchall()
        return flags, seen

    flags, seen = run()
    assert flags == {"vm_aliases": False, "vm_la_machines": False, "vm_identity": False}
    # web1's agent reports no ARM id: it resolves by the computer name the inventory gives web1.
    assert seen == [("web1", vm("web1"), "2026-03-01 10:00:00+00")]

    c = duckdb.connect(str(path))
    la_row(c, "la_update", "02 08:00", "web1", "Azure", UPDATES2)
    c.close()
    flags, seen = run()
    assert flags == {"vm_aliases": True, "vm_la_machines": False, "vm_identity": False}
    assert seen == [("web1", vm("web1"), "2026-03-02 08:00:00+00")]

    c = duckdb.connect(str(path))
    la_row(c, "la_update", "03 08:00", "app1", "Non-Azure", "log_analytics/Update_2026-03-03.csv")
    c.close()
    flags, seen = run()
    assert flags["vm_aliases"] is False
    assert seen == [("app1", "nonazure/app1", "2026-03-03 08:00:00+00"),
                    ("web1", vm("web1"), "2026-03-02 08:00:00+00")]
