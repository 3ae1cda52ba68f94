"""Azure Resource Graph: patch assessment and installation results (data-sources.md section 5).

Layout (docs/estate.md): `azure/resource_graph/patchassessmentresources*.json` and
`patchinstallationresources*.json`, each `az graph query` output ({"data": [...]}, with Azure's
`totalRecords` when known; live captures also `count` and `subscriptions`) or a bare JSON array.

Contracts: the raw tables `raw.patch_assessment_resources` / `raw.patch_installation_resources`
(RESOURCE_GRAPH_COLUMNS + provenance) that sql/obs_*.sql and sql/patch_observations.sql read.
Extension points: RESOURCE_GRAPH_TABLES / RAW_TABLES (a further Resource Graph table is one entry
plus its checks in reader.resource_graph_checks); the raw asset definitions live in
assets/monitoring.py.
"""

# Resource Graph row columns (data-sources.md section 5); the rest are blank for these tables.
RESOURCE_GRAPH_COLUMNS = {
    "id": "VARCHAR",
    "name": "VARCHAR",
    "type": "VARCHAR",
    "tenantId": "VARCHAR",
    "location": "VARCHAR",
    "resourceGroup": "VARCHAR",
    "subscriptionId": "VARCHAR",
    "properties": "JSON",
}

RESOURCE_GRAPH_TABLES = ("patchassessmentresources", "patchinstallationresources")
FOLDER = ("azure", "resource_graph")

# raw table -> the Resource Graph table it holds.
RAW_TABLES = {
    "raw.patch_assessment_resources": "patchassessmentresources",
    "raw.patch_installation_resources": "patchinstallationresources",
}

# Documented enumerations (data-sources.md 5 and 6, shared with the patch operation results),
# compared case-insensitively.
RUN_STATUSES = ("Unknown", "NotStarted", "InProgress", "Failed", "Succeeded", "CompletedWithWarnings")
INSTALLATION_STATES = ("Unknown", "Installed", "Failed", "Pending", "NotSelected", "Excluded")
ASSESSMENT_STATES = ("Unknown", "Available")
