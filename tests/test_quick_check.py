"""The planner's quick check (pipelines/ingest/files.py): a file whose name, size and mtime equal
the manifest's is not read; a touched file with the same bytes is hashed but not re-ingested; a
changed file is re-ingested; verifying every file hashes them all.

"Not read" is proven through the file system: the file's bytes are replaced by others of the
same length and its mtime is set back to the recorded nanoseconds. A loader that read the file
would see the new bytes; one that trusts the stamp keeps the old rows. Last, the ARM reader's
several files in one statement still check each file on its own."""

import json
import os

import duckdb
import pytest

from pipelines.ingest.files import VERIFY_FILES
from pipelines.partitions import RANGE_START
from pipelines.sources.patch_operations.reader import load_patch_operations
from pipelines.sources.scan_raw import touched_partitions

VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm{n}"
FOLDER = ("azure", "patch_operations")


def operation(n: int) -> str:
    return json.dumps({"resourceId": VM.format(n=n), "operation": "assessPatches",
                       "result": {"status": "Succeeded", "availablePatches": []}})


def rewrite_keeping_stamp(path, text: str) -> None:
    """New bytes of the same length, the mtime set back to what it was (to the nanosecond)."""
    before = path.stat()
    assert len(text.encode()) == before.st_size
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.fixture
def estate(tmp_path):
    folder = tmp_path.joinpath("estate", *FOLDER)
    folder.mkdir(parents=True)
    (folder / "assess-2026-11-20.json").write_text(operation(1))
    (folder / "assess-2026-11-21.json").write_text(operation(2))
    return tmp_path / "estate"


def resources(conn, table="raw.patch_operations"):
    return conn.execute(f"SELECT source_file, resourceId, ingest_run FROM {table} ORDER BY ALL").fetchall()


def test_unchanged_file_is_not_read_touched_is_not_reingested_changed_is(estate):
    first_file = estate.joinpath(*FOLDER, "assess-2026-11-20.json")
    name = "azure/patch_operations/assess-2026-11-20.json"
    with duckdb.connect() as conn:
        conn.execute("CREATE SCHEMA raw")
        load_patch_operations(conn, estate, "raw.patch_operations", "run-1")
        stamp = first_file.stat()
        assert conn.execute("SELECT size, mtime_ns FROM raw.ingested_files WHERE source_file = ?",
                            [name]).fetchall() == [(stamp.st_size, stamp.st_mtime_ns)]

        # vm1 -> vm9: same length, same mtime. Trusted by its stamp: not read, the old row stays.
        rewrite_keeping_stamp(first_file, operation(9))
        quick = load_patch_operations(conn, estate, "raw.patch_operations", "run-2")
        assert (quick.files_unchanged, quick.files_read, quick.files_replaced) == (2, [], [])
        assert resources(conn)[0] == (name, VM.format(n=1), "run-1")

        # Verifying every file hashes it: the new bytes replace the old row.
        token = VERIFY_FILES.set(True)
        try:
            verified = load_patch_operations(conn, estate, "raw.patch_operations", "run-3")
        finally:
            VERIFY_FILES.reset(token)
        assert (verified.files_unchanged, verified.files_read, verified.files_replaced) == (1, [name], [name])
        assert resources(conn)[0] == (name, VM.format(n=9), "run-3")

        # Touched, same bytes: hashed, not re-ingested, and its new stamp recorded.
        os.utime(first_file, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 5_000_000_000))
        touched = load_patch_operations(conn, estate, "raw.patch_operations", "run-4")
        assert (touched.files_unchanged, touched.files_read, touched.rows) == (2, [], 0)
        assert resources(conn)[0] == (name, VM.format(n=9), "run-3")
        assert conn.execute("SELECT mtime_ns FROM raw.ingested_files WHERE source_file = ?",
                            [name]).fetchall() == [(stamp.st_mtime_ns + 5_000_000_000,)]

        # Changed bytes (another size): re-ingested, only that file.
        first_file.write_text(operation(10))
        changed = load_patch_operations(conn, estate, "raw.patch_operations", "run-5")
        assert (changed.files_unchanged, changed.files_read, changed.files_replaced, changed.rows) == (
            1, [name], [name], 1)
        assert resources(conn) == [
            (name, VM.format(n=10), "run-5"),
            ("azure/patch_operations/assess-2026-11-21.json", VM.format(n=2), "run-1"),
        ]


def test_manifest_without_stamps_is_hashed_once_then_stamped(estate):
    """A manifest written before the stamp columns: its files are hashed (not re-ingested) and
    stamped, so the next run takes them on their stamp."""
    first_file = estate.joinpath(*FOLDER, "assess-2026-11-20.json")
    with duckdb.connect() as conn:
        conn.execute("CREATE SCHEMA raw")
        load_patch_operations(conn, estate, "raw.patch_operations", "run-1")
        conn.execute("ALTER TABLE raw.ingested_files DROP COLUMN size")
        conn.execute("ALTER TABLE raw.ingested_files DROP COLUMN mtime_ns")
        rewrite_keeping_stamp(first_file, operation(8))  # read now: these bytes are new
        again = load_patch_operations(conn, estate, "raw.patch_operations", "run-2")
        assert again.files_replaced == ["azure/patch_operations/assess-2026-11-20.json"]
        assert conn.execute("SELECT count(*) FROM raw.ingested_files WHERE size IS NULL OR mtime_ns IS NULL"
                            ).fetchall() == [(0,)]
        rewrite_keeping_stamp(first_file, operation(7))
        third = load_patch_operations(conn, estate, "raw.patch_operations", "run-3")
        assert (third.files_unchanged, third.files_read) == (2, [])
        assert resources(conn)[0][1:] == (VM.format(n=8), "run-2")


def test_touched_partitions_trust_the_stamp_unless_verifying(estate, tmp_path):
    """The days a run materializes: a new file's day; a same-stamp rewrite of an older day is not
    read, so it does not move the first day, unless every file is verified."""
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("CREATE SCHEMA raw")
        load_patch_operations(conn, estate, "raw.patch_operations", "run-1")
    estate.joinpath(*FOLDER, "assess-2026-11-25.json").write_text(operation(3))
    rewrite_keeping_stamp(estate.joinpath(*FOLDER, "assess-2026-11-20.json"), operation(4))
    assert touched_partitions(estate, warehouse)[0][RANGE_START] == "2026-11-25"
    assert touched_partitions(estate, warehouse, verify=True)[0][RANGE_START] == "2026-11-20"


def test_snapshots_read_together_are_checked_file_by_file(tmp_path):
    """VM snapshots are read in one statement per JSON shape (an `az vm list` array, an ARM list
    body): the same machine with other content in another snapshot is history, not a conflict;
    a conflict inside one snapshot names that file, its row and the field."""
    from pipelines.ingest.errors import SourceFileError
    from pipelines.sources.compute.reader import load_virtual_machines

    vm = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
    folder = tmp_path / "azure" / "virtual_machines"
    folder.mkdir(parents=True)
    (folder / "virtual_machines-20261101T060000Z.json").write_text(json.dumps([{"id": vm, "location": "a"}]))
    (folder / "virtual_machines-20261108T060000Z.json").write_text(
        json.dumps({"value": [{"id": vm, "location": "b"}, {"id": vm + "2", "name": "vm2"}]}))
    with duckdb.connect() as conn:
        conn.execute("CREATE SCHEMA raw")
        stats = load_virtual_machines(conn, tmp_path, "raw.virtual_machines", "run-1")
        assert stats.rows == 3
        assert conn.execute("SELECT source_file, id, name, resource->>'location' FROM raw.virtual_machines "
                            "ORDER BY ALL").fetchall() == [
            ("azure/virtual_machines/virtual_machines-20261101T060000Z.json", vm, None, "a"),
            ("azure/virtual_machines/virtual_machines-20261108T060000Z.json", vm, None, "b"),
            ("azure/virtual_machines/virtual_machines-20261108T060000Z.json", vm + "2", "vm2", None),
        ]
        (folder / "virtual_machines-20261115T060000Z.json").write_text(
            json.dumps([{"id": vm + "3"}, {"id": vm, "location": "c"}, {"id": vm.upper(), "location": "d"}]))
        with pytest.raises(SourceFileError, match=r"virtual_machines-20261115T060000Z\.json: row 2, field id: "
                                                  r".*listed more than once with different content"):
            load_virtual_machines(conn, tmp_path, "raw.virtual_machines", "run-2")
