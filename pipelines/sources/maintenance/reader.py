"""Offline loader of estate/azure/maintenance/*.json into raw.maintenance_resources."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from pipelines.connectors.azure_files import (
    _insert,
    _require,
    _warn_missing,
    check_text_file,
    create_table,
    json_top_level,
    max_object_size,
    plan_ingest,
    relative_name,
)

FOLDER = ("azure", "maintenance")
COLUMNS = {"id": "VARCHAR", "name": "VARCHAR", "type": "VARCHAR", "location": "VARCHAR", "properties": "JSON"}

# (field, SQL true for a bad row, SQL giving the offending value, reason): azure_files._require.
CHECKS = [
    ("id", "id IS NULL OR trim(id) = ''", "id", "a maintenance resource needs an 'id'"),
    ("type", "type IS NULL OR NOT starts_with(lower(type), 'microsoft.maintenance/')", "type",
     "not a Microsoft.Maintenance resource type"),
    ("properties", "properties IS NULL OR json_type(properties) <> 'OBJECT'", "properties",
     "must be an object"),
    ("properties.maintenanceConfigurationId",
     "lower(type) = 'microsoft.maintenance/configurationassignments' "
     "AND nullif(trim(properties->>'maintenanceConfigurationId'), '') IS NULL",
     "properties->>'maintenanceConfigurationId'", "an assignment names its maintenance configuration"),
    ("properties.maintenanceScope",
     "lower(type) = 'microsoft.maintenance/maintenanceconfigurations' "
     "AND nullif(trim(properties->>'maintenanceScope'), '') IS NULL",
     "properties->>'maintenanceScope'", "a maintenance configuration has a maintenanceScope"),
]


def maintenance_files(estate_dir: Path) -> list[Path]:
    folder = estate_dir.joinpath(*FOLDER)
    return sorted(p for p in folder.glob("*.json") if p.is_file())


def load_maintenance(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    table: str,
    ingest_run: str,
    log: logging.Logger | None = None,
    full_reload: bool = False,
) -> int:
    """New or changed files of azure/maintenance/ into `table`, one row per resource."""
    files = maintenance_files(estate_dir)
    todo = plan_ingest(conn, table, COLUMNS, files, estate_dir, full_reload)
    if not files:
        create_table(conn, table, COLUMNS)
        _warn_missing(log, "Maintenance configurations", estate_dir.joinpath(*FOLDER))
        return 0
    count = 0
    fields = ", ".join(f"v->>'{c}'" if t == "VARCHAR" else f"v->'{c}'" for c, t in COLUMNS.items())
    for item in todo:
        path = item.path
        check_text_file(path, relative_name(path, estate_dir))
        size = max_object_size(path)
        if json_top_level(path) == "[":
            rows = f"SELECT json AS v FROM read_json_objects($path, format='array', maximum_object_size={size})"
        else:
            # ARM list body {"value": [...]} or az graph query output {"data": [...]}.
            rows = (
                "SELECT unnest(coalesce(value, data)) AS v FROM read_json($path, "
                f"columns={{'value': 'JSON[]', 'data': 'JSON[]'}}, maximum_object_size={size})"
            )
        count += _insert(conn, table, f"SELECT {fields} FROM ({rows})", path, estate_dir, ingest_run, item.sha256)
        _require(conn, table, path, estate_dir, CHECKS)
    return count
