"""Vulnrichment raw asset: CISA's SSVC decision points per CVE."""

from typing import Any

import dagster as dg
import duckdb

from assets.common import STAGE3_BULLETINS, key, warehouse_asset
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.bulletins import (
    PROVENANCE_COLUMNS,
    channel_files,
    channel_folder,
    ensure_table,
    log_ingest,
    replace_rows,
    unread_files,
)
from pipelines.sources.bulletins.resource import ChannelEndpoint
from pipelines.sources.vulnrichment import SCHEMA, record_files
from pipelines.sources.vulnrichment.live import fetch_records
from pipelines.sources.vulnrichment.reader import parse_record, to_arrow
from pipelines.warehouse import read_sql, table_exists, table_metadata, transaction

VULNRICHMENT_TABLE = "raw.vulnrichment_ssvc"
_VULNRICHMENT_DESCRIPTION = (
    "CISA Vulnrichment SSVC decision points per CVE, from the CVE JSON 5 records under "
    "<estate>/bulletins/vulnrichment/ (<year>/<n>xxx/CVE-....json, as the cisagov/vulnrichment "
    "repository lays them out): one row per CVE (the record read last replaces the previous "
    "one), with the record's state and update time, the CISA ADP container's update time and "
    "the SSVC options Exploitation (none, poc, active), Automatable (yes, no) and Technical "
    "Impact (partial, total); NULL when the record carries no CISA SSVC decision."
)
# The channels whose CVEs live mode asks about.
_CVE_SOURCES = ("raw.msrc_vulnerabilities", "raw.osv_advisories", "raw.kev_vulnerabilities")


def ensure_vulnrichment_table(conn: duckdb.DuckDBPyConnection) -> None:
    ensure_table(conn, VULNRICHMENT_TABLE, SCHEMA, _VULNRICHMENT_DESCRIPTION)


@warehouse_asset(
    key=key(VULNRICHMENT_TABLE),
    group_name=STAGE3_BULLETINS,
    kinds={"duckdb", "python"},
    # Live mode asks about the CVEs the other channels name.
    deps=[key(t) for t in _CVE_SOURCES],
    description=_VULNRICHMENT_DESCRIPTION,
)
def vulnrichment_ssvc(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings,
    vulnrichment_feed: ChannelEndpoint,
) -> dg.MaterializeResult:
    live = run_settings.source == "azure"
    if live:
        with warehouse.get_connection() as conn:
            wanted = (
                [r[0] for r in conn.execute(read_sql("bulletin_vulnrichment_cves")).fetchall()]
                if all(table_exists(conn, t) for t in _CVE_SOURCES)
                else []
            )
        with vulnrichment_feed.client() as client:
            counts = fetch_records(client, wanted, channel_folder(run_settings, "vulnrichment"))
        context.log.info(f"Vulnrichment: {len(wanted)} CVEs asked: {counts}")
    folder, files = channel_files(run_settings, "vulnrichment", record_files)
    if not files:
        context.log.warning(
            f"No Vulnrichment records in {folder}: BOD 26-04 uses the policy defaults for every CVE."
        )
    with warehouse.get_connection() as conn, transaction(conn):
        ensure_vulnrichment_table(conn)
        unread, skipped = unread_files(conn, VULNRICHMENT_TABLE, files, run_settings, context.run.run_id)
        chosen: dict[str, dict[str, Any]] = {}
        for _, data, provenance in unread:
            row = parse_record(data, provenance["source_file"])
            chosen[row["cve"]] = {**row, **provenance}
        if chosen:
            replace_rows(conn, {VULNRICHMENT_TABLE: to_arrow(list(chosen.values()), PROVENANCE_COLUMNS)}, "cve",
                         list(chosen))
        log_ingest(
            conn, "vulnrichment", context.run.run_id, files_seen=len(files), files_skipped=skipped,
            documents_ingested=len(chosen), live_fetch=live,
        )
        metadata = table_metadata(conn, VULNRICHMENT_TABLE, order_by="cve")
    metadata["ingested_records"] = dg.MetadataValue.int(len(chosen))
    metadata["unchanged_files_skipped"] = dg.MetadataValue.int(skipped)
    return dg.MaterializeResult(metadata=metadata)
