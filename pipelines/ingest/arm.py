"""A folder of ARM resources into a raw table, one row per resource (the backup and maintenance
sources use it): ARM list bodies {"value": [...]}, `az graph query` output {"data": [...]} or
bare arrays."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from pipelines.ingest.bulk import Check, insert_file, require, warn_missing
from pipelines.ingest.files import (
    IngestStats,
    check_text_file,
    create_table,
    folder_files,
    json_top_level,
    max_object_size,
    plan_ingest,
    relative_name,
)

ARM_RESOURCE_COLUMNS = {"id": "VARCHAR", "name": "VARCHAR", "type": "VARCHAR", "location": "VARCHAR",
                        "properties": "JSON"}


def load_arm_folder(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    folder: tuple[str, ...],
    table: str,
    checks: list[Check],
    what: str,
    ingest_run: str,
    log: logging.Logger | None = None,
    full_reload: bool = False,
) -> IngestStats:
    """New or changed `*.json` files of an estate folder of ARM resources into `table`, one row
    per resource (ARM_RESOURCE_COLUMNS); each file then passes `checks` (bulk.require)."""
    files = folder_files(estate_dir, folder)
    todo, stats = plan_ingest(conn, table, ARM_RESOURCE_COLUMNS, files, estate_dir, full_reload)
    if not files:
        create_table(conn, table, ARM_RESOURCE_COLUMNS)
        warn_missing(log, what, estate_dir.joinpath(*folder))
        return stats
    fields = ", ".join(f"v->>'{c}'" if t == "VARCHAR" else f"v->'{c}'" for c, t in ARM_RESOURCE_COLUMNS.items())
    for item in todo:
        path = item.path
        check_text_file(path, relative_name(path, estate_dir))
        size = max_object_size(path)
        if json_top_level(path) == "[":
            rows = f"SELECT json AS v FROM read_json_objects($path, format='array', maximum_object_size={size})"
        else:
            rows = (
                "SELECT unnest(coalesce(value, data)) AS v FROM read_json($path, "
                f"columns={{'value': 'JSON[]', 'data': 'JSON[]'}}, maximum_object_size={size})"
            )
        stats.rows += insert_file(conn, table, f"SELECT {fields} FROM ({rows})", path, estate_dir, ingest_run,
                                  item.sha256)
        require(conn, table, path, estate_dir, checks)
    return stats
