"""Offline Azure loaders: the real REST examples (shared samples) and handmade files."""

import json
from pathlib import Path

import duckdb
import pytest

from pipelines.ingest.errors import SourceFileError
from pipelines.sources.compute.reader import load_virtual_machines
from pipelines.sources.patch_operations.reader import load_patch_operations
from pipelines.sources.resource_graph.reader import load_resource_graph

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "azure-compute"


def sample(name: str) -> dict:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip("shared samples not available")
    return json.loads(path.read_text())


@pytest.fixture
def conn():
    connection = duckdb.connect()
    connection.execute("CREATE SCHEMA raw")
    yield connection
    connection.close()


def test_arm_list_body_and_az_array_give_the_same_rows(tmp_path, conn):
    vm = sample("VirtualMachine_Get.rest-spec-2024-07-01.json")["responses"]["200"]["body"]
    for form, document in (("arm", {"value": [vm]}), ("az", [vm])):
        estate = tmp_path / form
        (estate / "azure").mkdir(parents=True)
        (estate / "azure" / "virtual_machines.json").write_text(json.dumps(document))
        assert load_virtual_machines(conn, estate, f"raw.vm_{form}", "run").rows == 1
    arm, az = (
        conn.execute(f"SELECT id, name, resource->'properties'->>'vmId' FROM raw.vm_{f}").fetchall()
        for f in ("arm", "az")
    )
    assert arm == az == [(vm["id"], "myVM", "0f47b100-583c-48e3-a4c0-aefc2c9bbcc1")]


def test_patch_operation_envelopes(tmp_path, conn):
    install = sample("VirtualMachine_InstallPatches.rest-spec-2024-07-01.json")
    body = install["responses"]["200"]["body"]
    folder = tmp_path / "azure" / "patch_operations"
    folder.mkdir(parents=True)
    vm = "/subscriptions/s/resourceGroups/myResourceGroupName/providers/Microsoft.Compute/virtualMachines/myVMName"
    (folder / "install.json").write_text(
        json.dumps({"resourceId": vm, "operation": "installPatches", "result": body})
    )
    assert load_patch_operations(conn, tmp_path, "raw.ops", "run").rows == 1
    states = conn.execute(
        "SELECT list(p->>'installationState' ORDER BY p->>'kbId') FROM "
        "(SELECT unnest(from_json(result->'patches', '[\"JSON\"]')) AS p FROM raw.ops)"
    ).fetchall()
    assert states == [(["Installed", "Pending"],)]


def test_bad_operation_names_the_file(tmp_path, conn):
    folder = tmp_path / "azure" / "patch_operations"
    folder.mkdir(parents=True)
    (folder / "odd.json").write_text(json.dumps({"resourceId": "/x", "operation": "reboot", "result": {}}))
    with pytest.raises(SourceFileError, match="patch_operations/odd.json"):
        load_patch_operations(conn, tmp_path, "raw.ops", "run")


def test_malformed_resource_graph_file_names_the_file(tmp_path, conn):
    folder = tmp_path / "azure" / "resource_graph"
    folder.mkdir(parents=True)
    (folder / "patchassessmentresources-2024-01-01.json").write_text('{"data": [{"id": "/a", "type": ')
    with pytest.raises(SourceFileError, match="patchassessmentresources-2024-01-01.json"):
        load_resource_graph(conn, tmp_path, "patchassessmentresources", "raw.pa", "run")


def test_missing_sources_give_empty_tables(tmp_path, conn):
    assert load_virtual_machines(conn, tmp_path, "raw.vm", "run").rows == 0
    assert load_resource_graph(conn, tmp_path, "patchinstallationresources", "raw.pi", "run").rows == 0
    assert conn.execute("SELECT count(*) FROM raw.pi").fetchall() == [(0,)]
    columns = [r[0] for r in conn.execute("DESCRIBE raw.pi").fetchall()]
    assert columns[-3:] == ["source_file", "source_sha256", "ingest_run"]
