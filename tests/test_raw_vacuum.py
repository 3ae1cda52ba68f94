"""A raw scan load that only appends leaves the rows it already held where they are: the
checkpoint at close does not merge the table's row groups with the new day's (a vacuum that
rewrote about two row groups of history every day); a load that deleted rows, a replaced file,
lets the checkpoint vacuum them (pipelines/sources/scan_raw.py)."""

import json

import dagster as dg
import duckdb

from pipelines.ingest.azure import AzureResource
from pipelines.partitions import every_day
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.patch_operations.assets import raw_patch_operations

VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm{n}"


def write_operation(estate, day: str, n: int) -> None:
    path = estate / "azure" / "patch_operations" / f"assess-{day}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"resourceId": VM.format(n=n), "operation": "assessPatches",
                                "result": {"status": "Succeeded", "availablePatches": []}}))


def load(estate, database) -> None:
    result = dg.materialize(
        [raw_patch_operations],
        resources={"warehouse": WarehouseResource(database=str(database)),
                   "run_settings": RunSettings(estate_dir=str(estate)), "azure": AzureResource()},
        tags=every_day(),
    )
    assert result.success


def storage(database) -> tuple[dict[int, set], list[tuple]]:
    """The blocks of each row group of raw.patch_operations, and its rows by file."""
    with duckdb.connect(str(database), read_only=True) as conn:
        groups: dict[int, set] = {}
        for group, column, block in conn.execute(
                "SELECT row_group_id, column_id, block_id FROM pragma_storage_info('raw.patch_operations') "
                "WHERE block_id >= 0").fetchall():
            groups.setdefault(group, set()).add((column, block))
        rows = conn.execute("SELECT source_file, resourceId FROM raw.patch_operations ORDER BY ALL").fetchall()
    return groups, rows


def test_appending_keeps_the_row_groups_held_a_replaced_file_is_vacuumed(tmp_path):
    estate, database = tmp_path / "estate", tmp_path / "w.duckdb"
    write_operation(estate, "2026-11-20", 1)
    load(estate, database)
    first, _ = storage(database)
    assert len(first) == 1

    write_operation(estate, "2026-11-21", 2)
    load(estate, database)
    appended, rows = storage(database)
    # The first day's row group kept, block for block; the new day's row in a second one.
    assert len(appended) == 2 and appended[0] == first[0]
    assert rows == [("azure/patch_operations/assess-2026-11-20.json", VM.format(n=1)),
                    ("azure/patch_operations/assess-2026-11-21.json", VM.format(n=2))]

    write_operation(estate, "2026-11-20", 3)  # changed bytes: its row is deleted and read again
    load(estate, database)
    vacuumed, rows = storage(database)
    # The deleted row's group dropped and the two others merged: one row group of two rows.
    assert len(vacuumed) == 1
    assert rows == [("azure/patch_operations/assess-2026-11-20.json", VM.format(n=3)),
                    ("azure/patch_operations/assess-2026-11-21.json", VM.format(n=2))]
