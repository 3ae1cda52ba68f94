"""Stage 2, VM baselining: drift per VM against its category's baseline, and the distribution
priority of each category (the asset-category and baseline registers: pipelines/sources/registers/)."""

import dagster as dg

from assets.common import STAGE2_BASELINES, key, warehouse_asset
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.warehouse import build_table, resolve_as_of, table_metadata, transaction


@warehouse_asset(
    key=key("marts.baseline_drift"),
    deps=[
        key("marts.vm_inventory"),
        key("marts.vm_patch_state"),
        key("staging.baselines"),
        key("staging.asset_categories"),
    ],
    group_name=STAGE2_BASELINES,
    kinds={"duckdb", "sql"},
    description="Each VM against its category's baseline: missing patches, OS build below the "
    "minimum, software not assessable.",
)
def baseline_drift(warehouse: WarehouseResource, run_settings: RunSettings) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(conn, "marts.baseline_drift", params={"as_of": as_of})
        return dg.MaterializeResult(metadata=table_metadata(conn, "marts.baseline_drift"))


@warehouse_asset(
    key=key("marts.baseline_compliance"),
    deps=[key("marts.baseline_drift"), key("marts.vm_inventory"), key("staging.asset_categories")],
    group_name=STAGE2_BASELINES,
    kinds={"duckdb", "sql"},
    description="Baseline compliance per category, in distribution priority order.",
)
def baseline_compliance(
    warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(conn, "marts.baseline_compliance", params={"as_of": as_of})
        return dg.MaterializeResult(
            metadata=table_metadata(
                conn, "marts.baseline_compliance", order_by="distribution_priority, asset_category"
            )
        )
