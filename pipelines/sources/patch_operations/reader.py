"""Offline loader of azure/patch_operations/*.json into raw.patch_operations: all new files of
one JSON shape in one DuckDB statement, then the row checks (file, row, field), which use the
Resource Graph vocabularies (the same Azure Update Manager enumerations)."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from pipelines.ingest.bulk import (
    bad_timestamp,
    bulk_insert,
    by_shape,
    columns_literal,
    count_rows,
    many_and_one,
    max_size,
    require_bulk,
    sql_in,
    warn_missing,
)
from pipelines.ingest.files import IngestStats, folder_files, plan_ingest
from pipelines.sources.resource_graph import ASSESSMENT_STATES, INSTALLATION_STATES, RUN_STATUSES

from . import FOLDER, PATCH_OPERATION_COLUMNS

_RESULT = "coalesce(result->'properties'->'output', result)"
_PATCHES = f"from_json(coalesce({_RESULT}->'availablePatches', {_RESULT}->'patches', '[]'), '[\"JSON\"]')"
PATCH_OPERATION_CHECKS = [
    ("resourceId", "resourceId IS NULL OR trim(resourceId) = ''", "resourceId",
     "an operation needs the VM's 'resourceId'"),
    ("operation", "operation IS NULL OR operation NOT IN ('assessPatches', 'installPatches')",
     "operation", "must be assessPatches or installPatches"),
    ("result", "result IS NULL OR json_type(result) <> 'OBJECT'", "result",
     "must be the operation's result object"),
    ("result.status", f"{_RESULT}->>'status' IS NOT NULL AND "
     f"lower({_RESULT}->>'status') NOT IN {sql_in(RUN_STATUSES)}", f"{_RESULT}->>'status'",
     "must be one of " + "/".join(RUN_STATUSES)),
    *(
        (f"result.{f}", bad_timestamp(f"{_RESULT}->>'{f}'"), f"{_RESULT}->>'{f}'",
         "not an ISO 8601 timestamp")
        for f in ("startDateTime", "lastModifiedDateTime")
    ),
    ("result.patches[].installationState",
     f"operation = 'installPatches' AND len(list_filter({_PATCHES}, lambda p: "
     f"p->>'installationState' IS NOT NULL AND "
     f"lower(p->>'installationState') NOT IN {sql_in(INSTALLATION_STATES)})) > 0",
     f"list_filter({_PATCHES}, lambda p: lower(p->>'installationState') NOT IN "
     f"{sql_in(INSTALLATION_STATES)})[1]->>'installationState'",
     "must be one of " + "/".join(INSTALLATION_STATES)),
    ("result.availablePatches[].assessmentState",
     f"operation = 'assessPatches' AND len(list_filter({_PATCHES}, lambda p: "
     f"p->>'assessmentState' IS NOT NULL AND "
     f"lower(p->>'assessmentState') NOT IN {sql_in(ASSESSMENT_STATES)})) > 0",
     f"list_filter({_PATCHES}, lambda p: lower(p->>'assessmentState') NOT IN "
     f"{sql_in(ASSESSMENT_STATES)})[1]->>'assessmentState'",
     "must be one of " + "/".join(ASSESSMENT_STATES)),
]


def patch_operation_files(estate_dir: Path) -> list[Path]:
    return folder_files(estate_dir, FOLDER)


def load_patch_operations(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    table: str,
    ingest_run: str,
    log: logging.Logger | None = None,
    full_reload: bool = False,
) -> IngestStats:
    """`azure/patch_operations/*.json`: {"resourceId", "operation", "result"} (one or an array)."""
    files = patch_operation_files(estate_dir)
    todo, stats = plan_ingest(conn, table, PATCH_OPERATION_COLUMNS, files, estate_dir, full_reload)
    if not files:
        warn_missing(log, "Patch operations", estate_dir.joinpath(*FOLDER))
        return stats
    if not todo:
        return stats
    columns = columns_literal(PATCH_OPERATION_COLUMNS)
    before = count_rows(conn, table)
    for shape, group in by_shape(todo).items():
        fmt = "array" if shape == "[" else "auto"
        select = (
            "SELECT resourceId, operation, result@FN@ FROM read_json(@SRC@, "
            f"format='{fmt}', columns={columns}, maximum_object_size={max_size(group)}@OPTS@)"
        )
        many, one = many_and_one(select)
        bulk_insert(conn, table, many, one, group, ingest_run)
    require_bulk(conn, table, todo, estate_dir, PATCH_OPERATION_CHECKS)
    stats.rows = count_rows(conn, table) - before
    return stats
