"""Stage 4: where the update servers should be, and where they are."""

import dagster as dg

from assets.common import EVALUATION_DATE_SOURCE, STAGE4_UPDATE_SERVERS, key, warehouse_asset
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.warehouse import build_table, resolve_as_of, table_metadata, transaction

# The seed's threshold: a side with fewer than 10 % of the machines gets no server of its own.
MINORITY_SHARE = 0.10
# Monthly update payload per machine, for the traffic estimate (cumulative update plus
# servicing stack, .NET and definitions for Windows; a month of package updates for Linux).
WINDOWS_MONTHLY_MB = 1200
LINUX_MONTHLY_MB = 250


@warehouse_asset(
    key=key("marts.update_server_placement"),
    group_name=STAGE4_UPDATE_SERVERS,
    kinds={"duckdb", "sql"},
    deps=[key("marts.vm_inventory"), EVALUATION_DATE_SOURCE],
)
def update_server_placement(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """Recommended update-server locations per subscription and region, by the seed's hybrid
    rules (servers on both sides when each holds at least 10 % of the machines, else only on
    the majority side), the estimated monthly traffic across the Azure / on-premises boundary,
    and the WSUS servers the agents actually report beside it."""
    with warehouse.get_connection() as conn, transaction(conn):
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(conn, "marts.update_server_placement", params={
            "as_of": as_of,
            "minority_share": MINORITY_SHARE,
            "windows_monthly_mb": WINDOWS_MONTHLY_MB,
            "linux_monthly_mb": LINUX_MONTHLY_MB,
        })
        scenario = conn.execute(
            "SELECT any_value(scenario) FROM marts.update_server_placement"
        ).fetchone()[0]
        metadata = table_metadata(conn, "marts.update_server_placement", preview_rows=10)
    return dg.MaterializeResult(metadata={**metadata, "scenario": scenario or "no machines"})
