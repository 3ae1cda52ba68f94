"""Stage 6: the remediation schedule, and which maintenance window patches each machine."""

import dagster as dg

from assets.common import (
    DUCKDB_POOL,
    EVALUATION_DATE_SOURCE,
    OWNERS,
    STAGE6_MONITORING,
    key,
    warehouse_asset,
    warehouse_check,
)
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.scheduling import SCHEDULE_COLUMNS, build_schedule
from pipelines.sources.maintenance.recurrence import configuration_schedules
from pipelines.warehouse import (
    build_table,
    replace_table,
    resolve_as_of,
    table_metadata,
    transaction,
)

DEFAULT_STEP_MINUTES = 15.0

GAPS_SQL = """
    SELECT g.gap_id, g.vm_id, g.patch_key, g.kb, g.gap_type, g.title, g.priority, g.sla_due,
           a.deploy_order, coalesce(a.impact_dependencies, []::VARCHAR[]) AS dependencies,
           h.rollback_id, h.rolled_back_at, h.reauthorized_at
    FROM marts.compliance_gaps AS g
    LEFT JOIN staging.remediation_holds AS h USING (vm_id, patch_key)
    LEFT JOIN (
        SELECT patch_key, min(deploy_order) AS deploy_order,
               flatten(list(impact_dependencies)) AS impact_dependencies
        FROM marts.authorization_status WHERE status = 'authorized' GROUP BY patch_key
    ) AS a USING (patch_key)
    WHERE g.gap_type IN ('authorized_missing', 'failed_reapply', 'pending_reboot')
    ORDER BY g.gap_id
"""


MAINTENANCE_SOURCES = [key("staging.maintenance_configurations"), key("staging.maintenance_assignments"),
                       key("staging.maintenance_windows")]
# Built in this order, in one transaction: each reads the one before.
WINDOW_TABLES = {
    "marts.vm_maintenance_windows": [EVALUATION_DATE_SOURCE, key("marts.vm_inventory"), *MAINTENANCE_SOURCES],
    "staging.maintenance_configuration_windows": [key("marts.vm_maintenance_windows"), *MAINTENANCE_SOURCES],
    "marts.unscheduled_machines": [key("marts.vm_maintenance_windows")],
    "marts.maintenance_findings": [key("marts.vm_maintenance_windows"), key("marts.unscheduled_machines"),
                                   key("marts.vm_inventory")],
}
IN_GUEST_PATCH_CONFIGURATIONS = """
    SELECT configuration_id, source_file, recur_every, time_zone, start_date_time, expiration_date_time, duration
    FROM staging.maintenance_configurations WHERE lower(maintenance_scope) = 'inguestpatch'
    ORDER BY configuration_id, source_file
"""


@dg.multi_asset(
    specs=[dg.AssetSpec(key(t), group_name=STAGE6_MONITORING, owners=OWNERS, kinds={"duckdb", "sql"}, deps=deps)
           for t, deps in WINDOW_TABLES.items()],
    pool=DUCKDB_POOL,
)
def maintenance_schedules(warehouse: WarehouseResource, run_settings: RunSettings):
    """Which window patches each machine (its InGuestPatch maintenance configuration, else its
    tag's register window), the configurations' schedules as maintenance windows, the machines
    nothing schedules, and the findings on them. A configuration whose schedule cannot be read
    fails the step naming the file, the configuration and the field."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        schedules = configuration_schedules(conn.execute(IN_GUEST_PATCH_CONFIGURATIONS).df())
        replace_table(conn, "staging.maintenance_recurrences", schedules)
        results = []
        for table in WINDOW_TABLES:
            build_table(conn, table, params={"as_of": as_of})
            results.append((table, {**table_metadata(conn, table), "as_of": as_of.isoformat()}))
        by_source = dict(conn.execute(
            "SELECT coalesce(window_source, 'none'), count(*) FROM marts.vm_maintenance_windows "
            "WHERE in_inventory GROUP BY ALL ORDER BY ALL").fetchall())
    for table, metadata in results:
        if table == "marts.vm_maintenance_windows":
            metadata["machines_by_window_source"] = dg.MetadataValue.json(by_source)
        yield dg.MaterializeResult(asset_key=key(table), metadata=metadata)

@warehouse_check(asset=key("marts.unscheduled_machines"))
def every_machine_scheduled(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Warn when an Azure machine is on no InGuestPatch maintenance configuration and no
    registered maintenance window: nothing plans its patching."""
    with warehouse.get_connection() as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM marts.unscheduled_machines ORDER BY name").fetchall()]
    return dg.AssetCheckResult(passed=not names, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"unscheduled_machines": len(names), "first": ", ".join(names[:10])})


# A machine's window: its InGuestPatch configuration, else its tag (marts.vm_maintenance_windows).
MACHINES_SQL = """
    SELECT i.vm_id, i.name, i.role, i.environment, i.criticality,
           coalesce(w.window_id, i.maintenance_window) AS maintenance_window
    FROM marts.vm_inventory AS i LEFT JOIN marts.vm_maintenance_windows AS w USING (vm_id)
    ORDER BY i.vm_id
"""
WINDOWS_SQL = """
    SELECT * FROM staging.maintenance_windows
    UNION ALL BY NAME
    SELECT window_id, name, rrule, start_time, duration_minutes, time_zone, ring, environment, capacity_vms,
           max_role_share, starts_at, expires_at, offset_days
    FROM staging.maintenance_configuration_windows
    ORDER BY window_id
"""


@warehouse_asset(
    key=key("marts.remediation_schedule"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "python"},
    deps=[
        key("marts.compliance_gaps"),
        key("marts.vm_inventory"),
        key("marts.authorization_status"),
        key("staging.maintenance_windows"),
        key("marts.vm_maintenance_windows"),
        key("staging.maintenance_configuration_windows"),
        key("marts.patch_catalog"),
        key("staging.blackout_dates"),
        key("raw.patch_installation_resources"),
        key("staging.rollbacks"),
        key("staging.authorization_events"),
        key("marts.vm_rollback_readiness"),
    ],
)
def remediation_schedule(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """What to install, reinstall or reboot, where, when and in what order: each actionable gap
    in an occurrence of its machine's maintenance window, rings and deadlines respected, with
    the reason for its placement; gaps that cannot meet their due date are marked, and a patch
    rolled back on a machine is held there until it is authorized again."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = conn.execute("SELECT max(as_of) FROM marts.compliance_gaps").fetchone()[0]
        build_table(conn, "staging.remediation_holds", params={"as_of": as_of})
        gaps = conn.execute(GAPS_SQL).df()
        machines = conn.execute(MACHINES_SQL).df()
        windows = conn.execute(WINDOWS_SQL).df()
        blackouts = conn.execute("SELECT * FROM staging.blackout_dates ORDER BY blackout_id").df()
        build_table(conn, "staging.remediation_step_minutes")
        estimates = [r[0] for r in conn.execute(
            "SELECT minutes_per_step FROM staging.remediation_step_minutes ORDER BY runs DESC, os_type"
        ).fetchall()]
        # The most observed OS's median; without history, a quarter hour per step.
        step_minutes = float(estimates[0]) if estimates else DEFAULT_STEP_MINUTES
        placements = (
            build_schedule(gaps, machines, windows, blackouts, as_of,
                           minutes_per_patch=step_minutes, reboot_minutes=step_minutes)
            if as_of is not None
            else gaps.iloc[0:0].reindex(columns=SCHEDULE_COLUMNS)
        )
        replace_table(conn, "staging.remediation_placements", placements)
        build_table(conn, "marts.remediation_schedule", params={"as_of": as_of})
        status = dict(conn.execute(
            "SELECT status, count(*) FROM marts.remediation_schedule GROUP BY ALL ORDER BY ALL"
        ).fetchall())
        metadata = table_metadata(conn, "marts.remediation_schedule")
    return dg.MaterializeResult(metadata={
        **metadata,
        "by_status": dg.MetadataValue.json(status),
        "minutes_per_step": dg.MetadataValue.float(step_minutes),
    })
