"""EPSS raw asset: every daily score file in the estate."""

from datetime import UTC, datetime

import dagster as dg

from assets.common import STAGE3_BULLETINS, key, warehouse_asset
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.bulletins import channel_files, channel_folder, ingest_snapshots
from pipelines.sources.bulletins.resource import ChannelEndpoint
from pipelines.sources.epss import epss_files
from pipelines.sources.epss.live import fetch_daily
from pipelines.sources.epss.reader import read_epss
from pipelines.warehouse import table_metadata, transaction

EPSS_DDL = """
CREATE TABLE IF NOT EXISTS raw.epss_scores (
    cve VARCHAR, epss DOUBLE, percentile DOUBLE, model_version VARCHAR, score_date DATE,
    source_file VARCHAR, source_sha256 VARCHAR, ingest_run VARCHAR
)
"""


@warehouse_asset(
    key=key("raw.epss_scores"),
    group_name=STAGE3_BULLETINS,
    kinds={"duckdb", "sql"},
)
def epss_scores(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings,
    epss_feed: ChannelEndpoint,
) -> dg.MaterializeResult:
    """FIRST EPSS daily scores from <estate>/bulletins/epss/epss_scores-YYYY-MM-DD.csv.gz (the
    newest day fetched first from PATCHLEDGER_EPSS_URL in live mode): one row per score date and
    CVE, with the model version from the file's comment line."""
    live = run_settings.source == "azure"
    if live:
        with epss_feed.client() as client:
            fetched = fetch_daily(client, channel_folder(run_settings, "epss"), datetime.now(UTC).date())
        context.log.info(f"EPSS: {'fetched ' + fetched.name if fetched else 'no newer daily file'}")
    folder, files = channel_files(run_settings, "epss", epss_files)
    if not files:
        context.log.warning(f"No EPSS files in {folder}: EPSS scores will be NULL.")
    with warehouse.get_connection() as conn, transaction(conn):
        conn.execute(EPSS_DDL)
        ingest_snapshots(context, conn, run_settings, "epss", "raw.epss_scores", "score_date",
                         files, read_epss, live_fetch=live)
        return dg.MaterializeResult(
            metadata=table_metadata(conn, "raw.epss_scores", order_by="score_date DESC, cve")
        )
