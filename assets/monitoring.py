"""Stage 6, patch monitoring: every patch observation of the scan sources normalized (their raw
assets are in their folders, pipelines/sources/{resource_graph,patch_operations,log_analytics}/),
assessment runs, and the state and history of each patch on each machine.

Semantics (docs in each sql/ header): an assessment lists what is missing at that time. A patch
installed with a pending reboot becomes installed at the first later full assessment that reports
no pending reboot; a patch that merely disappears from a later assessment keeps its last observed
state (Windows Update hides superseded patches, so absence is not proof of installation). The
newest observation wins; at the same time installation results beat assessments beat Log
Analytics.
"""


import dataclasses
from datetime import date

import dagster as dg
import duckdb
import pandas as pd

from assets.common import STAGE6_MONITORING, key, warehouse_asset, warehouse_check
from pipelines import increments, partitions
from pipelines.ingest.files import MANIFEST_DDL
from pipelines.lake import STAGING_PARTITIONS, Lake, current_lake
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.scan_raw import RAW_SCAN_TABLES
from pipelines.tables import unique_check_results, unique_check_specs
from pipelines.warehouse import (
    build_table,
    comment_table,
    create_macros,
    read_sql,
    resolve_as_of,
    sql_literal,
    table_exists,
    table_metadata,
    transaction,
)

# A machine with no successful assessment for longer than this is unknown_stale.
STALE_AFTER_DAYS = 2


class CoverageConfig(dg.Config):
    stale_after_days: int = STALE_AFTER_DAYS


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
    partitions_def=partitions.DAILY,
    backfill_policy=partitions.SINGLE_RUN,
)
def patch_observations(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Normalize every scan source into assessment runs and patch observations.

    Incremental by day: only the days from the earliest one that new, changed or replaced scan
    files touch are recomputed, from the files that can give rows on those days; a change to the
    SQL or to the Log Analytics machine mapping rebuilds every day."""
    lake = current_lake()
    unread = {}
    with warehouse.get_connection() as conn, transaction(conn):
        create_macros(conn)
        changed_from, changed = _scan_file_changes(conn, lake)
        basis = increments.fingerprint(conn, ["staging.vm_la_machines"],
                                       *(read_sql(name) for _, name in OBSERVATION_TABLES))
        built = increments.plan(conn, "staging.patch_observations", basis, changed_from=changed_from,
                                changed=changed, basis_reason="the SQL or the Log Analytics machine mapping changed",
                                requested=partitions.requested(context))
        if not built.full and lake is not None and not all(lake.days(conn, t) for t, _ in OBSERVATION_TABLES):
            built = dataclasses.replace(built, from_day=None, reason="first build of the day folders")
        before = {} if built.full else _day_contents(conn, built.from_day)
        if built.from_day != date.max:  # date.max: no new or changed file
            files = None if built.full else conn.execute(
                "SELECT list(DISTINCT source_file) FROM staging.scan_file_days WHERE last_day >= ?",
                [built.from_day]).fetchall()[0][0] or []
            params = {"files": files, "from_day": built.from_day}
            increments.kept_rows(conn, "kept_observations", "staging.patch_observations",
                                 _KEPT_OBSERVATION_COLUMNS, "observed_at", built.from_day)
            for table, sql_name in OBSERVATION_TABLES:
                if lake is not None:  # Parquet partitioned by day, the warehouse keeping a view
                    unread[table] = lake.build_staging(conn, table, sql_name, params, built.from_day)
                elif built.full:
                    build_table(conn, table, sql_name, params=params)
                else:
                    increments.replace_days(conn, table, sql_name, STAGING_PARTITIONS[table], built.from_day, params)
        changed = built
        if not built.full:  # the tables downstream recompute from the first day whose rows changed
            after = _day_contents(conn, built.from_day)
            days = {day for day in before.keys() | after.keys() if before.get(day) != after.get(day)}
            changed = dataclasses.replace(built, from_day=min(days, default=date.max))
        last_day = conn.execute("SELECT max(observed_at)::DATE FROM staging.patch_observations").fetchall()[0][0]
        increments.record(conn, changed, last_day)  # later changes before it are late
        runs = table_metadata(conn, "staging.assessment_runs")
        by_source = dict(
            conn.execute(
                "SELECT source, count(*) FROM staging.patch_observations GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        )
        observations = table_metadata(conn, "staging.patch_observations")
    for table, folders in unread.items():  # the warehouse now reads the new folders only
        lake.remove_unread(table, folders)
    context.log.info(built.describe())
    metadata = {**built.metadata(), "increment/changed_from":
                "all days" if changed.full else "no day" if changed.from_day == date.max else changed.from_day.isoformat()}
    yield dg.MaterializeResult(asset_key=key("staging.assessment_runs"), metadata={**runs, **metadata})
    yield dg.MaterializeResult(
        asset_key=key("staging.patch_observations"),
        metadata={**observations, "by_source": dg.MetadataValue.json(by_source), **metadata},
    )


def _day_contents(conn, from_day: date) -> dict:
    """Per table and UTC day from `from_day` on: row count and content hash of the scan staging
    tables (an incremental build compares them before and after, so that the days it rewrote
    unchanged, such as those of Resource Graph's copies of earlier runs, do not count as changed)."""
    if from_day == date.max or not all(table_exists(conn, t) for t, _ in OBSERVATION_TABLES):
        return {}
    found = {}
    for table, _ in OBSERVATION_TABLES:
        column = STAGING_PARTITIONS[table]
        for day, rows, content in conn.execute(
                f"SELECT {column}::DATE, count(*), sum(hash(t)) FROM {table} AS t "
                f"WHERE {column} >= timezone('UTC', CAST($day AS DATE)::TIMESTAMP) GROUP BY ALL", {"day": from_day}
        ).fetchall():
            found[(table, day)] = (rows, content)
    return {day: tuple(sorted((t, found[(t, d)]) for t, d in found if d == day)) for _, day in found}


# The staging tables of the scans, in build order (the observations read the runs).
OBSERVATION_TABLES = (("staging.assessment_runs", "obs_assessment_runs"),
                      ("staging.patch_observations", "patch_observations"))

# The columns of staging.patch_observations an incremental build reads from the rows it keeps.
_KEPT_OBSERVATION_COLUMNS = {
    "vm_id": "VARCHAR", "patch_key": "VARCHAR", "kb": "VARCHAR", "patch_name": "VARCHAR",
    "classification": "VARCHAR", "msrc_severity": "VARCHAR", "raw_state": "VARCHAR", "state": "VARCHAR",
    "source": "VARCHAR", "observed_at": "TIMESTAMPTZ", "run_id": "VARCHAR", "source_file": "VARCHAR",
}


def _scan_file_changes(conn, lake: Lake | None) -> tuple[date | None, bool]:
    """Compare the raw scan files ingested (file name and sha256) with those the observations
    were last built from (staging.scan_file_days), record the days of the new versions, and
    return the earliest day a new, changed or removed file touches (None: none) and whether any
    file changed."""
    if lake is None:
        manifest = ("SELECT raw_table, source_file, source_sha256 FROM raw.ingested_files "
                    "WHERE raw_table IN (SELECT unnest($tables))")
        conn.execute(MANIFEST_DDL)
    else:
        listings = [lake.ingested_list(t) for t in RAW_SCAN_TABLES]
        present = [p for p in listings if lake.fs.exists(lake._fs_path(p))]
        lake.register(conn)
        manifest = " UNION ALL ".join(
            f"SELECT raw_table, source_file, source_sha256 FROM read_parquet({sql_literal(p)})" for p in present
        ) or "SELECT NULL::VARCHAR AS raw_table, NULL::VARCHAR AS source_file, NULL::VARCHAR AS source_sha256 WHERE false"
    conn.execute(f"CREATE OR REPLACE TEMP TABLE scan_manifest AS {manifest}",
                 {"tables": list(RAW_SCAN_TABLES)} if lake is None else None)
    conn.execute("CREATE TABLE IF NOT EXISTS staging.scan_file_days (raw_table VARCHAR, source_file VARCHAR, "
                 "source_sha256 VARCHAR, first_day DATE, last_day DATE)")
    new = [r[0] for r in conn.execute(
        "SELECT DISTINCT source_file FROM (SELECT * FROM scan_manifest EXCEPT "
        "SELECT raw_table, source_file, source_sha256 FROM staging.scan_file_days)").fetchall()]
    conn.execute(f"CREATE OR REPLACE TEMP TABLE new_file_days AS {read_sql('scan_file_days')}", {"files": new})
    changed_from, changed = conn.execute(
        """
        WITH gone AS (
            SELECT * FROM staging.scan_file_days AS d
            ANTI JOIN scan_manifest AS m USING (raw_table, source_file, source_sha256)
        )
        SELECT min(first_day), count(*) > 0 OR $new FROM (
            SELECT first_day FROM gone UNION ALL SELECT first_day FROM new_file_days)
        """, {"new": bool(new)}).fetchall()[0]
    # Files that gave no rows have no days; they are remembered all the same.
    conn.execute(
        """
        CREATE OR REPLACE TABLE staging.scan_file_days AS
        SELECT m.raw_table, m.source_file, m.source_sha256,
               coalesce(n.first_day, d.first_day) AS first_day, coalesce(n.last_day, d.last_day) AS last_day
        FROM scan_manifest AS m
        LEFT JOIN new_file_days AS n USING (raw_table, source_file, source_sha256)
        LEFT JOIN staging.scan_file_days AS d USING (raw_table, source_file, source_sha256)
        ORDER BY m.raw_table, m.source_file
        """)
    comment_table(conn, "staging.scan_file_days", "scan_file_days")
    return changed_from, changed


def vm_patch_state_at(
    conn: duckdb.DuckDBPyConnection, as_of: date, stale_after_days: int = STALE_AFTER_DAYS
) -> pd.DataFrame:
    """The state of every patch on every machine at the end of `as_of`, from the full history:
    the same SQL as marts.vm_patch_state, so the mart built for a date equals this."""
    create_macros(conn)
    increments.kept_rows(conn, "kept_facts", "staging.vm_patch_facts", _FACT_COLUMNS, "observed_at", None)
    conn.execute(f"CREATE OR REPLACE TEMP TABLE past_facts AS {read_sql('vm_patch_facts')}",
                 {"as_of": as_of, "from_day": None})
    conn.execute("CREATE OR REPLACE TEMP VIEW patch_facts AS SELECT * FROM past_facts")
    return conn.execute(
        read_sql("vm_patch_state"), {"as_of": as_of, "stale_after_days": stale_after_days}
    ).df()


# The columns of staging.vm_patch_facts (what an incremental build of it continues from).
_FACT_COLUMNS = {
    "vm_id": "VARCHAR", "patch_key": "VARCHAR", "kb": "VARCHAR", "patch_name": "VARCHAR",
    "classification": "VARCHAR", "msrc_severity": "VARCHAR", "newest_kb": "VARCHAR",
    "newest_patch_name": "VARCHAR", "newest_classification": "VARCHAR", "newest_msrc_severity": "VARCHAR",
    "state": "VARCHAR", "raw_state": "VARCHAR", "source": "VARCHAR", "observed_at": "TIMESTAMPTZ",
    "run_id": "VARCHAR", "source_file": "VARCHAR", "first_observed_at": "TIMESTAMPTZ",
    "last_resolved_at": "TIMESTAMPTZ", "opened_at": "TIMESTAMPTZ", "last_attempt_state": "VARCHAR",
    "last_attempt_at": "TIMESTAMPTZ",
}


def _build_patch_facts(conn, as_of: date) -> increments.Plan:
    """staging.vm_patch_facts up to the end of `as_of`: the kept facts plus the days after the
    previous evaluation date, or (first build, late or changed observations, a new SQL) every
    day again."""
    basis = increments.fingerprint(conn, [], read_sql("vm_patch_facts"))
    built = increments.plan(conn, "staging.vm_patch_facts", basis, as_of, upstream=["staging.patch_observations"],
                            basis_reason="its SQL changed")
    if built.late:  # the facts of an earlier day are not kept: recount every day
        built = dataclasses.replace(built, from_day=None, reason="late or changed data: facts recounted over every day")
    params = {"as_of": as_of, "from_day": built.from_day}
    if built.full:
        increments.kept_rows(conn, "kept_facts", "staging.vm_patch_facts", _FACT_COLUMNS, "observed_at", None)
        build_table(conn, "staging.vm_patch_facts", params=params)
    elif built.from_day <= as_of:
        # Only the pairs observed on the new days change: their kept facts are merged with those
        # days and replaced; the rest of the fleet's facts stay as they are.
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE new_day_pairs AS SELECT DISTINCT vm_id, patch_key "
            "FROM staging.patch_observations WHERE observed_at >= timezone('UTC', CAST($from_day AS DATE)::TIMESTAMP) "
            "AND observed_at < timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP)", params)
        conn.execute("CREATE OR REPLACE TEMP VIEW kept_facts AS SELECT * FROM staging.vm_patch_facts "
                     "SEMI JOIN new_day_pairs USING (vm_id, patch_key)")
        create_macros(conn)
        conn.execute(f"CREATE OR REPLACE TEMP TABLE new_facts AS {read_sql('vm_patch_facts')}", params)
        conn.execute("DELETE FROM staging.vm_patch_facts AS f USING new_facts AS n "
                     "WHERE f.vm_id = n.vm_id AND f.patch_key = n.patch_key")
        conn.execute("INSERT INTO staging.vm_patch_facts SELECT * FROM new_facts")
    increments.record(conn, built, as_of)
    return built


@warehouse_asset(
    key=key("marts.vm_patch_state"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[key("staging.patch_observations"), key("staging.assessment_runs"),
          key("marts.patch_supersedence_closure")],
    check_specs=unique_check_specs("marts.vm_patch_state"),  # evaluated in this step
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
        built = _build_patch_facts(conn, as_of)
        conn.execute("CREATE OR REPLACE TEMP VIEW patch_facts AS SELECT * FROM staging.vm_patch_facts")
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
        checks = unique_check_results(conn, "marts.vm_patch_state")
    context.log.info(built.describe())
    return dg.MaterializeResult(
        metadata={**metadata, "as_of": as_of.isoformat(), "by_state": dg.MetadataValue.json(by_state),
                  **built.metadata()},
        check_results=checks,
    )


@warehouse_asset(
    key=key("marts.vm_patch_history"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[key("staging.patch_observations")],
    partitions_def=partitions.DAILY,
    backfill_policy=partitions.SINGLE_RUN,
)
def vm_patch_history(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """Every observation and inferred event, chronological per machine, with the previous state.

    Incremental by day: the days from the earliest one whose observations changed (or the day
    after the previous evaluation date) are recomputed, continuing each machine's positions and
    each patch's previous state from the rows kept."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        basis = increments.fingerprint(conn, [], read_sql("vm_patch_history"))
        built = increments.plan(conn, "marts.vm_patch_history", basis, as_of, upstream=["staging.patch_observations"],
                                basis_reason="its SQL changed", requested=partitions.requested(context))
        increments.kept_rows(conn, "kept_history", "marts.vm_patch_history", _KEPT_HISTORY_COLUMNS, "observed_at",
                             built.from_day)
        params = {"as_of": as_of, "from_day": built.from_day}
        if built.full:
            build_table(conn, "marts.vm_patch_history", params=params)
        elif built.from_day <= as_of:
            increments.replace_days(conn, "marts.vm_patch_history", "vm_patch_history", "observed_at",
                                    built.from_day, params)
        increments.record(conn, built, as_of)
        metadata = table_metadata(conn, "marts.vm_patch_history", order_by="vm_id, event_seq")
    context.log.info(built.describe())
    return dg.MaterializeResult(metadata={**metadata, "as_of": as_of.isoformat(), **built.metadata()})


# What vm_patch_history.sql reads of the rows an incremental build keeps.
_KEPT_HISTORY_COLUMNS = {"vm_id": "VARCHAR", "event_seq": "BIGINT", "patch_key": "VARCHAR", "state": "VARCHAR"}


@warehouse_check(asset=key("staging.patch_observations"), partitions_def=partitions.DAILY)
def observations_have_canonical_state(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    """Every observation of the run's days maps to the canonical vocabulary."""
    first, last = partitions.day_window(context) or (date.min, date.max)
    with warehouse.get_connection() as conn:
        bad = conn.execute(
            "SELECT count(*) FROM staging.patch_observations "
            "WHERE timezone('UTC', observed_at)::DATE BETWEEN $first AND $last AND (state NOT IN "
            "('installed', 'installed_pending_reboot', 'missing', 'failed', 'not_applicable', "
            "'not_selected') OR state IS NULL)", {"first": first, "last": last}
        ).fetchall()[0][0]
    # The count over the run's days, recorded on each of them.
    yield from partitions.check_results(context, dg.AssetCheckResult(passed=bad == 0, metadata={"non_canonical_rows": bad}))
