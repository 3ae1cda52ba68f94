"""Stage 6: remediation episodes, time to patch and the daily compliance trend, over the whole
observation history (set-based SQL over validity intervals of patch states)."""

import dataclasses
from datetime import date, timedelta

import dagster as dg

from assets.common import STAGE6_MONITORING, key, warehouse_asset, warehouse_check
from assets.monitoring import CoverageConfig
from pipelines import increments, partitions
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.warehouse import (
    build_table,
    create_macros,
    read_sql,
    resolve_as_of,
    table_exists,
    table_metadata,
    transaction,
)


@warehouse_asset(
    key=key("marts.remediation_episodes"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[
        key("marts.vm_patch_history"),
        key("staging.patch_severity"),
        key("marts.patch_fix_lineage"),
        key("marts.patch_supersedence_closure"),
        key("marts.patch_catalog"),
        key("marts.patch_cves"),
        key("marts.patch_bod2604"),
        key("marts.vm_inventory"),
        key("staging.sla_policy"),
    ],
    partitions_def=partitions.DAILY,
    backfill_policy=partitions.SINGLE_RUN,
)
def remediation_episodes(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """Remediation episodes per machine and fix lineage: opened when a patch of the lineage is
    first seen missing, failed or pending a reboot, closed only when it or a superseding patch is
    installed (time-to-fix carries over to the superseding patch), reopened on regression; with
    the due date and whether it was met under each framework."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        basis = increments.fingerprint(conn, _EPISODE_BASIS, read_sql("remediation_episodes"),
                                       read_sql("patch_state_changes"))
        built = increments.plan(conn, "marts.remediation_episodes", basis, as_of, upstream=["marts.vm_patch_history"],
                                basis_reason="its SQL, the fix lineages, supersedence or the SLA policy changed",
                                requested=partitions.requested(context))
        if not built.full and not table_exists(conn, CHANGES):
            built = dataclasses.replace(built, from_day=None, reason=f"first build of {CHANGES}")
        machines = increments.changed_keys(conn, built.target, "machines", _EPISODE_MACHINES)
        patches = increments.changed_keys(conn, built.target, "patches", _EPISODE_PATCHES)
        if built.full:
            pairs = None
            state_changes(conn, as_of, None)
            build_table(conn, "marts.remediation_episodes", params={"as_of": as_of, "pairs": None})
        else:
            # The pairs whose changes on the days recomputed are replaced (those before and after).
            replaced = [*_changed_pairs(conn, built.from_day)]
            state_changes(conn, as_of, built.from_day)
            replaced += _changed_pairs(conn, built.from_day)
            pairs = conn.execute(f"SELECT coalesce(list(pair), []) FROM ({_EPISODE_PAIRS})",
                                 {"from_day": built.from_day, "machines": machines, "patches": patches,
                                  "replaced": replaced, "as_of": as_of}).fetchall()[0][0]
            create_macros(conn)
            conn.execute("DELETE FROM marts.remediation_episodes "
                         "WHERE vm_id || '|' || lineage_id IN (SELECT unnest(CAST($pairs AS VARCHAR[])))",
                         {"pairs": pairs})
            conn.execute(f"INSERT INTO marts.remediation_episodes {read_sql('remediation_episodes')}",
                         {"as_of": as_of, "pairs": pairs})
            conn.execute(_OPEN_EPISODES_AS_OF, {"as_of": as_of})
            conn.execute("UPDATE marts.remediation_episodes SET as_of = ?", [as_of])
        increments.record(conn, built, as_of)
        open_count, reopened = conn.execute(
            "SELECT count(*) FILTER (WHERE closed_at IS NULL), count(*) FILTER (WHERE reopened) "
            "FROM marts.remediation_episodes"
        ).fetchall()[0]
        metadata = table_metadata(conn, "marts.remediation_episodes", order_by="episode_id")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "as_of": as_of.isoformat(),
            "open_episodes": dg.MetadataValue.int(open_count),
            "reopened_episodes": dg.MetadataValue.int(reopened),
            **built.metadata(),
            "increment/lineages_recomputed": "all" if pairs is None else len(pairs),
        }
    )


# Each patch's state changes on each machine (sql/patch_state_changes.sql), which the episodes
# are built from; the columns an incremental build of it continues from.
CHANGES = "staging.patch_state_changes"
_CHANGE_COLUMNS = {"vm_id": "VARCHAR", "patch_key": "VARCHAR", "state": "VARCHAR", "observed_at": "TIMESTAMPTZ"}

def state_changes(conn, as_of: date, from_day: date | None) -> None:
    """staging.patch_state_changes up to the end of `as_of`: the days from `from_day` replaced,
    continuing from the changes kept before it, or (None) every day."""
    params = {"as_of": as_of, "from_day": from_day}
    increments.kept_rows(conn, "kept_changes", CHANGES, _CHANGE_COLUMNS, "observed_at", from_day)
    if from_day is None:
        build_table(conn, CHANGES, params=params)
    else:
        increments.replace_days(conn, CHANGES, "patch_state_changes", "observed_at", from_day, params)


# What every episode reads besides the history: a change rebuilds all of them.
_EPISODE_BASIS = (
    "marts.patch_fix_lineage",
    "marts.patch_supersedence_closure",
    "staging.sla_policy",
)

# What an episode takes from its machine and from its patches: a change recomputes the episodes
# of that machine, or those the patch is part of.
_EPISODE_MACHINES = """
SELECT vm_id AS key, hash(criticality, asset_category, environment, owner, internet_exposed, pci_scope) AS content
FROM marts.vm_inventory
"""
_EPISODE_PATCHES = """
SELECT s.patch_key AS key, hash(s.severity, c.released_at, v.cves, b.tiers) AS content
FROM staging.patch_severity AS s
LEFT JOIN (SELECT patch_key, list(DISTINCT released_at ORDER BY released_at) AS released_at
           FROM marts.patch_catalog GROUP BY patch_key) AS c USING (patch_key)
LEFT JOIN (SELECT patch_key, list((cve, in_kev, kev_date_added, kev_due_date) ORDER BY ALL) AS cves
           FROM marts.patch_cves GROUP BY patch_key) AS v USING (patch_key)
LEFT JOIN (SELECT patch_key, list((internet_exposed, tier, days, forensic_triage) ORDER BY ALL) AS tiers
           FROM marts.patch_bod2604 GROUP BY patch_key) AS b USING (patch_key)
"""

# The machine x lineage pairs an incremental build recomputes (over their whole history): an
# episode depends only on its pair's state changes (staging.patch_state_changes), its machine,
# its patches and the evaluation date. So: the pairs whose changes on the days recomputed were
# replaced ($replaced), those with an episode closed on those days, those of changed machines or
# patches, and the open episodes with a patch whose KEV listing is dated after the previous
# evaluation date and by this one (in_kev, the KEV and BOD 26-04 dues count listings up to it).
_EPISODE_PAIRS = """
SELECT DISTINCT pair FROM (
    SELECT unnest(CAST($replaced AS VARCHAR[])) AS pair
    UNION ALL
    SELECT vm_id || '|' || lineage_id FROM marts.remediation_episodes
    WHERE closed_at >= timezone('UTC', CAST($from_day AS DATE)::TIMESTAMP)
       OR list_contains(CAST($machines AS VARCHAR[]), vm_id)
       OR list_has_any(patch_keys, CAST($patches AS VARCHAR[]))
       OR (closed_at IS NULL AND list_has_any(patch_keys, (
           SELECT coalesce(list(DISTINCT c.patch_key), []) FROM marts.patch_cves AS c
           WHERE c.in_kev AND c.kev_date_added <= CAST($as_of AS DATE)
             AND c.kev_date_added > (SELECT max(as_of) FROM marts.remediation_episodes))))
)
ORDER BY ALL
"""


def _changed_pairs(conn, from_day: date) -> list[str]:
    """The machine x lineage pairs with state changes from `from_day` on."""
    return conn.execute(
        f"SELECT coalesce(list(DISTINCT vm_id || '|' || lineage_id), []) FROM {CHANGES} "
        "WHERE observed_at >= timezone('UTC', CAST($day AS DATE)::TIMESTAMP)", {"day": from_day}).fetchall()[0][0]


# The other episodes still open only count their days and miss their due dates on a later
# evaluation date: sql/remediation_episodes.sql's days_open and met_sla_* of an open episode.
_OPEN_EPISODES_AS_OF = """
UPDATE marts.remediation_episodes SET
    days_open = date_diff('day', opened_at::DATE, CAST($as_of AS DATE))::INTEGER,
    met_sla_internal = CASE WHEN CAST($as_of AS DATE) > sla_internal_due THEN false END,
    met_sla_pci = CASE WHEN CAST($as_of AS DATE) > sla_pci_due THEN false END,
    met_sla_fedramp = CASE WHEN CAST($as_of AS DATE) > sla_fedramp_due THEN false END,
    met_sla_kev = CASE WHEN CAST($as_of AS DATE) > sla_kev_due THEN false END,
    met_sla_bod2604 = CASE WHEN CAST($as_of AS DATE) > sla_bod2604_due THEN false END
WHERE closed_at IS NULL
"""


@warehouse_asset(
    key=key("marts.time_to_patch"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[key("marts.remediation_episodes")],
)
def time_to_patch(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """Mean, median and 90th percentile days to patch per severity x machine criticality (the
    NIST SP 800-40 matrix) and per closing month, and the share of episodes within each
    framework's SLA."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(conn, "marts.time_to_patch", params={"as_of": as_of})
        metadata = table_metadata(conn, "marts.time_to_patch", preview_rows=20)
    return dg.MaterializeResult(metadata={**metadata, "as_of": as_of.isoformat()})


@warehouse_asset(
    key=key("staging.patch_severity"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[key("marts.vm_patch_history"), key("marts.patch_catalog")],
)
def patch_severity(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The severity each observed patch is counted under in the trend and the episodes."""
    with warehouse.get_connection() as conn, transaction(conn):
        build_table(conn, "staging.patch_severity")
        metadata = table_metadata(conn, "staging.patch_severity")
    return dg.MaterializeResult(metadata=metadata)


# What marts.compliance_daily counts besides the observations and listings (which it follows day
# by day through the history's and the observations' increments): a change rebuilds every day.
# The SQL text and the staleness threshold are part of it (the severity rule is in the
# severities themselves).
_TREND_BASIS = ("marts.patch_supersedence_closure",)

# The severities and machine attributes the trend counts by: a change to one a past day counted
# recomputes every day; a patch or machine seen for the first time only counts from the new
# days on.
_TREND_SEVERITIES = "SELECT patch_key AS key, hash(severity) AS content FROM staging.patch_severity"
_TREND_MACHINES = ("SELECT vm_id AS key, hash(asset_category, criticality, environment, owner) AS content "
                   "FROM marts.vm_inventory")


@warehouse_asset(
    key=key("marts.compliance_daily"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[
        key("marts.vm_patch_history"),
        key("staging.patch_severity"),
        key("marts.patch_supersedence_closure"),
        key("marts.patch_catalog"),
        key("marts.vm_inventory"),
        key("staging.assessment_runs"),
    ],
    partitions_def=partitions.DAILY,
    backfill_policy=partitions.SINGLE_RUN,
)
def compliance_daily(
    context: dg.AssetExecutionContext,
    config: CoverageConfig,
    warehouse: WarehouseResource,
    run_settings: RunSettings,
) -> dg.MaterializeResult:
    """The compliance trend for every day of the history: machines, applicable patch pairs,
    installed, superseded-satisfied, missing, failed and pending-reboot counts and the compliance
    share, for the fleet and by asset category, criticality, environment, owner and severity;
    the pairs of machines whose coverage is stale on a day count as unknown. Each pair-day is
    classified by the rules of marts.vm_patch_state as of that day.

    Incremental: only the days from the earliest one that new or changed observations touch are
    recomputed; a change to anything else the counts read rebuilds every day."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        stale_after_days = config.stale_after_days
        basis = increments.fingerprint(conn, _TREND_BASIS, read_sql("compliance_daily"), read_sql("compliance_daily_carry"),
                                       stale_after_days)
        built = increments.plan(conn, "marts.compliance_daily", basis, as_of,
                                upstream=["marts.vm_patch_history", "staging.patch_observations"],
                                basis_reason="supersedence, the staleness threshold or the SQL changed",
                                requested=partitions.requested(context))
        changed = [*increments.changed_keys(conn, "marts.compliance_daily", "severities", _TREND_SEVERITIES, False),
                   *increments.changed_keys(conn, "marts.compliance_daily", "machines", _TREND_MACHINES, False)]
        if changed and not built.full:
            built = dataclasses.replace(built, from_day=None, reason="severities or machine attributes changed")
        params = {"as_of": as_of, "from_day": built.from_day, "stale_after_days": stale_after_days}
        carried = "nothing"  # what the days recomputed continued from (the run's metadata)
        if built.full:
            carry_before(conn, None)
            build_table(conn, "marts.compliance_daily", params=params)
            build_table(conn, CARRY, params=params)
        elif built.from_day <= as_of:
            create_macros(conn)
            carried = carry_before(conn, built.from_day)
            conn.execute("DELETE FROM marts.compliance_daily WHERE day >= ?", [built.from_day])
            conn.execute(f"INSERT INTO marts.compliance_daily {read_sql('compliance_daily')}", params)
            conn.execute("UPDATE marts.compliance_daily SET as_of = ?", [as_of])
            build_table(conn, CARRY, params=params)
        increments.record(conn, built, as_of)
        # The trend's own bookkeeping before it followed the increments.
        conn.execute("DROP TABLE IF EXISTS staging.compliance_daily_basis")
        conn.execute("DROP TABLE IF EXISTS staging.compliance_daily_sources")
        days, latest_share = conn.execute(
            "SELECT count(*), arg_max(compliance_share, day) FROM marts.compliance_daily "
            "WHERE grain = 'fleet'"
        ).fetchall()[0]
        metadata = table_metadata(
            conn,
            "marts.compliance_daily",
            order_by="day DESC, grain, asset_category, criticality, environment, owner, severity",
        )
    context.log.info(built.describe())
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "as_of": as_of.isoformat(),
            "days": dg.MetadataValue.int(days),
            "latest_fleet_compliance_share": dg.MetadataValue.float(float(latest_share or 0.0)),
            **built.metadata(prefix="trend"),
            "trend/continued_from": carried,
        }
    )


# What the trend's next day continues from (sql/compliance_daily_carry.sql): per pair, the summary
# of the history up to the end of the last day built.
CARRY = "staging.compliance_daily_carry"
_CARRY_COLUMNS = {
    "vm_id": "VARCHAR", "patch_key": "VARCHAR", "kb": "VARCHAR", "state": "VARCHAR", "observed_at": "TIMESTAMPTZ",
    "attempt_state": "VARCHAR", "attempt_at": "TIMESTAMPTZ", "resolved_at": "TIMESTAMPTZ", "as_of": "DATE",
}


def carry_before(conn, from_day: date | None) -> str:
    """The temporary view `trend_carry` sql/compliance_daily.sql continues from: the summary of
    the history before `from_day`, the one kept when it was built for the day before (a daily
    run), else computed from the history (late or changed data, a rerun of earlier partitions);
    empty for a full build (`from_day` None). Returns which one."""
    if from_day is None:
        increments.kept_rows(conn, "trend_carry", CARRY, _CARRY_COLUMNS, "observed_at", None)
        return "nothing"
    day_before = from_day - timedelta(days=1)
    kept = table_exists(conn, CARRY) and conn.execute(
        f"SELECT count(*) > 0 AND min(as_of) = $day AND max(as_of) = $day FROM {CARRY}", {"day": day_before}
    ).fetchall()[0][0]
    if kept:
        conn.execute(f"CREATE OR REPLACE TEMP TABLE carry_before AS SELECT * FROM {CARRY}")
    else:
        carry_before(conn, None)
        conn.execute(f"CREATE OR REPLACE TEMP TABLE carry_before AS {read_sql('compliance_daily_carry')}",
                     {"as_of": day_before, "from_day": None})
    conn.execute("CREATE OR REPLACE TEMP VIEW trend_carry AS SELECT * FROM carry_before")
    return f"the summary kept for {day_before}" if kept else f"the history up to {day_before}"


# Evaluated in each run of the episodes' partitions, over every episode (an id is unique across days).
@warehouse_check(asset=key("marts.remediation_episodes"), blocking=True, partitions_def=partitions.DAILY)
def episode_ids_unique(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    """Each episode id names one episode, and no two episodes of a machine's lineage overlap."""
    with warehouse.get_connection() as conn:
        duplicates, overlaps = conn.execute(
            """
            SELECT
                (SELECT count(*) FROM (SELECT episode_id FROM marts.remediation_episodes
                                       GROUP BY episode_id HAVING count(*) > 1)),
                (SELECT count(*) FROM marts.remediation_episodes AS a
                 JOIN marts.remediation_episodes AS b
                   ON a.vm_id = b.vm_id AND a.lineage_id = b.lineage_id
                  AND b.episode_seq = a.episode_seq + 1
                 WHERE a.closed_at IS NULL OR b.opened_at < a.closed_at)
            """
        ).fetchall()[0]
    yield from partitions.check_results(context, dg.AssetCheckResult(
        passed=duplicates == 0 and overlaps == 0,
        metadata={"duplicate_ids": duplicates, "overlapping_episodes": overlaps},
    ))
