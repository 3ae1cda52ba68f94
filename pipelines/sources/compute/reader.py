"""Offline loader of the VM inventory snapshots into raw.virtual_machines.

Each snapshot is one file: a changed file replaces its own rows, earlier snapshots stay (the
configuration history is built from them). The files are small exact API answers, so any
problem fails the load (file, row, field); the same VM id listed twice with different content
is an error (which copy is true is unknown), identical duplicates load.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from pipelines.ingest.arm import load_resource_files
from pipelines.ingest.bulk import warn_missing
from pipelines.ingest.errors import SourceFileError
from pipelines.ingest.files import IngestStats, create_table, folder_files, relative_name

from . import VIRTUAL_MACHINE_COLUMNS, VM_SNAPSHOT_DIR, VM_SNAPSHOT_NAME

VIRTUAL_MACHINE_CHECKS = [
    ("id", "id IS NULL OR trim(id) = ''", "id", "a VM needs an 'id'"),
    ("id", "json_type(resource->'id') <> 'VARCHAR'", "resource->'id'", "must be a string"),
    ("name", "json_type(resource->'name') NOT IN ('VARCHAR', 'NULL')", "resource->'name'",
     "must be a string"),
    # The same machine twice in one snapshot with different content: which copy is true is unknown.
    ("id", "count(DISTINCT resource::VARCHAR) OVER (PARTITION BY source_file, lower(id)) > 1", "id",
     "listed more than once with different content"),
]


def virtual_machine_files(estate_dir: Path) -> list[Path]:
    """The undated snapshot (if any) and every dated one; a file in the snapshot folder without
    the capture time in its name is an error (its place in the history would be unknown)."""
    files = [p for p in [estate_dir / "azure" / "virtual_machines.json"] if p.is_file()]
    for path in folder_files(estate_dir, VM_SNAPSHOT_DIR):
        if not VM_SNAPSHOT_NAME.fullmatch(path.name):
            raise SourceFileError(
                f"{relative_name(path, estate_dir)}: a dated inventory snapshot is named "
                "virtual_machines-YYYYMMDDTHHMMSSZ.json (capture time in UTC)"
            )
        files.append(path)
    return files


def load_virtual_machines(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    table: str,
    ingest_run: str,
    log: logging.Logger | None = None,
    full_reload: bool = False,
) -> IngestStats:
    """`azure/virtual_machines.json` and the dated `azure/virtual_machines/*.json` snapshots:
    `az vm list --show-details` (array) or an ARM list body."""
    files = virtual_machine_files(estate_dir)
    if not files:
        create_table(conn, table, VIRTUAL_MACHINE_COLUMNS)
        warn_missing(log, "VM inventory (azure/virtual_machines.json)", estate_dir / "azure")
        return IngestStats(full_reload=True)
    # `az vm list` prints an array; an ARM list body holds the machines in `value`.
    return load_resource_files(conn, files, estate_dir, table, VIRTUAL_MACHINE_COLUMNS,
                               "v->>'id', v->>'name', v", VIRTUAL_MACHINE_CHECKS, ingest_run, full_reload,
                               lists=("value",))
