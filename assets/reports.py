"""The evidence pack: the compliance report read from the marts."""

from pathlib import Path

import dagster as dg

from assets.common import EVIDENCE, key, warehouse_asset
from pipelines.reporting import POPULATIONS, write_reports
from pipelines.resources import RunSettings, WarehouseResource


@warehouse_asset(
    key=key("reports.compliance_report"),
    group_name=EVIDENCE,
    kinds={"html", "pdf"},
    # Every table the pack reads, so that a run writes it last.
    deps=[key(table) for table, _ in POPULATIONS.values()]
    + [key("marts.patch_catalog"), key("staging.sla_policy"), key("ledger.authorization_events")]
    + [key("marts.azure_population_counts")],
)
def compliance_report(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """The compliance report for the evaluation date: HTML with charts, its PDF, the gap
    population as CSV, and a manifest of SHA-256 hashes (written to <reports>/<as-of>/)."""
    with warehouse.get_connection() as conn:
        written = write_reports(conn, Path(run_settings.reports_dir), run_settings.as_of_date())
    html = next(p for p in written if p.suffix == ".html")
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(html)),
            "files": dg.MetadataValue.json(sorted(p.name for p in written)),
        }
    )
