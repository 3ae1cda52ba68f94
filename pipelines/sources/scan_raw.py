"""The body every raw scan asset shares (Resource Graph, patch operations, Log Analytics): in live
mode refresh the estate from Azure first (`estate_for`), then load the new or changed files into
the raw table in one transaction, or, in lake mode, write them as Parquet (pipelines/lake.py);
the metadata counts the files read and skipped and the rows quarantined. `raw_scan_table` makes
the asset; each scan source declares its own in its folder (`resource_graph/assets.py`,
`patch_operations/assets.py`, `log_analytics/assets.py`); the time chain that reads them is stage
code (assets/monitoring.py).
"""

from datetime import date
from pathlib import Path

import dagster as dg
import duckdb

from assets.common import STAGE6_MONITORING, key, raw_scan_asset
from pipelines import partitions
from pipelines.ingest.azure import AzureResource
from pipelines.ingest.files import INGEST_WINDOW, VERIFY_FILES
from pipelines.ingest.quarantine import QUARANTINE_DDL, quarantine_count
from pipelines.lake import Lake, current_lake
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources import estate_for, ingest_metadata
from pipelines.warehouse import sql_literal, table_metadata, transaction

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


def raw_scan_table(table: str, description: str, load) -> dg.AssetsDefinition:
    """The day-partitioned raw asset of scan table `table` ('raw.name'), filled by
    `load(conn, estate, table, run_id, log, full_reload=...)` through `load_raw_scan`."""

    @raw_scan_asset(key=key(table), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"},
                    description=description)
    def raw_scan(
        context: dg.AssetExecutionContext,
        config: RawIngestConfig,
        warehouse: WarehouseResource,
        run_settings: RunSettings,
        azure: AzureResource,
    ) -> dg.MaterializeResult:
        return load_raw_scan(context, warehouse, run_settings, azure, table, load, config.full_reload)

    return raw_scan


def load_raw_scan(
    context: dg.AssetExecutionContext, warehouse, run_settings, azure, table: str, load, full_reload: bool = False
):
    """New or changed estate files (or Azure, in live mode) of the run's days (pipelines/partitions.py)
    into raw `table` as received, in one transaction; the metadata counts the files read and skipped."""
    lake = current_lake()
    window = partitions.day_window(context)
    token = INGEST_WINDOW.set(None if window is None else lambda name: partitions.in_window(name, window))
    verify = VERIFY_FILES.set(run_settings.verify_files)
    try:
        metadata = _load(context, warehouse, run_settings, azure, table, load, full_reload, lake)
    finally:
        VERIFY_FILES.reset(verify)
        INGEST_WINDOW.reset(token)
    # Rows set aside in raw.quarantine (Log Analytics; see pipelines/ingest/quarantine.py).
    quarantined = metadata["quarantined_rows"].value
    if quarantined:
        context.log.warning(f"{table}: {quarantined} row(s) quarantined in raw.quarantine")
    if window is not None:
        first, last = ("any earlier day" if window[0] == date.min else window[0].isoformat(),
                       "any later day" if window[1] == date.max else window[1].isoformat())
        metadata["partition/files_dated"] = f"{first} to {last} (and undated files)"
    return dg.MaterializeResult(metadata=metadata)


# No preview rows in the metadata: sorting the whole table for them costs more each day of history.
def _load(context, warehouse, run_settings, azure, table: str, load, full_reload: bool, lake) -> dict:
    with estate_for(run_settings, azure, table, context.log) as estate:
        if lake is not None:
            metadata, stats = _into_lake(context, warehouse, lake, table, load, Path(estate), full_reload)
        else:
            with warehouse.get_connection() as conn, transaction(conn):
                stats = load(conn, Path(estate), table, context.run.run_id, context.log, full_reload=full_reload)
                metadata = {
                    **table_metadata(conn, table, preview_rows=0),
                    "quarantined_rows": dg.MetadataValue.int(quarantine_count(conn, table)),
                }
    metadata.update(ingest_metadata(stats))
    return metadata


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
            **table_metadata(conn, table, preview_rows=0),
            "quarantined_rows": dg.MetadataValue.int(quarantine_count(conn, table)),
            "lake/folder": dg.MetadataValue.path(lake.folder(table)),
            "lake/rows_written": dg.MetadataValue.int(written),
        }, stats


def _scan_files(estate: Path) -> list[Path]:
    """The estate files the raw scan assets read (each reader's own listing)."""
    from pipelines.sources.log_analytics.reader import la_files
    from pipelines.sources.patch_operations.reader import patch_operation_files
    from pipelines.sources.resource_graph.reader import resource_graph_files

    return sorted({*resource_graph_files(estate, "patchassessmentresources"),
                   *resource_graph_files(estate, "patchinstallationresources"),
                   *patch_operation_files(estate),
                   *(p for t in ("Update", "UpdateSummary", "UpdateRunProgress") for p in la_files(estate, t))})


def _ingested(warehouse: Path, lake: Lake | None) -> list[tuple]:
    """(file, sha256, size, mtime_ns) of every scan file ingested: the warehouse's manifest, or
    the lake's lists (a list written before the stamp columns gives NULL stamps)."""
    from pipelines.resources import connect_warehouse

    with duckdb.connect() if lake is not None else connect_warehouse(str(warehouse), read_only=True) as conn:
        if lake is not None:
            lake.register(conn)
            lists = [lake.ingested_list(t) for t in RAW_SCAN_TABLES]
            lists = [p for p in lists if lake.fs.exists(lake._fs_path(p))]
            if not lists:
                return []
            conn.execute("CREATE TEMP TABLE held (source_file VARCHAR, source_sha256 VARCHAR, size BIGINT, "
                         "mtime_ns BIGINT)")
            for listing in lists:
                source = f"read_parquet({sql_literal(listing)})"
                present = {r[0] for r in conn.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
                columns = ", ".join(c for c in ("source_file", "source_sha256", "size", "mtime_ns") if c in present)
                conn.execute(f"INSERT INTO held BY NAME SELECT {columns} FROM {source}")
            return conn.execute("SELECT * FROM held").fetchall()
        if not conn.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'raw' "
                            "AND table_name = 'ingested_files'").fetchall()[0][0]:
            return []
        stamp = ("size, mtime_ns" if conn.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'raw' AND table_name = 'ingested_files' "
            "AND column_name = 'mtime_ns'").fetchall()[0][0] else "NULL, NULL")
        return conn.execute(f"SELECT source_file, source_sha256, {stamp} FROM raw.ingested_files "
                            "WHERE raw_table IN (SELECT unnest($tables))", {"tables": list(RAW_SCAN_TABLES)}).fetchall()


def touched_partitions(estate: Path, warehouse: Path, as_of: date | None = None,
                       verify: bool = False) -> tuple[dict[str, str], str]:
    """The partitions a run materializes, as run tags, and why. They end on the as-of date (by
    default the newest day a scan file is dated, the day the evaluation date defaults to): nothing
    after it is produced, and files dated later wait for a run of a later date. They start on the
    first day of the data when no scan file was ingested yet, else on the earliest day up to then
    that a new or changed scan file is dated (a copy of a file already held adds nothing; an
    undated file is read by every run). Days in between without a file are in the range all the
    same: their state carries forward, and the trend has a row for each. A file whose size and
    mtime equal the manifest's is not read (the loaders' quick check, pipelines/ingest/files.py),
    unless `verify`."""
    from pipelines.ingest.files import file_stamp, relative_name, sha256_file, unchanged_by_stamp

    files = {path: partitions.file_day(path.name) for path in _scan_files(estate)}
    dated = [day for day in files.values() if day is not None]
    last = as_of or max(dated, default=partitions.last_day())
    held = _ingested(warehouse, current_lake()) if warehouse.exists() or current_lake() else []
    if not held:  # from the first day of the data (the first partition takes older files)
        first = min((day for day in dated if day <= last), default=last)
        return partitions.range_tags(first, last), f"first run: every day of the data up to {last}"
    known = {name: (sha, size, mtime) for name, sha, size, mtime in held}
    shas = {sha for _, sha, _, _ in held}
    days = []
    token = VERIFY_FILES.set(verify)
    try:
        for path, day in files.items():
            if day is None or day > last:
                continue
            mine = known.get(relative_name(path, estate))
            if unchanged_by_stamp(mine, file_stamp(path)):
                continue
            sha = sha256_file(path)
            if (mine is None or mine[0] != sha) and sha not in shas:
                days.append(day)
    finally:
        VERIFY_FILES.reset(token)
    if not days:
        return partitions.range_tags(last, last), f"no new or changed scan file dated up to {last}: that day"
    return partitions.range_tags(min(days), last), f"{len(days)} new or changed scan file(s) from {min(days)}"
