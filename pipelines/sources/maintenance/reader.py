"""Offline loader of estate/azure/maintenance/*.json into raw.maintenance_resources."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from pipelines.ingest.arm import ARM_RESOURCE_COLUMNS, load_arm_folder
from pipelines.ingest.files import IngestStats

FOLDER = ("azure", "maintenance")
COLUMNS = ARM_RESOURCE_COLUMNS

# (field, SQL true for a bad row, SQL giving the offending value, reason): pipelines.ingest.bulk.require.
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
) -> IngestStats:
    """New or changed files of azure/maintenance/ into `table`, one row per resource."""
    return load_arm_folder(conn, estate_dir, FOLDER, table, CHECKS, "Maintenance configurations",
                           ingest_run, log, full_reload)
