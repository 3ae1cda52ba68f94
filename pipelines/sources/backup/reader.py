"""Offline loader of estate/azure/backup/*.json into raw.backup_resources."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from pipelines.ingest.arm import ARM_RESOURCE_COLUMNS, load_arm_folder
from pipelines.ingest.files import IngestStats

FOLDER = ("azure", "backup")
COLUMNS = ARM_RESOURCE_COLUMNS
PROTECTED_ITEM = "microsoft.recoveryservices/vaults/backupfabrics/protectioncontainers/protecteditems"
TYPES = (
    PROTECTED_ITEM,
    PROTECTED_ITEM + "/recoverypoints",
    "microsoft.recoveryservices/vaults/backuppolicies",
    "microsoft.compute/restorepointcollections",
    "microsoft.compute/restorepointcollections/restorepoints",
)
_TYPE_LIST = ", ".join(f"'{t}'" for t in TYPES)
_BAD_TIME = "({v} IS NOT NULL AND try_cast({v} AS TIMESTAMPTZ) IS NULL)"

# (field, SQL true for a bad row, SQL giving the offending value, reason): pipelines.ingest.bulk.require.
CHECKS = [
    ("id", "id IS NULL OR trim(id) = ''", "id", "a backup resource needs an 'id'"),
    ("type", f"type IS NULL OR lower(type) NOT IN ({_TYPE_LIST})", "type",
     "not a protected item, recovery point, backup policy, restore point collection or restore point"),
    ("properties", "properties IS NULL OR json_type(properties) <> 'OBJECT'", "properties", "must be an object"),
    ("properties.sourceResourceId",
     f"lower(type) = '{PROTECTED_ITEM}' AND properties->>'backupManagementType' = 'AzureIaasVM' "
     "AND nullif(trim(coalesce(properties->>'sourceResourceId', properties->>'virtualMachineId')), '') IS NULL",
     "properties->>'sourceResourceId'", "a protected VM names its machine (sourceResourceId or virtualMachineId)"),
    ("properties.lastBackupTime", _BAD_TIME.format(v="properties->>'lastBackupTime'"),
     "properties->>'lastBackupTime'", "not an ISO 8601 time"),
    ("properties.lastRecoveryPoint", _BAD_TIME.format(v="properties->>'lastRecoveryPoint'"),
     "properties->>'lastRecoveryPoint'", "not an ISO 8601 time"),
    ("properties.recoveryPointTime", _BAD_TIME.format(v="properties->>'recoveryPointTime'"),
     "properties->>'recoveryPointTime'", "not an ISO 8601 time"),
    ("properties.timeCreated", _BAD_TIME.format(v="properties->>'timeCreated'"),
     "properties->>'timeCreated'", "not an ISO 8601 time"),
]


def load_backup(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    table: str,
    ingest_run: str,
    log: logging.Logger | None = None,
    full_reload: bool = False,
) -> IngestStats:
    """New or changed files of azure/backup/ into `table`, one row per resource."""
    return load_arm_folder(conn, estate_dir, FOLDER, table, CHECKS, "Azure Backup and restore points",
                           ingest_run, log, full_reload)
