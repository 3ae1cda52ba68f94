"""staging.resource_graph_machines (the machines Resource Graph results name, for
staging.vm_identity) reads only the result files added since its last build; a file changed or
gone rebuilds it from every file."""

from __future__ import annotations

import duckdb
import pytest

from assets.inventory import RESOURCE_GRAPH_MACHINES, _resource_graph_machines

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
