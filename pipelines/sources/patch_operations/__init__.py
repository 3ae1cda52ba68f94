"""Patch operations: assessPatches / installPatches results of single machines (data-sources.md
section 6).

Layout (docs/estate.md): `azure/patch_operations/*.json`, each {"resourceId", "operation":
"assessPatches" | "installPatches", "result"} or an array of them.

Contract: `raw.patch_operations` (PATCH_OPERATION_COLUMNS + provenance), read by
sql/obs_*.sql. The raw asset lives in assets/monitoring.py; live mode runs assessPatches only on
request (live.py) and never installPatches.
"""

PATCH_OPERATION_COLUMNS = {"resourceId": "VARCHAR", "operation": "VARCHAR", "result": "JSON"}
PATCH_OPERATIONS = ("assessPatches", "installPatches")
FOLDER = ("azure", "patch_operations")
