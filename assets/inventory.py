"""Stage 1, VM inventory: one identity per machine across every source, and the inventory mart
(configuration, tags, asset category, assessment coverage).

Identity: an Azure VM or Arc machine is its lower-case ARM id; Log Analytics rows without an ARM
id resolve through the VM GUID (either byte order), the agent id, the FQDN or, for Azure machines,
the host name; anything left is a non-Azure machine `nonazure/<lower-case computer>`.
The machines as received (raw.virtual_machines) come from pipelines/sources/compute/.
"""

import dagster as dg

from assets.common import (
    DUCKDB_POOL,
    EVALUATION_DATE_SOURCE,
    OWNERS,
    STAGE1_INVENTORY,
    key,
    warehouse_asset,
    warehouse_check,
)
from assets.monitoring import CoverageConfig
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.scan_raw import RAW_SCAN_TABLES
from pipelines.tables import unique_checks
from pipelines.warehouse import build_table, resolve_as_of, table_metadata, transaction

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
    results = []
    with warehouse.get_connection() as conn, transaction(conn):
        for table in _IDENTITY_TABLES:
            build_table(conn, table)
            results.append((table, table_metadata(conn, table)))
        unmatched = conn.execute(
            "SELECT count(*) FROM staging.vm_la_machines WHERE matched_by = 'unmatched'"
        ).fetchall()[0][0]
    if unmatched:
        context.log.info(f"{unmatched} Log Analytics identities kept as non-Azure machines")
    for table, metadata in results:
        yield dg.MaterializeResult(asset_key=key(table), metadata=metadata)


@warehouse_asset(
    key=key("staging.vm_snapshots"),
    group_name=STAGE1_INVENTORY,
    kinds={"duckdb", "sql"},
    deps=[key("raw.virtual_machines")],
)
def vm_snapshots(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Every machine in every inventory snapshot (the undated azure/virtual_machines.json and the
    dated captures under azure/virtual_machines/), with the configuration each one shows."""
    with warehouse.get_connection() as conn, transaction(conn):
        build_table(conn, "staging.vm_snapshots")
        snapshots = conn.execute(
            "SELECT count(DISTINCT source_file) FROM staging.vm_snapshots"
        ).fetchall()[0][0]
        metadata = table_metadata(conn, "staging.vm_snapshots", preview_rows=0)
    return dg.MaterializeResult(metadata={**metadata, "snapshots": dg.MetadataValue.int(snapshots)})


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
        build_table(
            conn,
            "marts.vm_inventory",
            params={"as_of": as_of, "stale_after_days": config.stale_after_days},
        )
        stale = conn.execute(
            "SELECT count(*) FILTER (WHERE coverage_status = 'unknown_stale'), count(*) "
            "FROM marts.vm_inventory"
        ).fetchall()[0]
        metadata = table_metadata(conn, "marts.vm_inventory")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "as_of": as_of.isoformat(),
            "stale_vms": dg.MetadataValue.int(stale[0]),
        }
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
        build_table(conn, "marts.vm_config_history", params={"as_of": as_of})
        metadata = table_metadata(conn, "marts.vm_config_history")
    return dg.MaterializeResult(metadata={**metadata, "as_of": as_of.isoformat()})


(vm_inventory_vm_id_unique,) = unique_checks("marts.vm_inventory")


@warehouse_check(asset=key("marts.vm_inventory"))
def vm_inventory_stale_share(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Warn when more than 5 % of machines have no recent assessment (unknown_stale)."""
    with warehouse.get_connection() as conn:
        stale, total = conn.execute(
            "SELECT count(*) FILTER (WHERE coverage_status = 'unknown_stale'), count(*) "
            "FROM marts.vm_inventory"
        ).fetchall()[0]
    share = stale / total if total else 0.0
    return dg.AssetCheckResult(
        passed=share <= STALE_SHARE_WARN,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"stale_vms": stale, "vms": total, "stale_share": round(share, 4)},
    )
