"""Stage 1, VM inventory: one identity per machine across every source, and the inventory mart
(configuration, tags, asset category, assessment coverage).

Identity: an Azure VM or Arc machine is its lower-case ARM id; Log Analytics rows without an ARM
id resolve through the VM GUID (either byte order), the agent id, the FQDN or, for Azure machines,
the host name; anything left is a non-Azure machine `nonazure/<lower-case computer>`.
The machines as received (raw.virtual_machines) come from pipelines/sources/compute/.
"""

import hashlib
from datetime import UTC, date, datetime, time, timedelta

import dagster as dg

from assets.common import (
    DUCKDB_POOL,
    EVALUATION_DATE_SOURCE,
    OWNERS,
    STAGE1_INVENTORY,
    key,
    warehouse_asset,
)
from assets.monitoring import CoverageConfig
from pipelines import unchanged
from pipelines.increments import SNAPSHOT_DDL, changed_keys, kept_rows
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.scan_raw import RAW_SCAN_TABLES
from pipelines.tables import unique_check_results, unique_check_specs
from pipelines.warehouse import (
    build_table,
    read_sql,
    resolve_as_of,
    sql_literal,
    table_exists,
    table_metadata,
    transaction,
)

# Share of stale machines above which the coverage check warns.
STALE_SHARE_WARN = 0.05


_IDENTITY_TABLES = ("staging.vm_aliases", "staging.vm_la_machines", "staging.vm_identity")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key(table),
            group_name=STAGE1_INVENTORY,
            owners=OWNERS,
            kinds={"duckdb", "sql"},
            deps=[key("raw.virtual_machines"), *(key(t) for t in RAW_SCAN_TABLES)],
        )
        for table in _IDENTITY_TABLES
    ],
    pool=DUCKDB_POOL,
)
def vm_identity(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Identifier aliases, the resolution of each Log Analytics agent identity, and one row per
    machine with its canonical vm_id and machine_kind (azure_vm, arc, non_azure)."""
    sql_names = [t.split(".")[1] for t in _IDENTITY_TABLES]
    with warehouse.get_connection() as conn, transaction(conn):
        # The tables kept by file first: the fingerprint reads them.
        added = _resource_graph_machines(conn)
        files_read = {"inventory": _inventory_identifiers(conn), "log_analytics": _la_identities(conn)}
        builds = {"staging.vm_aliases": _aliases_build(conn, context)}
        if not builds["staging.vm_aliases"].unchanged:
            build_table(conn, "staging.vm_aliases")
        # The other two read the aliases: their fingerprint after the aliases are built.
        rest = unchanged.prepare(conn, context, _IDENTITY_TABLES[1:], sql_names[1:])
        for table in _IDENTITY_TABLES[1:]:
            builds[table] = rest
            if not rest.unchanged:
                build_table(conn, table)
        results = [(table, table_metadata(conn, table)) for table in _IDENTITY_TABLES]
        unmatched = conn.execute(
            "SELECT count(*) FROM staging.vm_la_machines WHERE matched_by = 'unmatched'"
        ).fetchall()[0][0]
    if unmatched:
        context.log.info(f"{unmatched} Log Analytics identities kept as non-Azure machines")
    machines = {"resource_graph_files_read": dg.MetadataValue.json(added),
                "inventory_files_read": dg.MetadataValue.json(files_read["inventory"]),
                "log_analytics_files_read": dg.MetadataValue.json(files_read["log_analytics"])}
    for table, metadata in results:
        build = builds[table]
        yield dg.MaterializeResult(asset_key=key(table), metadata={**metadata, **build.metadata(), **machines},
                                   data_version=build.data_version)


def _aliases_build(conn, context: dg.AssetExecutionContext) -> unchanged.Build:
    """The build of staging.vm_aliases: it reads the identifiers of the inventory and only the
    identity columns of staging.la_identities, whose times change every day; its inputs are those
    columns' content rather than the table's version, so a day that brings no new identifier does
    not rebuild it."""
    identities = conn.execute(f"SELECT count(*), sum(hash(Computer, SourceComputerId, VMUUID, resource_id)) "
                              f"FROM {LA_IDENTITIES}").fetchall()[0]
    build = unchanged.check(conn, ["staging.vm_aliases"],
                            unchanged.fingerprint(conn, [INVENTORY_IDENTIFIERS], ["vm_aliases"], identities))
    if build.unchanged:
        context.log.info(f"staging.vm_aliases: identifiers unchanged since run {build.since_run}, not rebuilt")
    else:
        unchanged.record(conn, build, context.run.run_id)
    return build


RESOURCE_GRAPH_MACHINES = "staging.resource_graph_machines"
INVENTORY_IDENTIFIERS = "staging.inventory_identifiers"
LA_IDENTITIES = "staging.la_identities"


def _file_contents(*tables: str) -> str:
    """Each file's content in `tables` (its rows and sha256) and the SQL that reads it ($sql)."""
    rows = " UNION ALL ".join(f"SELECT source_file, source_sha256 FROM {t}" for t in tables)
    return ("SELECT source_file AS key, hash(count(*), min(source_sha256), max(source_sha256), $sql) AS content "
            f"FROM ({rows}) GROUP BY source_file")


def _by_files(conn, table: str, contents: str, merge: str) -> list[str] | str:
    """Bring `table` (what sql/<its name>.sql gives over the files `$files`, NULL: every file) up
    to date: the rows of the files added since its last build are read into the temporary table
    `incoming` and merged in by `merge`; a file changed or gone (its rows may have left with it)
    rebuilds it from every file. The files read, or "all"."""
    sql = read_sql(table.split(".")[1])
    sql_md5 = sql_literal(hashlib.md5(sql.encode()).hexdigest())
    saved = set()
    if table_exists(conn, table) and table_exists(conn, "staging.increment_snapshots"):
        saved = {k for (k,) in conn.execute("SELECT key FROM staging.increment_snapshots WHERE target = ? "
                                            "AND name = 'files'", [table]).fetchall()}
    changed = changed_keys(conn, table, "files", contents.replace("$sql", sql_md5))
    if not saved or saved & set(changed):
        build_table(conn, table, params={"files": None})
        return "all"
    if changed:
        conn.execute(f"CREATE OR REPLACE TEMP TABLE incoming AS {sql}", {"files": changed})
        conn.execute(merge)
        conn.execute("DROP TABLE incoming")
    return changed


def _resource_graph_machines(conn) -> list[str] | str:
    """staging.resource_graph_machines up to date: the machines of the result files added since its
    last build join it (`_by_files`)."""
    return _by_files(conn, RESOURCE_GRAPH_MACHINES,
                     _file_contents("raw.patch_assessment_resources", "raw.patch_installation_resources"),
                     f"INSERT INTO {RESOURCE_GRAPH_MACHINES} SELECT * FROM incoming "
                     f"EXCEPT SELECT * FROM {RESOURCE_GRAPH_MACHINES}")


def _inventory_identifiers(conn) -> list[str] | str:
    """staging.inventory_identifiers up to date: the identifiers of the snapshot files added since
    its last build join it, so a run parses only their documents (`_by_files`)."""
    return _by_files(conn, INVENTORY_IDENTIFIERS, _file_contents("raw.virtual_machines"),
                     f"INSERT INTO {INVENTORY_IDENTIFIERS} SELECT * FROM incoming "
                     f"EXCEPT SELECT * FROM {INVENTORY_IDENTIFIERS}")


# An identity of the added files merges with the same identity already held: first and last seen
# widen, the environment is the greatest (what one build over every file gives).
_LA_MERGE = f"""
CREATE OR REPLACE TEMP TABLE la_merged AS
SELECT Computer, SourceComputerId, VMUUID, resource_id, max(computer_environment) AS computer_environment,
       min(first_seen_at) AS first_seen_at, max(last_seen_at) AS last_seen_at
FROM (SELECT * FROM {LA_IDENTITIES} UNION ALL SELECT * FROM incoming)
GROUP BY Computer, SourceComputerId, VMUUID, resource_id;
DELETE FROM {LA_IDENTITIES};
INSERT INTO {LA_IDENTITIES} SELECT * FROM la_merged;
DROP TABLE la_merged
"""


def _la_identities(conn) -> list[str] | str:
    """staging.la_identities up to date: the identities of the Log Analytics exports added since its
    last build merge in, so a run reads only their rows, not every day's (`_by_files`)."""
    return _by_files(conn, LA_IDENTITIES,
                     _file_contents("raw.la_update", "raw.la_update_summary", "raw.la_update_run_progress"),
                     _LA_MERGE)


@warehouse_asset(
    key=key("staging.vm_snapshots"),
    group_name=STAGE1_INVENTORY,
    kinds={"duckdb", "sql"},
    deps=[key("raw.virtual_machines")],
)
def vm_snapshots(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Every machine in every inventory snapshot (the undated azure/virtual_machines.json and the
    dated captures under azure/virtual_machines/), with the configuration each one shows.
    Computed by capture: a run reads only the snapshot files that are new or changed since the
    last build and removes the rows of the files that are gone."""
    with warehouse.get_connection() as conn, transaction(conn):
        build = unchanged.prepare(conn, context, [SNAPSHOTS], ["vm_snapshots"])
        recomputed = [] if build.unchanged else _snapshot_captures(conn)
        snapshots = conn.execute(f"SELECT count(DISTINCT source_file) FROM {SNAPSHOTS}").fetchall()[0][0]
        metadata = table_metadata(conn, SNAPSHOTS, preview_rows=0)
    return dg.MaterializeResult(
        metadata={**metadata, **build.metadata(), "snapshots": dg.MetadataValue.int(snapshots),
                  "captures_recomputed": dg.MetadataValue.json(recomputed)},
        data_version=build.data_version,
    )


SNAPSHOTS = "staging.vm_snapshots"
# Each capture's content: its rows and sha256, and the SQL that reads it (a change of the SQL
# recomputes every capture).
_CAPTURE_CONTENT = (
    "SELECT source_file AS key, hash(count(*), min(source_sha256), max(source_sha256), $sql) AS content "
    "FROM raw.virtual_machines GROUP BY source_file"
)


def _snapshot_captures(conn) -> list[str]:
    """Bring staging.vm_snapshots up to date capture by capture; the captures recomputed (every
    one on a first build)."""
    sql = read_sql("vm_snapshots")
    # Without the captures saved by a previous build, rows of files since removed could remain.
    first = not table_exists(conn, SNAPSHOTS) or not _captures_saved(conn)
    sql_md5 = sql_literal(hashlib.md5(sql.encode()).hexdigest())
    changed = changed_keys(conn, SNAPSHOTS, "captures", _CAPTURE_CONTENT.replace("$sql", sql_md5))
    if first:
        build_table(conn, SNAPSHOTS, params={"captures": None})
        return [f for (f,) in conn.execute(f"SELECT DISTINCT source_file FROM {SNAPSHOTS} ORDER BY 1").fetchall()]
    if changed:
        conn.execute(f"DELETE FROM {SNAPSHOTS} WHERE list_contains($c, source_file)", {"c": changed})
        conn.execute(f"INSERT INTO {SNAPSHOTS} {sql}", {"captures": changed})
    return changed


def _captures_saved(conn) -> bool:
    if not table_exists(conn, "staging.increment_snapshots"):
        return False
    return conn.execute("SELECT count(*) > 0 FROM staging.increment_snapshots WHERE target = ? AND name = 'captures'",
                        [SNAPSHOTS]).fetchall()[0][0]


@warehouse_asset(
    key=key("marts.vm_inventory"),
    group_name=STAGE1_INVENTORY,
    kinds={"duckdb", "sql"},
    deps=[
        key("staging.vm_identity"),
        key("staging.vm_snapshots"),
        key("staging.assessment_runs"),
        key("staging.asset_categories"),
    ],
    # Evaluated in this step: the unique key of the header and the share of stale machines.
    check_specs=[*unique_check_specs("marts.vm_inventory"),
                 dg.AssetCheckSpec("vm_inventory_stale_share", asset=key("marts.vm_inventory"),
                                   description="Warn when more than 5 % of machines have no recent assessment "
                                   "(unknown_stale).")],
)
def vm_inventory(
    context: dg.AssetExecutionContext,
    config: CoverageConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    """One row per machine: configuration, tags, asset category, update server, and assessment
    coverage (unknown_stale without a successful assessment within stale_after_days)."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        params = {"as_of": as_of, "stale_after_days": config.stale_after_days}
        build = unchanged.prepare(conn, context, ["marts.vm_inventory"], ["vm_inventory"], params)
        if not build.unchanged:
            build_table(conn, "marts.vm_inventory", params=params)
        stale = conn.execute(
            "SELECT count(*) FILTER (WHERE coverage_status = 'unknown_stale'), count(*) "
            "FROM marts.vm_inventory"
        ).fetchall()[0]
        metadata = table_metadata(conn, "marts.vm_inventory")
        checks = [*unique_check_results(conn, "marts.vm_inventory"), vm_inventory_stale_share(*stale)]
    return dg.MaterializeResult(
        metadata={
            **metadata,
            **build.metadata(),
            "as_of": as_of.isoformat(),
            "stale_vms": dg.MetadataValue.int(stale[0]),
        },
        data_version=build.data_version,
        check_results=checks,
    )


@warehouse_asset(
    key=key("marts.vm_config_history"),
    group_name=STAGE1_INVENTORY,
    kinds={"duckdb", "sql"},
    deps=[EVALUATION_DATE_SOURCE, key("marts.vm_inventory"), key("staging.vm_snapshots"), key("staging.vm_la_machines")],
)
def vm_config_history(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """Security-relevant configuration per machine as validity intervals (valid_from/valid_to):
    patch settings, tags and OS facts from every dated inventory snapshot; WSUS server, Windows
    Update setting and OS version from Log Analytics UpdateSummary."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build = unchanged.prepare(conn, context, [CONFIG_HISTORY], ["vm_config_history"], as_of)
        since = None if build.unchanged else _config_history(conn, as_of)
        metadata = table_metadata(conn, CONFIG_HISTORY)
    if since:
        context.log.info(f"{CONFIG_HISTORY}: the observations from {since} merged into the intervals")
    recomputed = "unchanged" if build.unchanged else f"from {since}" if since else "full rebuild"
    return dg.MaterializeResult(metadata={**metadata, **build.metadata(), "as_of": as_of.isoformat(),
                                          "recomputed": recomputed},
                                data_version=build.data_version)


CONFIG_HISTORY = "marts.vm_config_history"
_OPEN_COLUMNS = {"vm_id": "VARCHAR", "attribute": "VARCHAR", "value": "VARCHAR", "valid_from": "TIMESTAMPTZ",
                 "observations": "BIGINT", "source": "VARCHAR"}


def open_intervals(conn, merge: bool) -> None:
    """The temporary view config_open_intervals the SQL continues from: the current intervals
    for a merge, none for a full build."""
    if merge:
        conn.execute(f"CREATE OR REPLACE TEMP VIEW config_open_intervals AS SELECT {', '.join(_OPEN_COLUMNS)} "
                     f"FROM {CONFIG_HISTORY} WHERE valid_to IS NULL")
    else:
        kept_rows(conn, "config_open_intervals", CONFIG_HISTORY, _OPEN_COLUMNS, "valid_from", None)


def _day_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(), UTC)


def _config_history(conn, as_of: date) -> date | None:
    """Bring marts.vm_config_history to `as_of`: when it was built for an earlier date from inputs
    that still hold the same rows up to that date, only the later observations are read and merged
    into the current intervals; else a full build. The first day merged, None for a full build."""
    sql = hashlib.md5(read_sql("vm_config_history").encode()).hexdigest()
    conn.execute(SNAPSHOT_DDL)
    saved = conn.execute("SELECT key, content FROM staging.increment_snapshots WHERE target = ? AND name = 'basis'",
                         [CONFIG_HISTORY]).fetchall()
    since = None
    if saved and table_exists(conn, CONFIG_HISTORY) and saved[0][0] < as_of.isoformat():
        previous = date.fromisoformat(saved[0][0])
        cutoff = _day_end(previous)
        same = conn.execute(read_sql("vm_config_history_basis"), {"cutoff": cutoff, "sql": sql}).fetchall()[0][0] == saved[0][1]
        # A machine known only from the undated snapshot that now has a dated one loses its
        # undated interval: only a full build drops it.
        undated = conn.execute(
            "SELECT count(*) FROM marts.vm_config_history WHERE valid_from IS NULL AND source = 'inventory' "
            "AND vm_id IN (SELECT vm_id FROM staging.vm_snapshots WHERE captured_at >= $cutoff)",
            {"cutoff": cutoff}).fetchall()[0][0]
        since = previous + timedelta(days=1) if same and not undated else None
    if since is None:
        open_intervals(conn, merge=False)
        build_table(conn, CONFIG_HISTORY, params={"as_of": as_of, "since": None})
    else:
        open_intervals(conn, merge=True)
        conn.execute(f"CREATE OR REPLACE TEMP TABLE config_merged AS {read_sql('vm_config_history')}",
                     {"as_of": as_of, "since": _day_end(previous)})
        # The merged series' current intervals are replaced by what follows from them.
        conn.execute("DELETE FROM marts.vm_config_history AS h USING (SELECT DISTINCT vm_id, attribute, source "
                     "FROM config_merged) AS m WHERE h.valid_to IS NULL AND h.vm_id = m.vm_id "
                     "AND h.attribute = m.attribute AND h.source = m.source")
        conn.execute("UPDATE marts.vm_config_history SET as_of = ?", [as_of])
        conn.execute("INSERT INTO marts.vm_config_history SELECT * FROM config_merged")
        conn.execute("DROP TABLE config_merged")
    conn.execute("DROP VIEW config_open_intervals")
    content = conn.execute(read_sql("vm_config_history_basis"), {"cutoff": _day_end(as_of), "sql": sql}).fetchall()[0][0]
    conn.execute("DELETE FROM staging.increment_snapshots WHERE target = ? AND name = 'basis'", [CONFIG_HISTORY])
    conn.execute("INSERT INTO staging.increment_snapshots VALUES (?, 'basis', ?, ?)",
                 [CONFIG_HISTORY, as_of.isoformat(), content])
    return since


def vm_inventory_stale_share(stale: int, total: int) -> dg.AssetCheckResult:
    """Warn when more than 5 % of machines have no recent assessment (unknown_stale)."""
    share = stale / total if total else 0.0
    return dg.AssetCheckResult(
        check_name="vm_inventory_stale_share",
        passed=share <= STALE_SHARE_WARN,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"stale_vms": stale, "vms": total, "stale_share": round(share, 4)},
    )
