"""Raw asset of the assessPatches / installPatches results, as received."""

from pipelines.sources.patch_operations.reader import load_patch_operations
from pipelines.sources.scan_raw import raw_scan_table

raw_patch_operations = raw_scan_table(
    "raw.patch_operations",
    "assessPatches / installPatches results from azure/patch_operations/*.json, as received.",
    load_patch_operations,
)
