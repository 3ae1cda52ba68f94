"""KEV raw asset: every catalog snapshot in the estate, and its check."""

import dagster as dg

from assets.common import STAGE3_BULLETINS, key, warehouse_asset
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.bulletins import channel_files, channel_folder, ingest_snapshots
from pipelines.sources.bulletins.resource import ChannelEndpoint
from pipelines.sources.kev import kev_files
from pipelines.sources.kev.live import fetch_catalog
from pipelines.sources.kev.reader import read_kev
from pipelines.warehouse import row_count, table_metadata, transaction

KEV_DDL = """
CREATE TABLE IF NOT EXISTS raw.kev_vulnerabilities (
    catalog_version VARCHAR, date_released TIMESTAMPTZ, catalog_count BIGINT, cve VARCHAR,
    vendor_project VARCHAR, product VARCHAR, vulnerability_name VARCHAR, date_added DATE,
    short_description VARCHAR, required_action VARCHAR, due_date DATE,
    known_ransomware_campaign_use VARCHAR, notes VARCHAR, cwes VARCHAR[],
    source_file VARCHAR, source_sha256 VARCHAR, ingest_run VARCHAR
)
"""


def kev_catalog_not_empty(files: list, rows: int) -> dg.AssetCheckResult:
    """When a KEV file is in the estate, the KEV table holds entries."""
    return dg.AssetCheckResult(
        check_name="kev_catalog_not_empty",
        passed=not files or rows > 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"kev_files": len(files), "rows": rows},
    )


@warehouse_asset(
    key=key("raw.kev_vulnerabilities"),
    group_name=STAGE3_BULLETINS,
    kinds={"duckdb", "python"},
    # Evaluated in this step, on the files it read and its connection.
    check_specs=[dg.AssetCheckSpec("kev_catalog_not_empty", asset=key("raw.kev_vulnerabilities"),
                                   description=kev_catalog_not_empty.__doc__)],
)
def kev_vulnerabilities(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings,
    kev_feed: ChannelEndpoint,
) -> dg.MaterializeResult:
    """CISA Known Exploited Vulnerabilities, every catalog snapshot read from
    <estate>/bulletins/kev/ (JSON feed or CSV; fetched first from PATCHLEDGER_KEV_URL in live
    mode): one row per snapshot and CVE, text trimmed, cwes as a list, snapshot dated by
    catalogVersion / dateReleased."""
    live = run_settings.source == "azure"
    if live:
        with kev_feed.client() as client:
            fetched = fetch_catalog(client, channel_folder(run_settings, "kev"))
        context.log.info(f"KEV: {'fetched ' + fetched.name if fetched else 'feed not modified'}")
    folder, files = channel_files(run_settings, "kev", kev_files)
    if not files:
        context.log.warning(f"No KEV catalog in {folder}: KEV flags will be false.")
    with warehouse.get_connection() as conn, transaction(conn):
        conn.execute(KEV_DDL)
        ingest_snapshots(context, conn, run_settings, "kev", "raw.kev_vulnerabilities",
                         "catalog_version", files, read_kev, live_fetch=live)
        return dg.MaterializeResult(
            metadata=table_metadata(conn, "raw.kev_vulnerabilities"),
            check_results=[kev_catalog_not_empty(files, row_count(conn, "raw.kev_vulnerabilities"))])
