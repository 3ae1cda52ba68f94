"""Stage 5, patch testing and authorization.

The registers it rests on and their ledger are the registers source's
(pipelines/sources/registers/). Here: the authorization state machine (marts.authorization_events,
marts.authorization_status); change-control findings; rogue patches; and the stage-1 patch
lifecycle inventory that these records feed.
"""

import dagster as dg

from assets.common import (
    EVALUATION_DATE_SOURCE,
    STAGE1_INVENTORY,
    STAGE5_AUTHORIZATION,
    key,
    warehouse_asset,
)
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.warehouse import (
    build_table,
    resolve_as_of,
    table_metadata,
    transaction,
)


class FindingsConfig(dg.Config):
    pir_window_days: int = 5  # post-implementation review window for emergency changes


class RoguePatchConfig(dg.Config):
    min_vms: int = 3
    window_days: int = 14


def _build(conn, table: str, run_settings: RunSettings, **params) -> dg.MaterializeResult:
    as_of = resolve_as_of(conn, run_settings.as_of_date())
    build_table(conn, table, params={"as_of": as_of, **params})
    return dg.MaterializeResult(metadata=table_metadata(conn, table))


@warehouse_asset(
    key=key("marts.authorization_events"),
    deps=[key("staging.authorization_events"), key("ledger.authorization_events"),
          EVALUATION_DATE_SOURCE],
    group_name=STAGE5_AUTHORIZATION,
    kinds={"duckdb", "sql"},
    description="The authorization event log with each event's place in the state machine "
    "(sql/authorization_events.sql holds the table of legal transitions).",
)
def authorization_events(
    warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn, transaction(conn):
        return _build(conn, "marts.authorization_events", run_settings)


@warehouse_asset(
    key=key("marts.authorization_status"),
    deps=[key("marts.authorization_events")],
    group_name=STAGE5_AUTHORIZATION,
    kinds={"duckdb", "sql"},
    description="Current authorization state per patch x category x environment (contract in "
    "docs/architecture.md).",
)
def authorization_status(
    warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn, transaction(conn):
        return _build(conn, "marts.authorization_status", run_settings)


@warehouse_asset(
    key=key("marts.authorization_findings"),
    deps=[
        key("marts.authorization_events"),
        key("staging.patch_tests"),
        key("staging.exceptions"),
        # staging.patch_tests and staging.exceptions as first recorded, and the tampering found
        key("ledger.patch_tests"),
        key("ledger.exceptions"),
        key("ledger.tamper_findings"),
    ],
    group_name=STAGE5_AUTHORIZATION,
    kinds={"duckdb", "sql"},
    description="Separation of duties, test-before-production, emergency-change, state-machine "
    "and exception findings.",
)
def authorization_findings(
    config: FindingsConfig, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn, transaction(conn):
        return _build(
            conn,
            "marts.authorization_findings",
            run_settings,
            pir_window_days=config.pir_window_days,
        )


@warehouse_asset(
    key=key("marts.rogue_patches"),
    deps=[
        key("staging.patch_observations"),
        key("staging.rollbacks"),
        key("staging.support_incidents"),
        key("marts.authorization_status"),
    ],
    group_name=STAGE5_AUTHORIZATION,
    kinds={"duckdb", "sql"},
    description="Patches followed by failures, rollbacks or incidents on several VMs: defer them.",
)
def rogue_patches(
    config: RoguePatchConfig, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn, transaction(conn):
        return _build(
            conn,
            "marts.rogue_patches",
            run_settings,
            min_vms=config.min_vms,
            window_days=config.window_days,
        )


@warehouse_asset(
    key=key("marts.authorization_install_findings"),
    deps=[
        key("staging.patch_observations"),
        key("marts.vm_inventory"),
        key("marts.authorization_events"),
        key("staging.patch_tests"),
        key("ledger.patch_tests"),
        key("marts.rogue_patches"),
    ],
    group_name=STAGE5_AUTHORIZATION,
    kinds={"duckdb", "sql"},
    description="Production installs before approval or without a test, and rogue patches.",
)
def authorization_install_findings(
    config: RoguePatchConfig, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn, transaction(conn):
        return _build(
            conn,
            "marts.authorization_install_findings",
            run_settings,
            min_vms=config.min_vms,
            window_days=config.window_days,
        )


@warehouse_asset(
    key=key("marts.patch_lifecycle"),
    deps=[
        key("staging.patch_tests"),
        key("ledger.patch_tests"),
        key("staging.support_incidents"),
        key("staging.rollbacks"),
        key("staging.patch_observations"),
        key("marts.vm_inventory"),
        key("marts.authorization_events"),
        key("marts.authorization_status"),
    ],
    group_name=STAGE1_INVENTORY,
    kinds={"duckdb", "sql"},
    description="The patch inventory of stage 1: test outcomes, fixes, incidents, rollbacks, "
    "authorization, impact, justification and approvals per patch.",
)
def patch_lifecycle(
    warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn, transaction(conn):
        return _build(conn, "marts.patch_lifecycle", run_settings)
