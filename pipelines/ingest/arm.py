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


def resource_rows(path: Path, lists: tuple[str, ...] = ("value", "data")) -> str:
    """A SELECT of one JSON value `v` per resource of the file $path: the elements of a bare
    array, or of the first of `lists` present in the top-level object."""
    size = max_object_size(path)
    if json_top_level(path) == "[":
        return f"SELECT json AS v FROM read_json_objects($path, format='array', maximum_object_size={size})"
    spec = ", ".join(f"'{name}': 'JSON[]'" for name in lists)
    return (f"SELECT unnest(coalesce({', '.join(lists)})) AS v FROM read_json($path, "
            f"columns={{{spec}}}, maximum_object_size={size})")


def load_resource_files(
    conn: duckdb.DuckDBPyConnection,
    files: list[Path],
    estate_dir: Path,
    table: str,
    columns: dict[str, str],
    fields: str,
    checks: list[Check],
    ingest_run: str,
    full_reload: bool = False,
    lists: tuple[str, ...] = ("value", "data"),
) -> IngestStats:
    """New or changed `files` of JSON resources into `table` (`columns`), one row per resource
    (`fields`: the SELECT list over `v`); each file then passes `checks` (bulk.require)."""
    todo, stats = plan_ingest(conn, table, columns, files, estate_dir, full_reload)
    for item in todo:
        check_text_file(item.path, relative_name(item.path, estate_dir))
        select = f"SELECT {fields} FROM ({resource_rows(item.path, lists)})"
        stats.rows += insert_file(conn, table, select, item.path, estate_dir, ingest_run, item.sha256)
        require(conn, table, item.path, estate_dir, checks)
    return stats


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
    per resource (ARM_RESOURCE_COLUMNS)."""
    files = folder_files(estate_dir, folder)
    fields = ", ".join(f"v->>'{c}'" if t == "VARCHAR" else f"v->'{c}'" for c, t in ARM_RESOURCE_COLUMNS.items())
    stats = load_resource_files(conn, files, estate_dir, table, ARM_RESOURCE_COLUMNS, fields, checks,
                                ingest_run, full_reload)
    if not files:
        create_table(conn, table, ARM_RESOURCE_COLUMNS)
        warn_missing(log, what, estate_dir.joinpath(*folder))
    return stats
