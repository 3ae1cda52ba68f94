"""The body every raw scan asset shares (Resource Graph, patch operations, Log Analytics): in live
mode refresh the estate from Azure first (`estate_for`), then load the new or changed files into
the raw table in one transaction, or, in lake mode, write them as Parquet (pipelines/lake.py);
the metadata counts the files read and skipped and the rows quarantined. The scan sources' raw
assets are in their folders (`resource_graph/assets.py`, `patch_operations/assets.py`,
`log_analytics/assets.py`); the time chain that reads them is stage code (assets/monitoring.py).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb

from pipelines.ingest.quarantine import QUARANTINE_DDL, quarantine_count
from pipelines.lake import Lake, current_lake
from pipelines.sources import estate_for, ingest_metadata
from pipelines.warehouse import table_metadata, transaction

# The raw tables of the scan sources: what staging.patch_observations is built from.
RAW_SCAN_TABLES = (
    "raw.patch_assessment_resources",
    "raw.patch_installation_resources",
    "raw.patch_operations",
    "raw.la_update",
    "raw.la_update_summary",
    "raw.la_update_run_progress",
)


class RawIngestConfig(dg.Config):
    """Raw tables accumulate: only new or changed files are read. `full_reload` rebuilds the
    table from the files present (files removed from the estate then drop out)."""

    full_reload: bool = False


def load_raw_scan(
    context: dg.AssetExecutionContext, warehouse, run_settings, azure, table: str, load, full_reload: bool = False
):
    """New or changed estate files (or Azure, in live mode) into raw `table` as received, in one
    transaction; the metadata counts the files read and skipped."""
    lake = current_lake()
    with estate_for(run_settings, azure, table, context.log) as estate:
        if lake is not None:
            metadata, stats = _into_lake(context, warehouse, lake, table, load, Path(estate), full_reload)
        else:
            with warehouse.get_connection() as conn, transaction(conn):
                stats = load(conn, Path(estate), table, context.run.run_id, context.log, full_reload=full_reload)
                metadata = {
                    **table_metadata(conn, table),
                    "quarantined_rows": dg.MetadataValue.int(quarantine_count(conn, table)),
                }
    metadata.update(ingest_metadata(stats))
    # Rows set aside in raw.quarantine (Log Analytics; see pipelines/ingest/quarantine.py).
    quarantined = metadata["quarantined_rows"].value
    if quarantined:
        context.log.warning(f"{table}: {quarantined} row(s) quarantined in raw.quarantine")
    return dg.MaterializeResult(metadata=metadata)


def _into_lake(context, warehouse, lake: Lake, table: str, load, estate: Path, full_reload: bool):
    """Lake mode (pipelines/lake.py): the same loader and checks on an in-memory DuckDB, the new
    rows written as Parquet; the warehouse is held only to point its view at the lake and to
    record quarantined rows. Returns the table's metadata and the load's statistics."""
    with duckdb.connect() as scratch:
        scratch.execute("SET TimeZone = 'UTC'")
        lake.prepare_raw(scratch, table, full_reload)
        stats = load(scratch, estate, table, context.run.run_id, context.log, full_reload=False)
        written = lake.write_raw(scratch, table, stats)
        scratch.execute(QUARANTINE_DDL)
        quarantine = scratch.sql("SELECT * FROM raw.quarantine WHERE source = $source",
                                 params={"source": table}).to_arrow_table()
    with warehouse.get_connection() as conn, transaction(conn):
        lake.attach_raw(conn, table)
        conn.execute(QUARANTINE_DDL)
        conn.execute(
            "DELETE FROM raw.quarantine WHERE source = $table AND ($all OR source_file IN (SELECT unnest($names)))",
            {"table": table, "all": full_reload or stats.full_reload,
             "names": stats.files_read + stats.files_replaced},
        )
        conn.register("incoming_quarantine", quarantine)
        conn.execute("INSERT INTO raw.quarantine SELECT * FROM incoming_quarantine")
        conn.unregister("incoming_quarantine")
        return {
            **table_metadata(conn, table),
            "quarantined_rows": dg.MetadataValue.int(quarantine_count(conn, table)),
            "lake/folder": dg.MetadataValue.path(lake.folder(table)),
            "lake/rows_written": dg.MetadataValue.int(written),
        }, stats
