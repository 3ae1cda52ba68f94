"""The evidence pack: the compliance report read from the marts, and the month-end packs."""

import calendar
import os
from datetime import date
from pathlib import Path

import dagster as dg

from assets.common import EVIDENCE, key, warehouse_asset
from pipelines.ledger import LEDGER_REGISTERS
from pipelines.pastdate import load_scan_arrivals, rebuild_pack
from pipelines.reporting import POPULATIONS, write_reports
from pipelines.reporting.queries import CHART_TABLES
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.tables import sql_table_asset

# Scan files and register rows that arrived after the evaluation date for the days up to it.
late_arrivals = sql_table_asset("marts.late_arrivals", before=load_scan_arrivals,
                                order_by="kind, arrived_at, subject")


@warehouse_asset(
    key=key("reports.compliance_report"),
    group_name=EVIDENCE,
    kinds={"html", "pdf"},
    # Every table the pack reads, so that a run writes it last.
    deps=[key(table) for table, _ in POPULATIONS.values()]
    + [key("marts.patch_catalog"), key("staging.sla_policy"), key("ledger.authorization_events")]
    + [key("marts.azure_population_counts")]
    + [key(table) for table in sorted({t for tables in CHART_TABLES.values() for t in tables})],
)
def compliance_report(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """The compliance report for the evaluation date: HTML with charts, its PDF, the gap
    population as CSV, and a manifest of SHA-256 hashes (written to <reports>/<as-of>/).
    Refuses a date other than the marts' own (a pack is never relabelled)."""
    with warehouse.get_connection() as conn:
        written = write_reports(conn, Path(run_settings.reports_dir), run_settings.as_of_date(),
                                run_settings.known_by_time())
    html = next(p for p in written if p.suffix == ".html")
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(html)),
            "files": dg.MetadataValue.json(sorted(p.name for p in written)),
        }
    )


# One partition per month, from PATCHLEDGER_MONTHLY_PACKS_FROM (a month YYYY-MM, default 2026-01).
# Read when the definitions load, not through a resource: partitions are part of the definitions.
MONTHLY_PACKS = dg.MonthlyPartitionsDefinition(
    start_date=os.environ.get("PATCHLEDGER_MONTHLY_PACKS_FROM", "2026-01") + "-01"
)


def month_end(partition_key: str) -> date:
    """The last day of the partition's month (a partition key is the month's first day)."""
    first = date.fromisoformat(partition_key)
    return first.replace(day=calendar.monthrange(first.year, first.month)[1])


@warehouse_asset(
    key=key("reports.month_end_pack"),
    group_name=EVIDENCE,
    kinds={"html", "pdf"},
    partitions_def=MONTHLY_PACKS,
    # The first-recorded ledger it is judged on; everything else is rebuilt from the estate.
    deps=[key(f"ledger.{name}") for name in LEDGER_REGISTERS],
)
def month_end_pack(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """The evidence pack for the last day of the partition's month, rebuilt as of that day in a
    scratch warehouse from the estate and the first-recorded ledger (pipelines/pastdate.py), so
    that the pack for November is November's whenever it is written, and the same inputs give
    the same bytes. Written to <reports>/<month end>/; backfill past months from the UI."""
    as_of = month_end(context.partition_key)
    written = rebuild_pack(
        as_of,
        estate=Path(run_settings.estate_dir),
        warehouse=Path(warehouse.database),
        ledger_dir=Path(run_settings.ledger_path()),
        out_root=Path(run_settings.reports_dir),
    )
    html = next(p for p in written if p.suffix == ".html")
    return dg.MaterializeResult(
        metadata={
            "as_of": dg.MetadataValue.text(as_of.isoformat()),
            "report": dg.MetadataValue.path(str(html)),
            "files": dg.MetadataValue.json(sorted(str(p.relative_to(html.parent)) for p in written)),
        }
    )
