"""Log Analytics: the Update, UpdateSummary and UpdateRunProgress tables (data-sources.md
section 4).

Layout (docs/estate.md): `log_analytics/<Table>*.csv|json`, the name starting with the table
name (so `Update*` does not pick up `UpdateSummary*`); each a portal CSV export, `az monitor
log-analytics query -o json` output or the query API body {"tables": [...]}.

Contracts: `raw.la_update`, `raw.la_update_summary`, `raw.la_update_run_progress` (the
documented columns below, typed, + provenance) and their rows in `raw.quarantine`. Extension
points: TABLES (a further table is its column list and required columns), VOCABULARIES, and the
server-side query in live.LOG_ANALYTICS_QUERIES. The raw assets live in assets/monitoring.py.
"""

import re

FOLDER = ("log_analytics",)

# raw table -> Log Analytics table.
RAW_TABLES = {
    "raw.la_update": "Update",
    "raw.la_update_summary": "UpdateSummary",
    "raw.la_update_run_progress": "UpdateRunProgress",
}

_IDENTITY = {
    "Computer": "string",
    "ComputerEnvironment": "string",
    "SourceComputerId": "string",
    "VMUUID": "string",
    "ResourceId": "string",
    "_ResourceId": "string",
    "SubscriptionId": "string",
    "ResourceGroup": "string",
    "ResourceProvider": "string",
    "Resource": "string",
    "ResourceType": "string",
    "ManagementGroupName": "string",
}

# Column name -> Log Analytics type, per the table references (data-sources.md 4.1-4.3).
UPDATE_COLUMNS = {
    "TimeGenerated": "datetime",
    **_IDENTITY,
    "OSType": "string",
    "OSName": "string",
    "OSVersion": "string",
    "OSFullName": "string",
    "UpdateID": "string",
    "RevisionNumber": "string",
    "Title": "string",
    "KBID": "string",
    "Classification": "string",
    "MSRCSeverity": "string",
    "MSRCBulletinID": "string",
    "BulletinID": "string",
    "BulletinUrl": "string",
    "CVENumbers": "string",
    "PublishedDate": "datetime",
    "UpdateState": "string",
    "Approved": "bool",
    "ApprovalSource": "string",
    "Optional": "bool",
    "RebootBehavior": "string",
    "InstallTimeAvailable": "bool",
    "InstallTimePredictionSeconds": "real",
    "InstallTimeDeviationRangeSeconds": "real",
    "Product": "string",
    "ProductVersion": "string",
    "ProductArch": "string",
    "PackageRepository": "string",
    "PackageSeverity": "string",
    "SourceSystem": "string",
    "Type": "string",
}

UPDATE_SUMMARY_COLUMNS = {
    "TimeGenerated": "datetime",
    **_IDENTITY,
    "OsVersion": "string",
    "CriticalUpdatesMissing": "int",
    "SecurityUpdatesMissing": "int",
    "OtherUpdatesMissing": "int",
    "TotalUpdatesMissing": "int",
    "OldestMissingSecurityUpdateInDays": "int",
    "OldestMissingSecurityUpdateBucket": "string",
    "RestartPending": "bool",
    "WindowsUpdateSetting": "string",
    "WindowsUpdateAgentVersion": "string",
    "WSUSServer": "string",
    "NETRuntimeVersion": "string",
    "SourceSystem": "string",
    "Type": "string",
}

UPDATE_RUN_PROGRESS_COLUMNS = {
    "TimeGenerated": "datetime",
    "StartTime": "datetime",
    "EndTime": "datetime",
    "UpdateRunName": "string",
    "CorrelationId": "string",
    **_IDENTITY,
    "OSType": "string",
    "KBID": "string",
    "Title": "string",
    "Product": "string",
    "UpdateId": "string",
    "InstallationStatus": "string",
    "ErrorResult": "string",
    "SucceededOnRetry": "bool",
    "SourceSystem": "string",
    "Type": "string",
}

# Log Analytics table -> (columns, columns a file must have).
TABLES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "Update": (UPDATE_COLUMNS, ("TimeGenerated", "Computer", "UpdateState")),
    "UpdateSummary": (UPDATE_SUMMARY_COLUMNS, ("TimeGenerated", "Computer")),
    "UpdateRunProgress": (
        UPDATE_RUN_PROGRESS_COLUMNS,
        ("TimeGenerated", "Computer", "InstallationStatus"),
    ),
}

DUCKDB_TYPES = {
    "datetime": "TIMESTAMPTZ",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "int": "BIGINT",
    "real": "DOUBLE",
}

# The portal's display format, with and without milliseconds.
PORTAL_DATETIME_FORMATS = ["%m/%d/%Y, %I:%M:%S.%g %p", "%m/%d/%Y, %I:%M:%S %p"]

# Longest CSV line read (a 5 MB title is legal).
MAX_LINE_SIZE = 64 * 2**20

# Columns that must hold a value, and the documented vocabularies (compared case-insensitively,
# ignoring spaces), per table. InstallationStatus also accepts Installed and Pending, which Azure
# Update Manager-derived exports (and the demo estate) write.
REQUIRED_VALUES = ("TimeGenerated", "Computer")
VOCABULARIES: dict[str, dict[str, tuple[str, ...]]] = {
    "Update": {"UpdateState": ("Needed", "Installed", "Not needed")},
    "UpdateRunProgress": {
        "InstallationStatus": (
            "NotStarted", "InProgress", "Succeeded", "SucceededOnRetry", "Failed", "InstallFailed",
            "MaintenanceWindowExceeded", "NotIncluded", "Excluded", "Installed", "Pending",
        )
    },
}

UTC_SUFFIX = re.compile(r"\s*\[UTC\]\s*$", re.IGNORECASE)
