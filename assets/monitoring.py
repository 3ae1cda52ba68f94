"""Stage 6, patch monitoring: scan results as received (Resource Graph, patch operations, Log
Analytics), every patch observation normalized, assessment runs, and the state and history of
each patch on each machine.

Semantics (docs in each sql/ header): an assessment lists what is missing at that time. A patch
installed with a pending reboot becomes installed at the first later full assessment that reports
no pending reboot; a patch that merely disappears from a later assessment keeps its last observed
state (Windows Update hides superseded patches, so absence is not proof of installation). The
newest observation wins; at the same time installation results beat assessments beat Log
Analytics.
"""


from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from assets.common import STAGE6_MONITORING, key, raw_scan_asset, warehouse_asset, warehouse_check
from pipelines.ingest.quarantine import QUARANTINE_DDL, quarantine_count
from pipelines.lake import Lake, current_lake
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources import estate_for, ingest_metadata
from pipelines.sources.log_analytics.reader import load_log_analytics
from pipelines.sources.patch_operations.reader import load_patch_operations
from pipelines.sources.resource_graph.reader import load_resource_graph
from pipelines.warehouse import (
    build_table,
    create_macros,
    read_sql,
    resolve_as_of,
    table_metadata,
    transaction,
)

# A machine with no successful assessment for longer than this is unknown_stale.
STALE_AFTER_DAYS = 2


class CoverageConfig(dg.Config):
    stale_after_days: int = STALE_AFTER_DAYS


class RawIngestConfig(dg.Config):
    """Raw tables accumulate: only new or changed files are read. `full_reload` rebuilds the
    table from the files present (files removed from the estate then drop out)."""

    full_reload: bool = False


def _load_raw(
    context: dg.AssetExecutionContext, warehouse, run_settings, table: str, load, full_reload: bool = False
):
    """New or changed estate files (or Azure, in live mode) into raw `table` as received, in one
    transaction; the metadata counts the files read and skipped."""
    lake = current_lake()
    with estate_for(run_settings, table, context.log) as estate:
        if lake is not None:
            metadata, stats = _load_raw_into_lake(context, warehouse, lake, table, load, Path(estate), full_reload)
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


def _load_raw_into_lake(context, warehouse, lake: Lake, table: str, load, estate: Path, full_reload: bool):
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


def _resource_graph(arg_table: str):
    return lambda conn, estate, table, run, log, full_reload=False: load_resource_graph(
        conn, estate, arg_table, table, run, log, full_reload=full_reload
    )


def _log_analytics(la_table: str):
    return lambda conn, estate, table, run, log, full_reload=False: load_log_analytics(
        conn, estate, la_table, table, run, log, full_reload=full_reload
    )


@raw_scan_asset(
    key=key("raw.patch_assessment_resources"), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"}
)
def raw_patch_assessment_resources(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    """Resource Graph patchassessmentresources rows (assessment results and their
    softwarepatches) from azure/resource_graph/patchassessmentresources*.json, as received."""
    table = "raw.patch_assessment_resources"
    return _load_raw(context, warehouse, run_settings, table, _resource_graph("patchassessmentresources"),
                     config.full_reload)


@raw_scan_asset(
    key=key("raw.patch_installation_resources"), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"}
)
def raw_patch_installation_resources(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    """Resource Graph patchinstallationresources rows (installation runs and their
    softwarepatches) from azure/resource_graph/patchinstallationresources*.json, as received."""
    table = "raw.patch_installation_resources"
    return _load_raw(context, warehouse, run_settings, table, _resource_graph("patchinstallationresources"),
                     config.full_reload)


@raw_scan_asset(key=key("raw.patch_operations"), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"})
def raw_patch_operations(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    """assessPatches / installPatches results from azure/patch_operations/*.json, as received."""
    return _load_raw(
        context, warehouse, run_settings, "raw.patch_operations", load_patch_operations,
        config.full_reload,
    )


@raw_scan_asset(key=key("raw.la_update"), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"})
def raw_la_update(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    """Log Analytics Update records (portal CSV, az JSON or query API body), typed."""
    return _load_raw(context, warehouse, run_settings, "raw.la_update", _log_analytics("Update"),
                     config.full_reload)


@raw_scan_asset(key=key("raw.la_update_summary"), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"})
def raw_la_update_summary(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    """Log Analytics UpdateSummary records (portal CSV, az JSON or query API body), typed."""
    return _load_raw(
        context, warehouse, run_settings, "raw.la_update_summary", _log_analytics("UpdateSummary"),
        config.full_reload,
    )


@raw_scan_asset(
    key=key("raw.la_update_run_progress"), group_name=STAGE6_MONITORING, kinds={"duckdb", "azure"}
)
def raw_la_update_run_progress(
    context: dg.AssetExecutionContext,
    config: RawIngestConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    """Log Analytics UpdateRunProgress records (portal CSV, az JSON or query API body), typed."""
    return _load_raw(
        context,
        warehouse,
        run_settings,
        "raw.la_update_run_progress",
        _log_analytics("UpdateRunProgress"),
        config.full_reload,
    )


RAW_SCAN_TABLES = (
    "raw.patch_assessment_resources",
    "raw.patch_installation_resources",
    "raw.patch_operations",
    "raw.la_update",
    "raw.la_update_summary",
    "raw.la_update_run_progress",
)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key("staging.assessment_runs"),
            group_name=STAGE6_MONITORING,
            owners=["team:patch-compliance"],
            kinds={"duckdb", "sql"},
            description="Assessment runs per machine from every source (coverage evidence).",
            deps=[key(t) for t in RAW_SCAN_TABLES] + [key("staging.vm_la_machines")],
        ),
        dg.AssetSpec(
            key("staging.patch_observations"),
            group_name=STAGE6_MONITORING,
            owners=["team:patch-compliance"],
            kinds={"duckdb", "sql"},
            description="One row per observation of one patch on one machine, all sources.",
            deps=[key("staging.assessment_runs")],
        ),
    ],
    pool="duckdb",
)
def patch_observations(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Normalize every scan source into assessment runs and patch observations."""
    lake = current_lake()
    versions = {}
    with warehouse.get_connection() as conn, transaction(conn):
        for table, sql_name in (("staging.assessment_runs", "obs_assessment_runs"),
                                ("staging.patch_observations", "patch_observations")):
            if lake is None:
                build_table(conn, table, sql_name)
            else:  # Parquet partitioned by day, the warehouse keeping a view
                versions[table] = lake.build_staging(conn, table, sql_name)
        runs = table_metadata(conn, "staging.assessment_runs")
        by_source = dict(
            conn.execute(
                "SELECT source, count(*) FROM staging.patch_observations GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        )
        observations = table_metadata(conn, "staging.patch_observations")
    for table, version in versions.items():  # the warehouse now reads the new versions only
        lake.remove_other_versions(table, version)
    yield dg.MaterializeResult(asset_key=key("staging.assessment_runs"), metadata=runs)
    yield dg.MaterializeResult(
        asset_key=key("staging.patch_observations"),
        metadata={**observations, "by_source": dg.MetadataValue.json(by_source)},
    )


def vm_patch_state_at(
    conn: duckdb.DuckDBPyConnection, as_of: date, stale_after_days: int = STALE_AFTER_DAYS
) -> pd.DataFrame:
    """The state of every patch on every machine at the end of `as_of`, from the full history:
    the same SQL as marts.vm_patch_state, so the mart built for a date equals this."""
    create_macros(conn)
    return conn.execute(
        read_sql("vm_patch_state"), {"as_of": as_of, "stale_after_days": stale_after_days}
    ).df()


@warehouse_asset(
    key=key("marts.vm_patch_state"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[key("staging.patch_observations"), key("staging.assessment_runs"),
          key("marts.patch_supersedence_closure")],
)
def vm_patch_state(
    context: dg.AssetExecutionContext,
    config: CoverageConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    """Each patch on each machine at the end of the evaluation date: installed, pending reboot,
    missing, failed, not applicable, not selected, or unknown_stale when the machine's
    assessment is stale (the last known state kept beside it)."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(
            conn,
            "marts.vm_patch_state",
            params={"as_of": as_of, "stale_after_days": config.stale_after_days},
        )
        by_state = dict(
            conn.execute(
                "SELECT state, count(*) FROM marts.vm_patch_state GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        )
        metadata = table_metadata(conn, "marts.vm_patch_state")
    return dg.MaterializeResult(
        metadata={**metadata, "as_of": as_of.isoformat(), "by_state": dg.MetadataValue.json(by_state)}
    )


@warehouse_asset(
    key=key("marts.vm_patch_history"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[key("staging.patch_observations")],
)
def vm_patch_history(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """Every observation and inferred event, chronological per machine, with the previous state."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(conn, "marts.vm_patch_history", params={"as_of": as_of})
        metadata = table_metadata(conn, "marts.vm_patch_history", order_by="vm_id, event_seq")
    return dg.MaterializeResult(metadata={**metadata, "as_of": as_of.isoformat()})


@warehouse_check(asset=key("marts.vm_patch_state"), blocking=True)
def vm_patch_state_key_unique(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """One state per machine and patch: gaps and reports count on it."""
    with warehouse.get_connection() as conn:
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT vm_id, patch_key FROM marts.vm_patch_state "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchall()[0][0]
    return dg.AssetCheckResult(passed=duplicates == 0, metadata={"duplicate_keys": duplicates})


@warehouse_check(asset=key("staging.patch_observations"))
def observations_have_canonical_state(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Every observation maps to the canonical vocabulary and to a known machine kind."""
    with warehouse.get_connection() as conn:
        bad = conn.execute(
            "SELECT count(*) FROM staging.patch_observations WHERE state NOT IN "
            "('installed', 'installed_pending_reboot', 'missing', 'failed', 'not_applicable', "
            "'not_selected') OR state IS NULL"
        ).fetchall()[0][0]
    return dg.AssetCheckResult(passed=bad == 0, metadata={"non_canonical_rows": bad})
