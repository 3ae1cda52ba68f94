"""The ingestion framework (pipelines/ingest/): a loader returns what its load did.

The statistics come back from the loader itself (no process-wide state), so two loads of the
same table in one process each report their own files; the expected values are counted by hand
from the planted folder."""

import json
import shutil

import duckdb
import pytest

from pipelines.sources.patch_operations.reader import load_patch_operations

VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm{n}"


def operation(n: int) -> dict:
    return {"resourceId": VM.format(n=n), "operation": "assessPatches",
            "result": {"status": "Succeeded", "availablePatches": []}}


@pytest.fixture
def conn():
    with duckdb.connect() as connection:
        connection.execute("CREATE SCHEMA raw")
        yield connection


def test_loader_returns_its_statistics(tmp_path, conn):
    folder = tmp_path / "azure" / "patch_operations"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(json.dumps(operation(1)))  # one envelope
    (folder / "b.json").write_text(json.dumps([operation(2), operation(3)]))  # an array of two

    first = load_patch_operations(conn, tmp_path, "raw.ops", "run-1")
    assert (first.files_seen, first.files_read, first.rows, first.full_reload) == (
        2, ["azure/patch_operations/a.json", "azure/patch_operations/b.json"], 3, True)

    again = load_patch_operations(conn, tmp_path, "raw.ops", "run-2")
    assert (again.files_seen, again.files_unchanged, again.files_read, again.rows, again.full_reload) == (
        2, 2, [], 0, False)

    # A copy of a.json adds nothing; b.json now holds one envelope and replaces its two rows.
    shutil.copy(folder / "a.json", folder / "c.json")
    (folder / "b.json").write_text(json.dumps(operation(4)))
    third = load_patch_operations(conn, tmp_path, "raw.ops", "run-3")
    assert third.files_seen == 3 and third.files_unchanged == 1
    assert third.files_copies == ["azure/patch_operations/c.json"]
    assert third.files_replaced == ["azure/patch_operations/b.json"]
    assert third.files_read == ["azure/patch_operations/b.json"] and third.rows == 1
    assert third.metadata() == {"files_seen": 3, "files_read": 1, "files_unchanged": 1,
                                "files_copies_skipped": 1, "files_replaced": 1, "full_reload": False,
                                "files_other_days": 0}
    assert conn.execute("SELECT source_file, resourceId, ingest_run FROM raw.ops ORDER BY ALL").fetchall() == [
        ("azure/patch_operations/a.json", VM.format(n=1), "run-1"),
        ("azure/patch_operations/b.json", VM.format(n=4), "run-3"),
    ]


def test_missing_folder_gives_an_empty_table_and_empty_statistics(tmp_path, conn):
    stats = load_patch_operations(conn, tmp_path, "raw.ops", "run")
    assert (stats.files_seen, stats.files_read, stats.rows) == (0, [], 0)
    assert conn.execute("SELECT count(*) FROM raw.ops").fetchall() == [(0,)]
