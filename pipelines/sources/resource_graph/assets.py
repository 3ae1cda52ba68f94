"""Raw assets of the Resource Graph scan tables (patchassessmentresources,
patchinstallationresources), as received."""

from pipelines.sources.resource_graph.reader import load_resource_graph
from pipelines.sources.scan_raw import raw_scan_table


def _resource_graph(arg_table: str):
    return lambda conn, estate, table, run, log, full_reload=False: load_resource_graph(
        conn, estate, arg_table, table, run, log, full_reload=full_reload
    )


raw_patch_assessment_resources = raw_scan_table(
    "raw.patch_assessment_resources",
    "Resource Graph patchassessmentresources rows (assessment results and their\n"
    "softwarepatches) from azure/resource_graph/patchassessmentresources*.json, as received.",
    _resource_graph("patchassessmentresources"),
)

raw_patch_installation_resources = raw_scan_table(
    "raw.patch_installation_resources",
    "Resource Graph patchinstallationresources rows (installation runs and their\n"
    "softwarepatches) from azure/resource_graph/patchinstallationresources*.json, as received.",
    _resource_graph("patchinstallationresources"),
)
