"""The analysts' copy of the warehouse: a read-only snapshot replaced after each successful run.

DuckDB lets one process write a file, and a reader that holds it (a notebook, a BI tool)
makes the next run wait and fail. Analysts open the published copy instead
(settings.published_path(), `warehouse-read.duckdb` beside the warehouse): the run checkpoints
the live file, copies it beside the copy and renames it over the copy. A rename never waits for
a reader: a session already open keeps reading the snapshot it opened, the next one opens the
new file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb


def publish_warehouse(conn: duckdb.DuckDBPyConnection, live: Path, target: Path) -> Path:
    """Copy the live warehouse (held by `conn`, the run's one writer) to `target` atomically."""
    conn.execute("CHECKPOINT")  # everything in the file itself, nothing left in the WAL
    partial = target.with_name(f".{target.name}.partial")
    try:
        shutil.copyfile(live, partial)
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
