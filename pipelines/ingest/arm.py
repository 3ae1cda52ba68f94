"""A folder of ARM resources into a raw table, one row per resource (the backup and maintenance
sources use it): ARM list bodies {"value": [...]}, `az graph query` output {"data": [...]} or
bare arrays."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb

from pipelines.ingest.bulk import (
    DOCUMENT_BATCH_BYTES,
    Check,
    batches,
    bulk_insert,
    by_shape,
    count_rows,
    many_and_one,
    max_size,
    require_bulk,
    warn_missing,
)
from pipelines.ingest.files import (
    IngestStats,
    create_table,
    folder_files,
    plan_ingest,
)

ARM_RESOURCE_COLUMNS = {"id": "VARCHAR", "name": "VARCHAR", "type": "VARCHAR", "location": "VARCHAR",
                        "properties": "JSON"}


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
    (`fields`: the SELECT list over `v`), every file of one JSON shape in one statement; the new
    rows then pass `checks` (bulk.require_bulk: file, row and field of the first failure)."""
    todo, stats = plan_ingest(conn, table, columns, files, estate_dir, full_reload)
    if not todo:
        return stats
    before = count_rows(conn, table)
    for shape, group in by_shape(todo).items():
        size = max_size(group)
        if shape == "[":
            rows = f"SELECT json AS v@FN@ FROM read_json_objects(@SRC@, format='array', maximum_object_size={size}@OPTS@)"
            many, one = many_and_one(f"SELECT {fields}@FN@ FROM ({rows})")
            bulk_insert(conn, table, many, one, group, ingest_run)
            continue
        # List bodies are parsed into a temporary table first and unnested from it: several
        # times faster than unnesting straight out of read_json (pipelines/ingest/bulk.py).
        spec = ", ".join(f"'{name}': 'JSON[]'" for name in lists)
        rows = (f"SELECT unnest(coalesce({', '.join(lists)})) AS v@FN@ FROM read_json(@SRC@, "
                f"columns={{{spec}}}, maximum_object_size={size}@OPTS@)")
        many, one = many_and_one(f"SELECT {fields}@FN@ FROM ({rows})")
        documents, _ = many_and_one(f"SELECT * FROM read_json(@SRC@, columns={{{spec}}}, maximum_object_size={size}@OPTS@)")
        for batch in batches(group, DOCUMENT_BATCH_BYTES):
            bulk_insert(conn, table, f"SELECT {fields}, filename FROM (SELECT unnest(coalesce({', '.join(lists)})) AS v, "
                        "filename FROM documents)", one, batch, ingest_run, documents=documents)
        conn.execute("DROP TABLE IF EXISTS documents")
    require_bulk(conn, table, todo, estate_dir, checks)
    stats.rows = count_rows(conn, table) - before
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
    # Each resource parsed once into the columns (a field of another JSON type reads as with
    # ->> / ->: its JSON text, or NULL), not once per column.
    fields = f"unnest(json_transform(v, '{json.dumps(ARM_RESOURCE_COLUMNS)}'))"
    stats = load_resource_files(conn, files, estate_dir, table, ARM_RESOURCE_COLUMNS, fields, checks,
                                ingest_run, full_reload)
    if not files:
        create_table(conn, table, ARM_RESOURCE_COLUMNS)
        warn_missing(log, what, estate_dir.joinpath(*folder))
    return stats
